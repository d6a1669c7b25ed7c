"""Where a variant's accuracy went: its Δ mAP50-95 against the baseline, split by class.

mAP50-95 is the mean over the classes present in the val labels of each class's AP50-95, so a
variant's Δ is exactly the sum of one share per class: (its AP of that class - the baseline's) / the
number of classes. A class with a few labels weighs as much as one with thousands, so a handful of
rare boxes can carry most of a loss (measured: docs/results/147-class-model.md, on molecule drawings).
Computed from the per-image statistics both evaluations keep (:class:`quant.measure.imagestats.ImageStats`),
with Ultralytics' own AP.
"""

from __future__ import annotations

import numpy as np

TOP = 3  # classes named per row


def class_ap(stats) -> dict[int, tuple[float, int]]:
    """{class: (AP50-95, labels)} for each class present in ``stats``'s labels (Ultralytics' ap_per_class)."""
    from ultralytics.utils.metrics import ap_per_class

    if not len(stats.target_cls):
        return {}
    labels = np.bincount(stats.target_cls)
    out = ap_per_class(stats.tp, stats.conf, stats.pred_cls, stats.target_cls)
    ap, classes = out[5], out[6]
    return {int(c): (float(ap[i].mean()), int(labels[c])) for i, c in enumerate(classes)}


def class_shares(new, old, names: dict[int, str] | list[str], top: int = TOP) -> list[dict] | None:
    """The ``top`` classes that cost ``new`` most against ``old`` on the same images and labels, each
    ``{"class", "labels", "points"}`` (its share of the Δ mAP50-95 in points, negative = lost), worst
    first; only classes that lost. None where the two were not scored on the same labels."""
    if new is None or old is None or new.images != old.images or not np.array_equal(
            np.sort(new.target_cls), np.sort(old.target_cls)):
        return None
    names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else names
    a, b = class_ap(new), class_ap(old)
    if not b:
        return None
    shares = {c: 100 * (a[c][0] - b[c][0]) / len(b) for c in b}
    worst = sorted((c for c in shares if shares[c] < 0), key=shares.get)[:top]
    return [{"class": names.get(c, str(c)), "labels": b[c][1], "points": round(shares[c], 3)} for c in worst]


def line(row) -> str | None:
    """'variant (Δ): class (n labels) -x.xx, ...' for a row whose loss its interval confirms (the
    interval lies below 0) and whose classes lost, else None."""
    shares, ci = row.class_losses, row.delta_ci
    if not shares or row.delta_points is None or not ci or ci[1] >= 0:
        return None
    parts = ", ".join(f"{s['class'] or '(unnamed)'} ({s['labels']} label{'' if s['labels'] == 1 else 's'}) "
                      f"{s['points']:+.2f}" for s in shares)
    return f"{row.variant} ({row.delta_points:+.2f}): {parts}"
