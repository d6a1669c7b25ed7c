"""Activations of an FP32 ONNX model on calibration inputs: the tensors inside the graph, exposed as outputs.

:func:`session_with_outputs` runs a copy of a model that also returns named intermediate tensors (bias
correction, weight rounding and the search's sensitivity analysis read them); :func:`collect_stats` gathers
each float activation's running min/max and |x| histogram over a reader, from which the range methods
(:mod:`quant.calibration.ranges`) pick their ranges.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from quant.model.graph import float_tensors


def session_with_outputs(model, outputs: list[str] = ()):
    """An ONNX Runtime CPU session of a copy of ``model`` that also returns the named tensors."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for name in outputs:
        if name not in present:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 1
    so.log_severity_level = 3  # pruned models leave unused scales behind: not worth a warning each
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


@dataclass
class TensorStats:
    """Running statistics of one activation tensor over the calibration set."""

    lo: float = math.inf
    hi: float = -math.inf
    hist: np.ndarray | None = None  # histogram of |x| over [0, amax]

    @property
    def amax(self) -> float:
        return max(abs(self.lo), abs(self.hi))


def collect_stats(model_path: str | os.PathLike, reader, histogram_bins: int = 0,
                  tensors: list[str] | None = None) -> dict[str, TensorStats]:
    """Run the FP32 model over the reader (:class:`quant.calibration.readers.CalibrationReader`), exposing every
    float activation; return running stats.

    Pass 1 records min/max; pass 2 (only if ``histogram_bins``) a histogram of |x| over [0, amax].
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    names = tensors or float_tensors(model)
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor stays visible
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    stats = {n: TensorStats() for n in names}
    for feed in reader:
        for name, x in zip(names, sess.run(names, feed)):
            s = stats[name]
            if x.size:
                s.lo, s.hi = min(s.lo, float(x.min())), max(s.hi, float(x.max()))
    if histogram_bins:
        for feed in reader:
            for name, x in zip(names, sess.run(names, feed)):
                s = stats[name]
                h, _ = np.histogram(np.abs(x), bins=histogram_bins, range=(0.0, s.amax or 1.0))
                s.hist = h if s.hist is None else s.hist + h
    return stats
