"""Where a variant's accuracy went: its Δ mAP50-95 split by class, and the report section that names them."""

import numpy as np
import pytest

from quant.measure.classloss import class_ap, class_shares, line
from quant.measure.imagestats import ImageStats
from quant.report.tables import loss_section
from dataclasses import replace

from quant.measure.row import Row

NAMES = {0: "car", 1: "dog", 2: "cat"}


def _stats(found: dict[int, int], labels: dict[int, int], images: int = 4) -> ImageStats:
    """Labels per class spread over the images; ``found[c]`` of class c's labels matched at every IoU by a
    prediction of confidence 0.9, the rest missed; plus one false positive of class 0 at confidence 0.1."""
    per_image = [{"tp": [], "conf": [], "pred_cls": [], "target_cls": []} for _ in range(images)]
    for c, n in labels.items():
        for k in range(n):
            img = per_image[k % images]
            img["target_cls"].append(c)
            if k < found.get(c, n):
                img["tp"].append([True] * 10)
                img["conf"].append(0.9)
                img["pred_cls"].append(c)
    per_image[0]["tp"].append([False] * 10)
    per_image[0]["conf"].append(0.1)
    per_image[0]["pred_cls"].append(0)
    return ImageStats.from_images([{k: np.array(v, dtype=bool if k == "tp" else np.float32).reshape(
        (-1, 10) if k == "tp" else (-1,)) for k, v in img.items()} for img in per_image])


LABELS = {0: 40, 1: 2, 2: 10}


def test_a_rare_class_that_loses_its_boxes_is_named_first_and_the_shares_add_up_to_the_delta():
    base = _stats({}, LABELS)
    new = _stats({0: 38, 1: 1}, LABELS)  # 2 of 40 cars missed, 1 of 2 dogs missed, every cat found
    shares = class_shares(new, base, NAMES)
    assert [s["class"] for s in shares] == ["dog", "car"]  # the rare class weighs more; cats lost nothing
    assert [s["labels"] for s in shares] == [2, 40]
    a, b = class_ap(new), class_ap(base)
    total = 100 * sum(a[c][0] - b[c][0] for c in b) / len(b)
    assert total == pytest.approx(100 * (new.map50_95() - base.map50_95()), abs=1e-9)
    assert sum(s["points"] for s in shares) == pytest.approx(total, abs=2e-3)  # cats add 0
    assert shares[0]["points"] < shares[1]["points"] < 0


def test_no_loss_names_no_class_and_other_labels_are_not_compared():
    base = _stats({}, LABELS)
    assert class_shares(_stats({}, LABELS), base, NAMES) == []
    assert class_shares(_stats({}, {0: 40, 1: 3, 2: 10}), base, NAMES) is None  # not the same labels
    assert class_shares(None, base, NAMES) is None
    assert class_shares(_stats({1: 0}, LABELS), base, ["car", "dog", "cat"])[0]["class"] == "dog"  # list names


def _row(ci, shares=({"class": "dog", "labels": 2, "points": -12.5},)):
    return Row("x-int8", delta_points=-13.0, delta_ci=ci, class_losses=list(shares))


def test_the_report_names_the_classes_only_where_the_interval_confirms_the_loss():
    confirmed, unsure = _row([-20.0, -4.0]), _row([-20.0, 1.0])
    assert line(confirmed) == "x-int8 (-13.00): dog (2 labels) -12.50"
    assert line(unsure) is None and line(replace(confirmed, class_losses=[])) is None
    one = _row([-20.0, -4.0], ({"class": "", "labels": 1, "points": -3.0},))
    assert line(one) == "x-int8 (-13.00): (unnamed) (1 label) -3.00"
    assert "x-int8 (-13.00): dog" in loss_section([confirmed, unsure])
    assert loss_section([unsure]) == ""
