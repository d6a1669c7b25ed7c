"""Why an A/B row failed, in a few lines (:mod:`quant.run.ab`): the layers that changed most between the reference
build and this one.

- Accuracy: each quantized layer's output error against FP32 inside the whole model
  (:func:`quant.search.sensitivity.layer_errors`), for both builds on the same images; the five layers whose
  error grew most, with their error before and after (SQNR in dB: higher is closer to FP32).
- Latency: the runtime's per-kernel profile of both builds on the same input (ONNX Runtime's profiler,
  :func:`quant.measure.profile.kernel_times`; OpenVINO's per-layer counters, :func:`~quant.measure.profile.openvino_layer_times`), the
  five kernels that added the most time, and the kernel types that appeared or went (an INT8 convolution that
  became a float one shows as ``QLinearConv`` gone and ``Conv`` come in ONNX Runtime, ``..._I8`` gone and
  ``..._FP32`` come in OpenVINO). Where the kernels' own added time is less than half of what the timed call rose
  by, most of it is outside the model's kernels (the runner's own code), and the line says so. TensorRT engines: not profiled here, and the line says that too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from quant.measure.profile import ir_xml as _ir, openvino_layer_times

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
                  kernel_times=None, config: dict | None = None, added_ms: float | None = None,
                  passes: int = 3) -> list[str]:
    """The kernels that added time between the two builds; ``added_ms``: how much the timed call rose by, which
    the kernels' own added time is held against (unknown: only a rise of the kernels' total over 2 % counts).
    Both builds are profiled in ``passes`` alternating passes and each kernel keeps its fastest pass, so a
    machine that slows down between the two profiles does not read as slower kernels."""
    if _ir(ref_path) and _ir(new_path):
        def kernel_times(path, feed, threads=None, runs=8, ops=None):
            return openvino_layer_times(path, feed, threads, runs, ops=ops, config=config)
    elif not (_onnx(ref_path) and _onnx(new_path)):
        return ["kernel profile: only ONNX Runtime and OpenVINO builds are profiled here"]
    if kernel_times is None:
        from quant.measure.profile import kernel_times
    ops_before: dict = {}
    ops_after: dict = {}
    before: dict = {}
    after: dict = {}
    for _ in range(passes):  # alternating passes, each kernel's fastest median: drift between passes cancels
        for path, ops, best in ((ref_path, ops_before, before), (new_path, ops_after, after)):
            for k, t in kernel_times(path, feed, threads=threads, runs=runs, ops=ops).items():
                best[k] = min(t, best.get(k, t))
    total_b, total_a = sum(before.values()), sum(after.values())
    added = sorted(((after.get(k, 0.0) - before.get(k, 0.0), k) for k in set(before) | set(after)), reverse=True)
    lines = [f"kernel {k}: {before.get(k, 0.0):.0f} -> {after.get(k, 0.0):.0f} us (+{d:.0f} us)"
             for d, k in added[:top] if d > 0] if total_a > total_b * 1.02 else []  # else: noise between kernels
    ops_b, ops_a = Counter(ops_before.values()), Counter(ops_after.values())
    kinds = [f"{op} {ops_b[op]} -> {ops_a[op]}" for op in sorted(set(ops_a) | set(ops_b)) if ops_a[op] != ops_b[op]]
    if kinds:
        lines.append("kernel types changed: " + ", ".join(kinds))
    if added_ms is not None:  # the kernels explain less than half of what the call rose by
        outside = (total_a - total_b) / 1000 < 0.5 * added_ms
    else:
        outside = not lines or total_a <= total_b * 1.02
    if outside:
        rose = "" if added_ms is None else f", against {added_ms:.2f} ms more per call"
        lines.append(f"the model's kernels take {total_b / 1000:.2f} -> {total_a / 1000:.2f} ms in all{rose}: "
                     f"{'' if added_ms is None else 'most of '}the added time is outside them (the runner's own code, "
                     "or the session's settings)")
    return lines
