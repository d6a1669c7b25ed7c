"""Why an A/B row failed, in a few lines (:mod:`quant.run.ab`): the layers that changed most between the reference
build and this one.

- Accuracy: each quantized layer's output error against FP32 inside the whole model
  (:func:`quant.search.sensitivity.layer_errors`), for both builds on the same images; the five layers whose
  error grew most, with their error before and after (SQNR in dB: higher is closer to FP32).
- Latency: ONNX Runtime's per-kernel profile of both builds on the same input
  (:func:`quant.search.layertime.kernel_times`), the five kernels that added the most time, and the kernel types
  that appeared or went (an INT8 convolution that became a float one shows as ``QLinearConv`` gone and ``Conv``
  come). Where no kernel takes longer, the added time is outside the model's kernels (the runner's own code),
  and the line says so. Other runtimes: not profiled here, and the line says that too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TOP = 5


def _onnx(path) -> bool:
    return path is not None and Path(path).suffix == ".onnx" and Path(path).is_file()


def accuracy_lines(fp32_path, ref_path, new_path, feeds: list[dict], top: int = TOP) -> list[str]:
    from quant.search.sensitivity import layer_errors, to_db

    if not (_onnx(fp32_path) and _onnx(ref_path) and _onnx(new_path)):
        return ["layer errors: only Q/DQ ONNX builds are analysed here"]
    before, after = layer_errors(fp32_path, ref_path, feeds), layer_errors(fp32_path, new_path, feeds)
    changed = sorted(set(before) | set(after), key=lambda u: -(after.get(u, 0.0) - before.get(u, 0.0)))
    lines = []
    for u in changed[:top]:
        b, a = before.get(u), after.get(u)
        if a is None or (b is not None and a <= b):
            break
        was = "float (not quantized)" if b is None else f"{to_db(b):.1f} dB"
        lines.append(f"layer {u}: quantization error {was} -> {to_db(a):.1f} dB SQNR")
    return lines or ["no quantized layer's output error grew: the loss comes from elsewhere (decode, NMS, export)"]


def latency_lines(ref_path, new_path, feed: dict, threads: int | None = None, top: int = TOP, runs: int = 8,
                  kernel_times=None) -> list[str]:
    if not (_onnx(ref_path) and _onnx(new_path)):
        return ["kernel profile: only ONNX Runtime builds are profiled here"]
    if kernel_times is None:
        from quant.search.layertime import kernel_times
    ops_before: dict = {}
    ops_after: dict = {}
    before = kernel_times(ref_path, feed, threads=threads, runs=runs, ops=ops_before)
    after = kernel_times(new_path, feed, threads=threads, runs=runs, ops=ops_after)
    total_b, total_a = sum(before.values()), sum(after.values())
    added = sorted(((after.get(k, 0.0) - before.get(k, 0.0), k) for k in set(before) | set(after)), reverse=True)
    lines = [f"kernel {k}: {before.get(k, 0.0):.0f} -> {after.get(k, 0.0):.0f} us (+{d:.0f} us)"
             for d, k in added[:top] if d > 0] if total_a > total_b * 1.02 else []  # else: noise between kernels
    ops_b, ops_a = Counter(ops_before.values()), Counter(ops_after.values())
    kinds = [f"{op} {ops_b[op]} -> {ops_a[op]}" for op in sorted(set(ops_a) | set(ops_b)) if ops_a[op] != ops_b[op]]
    if kinds:
        lines.append("kernel types changed: " + ", ".join(kinds))
    if not lines or total_a <= total_b * 1.02:
        lines.append(f"the model's kernels take {total_b / 1000:.2f} -> {total_a / 1000:.2f} ms in all: the added time "
                     "is outside them (the runner's own code, or the session's settings)")
    return lines
