"""The NNCF accuracy-control yardstick (ov-int8-nncf-ac) and the in-memory mAP its validation function scores."""

from dataclasses import replace

import numpy as np
import pytest

from quant.measure import boxmap
from quant.registry import PRESETS, REGISTRY


def test_a_models_own_detections_score_the_ceiling_and_a_shifted_box_scores_less():
    dets = [np.array([[10, 10, 50, 50, 0.9, 0], [60, 60, 90, 80, 0.8, 1]], dtype=np.float32)]
    targets = [boxmap.as_targets(dets[0], conf=0.25)]
    assert boxmap.map50_95(dets, targets) == pytest.approx(0.995)
    shifted = [dets[0] + np.array([6, 0, 6, 0, 0, 0], dtype=np.float32)]  # IoU 0.74 for the first box
    assert 0.3 < boxmap.map50_95(shifted, targets) < 0.9
    wrong_class = [dets[0] * np.array([1, 1, 1, 1, 1, 0]) + np.array([0, 0, 0, 0, 0, 2])]
    assert boxmap.map50_95(wrong_class, targets) == 0.0


def test_each_target_is_matched_once():
    target = [np.array([[0, 10, 10, 50, 50]], dtype=np.float64)]
    twice = [np.array([[10, 10, 50, 50, 0.9, 0], [10, 10, 50, 50, 0.8, 0]], dtype=np.float32)]
    hits = boxmap.correct(twice[0], target[0])
    assert hits[:, 0].tolist() == [True, False]  # the second copy is a false positive


def test_labels_land_where_the_letterbox_puts_them(tmp_path):
    import cv2

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((100, 200, 3), np.uint8))  # h 100, w 200
    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.5 0.5 0.2\n")  # a 100 x 20 px box in the middle
    (lb,) = boxmap.letterboxed_labels(tmp_path / "images" / "a.png", 96)  # scale 0.48, 24 px pad top and bottom
    assert lb[0] == 3 and np.allclose(lb[1:], [24, 43.2, 72, 52.8], atol=0.01)
    assert boxmap.letterboxed_labels(tmp_path / "images" / "nolabel.png", 96) is None


def test_the_yardstick_is_in_the_full_preset_only():
    assert "ov-int8-nncf-ac" in PRESETS["full"].select(REGISTRY)
    assert "ov-int8-nncf-ac" not in PRESETS["quick"].select(REGISTRY)
    assert "ov-int8-nncf-ac" not in PRESETS["standard"].select(REGISTRY)
    v = REGISTRY["ov-int8-nncf-ac"]
    assert v.search == REGISTRY["onnx-int8-auto"].search  # the search's images, target and bounds


@pytest.mark.parametrize("budget", [600.0, 0.0])
def test_nncf_accuracy_control_builds_within_its_bounds_and_says_what_it_did(suite, monkeypatch, budget):
    pytest.importorskip("nncf")
    v = REGISTRY["ov-int8-nncf-ac"]
    monkeypatch.setitem(REGISTRY, "ov-int8-nncf-ac", replace(v, search=replace(v.search, max_evals=2,
                                                                                 budget_s=budget)))
    monkeypatch.setattr(suite.builder, "_manifests", {})  # this process's memo: look the new key up
    m = suite.builder.manifest("ov-int8-nncf-ac")
    info = m.info
    assert info["metric"] == "mAP50-95 against labels"  # the mini set's search images have labels
    assert info["validation_images"] == len(suite.inputs.search_files(v.search.images)) > 0
    assert info["max_drop_points"] == v.search.target_drop and info["validations"] >= 1
    assert info["int8_convs"] > 0 and info["convs"] >= info["int8_convs"]
    assert (info["stopped"] == "time budget 0 s") if budget == 0 else info["stopped"] is None
    assert (suite.builder.artifact("ov-int8-nncf-ac") / "model.xml").is_file()
