"""What each convolution costs on the target, measured: ONNX Runtime's own per-kernel profile.

The recipe search (:mod:`quant.search.recipe`) has to know what leaving a layer float costs. Counting
multiply-accumulates assumes every INT8 kernel beats its float fallback by the same factor; on a CPU it
does not. Measured on a 147-class YOLOv8n at 640 px (2-core AMD EPYC, AVX2, no VNNI), most 3x3 convs
ran about 2x faster in INT8, the cls branch's 1.7x, while the first conv (3 input channels) and the
head's last 1x1 convs (no activation, output read by the float decode) ran *slower* in INT8 than in
FP32. So the saving of a layer is measured: its kernel time in the FP32 model minus its kernel time in
the fully INT8 model, each the median over a few profiled runs on the same input, with the thread
count the benchmark times with. A layer that INT8 does not speed up can stay float for free.

Opt-in (``--auto-profile-runs 12``): on the two real models measured it did not help — the layers it
frees are ~2 % of the latency, and the searched recipes came out no faster and no more accurate than
with MACs (numbers in docs/guide/int8-auto.md).

ONNX Runtime renames what it fuses: a Q/DQ conv becomes ``<conv name>_token_<n>`` (QLinearConv), an
FP32 conv in the blocked layout ``<output name>_nchwc``. A profiled kernel belongs to the convolution
whose node name, or first output's name, is the longest prefix of the kernel's name followed by ``_``.
"""

from __future__ import annotations

import os

from quant.measure.profile import kernel_times  # ONNX Runtime's per-kernel profile


def conv_times(model, times: dict[str, float]) -> dict[str, float]:
    """Convolution node name -> the summed time of the kernels that belong to it (see the module doc);
    convolutions with no kernel of their own are left out."""
    keys = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            keys[n.name] = n.name
            keys.setdefault(n.output[0], n.name)
    out: dict[str, float] = {}
    for kernel, t in times.items():
        owner = max((k for k in keys if kernel == k or kernel.startswith(k + "_")), key=len, default=None)
        if owner is not None:
            out[keys[owner]] = out.get(keys[owner], 0.0) + t
    return out


def int8_savings(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, feed: dict,
                 threads: int | None = None, runs: int = 12) -> dict[str, float] | None:
    """Conv node name -> microseconds its INT8 kernel saves against FP32 (negative: INT8 is slower), for
    every convolution profiled in both models; None when under half of the FP32 model's convolutions could
    be found in either profile (a runtime that names its kernels otherwise: count MACs instead)."""
    import onnx

    fp32 = onnx.load(str(fp32_path), load_external_data=False)
    n_convs = sum(1 for n in fp32.graph.node if n.op_type == "Conv")
    a = conv_times(fp32, kernel_times(fp32_path, feed, threads, runs))
    b = conv_times(fp32, kernel_times(int8_path, feed, threads, runs))
    if not n_convs or min(len(a), len(b)) < n_convs / 2:
        return None
    return {c: a[c] - b[c] for c in a if c in b}
