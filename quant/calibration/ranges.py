"""Range methods: activation statistics -> per-tensor INT8 ranges.

One class per method (``MinMax``, ``Entropy``, ``Percentile``), each with ``range(stats)``; the
statistics come from :mod:`quant.calibration.activations`. The ranges are computed here rather than by
``onnxruntime.quantization.quantize_static``, whose Entropy/Percentile calibrators ignore their
histogram settings; each method really computes its own ranges (see tests/test_calibration.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant.calibration.activations import TensorStats, collect_stats
from quant.calibration.readers import reader_for
from quant.util.errors import QuantError


@dataclass(frozen=True)
class MinMax:
    """Observed min and max (TensorRT's IInt8MinMaxCalibrator, ORT's MinMax)."""

    name = "minmax"
    needs_histogram = False

    def range(self, s: TensorStats) -> tuple[float, float]:
        return s.lo, s.hi


def _clip(s: TensorStats, t: float) -> tuple[float, float]:
    """Symmetric threshold t applied to the observed range (keeps a one-sided range one-sided)."""
    return max(s.lo, -t), min(s.hi, t)


@dataclass(frozen=True)
class Percentile:
    """Clip |x| at a percentile of its histogram (ORT/ModelOpt 'percentile')."""

    percentile: float = 99.99
    num_bins: int = 2048
    name = "percentile"
    needs_histogram = True

    def range(self, s: TensorStats) -> tuple[float, float]:
        if s.hist is None or s.hist.sum() == 0 or s.amax == 0:
            return s.lo, s.hi
        cdf = np.cumsum(s.hist) / s.hist.sum()
        i = int(np.searchsorted(cdf, self.percentile / 100.0))
        return _clip(s, s.amax * min(i + 1, len(s.hist)) / len(s.hist))


@dataclass(frozen=True)
class Entropy:
    """Threshold of least KL divergence between the |x| histogram and its INT8 version (TensorRT entropy)."""

    num_bins: int = 2048
    num_quantized_bins: int = 128
    stride: int = 8  # coarse-to-fine threshold search (see kl_threshold_bin)
    name = "entropy"
    needs_histogram = True

    def range(self, s: TensorStats) -> tuple[float, float]:
        if s.hist is None or s.hist.sum() == 0 or s.amax == 0:
            return s.lo, s.hi
        i = kl_threshold_bin(s.hist, self.num_quantized_bins, self.stride)
        return _clip(s, s.amax * i / len(s.hist))


def _kl_at(hist: np.ndarray, tail: np.ndarray, i: int, num_quantized_bins: int) -> float:
    """KL(P || Q) for a threshold at bin i: P = hist[:i] with the tail clipped in, Q = P in INT8 bins."""
    ref = hist[:i]
    p = ref.copy()
    p[-1] += tail[i]  # outliers clipped into the last bin
    nonzero = ref > 0
    idx = np.arange(i) * num_quantized_bins // i  # which quantized bin each fine bin falls into
    qsum = np.bincount(idx, weights=ref, minlength=num_quantized_bins)
    qcnt = np.bincount(idx, weights=nonzero, minlength=num_quantized_bins)
    q = np.where(nonzero, qsum[idx] / np.maximum(qcnt[idx], 1), 0.0)
    ps, qs = p / p.sum(), q / max(q.sum(), 1e-30)
    m = ps > 0
    return float(np.sum(ps[m] * np.log(ps[m] / np.maximum(qs[m], 1e-10))))


def kl_threshold_bin(hist: np.ndarray, num_quantized_bins: int = 128, stride: int = 1) -> int:
    """Number of histogram bins to keep (threshold = edge of that bin) minimising KL(P || Q).

    ``stride`` > 1 scans every stride-th threshold, then every threshold within one stride of
    the best: ~stride times faster. KL over the threshold is bumpy, so this can settle in a
    neighbouring local minimum (measured: within 10 % of the exhaustive KL; tests check it).
    """
    hist = hist.astype(np.float64)
    n = len(hist)
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    coarse = list(range(num_quantized_bins, n + 1, stride))
    if coarse[-1] != n:
        coarse.append(n)
    best = min(coarse, key=lambda i: (_kl_at(hist, tail, i, num_quantized_bins), i))
    fine = range(max(num_quantized_bins, best - stride + 1), min(n, best + stride - 1) + 1)
    return min(fine, key=lambda i: (_kl_at(hist, tail, i, num_quantized_bins), i))


METHODS = {"minmax": MinMax, "entropy": Entropy, "percentile": Percentile}


def make_method(name: str, **params):
    try:
        return METHODS[name](**params)
    except KeyError:
        raise QuantError(f"unknown calibration method '{name}' (choose from {', '.join(METHODS)})") from None


SILU_FLOOR = -8.0  # SiLU(-8) = -0.0027: below this the pre-activation carries nothing SiLU keeps


def clip_silu_inputs(ranges: dict[str, tuple[float, float]], silu: dict[str, str],
                     floor: float = SILU_FLOOR) -> dict[str, tuple[float, float]]:
    """SiLU-aware ranges of pre-activation tensors (``silu``: {x: SiLU(x)}, :func:`quant.model.graph.silu_inputs`).

    The conv output before a SiLU is quantized on its own (ONNX Runtime's Q/DQ placement), and its
    negative side can reach -40 where SiLU maps everything under -8 to ~0: clip it at ``floor``, and its
    positive side at the SiLU output's clip (SiLU(x) ~ x for large x), so the INT8 steps go where SiLU
    passes values on. Measured on a real 147-class YOLOv8n at 640 px, label-free: percentile fidelity
    45.7 -> 55.3 (FP32 90.1); on a 2-class face model 85.5 -> 86.9 (FP32 99.5)."""
    out = dict(ranges)
    for x, y in silu.items():
        if x in out and y in out:
            lo, hi = out[x]
            out[x] = (max(lo, floor), min(hi, max(out[y][1], 0.0)))
    return out


def compute_ranges(stats: dict[str, TensorStats], method) -> dict[str, tuple[float, float]]:
    """Per-tensor (low, high) by the method; always contains 0 so that zero is exactly representable."""
    out = {}
    for name, s in stats.items():
        if not math.isfinite(s.lo):
            continue
        lo, hi = method.range(s)
        out[name] = (min(lo, 0.0), max(hi, 0.0))
    return out


# ---- shared per process: activation statistics ---------------------------------------------------
# Builders ask for these directly (not through the suite), so that the cache key of every variant
# whose build computes ranges includes this module's code (see quant.run.codehash).
_STATS: dict[tuple, tuple[int, dict[str, TensorStats]]] = {}


def activation_ranges(src: str | os.PathLike, files, imgsz: int, method: str) -> dict[str, tuple[float, float]]:
    """Per-tensor ranges of ``src``'s activations on the calibration ``files`` by ``method``; the
    statistics are collected once per model and image list and shared by every method and search trial."""
    import onnx

    m = make_method(method)
    bins = getattr(m, "num_bins", 0) if m.needs_histogram else 0
    key = (str(src), Path(src).stat().st_mtime_ns, tuple(map(str, files)), int(imgsz))
    have = _STATS.get(key)
    if have is None or (bins and have[0] != bins):
        input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
        have = _STATS[key] = (bins, collect_stats(src, reader_for(files, imgsz, input_name), bins))
    return compute_ranges(have[1], m)
