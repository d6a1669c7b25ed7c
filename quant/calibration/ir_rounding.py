"""Weight rounding by output reconstruction (GPTQ, :mod:`quant.calibration.rounding`) for an OpenVINO model NNCF
has quantized, on the grid NNCF chose, then each rounded convolution's mean output shift put back in its bias.

NNCF stores a quantized convolution's weights as INT8 values times a per-output-channel scale (``Constant(i8) ->
Convert -> Multiply(scale) -> Convolution``; 8-bit, or 7-bit where its overflow fix applies on CPUs without
VNNI) and rounds each weight to the nearest value. Here the INT8 values are chosen column by column instead, each
rounding error pushed onto the columns not rounded yet through the inverse second moment of the convolution's
input patches (its input as the quantized model computes it, on calibration images), which keeps the
convolution's *output* close. The scales, the range of the INT8 values and everything else NNCF placed stay.

The FP32 weights the values approximate are the source ONNX's, divided by NNCF's SmoothQuant factors where it
inserted them (``x * m`` on the input, ``w / m`` in the weights: the convolution is the same). Then each
rounded convolution's bias takes back its mean output shift, sum over (i, k) of (W - Wq)[c, i, k] E[x_i], with
E[x] measured on the same inputs: rounding by output changes the mean differently from the rounding NNCF's own
bias correction was computed for, so the builder runs NNCF without it (:func:`quant.build.nncf_ir.quantize`).

Cost at 640 px on 2 cores (YOLOv8n, 45 INT8 convolutions): one pass of the quantized model over 32 images with
every convolution input as an output (about 20 s), then one Cholesky and one sweep per convolution (about 6 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quant.calibration.rounding import _Conv, gptq

IMAGES = 32  # calibration images the second moments and the input means are measured on
SMOOTH_QUANT = "nncf_smooth_quant"  # what NNCF's SmoothQuant multipliers are named after


def _const(node):
    """The Constant of INT8 values behind ``Convert`` (no zero point: NNCF's weights are symmetric), or None."""
    if node.get_type_name() != "Convert":
        return None
    node = node.input_value(0).get_node()
    return node if node.get_type_name() == "Constant" and node.get_element_type().get_type_name() == "i8" else None


def _smooth_factors(conv) -> np.ndarray | None:
    """NNCF's SmoothQuant multipliers on ``conv``'s input (per input channel), if it inserted any."""
    node = conv.input_value(0).get_node()
    while node.get_type_name() in ("FakeQuantize", "Convert", "Multiply"):
        if node.get_type_name() == "Multiply" and SMOOTH_QUANT in node.get_friendly_name():
            return node.input_value(1).get_node().get_data().astype(np.float64).reshape(-1)
        node = node.input_value(0).get_node()
    return None


class _Job:
    """One INT8 convolution of the quantized model, with what rounding it needs."""

    def __init__(self, conv, values, scale, onnx_node, fp32_weight: np.ndarray):
        self.conv, self.values = conv, values
        self.scale = scale.get_data().astype(np.float64).reshape(-1)
        stored = self.values.get_data()
        self.shape, self.dtype = stored.shape, stored.dtype
        # each channel's largest weight sits at +-127 (8 bits) or +-63.5 (7 bits, NNCF's overflow fix: stored 63 or 64)
        self.qmax = 127 if np.abs(stored.astype(np.int16)).max() >= 127 else 63
        w = fp32_weight.astype(np.float64)
        m = _smooth_factors(conv)
        self.w = (w / m[None, :, None, None] if m is not None else w).reshape(w.shape[0], -1)
        nearest = np.clip(np.round(self.w / np.where(self.scale > 0, self.scale, 1.0)[:, None]), -self.qmax, self.qmax)
        self.understood = nearest.shape == (len(self.scale), stored[0].size) and \
            np.mean(nearest.reshape(stored.shape) == stored) > 0.99  # NNCF's values round these weights
        self.geometry = _Conv(onnx_node, fp32_weight)
        self.x = conv.input_value(0)
        self.h, self.mean = 0.0, 0.0


def _jobs(model, fp32) -> list[_Job]:
    from onnx import numpy_helper

    inits = {i.name: i for i in fp32.graph.initializer}
    nodes = {n.name: n for n in fp32.graph.node if n.op_type == "Conv" and n.input[1] in inits}
    jobs = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue  # GroupConvolution (depthwise) keeps NNCF's rounding
        mul = op.input_value(1).get_node()
        name = op.get_friendly_name().removesuffix("/WithoutBiases")
        if mul.get_type_name() != "Multiply" or name not in nodes:
            continue  # a float convolution
        values, scale = _const(mul.input_value(0).get_node()), mul.input_value(1).get_node()
        if values is None or scale.get_type_name() != "Constant":
            continue  # weights stored some other way
        job = _Job(op, values, scale, nodes[name], numpy_helper.to_array(inits[nodes[name].input[1]]))
        if job.understood:  # else the weights were transformed some way not known here: NNCF's rounding stays
            jobs.append(job)
    return jobs


def _measure(model, jobs: list[_Job], feeds: list[dict], config: dict) -> None:
    """Each job's second moment H (from sampled patches) and per-channel input mean, in one pass over ``feeds``."""
    import zlib

    import openvino as ov

    probe = model.clone()
    ops = {op.get_friendly_name(): op for op in probe.get_ordered_ops()}
    ports, index = [], {}
    for j in jobs:
        key = (j.x.get_node().get_friendly_name(), j.x.get_index())
        if key not in index:
            index[key] = len(ports)
            ports.append(ops[key[0]].output(key[1]))
    first = len(probe.outputs)
    probe.add_outputs(ports)
    compiled = ov.Core().compile_model(probe, "CPU", config)
    for n, feed in enumerate(feeds):
        res = compiled(feed)
        for j in jobs:
            x = res[first + index[(j.x.get_node().get_friendly_name(), j.x.get_index())]].astype(np.float32)
            rng = np.random.default_rng([zlib.crc32(j.conv.get_friendly_name().encode()), n])
            p = j.geometry.patches(x, rng)[0]  # (in*k*k, positions)
            j.h = j.h + p @ p.T
            j.mean = j.mean + x[0].mean(axis=(1, 2), dtype=np.float64) / len(feeds)


def round_ir_weights(model, fp32_path: Path, feeds: list[dict], config: dict | None = None) -> int:
    """Re-round the INT8 weights of ``model`` (an ``ov.Model`` from ``nncf.quantize``, edited in place) on NNCF's
    grid and correct the biases; ``fp32_path``: the ONNX it was quantized from; ``feeds``: calibration inputs;
    ``config``: how the probe is compiled (the variant's precision). Returns how many convolutions."""
    import onnx
    from openvino import opset13 as opset

    jobs = _jobs(model, onnx.load(str(fp32_path)))
    if not jobs:
        return 0
    _measure(model, jobs, feeds[:IMAGES], config or {"INFERENCE_PRECISION_HINT": "f32"})
    for j in jobs:
        q = gptq(j.w, j.h, j.scale, j.qmax)
        j.values.output(0).replace(opset.constant(q.reshape(j.shape).astype(j.dtype)).output(0))
        add = next((t.get_node() for t in j.conv.output(0).get_target_inputs()), None)
        bias = add.input_value(1).get_node() if add is not None and add.get_type_name() == "Add" else None
        if bias is None or bias.get_type_name() != "Constant":
            continue
        shift = (j.w - q * j.scale[:, None]).reshape(len(j.scale), len(j.mean), -1).sum(axis=2) @ j.mean
        b = bias.get_data()
        bias.output(0).replace(opset.constant((b.astype(np.float64).reshape(-1) + shift).reshape(b.shape)
                                              .astype(b.dtype)).output(0))
    return len(jobs)
