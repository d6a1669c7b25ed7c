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

from quant.calibration.activations import session_with_outputs

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


def _conv_jobs(q, arr) -> list[ConvJob]:
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


class QdqConvs:
    """The INT8 convs of a Q/DQ model opened for editing, beside the FP32 model it was made from
    (quantize_static keeps node names): ``jobs`` lists them, :meth:`put` replaces an initializer,
    :meth:`save` writes the model back in place. ``base`` prefixes the memo keys of what was measured
    on the FP32 model (its path and time stamp, and ``files_key``: the images)."""

    def __init__(self, fp32_path: Path, qdq_path: Path, files_key: tuple = ()):
        import onnx

        self.fp = onnx.load(str(fp32_path))
        self.fp_inits = {i.name: i for i in self.fp.graph.initializer}
        self.fp_convs = {n.name: n for n in self.fp.graph.node if n.op_type == "Conv"}
        self.path = Path(qdq_path)
        self.q = onnx.load(str(qdq_path))
        self.inits = {i.name: i for i in self.q.graph.initializer}
        self.jobs = [j for j in _conv_jobs(self.q, self.arr) if j.conv in self.fp_convs]
        self.base = (str(fp32_path), Path(fp32_path).stat().st_mtime_ns, files_key)

    def arr(self, name: str) -> np.ndarray:
        """An initializer of the Q/DQ model as float64."""
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name]).astype(np.float64)

    def fp_weight(self, conv: str) -> np.ndarray:
        """The FP32 weights of ``conv`` as stored."""
        from onnx import numpy_helper

        return numpy_helper.to_array(self.fp_inits[self.fp_convs[conv].input[1]])

    def put(self, name: str, value: np.ndarray) -> None:
        from onnx import numpy_helper

        self.inits[name].CopyFrom(numpy_helper.from_array(value, name))

    def save(self) -> None:
        import onnx

        tmp = self.path.with_suffix(".edit.onnx")
        onnx.save(self.q, str(tmp))
        tmp.replace(self.path)


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
    from onnx import numpy_helper

    m = QdqConvs(fp32_path, qdq_path, files_key)
    groups = {name: next((a.i for a in n.attribute if a.name == "group"), 1) for name, n in m.fp_convs.items()}
    wanted = [(j.x, None) for j in m.jobs] + [(j.x, j.act) for j in m.jobs]
    _input_means(fp32_path, feeds, files_key, wanted)
    for j in m.jobs:
        w = m.fp_weight(j.conv).astype(np.float64)
        wq = m.arr(j.w) * m.arr(j.w_scale).reshape(-1, 1, 1, 1)  # symmetric weights: zero point 0
        mx, mq = _MEANS[(*m.base, j.x, None)], _MEANS[(*m.base, j.x, j.act)]
        shift = _conv_of_mean(w, mx, groups[j.conv]) - _conv_of_mean(wq, mq, groups[j.conv])
        b = numpy_helper.to_array(m.inits[j.bias])
        if j.bias_scale is None:
            nb = (b.astype(np.float64) + shift).astype(b.dtype)
        else:
            nb = np.clip(np.round(b + shift / m.arr(j.bias_scale)), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        m.put(j.bias, nb)
    m.save()
    return len(m.jobs)
