"""Label-free mode (--image-dir): deterministic splits, accuracy = fidelity against FP32, one-line bad input."""

from __future__ import annotations

import shutil

import pytest

from quant.util.errors import QuantError
from quant.model.labelfree import split_images
from quant.measure.row import FIDELITY_LABELS
from quant.run.options import defaults, open_session


@pytest.fixture()
def frames(tiny_data, tmp_path):
    """Unlabeled images: the mini set's images in one flat folder, no labels anywhere."""
    out = tmp_path / "frames"
    out.mkdir()
    for f in sorted(tiny_data.parent.rglob("*.png")):
        shutil.copy(f, out / f"{f.parent.parent.name}-{f.name}")
    return out


def test_split_is_deterministic_disjoint_and_sized(frames, tmp_path):
    a = split_images(frames, calib=4, search=3, min_val=4)
    shuffled = tmp_path / "shuffled"
    shutil.copytree(frames, shuffled)
    b = split_images(shuffled, calib=4, search=3, min_val=4)
    assert [p.name for k in ("calib", "search", "val") for p in a[k]] == \
        [p.name for k in ("calib", "search", "val") for p in b[k]]  # the folder's order and place do not matter
    names = [p.name for v in a.values() for p in v]
    assert len(names) == len(set(names)) and len(a["calib"]) == 4 and len(a["search"]) <= 3
    assert len(a["val"]) >= 4


def test_too_few_images_non_images_and_both_inputs_are_one_line(frames, tmp_path, tiny_weights, tiny_data):
    with pytest.raises(QuantError, match=r"has 12 images; label-free mode needs at least 24 \(8 to calibrate"):
        split_images(frames, calib=8, search=0, min_val=16)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not an image")
    with pytest.raises(QuantError, match="has no images"):
        split_images(tmp_path / "docs", calib=4, search=0)
    with pytest.raises(QuantError, match="--image-dir .* and --data .* exclude each other"):
        open_session(defaults(weights=str(tiny_weights), data=str(tiny_data), image_dir=str(frames)))


@pytest.mark.slow
def test_a_label_free_run_scores_against_fp32s_own_detections(tmp_path, tiny_weights):
    from quant.embedded import shapes

    data = shapes.generate(tmp_path / "shapes", {"val": (26, 11)})
    frames = data.parent / "val" / "images"  # 26 images, their labels elsewhere and unused
    s = open_session(defaults(weights=str(tiny_weights), image_dir=str(frames), imgsz=96, allow_imgsz=True, calib_images=4,
                              auto_images=2, cache_dir=str(tmp_path / "c"), report_dir=str(tmp_path / "r")))
    assert s.suite.inputs.label_free and not s.embedded
    assert len(s.suite.inputs.calibration_files()) == 4 and not set(s.suite.inputs.calibration_files()) & set(
        s.suite.inputs.images(s.suite.inputs.data.val))
    row = s.measure("onnx-fp32")
    assert row.map50_95 == row.fidelity_map50_95 and row.evaluation == "measured"
    assert row.label_free and row.fidelity_labels == FIDELITY_LABELS  # what a later comparison checks
    assert s.header()["accuracy"].startswith("label-free")
    int8 = s.measure("onnx-int8-minmax")
    assert int8.map50_95 == int8.fidelity_map50_95 and int8.map50 == int8.fidelity_map50
