"""Empirical bias correction of Q/DQ INT8 convolutions (Nagel et al. 2019, "Data-Free Quantization
Through Weight Equalization and Bias Correction", its empirical form), layer-local.

Quantizing a convolution's weights and its input shifts the mean of its output: per output channel
c, E[y_c] moves by sum_i,k (W[c,i,k] E[x_i] - Wq[c,i,k] E[q(x)_i]). The shift is measured on the
calibration images (x: the FP32 model's input of the conv; q(x): x through the conv's own input
Q/DQ; Wq: the dequantized INT8 weights) and added to the conv's bias. Layer-local: every conv is
corrected against FP32 inputs in one pass, so errors do not compound through earlier corrections.

Cost: one FP32 pass per distinct set of input quantization parameters (the calibration method) over
the images, memoized per process, then array sums per conv; a search's many candidates of one
method share the pass. Padding borders are ignored (both expectations are taken the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant.sensitivity import session_with_outputs

_MEANS: dict[tuple, np.ndarray] = {}  # (fp32 model, images, tensor, input quantization) -> per-channel mean


@dataclass(frozen=True)
class ConvJob:
    conv: str  # node name (quantize_static keeps node names)
    x: str  # the float tensor the conv's input Q/DQ reads
    act: tuple | None  # (scale, zero point, qmin, qmax) of that Q/DQ, None when the input stays float
    bias: str  # bias initializer (int32 with a DequantizeLinear, or float)
    bias_scale: str | None  # the bias DequantizeLinear's scale initializer, None for a float bias
    w: str  # the INT8 weight initializer
    w_scale: str


def conv_jobs(q, arr) -> list[ConvJob]:
    """The quantized convs of the Q/DQ model ``q`` with what correcting each needs."""
    import onnx

    producers = {o: n for n in q.graph.node for o in n.output}
    inits = {i.name: i for i in q.graph.initializer}
    jobs = []
    for n in q.graph.node:
        if n.op_type != "Conv" or len(n.input) < 3:
            continue
        xdq, wdq, bdq = (producers.get(i) for i in n.input[:3])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue  # a float conv
        xq = producers.get(xdq.input[0]) if xdq is not None and xdq.op_type == "DequantizeLinear" else None
        act = None
        x = n.input[0]
        if xq is not None and xq.op_type == "QuantizeLinear":
            x = xq.input[0]
            unsigned = inits[xq.input[2]].data_type == onnx.TensorProto.UINT8
            act = (float(arr(xq.input[1])), float(arr(xq.input[2])), *((0, 255) if unsigned else (-128, 127)))
        if bdq is not None and bdq.op_type == "DequantizeLinear":
            jobs.append(ConvJob(n.name, x, act, bdq.input[0], bdq.input[1], wdq.input[0], wdq.input[1]))
        elif n.input[2] in inits:
            jobs.append(ConvJob(n.name, x, act, n.input[2], None, wdq.input[0], wdq.input[1]))
    return jobs


def fake_quant(y: np.ndarray, act: tuple) -> np.ndarray:
    s, zp, qmin, qmax = act
    return (np.clip(np.round(y / s) + zp, qmin, qmax) - zp) * s


def _input_means(fp32_path: Path, feeds: list[dict], files_key: tuple, wanted: list[tuple]) -> None:
    """Fill _MEANS for ``wanted`` (tensor, act) pairs not there yet, in one FP32 pass."""
    import onnx

    base = (str(fp32_path), Path(fp32_path).stat().st_mtime_ns, files_key)
    todo = [w for w in dict.fromkeys(wanted) if (*base, *w) not in _MEANS]
    if not todo:
        return
    names = list(dict.fromkeys(t for t, _ in todo))
    sess = session_with_outputs(onnx.load(str(fp32_path)), names)
    sums = {w: 0.0 for w in todo}
    for feed in feeds:
        ys = dict(zip(names, sess.run(names, feed)))
        for t, act in todo:
            y = ys[t] if act is None else fake_quant(ys[t], act)
            sums[(t, act)] = sums[(t, act)] + y.mean(axis=(0, 2, 3), dtype=np.float64)
    for w, s in sums.items():
        _MEANS[(*base, *w)] = s / len(feeds)


def _conv_of_mean(w: np.ndarray, mean: np.ndarray, groups: int) -> np.ndarray:
    """Per output channel: sum over its input channels and kernel of w times the input channel's mean."""
    cout, cin_g = w.shape[:2]
    wg = w.reshape(groups, cout // groups, cin_g, -1).sum(axis=3)  # (g, cout/g, cin/g)
    return np.einsum("gci,gi->gc", wg, mean.reshape(groups, cin_g)).reshape(cout)


def correct_biases(fp32_path: Path, qdq_path: Path, feeds: list[dict], files_key: tuple = ()) -> int:
    """Correct the biases of ``qdq_path``'s INT8 convs in place; returns how many were corrected.
    ``feeds``: calibration inputs ({input name: NCHW float32}); ``files_key`` names them for the memo."""
    import onnx
    from onnx import numpy_helper

    fp = onnx.load(str(fp32_path))
    fp_inits = {i.name: i for i in fp.graph.initializer}
    fp_convs = {n.name: n for n in fp.graph.node if n.op_type == "Conv"}
    groups = {name: next((a.i for a in n.attribute if a.name == "group"), 1) for name, n in fp_convs.items()}
    q = onnx.load(str(qdq_path))
    inits = {i.name: i for i in q.graph.initializer}
    arr = lambda name: numpy_helper.to_array(inits[name]).astype(np.float64)  # noqa: E731
    jobs = [j for j in conv_jobs(q, arr) if j.conv in fp_convs]
    wanted = [(j.x, None) for j in jobs] + [(j.x, j.act) for j in jobs]
    _input_means(fp32_path, feeds, files_key, wanted)
    base = (str(fp32_path), Path(fp32_path).stat().st_mtime_ns, files_key)
    for j in jobs:
        w = numpy_helper.to_array(fp_inits[fp_convs[j.conv].input[1]]).astype(np.float64)
        wq = arr(j.w) * arr(j.w_scale).reshape(-1, 1, 1, 1)  # symmetric weights: zero point 0
        mx, mq = _MEANS[(*base, j.x, None)], _MEANS[(*base, j.x, j.act)]
        shift = _conv_of_mean(w, mx, groups[j.conv]) - _conv_of_mean(wq, mq, groups[j.conv])
        b = numpy_helper.to_array(inits[j.bias])
        if j.bias_scale is None:
            nb = (b.astype(np.float64) + shift).astype(b.dtype)
        else:
            nb = np.clip(np.round(b + shift / arr(j.bias_scale)), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        inits[j.bias].CopyFrom(numpy_helper.from_array(nb, j.bias))
    tmp = Path(qdq_path).with_suffix(".biascorr.onnx")
    onnx.save(q, str(tmp))
    tmp.replace(qdq_path)
    return len(jobs)
