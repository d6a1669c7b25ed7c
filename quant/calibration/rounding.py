"""Weight rounding by per-layer output reconstruction for Q/DQ INT8 convolutions (GPTQ: Frantar et
al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", the
fast form of Optimal Brain Quantization).

Round-to-nearest picks each INT8 weight on its own. Here a conv's weights are rounded one input
column at a time, and each column's rounding error is pushed onto the columns not rounded yet,
weighted by the inverse of H = X^T X, where X holds the conv's input patches on calibration images
(through the conv's own input Q/DQ, as the INT8 conv sees them). That minimizes the error of the
conv's output, ||X (W - Wq)^T||^2, instead of the weights' own. The scales and the grid stay those
``quantize_static`` chose; only the INT8 values change, so the model stays what ONNX Runtime and
TensorRT read.

Cost: one FP32 pass over the images with every conv input as an output; per conv and image
``POSITIONS`` output positions sampled (seeded), their patches accumulated into H; then one
Cholesky and one sweep over the columns per conv. The rounded weights are memoized per process by
(model, images, conv, input quantization, scales), so a search's candidates of one calibration
method pay this once.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from quant.calibration.biascorr import ConvJob, QdqConvs, fake_quant
from quant.calibration.activations import session_with_outputs

POSITIONS = 512  # output positions sampled per conv and image
BLOCK = 64  # columns rounded between two updates of the remaining weights
DAMP = 0.01  # added to H's diagonal, relative to its mean (GPTQ's default)

H_BUDGET = 1 << 30  # bytes of H matrices held at once; more convs than that take another FP32 pass

_ROUNDED: dict[tuple, np.ndarray] = {}


class _Conv:
    """A conv's geometry (from the FP32 graph) and its FP32 weights as (groups, out/group, in/group*k*k)."""

    def __init__(self, node, weight: np.ndarray):
        a = {x.name: x for x in node.attribute}
        ints = lambda k, d: list(a[k].ints) if k in a else d  # noqa: E731
        self.groups = a["group"].i if "group" in a else 1
        self.kernel = tuple(weight.shape[2:])
        self.strides = tuple(ints("strides", [1, 1]))
        self.dilations = tuple(ints("dilations", [1, 1]))
        self.pads = tuple(ints("pads", [0, 0, 0, 0]))  # top, left, bottom, right
        self.auto_pad = a["auto_pad"].s.decode() if "auto_pad" in a else "NOTSET"
        cout = weight.shape[0]
        self.w = weight.astype(np.float64).reshape(self.groups, cout // self.groups, -1)

    def patches(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Input patches of one image (N=1) at ``POSITIONS`` sampled output positions, as
        (groups, in/group*k*k, positions): gathered, not a full im2col."""
        (kh, kw), (sh, sw), (dh, dw), (t, l, b, r) = self.kernel, self.strides, self.dilations, self._pads(x.shape)
        xp = np.pad(x[0], ((0, 0), (t, b), (l, r)))
        ho, wo = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1, (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
        pick = np.sort(rng.choice(ho * wo, size=min(POSITIONS, ho * wo), replace=False))
        row, col = np.divmod(pick, wo)
        rows = row[None, :] * sh + (np.arange(kh) * dh)[:, None]  # (kh, positions)
        cols = col[None, :] * sw + (np.arange(kw) * dw)[:, None]  # (kw, positions)
        p = xp[:, rows[:, None, :], cols[None, :, :]]  # (C, kh, kw, positions): the weights' (c, kh, kw) order
        return p.astype(np.float64).reshape(self.groups, -1, len(pick))

    def _pads(self, shape) -> tuple:
        """(top, left, bottom, right), resolving ONNX's auto_pad for an input of ``shape`` (NCHW)."""
        if self.auto_pad in ("NOTSET", ""):
            return self.pads
        if self.auto_pad == "VALID":
            return 0, 0, 0, 0
        total = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)  # SAME_*: output size ceil(n / stride)
                 for n, s, k, d in zip(shape[2:], self.strides, self.kernel, self.dilations)]
        small = [p // 2 for p in total]
        big = [p - q for p, q in zip(total, small)]
        first, last = (small, big) if self.auto_pad == "SAME_UPPER" else (big, small)
        return first[0], first[1], last[0], last[1]


def gptq(w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """INT8 values of ``w`` (out, in) on the grid ``scale`` (per out channel, zero point 0, |q| <= qmax)
    that keep ``x @ w.T`` close for inputs with second moment ``h`` (in, in)."""
    w, h = w.copy(), h.copy()
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0  # inputs that were always zero here: round to nearest (no error flows to or from them)
    order = np.argsort(-np.diag(h), kind="stable")  # largest inputs first (GPTQ's act-order)
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices_from(h)] += DAMP * np.mean(np.diag(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H^-1
    s = np.where(scale > 0, scale, 1.0)
    q = np.empty_like(w)
    for b0 in range(0, w.shape[1], BLOCK):  # GPTQ's lazy batch updates: the rest of w once per block
        b1 = min(b0 + BLOCK, w.shape[1])
        wb, ub, errs = w[:, b0:b1].copy(), u[b0:b1, b0:b1], np.empty((w.shape[0], b1 - b0))
        for i in range(b1 - b0):
            q[:, b0 + i] = np.clip(np.round(wb[:, i] / s), -qmax, qmax)
            errs[:, i] = (wb[:, i] - q[:, b0 + i] * s) / ub[i, i]
            wb[:, i + 1:] -= np.outer(errs[:, i], ub[i, i + 1:])
        w[:, b1:] -= errs @ u[b0:b1, b1:]
    return q[:, np.argsort(order)]


def _key(base: tuple, j: ConvJob, scale: np.ndarray) -> tuple:
    return (*base, j.conv, j.act, scale.tobytes())


def _second_moments(fp32, convs: dict[str, _Conv], jobs: list[ConvJob], feeds: list[dict]) -> dict[str, np.ndarray]:
    """H per conv of ``jobs`` (groups, d, d), from one FP32 pass over ``feeds``."""
    names = list(dict.fromkeys(j.x for j in jobs))
    sess = session_with_outputs(fp32, names)
    hs = {j.conv: 0.0 for j in jobs}
    for n, feed in enumerate(feeds):
        ys = dict(zip(names, sess.run(names, feed)))
        for j in jobs:
            x = ys[j.x] if j.act is None else fake_quant(ys[j.x], j.act)
            rng = np.random.default_rng([zlib.crc32(j.conv.encode()), n])
            p = convs[j.conv].patches(x.astype(np.float32), rng)
            hs[j.conv] = hs[j.conv] + p @ p.transpose(0, 2, 1)  # batched BLAS, not einsum's loops
    return hs


def _chunks(jobs: list[ConvJob], convs: dict[str, _Conv]) -> list[list[ConvJob]]:
    """``jobs`` in runs whose H matrices fit H_BUDGET bytes together (one FP32 pass each)."""
    out, size = [[]], 0
    for j in jobs:
        g, _, d = convs[j.conv].w.shape
        need = g * d * d * 8
        if out[-1] and size + need > H_BUDGET:
            out, size = out + [[]], 0
        out[-1].append(j)
        size += need
    return [c for c in out if c]


def round_weights(fp32_path: Path, qdq_path: Path, feeds: list[dict], files_key: tuple = ()) -> int:
    """Re-round the INT8 weights of ``qdq_path``'s quantized convs in place; returns how many convs.
    ``feeds``: calibration inputs ({input name: NCHW float32}); ``files_key`` names them for the memo."""
    from onnx import numpy_helper

    m = QdqConvs(fp32_path, qdq_path, files_key)
    scales = {j.conv: m.arr(j.w_scale).reshape(-1) for j in m.jobs}
    convs = {j.conv: _Conv(m.fp_convs[j.conv], m.fp_weight(j.conv)) for j in m.jobs}
    todo = [j for j in m.jobs if _key(m.base, j, scales[j.conv]) not in _ROUNDED]
    for chunk in _chunks(todo, convs):
        for conv, h in _second_moments(m.fp, convs, chunk, feeds).items():
            j = next(j for j in chunk if j.conv == conv)
            c, stored = convs[conv], numpy_helper.to_array(m.inits[j.w])
            qmax = int(np.abs(stored).max()) or 1
            per_group = c.w.shape[1]
            rounded = [gptq(c.w[g], h[g], scales[conv][g * per_group:(g + 1) * per_group], qmax)
                       for g in range(c.groups)]
            _ROUNDED[_key(m.base, j, scales[conv])] = np.concatenate(rounded).reshape(stored.shape).astype(stored.dtype)
    for j in m.jobs:
        m.put(j.w, _ROUNDED[_key(m.base, j, scales[j.conv])])
    m.save()
    return len(m.jobs)
