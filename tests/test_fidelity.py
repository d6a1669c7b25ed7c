"""Label-free fidelity: variants scored against the FP32 model's own detections."""

from pathlib import Path

import pytest

from quant.gate.thresholds import check_row as check
from quant.measure.row import Row
from quant.run.suite import Suite


def _row(variant, map50, map50_95, latency_ms, fidelity_map50_95=None, latency_ratio=None) -> Row:
    """A row with what the gates look at."""
    return Row(variant, map50=map50, map50_95=map50_95, latency_ms=latency_ms, fidelity_map50_95=fidelity_map50_95,
               latency_ratio=latency_ratio)

EMBEDDED = Path(__file__).resolve().parents[1] / "quant" / "embedded" / "yolov8n-shapes.pt"


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The embedded default model (it detects shapes) on a few generated val images."""
    from quant.embedded import shapes

    data = shapes.generate(tmp_path_factory.mktemp("d") / "s", {"val": (4, 2000), "calib": (4, 3000)})
    return Suite.create(EMBEDDED, data, 320, tmp_path_factory.mktemp("cache"), calib_images=4)


def test_pseudo_labels_are_the_fp32_detections(suite):
    yaml, _ = suite.evaluations.fidelity_data()
    labels = sorted((yaml.parent / "labels").glob("*.txt"))
    images = sorted((yaml.parent / "images").iterdir())
    assert len(labels) == len(images) == 4
    assert sum(len(f.read_text().split("\n")) - 1 for f in labels) >= 4  # the model finds shapes
    assert suite.evaluations.fidelity_data()[0] == yaml  # cached


def test_fp32_scores_the_ceiling_against_itself_and_int8_lower(suite):
    fp32 = suite.evaluations.fidelity("onnx-fp32")
    pt = suite.evaluations.fidelity("pt-fp32").map50_95
    int8 = suite.evaluations.fidelity("onnx-int8-entropy").map50_95
    assert fp32.map50 == fp32.map50_95 == pytest.approx(0.995, abs=1e-6) and pt == pytest.approx(fp32.map50_95, abs=1e-6)
    assert int8 < fp32.map50_95


def test_fp32_reproduces_its_own_labels_on_images_of_another_size(tmp_path):
    """Photos are rarely imgsz square. The labels are what the validator sees from FP32 above the cut,
    so FP32 scores the validator's ceiling against them (0.995, Ultralytics' AP of a perfect detector).
    Labels from ``predict()`` (another resize, one class per box) scored the same model 0.836 here."""
    from PIL import Image

    from quant.embedded import shapes
    from quant.measure.evaluate import validate
    from quant.measure.fidelity import pseudo_dataset

    shapes.generate(tmp_path / "s", {"val": (8, 2000)})
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, f in enumerate(sorted((tmp_path / "s" / "val" / "images").iterdir())):
        im = Image.open(f)
        im.resize((int(im.width * 1.37), int(im.height * 0.81)), Image.BILINEAR).save(photos / f"{i}.jpg", quality=90)
    names = dict(enumerate(shapes.CLASSES))
    data = pseudo_dataset(EMBEDDED, sorted(photos.iterdir()), tmp_path / "pseudo", names, 320)
    assert sum(len(f.read_text().splitlines()) for f in (data.parent / "labels").glob("*.txt")) >= 8
    assert not list(data.parent.glob("*.cache")) and not (data.parent / "scan").exists()
    fp32 = validate(EMBEDDED, data, 320, tmp_path / "val")
    assert fp32.map50 == pytest.approx(0.995, abs=1e-6) and fp32.map50_95 == pytest.approx(0.995, abs=1e-6)


def test_fp32_reaches_the_ceiling_where_its_boxes_cross_the_image_edge(tmp_path, monkeypatch):
    """Shapes cut by the image border: FP32 predicts boxes past the edge, its labels are clipped to the
    image. Scored as deployed (boxes clipped), FP32 reproduces its labels exactly: mAP50-95 at the
    ceiling. Planted: scoring the unclipped boxes misses it."""
    from PIL import Image

    from quant.embedded import shapes
    from quant.measure import evaluate
    from quant.measure.fidelity import pseudo_dataset

    shapes.generate(tmp_path / "s", {"val": (8, 2000)})
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, f in enumerate(sorted((tmp_path / "s" / "val" / "images").iterdir())):
        im = Image.open(f)
        w, h = im.size
        im.crop((int(w * 0.35), int(h * 0.35), w, h)).save(photos / f"{i}a.png")
        im.crop((0, 0, int(w * 0.65), int(h * 0.65))).save(photos / f"{i}b.png")
    data = pseudo_dataset(EMBEDDED, sorted(photos.iterdir()), tmp_path / "pseudo", dict(enumerate(shapes.CLASSES)), 320)
    assert sum(len(f.read_text().splitlines()) for f in (data.parent / "labels").glob("*.txt")) >= 8
    fp32 = evaluate.validate(EMBEDDED, data, 320, tmp_path / "val")
    assert fp32.map50 == pytest.approx(0.995, abs=1e-6) and fp32.map50_95 == pytest.approx(0.995, abs=1e-6)
    monkeypatch.setattr(evaluate, "clip_to_image", lambda validator: None)
    assert evaluate.validate(EMBEDDED, data, 320, tmp_path / "unclipped").map50_95 < 0.994


def test_lowest_bit_flip_changes_every_input_value_by_one():
    """What the validator's preprocessing receives: the letterboxed uint8 images, every value's lowest bit
    flipped; the rest of the batch untouched."""
    import torch

    from quant.measure.evaluate import flip_input_lowest_bit

    seen = []

    class Validator:
        def preprocess(self, batch):
            seen.append({k: v.clone() for k, v in batch.items()})
            return batch

    img = torch.randint(0, 256, (1, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    v = Validator()
    flip_input_lowest_bit(v)
    v.preprocess({"img": img.clone(), "cls": torch.ones(2)})
    diff = seen[0]["img"].int() - img.int()
    assert seen[0]["img"].dtype == torch.uint8 and bool((diff.abs() == 1).all())
    assert bool((seen[0]["cls"] == 1).all())


def test_fidelity_floor_is_fp32_on_its_images_with_the_lowest_bit_flipped(suite):
    """The floor is FP32's fidelity with its inputs changed by 1 in 255, measured once and then cached; the
    change reaches the model (on these 4 images mAP50-95 stays at the ceiling, precision and recall move)."""
    from quant.report.tables import floor_lines

    floor, fp32 = suite.evaluations.fidelity_floor(), suite.evaluations.fidelity("onnx-fp32")
    assert suite.evaluations.status[("fidelity-floor", "onnx-fp32")] == "measured"
    assert 0 < floor.map50_95 <= fp32.map50_95 + 1e-9
    assert (floor.precision, floor.recall) != (fp32.precision, fp32.recall)  # the change reached the model
    assert suite.evaluations.fidelity_floor() == floor and suite.evaluations.status[("fidelity-floor", "onnx-fp32")] == "cached"
    row = Row("onnx-fp32", fidelity_floor=96.1, fidelity_map50_95=99.5)
    assert floor_lines([row]) == ["fidelity floor: onnx-fp32 on the same images with every input pixel value's lowest "
                                  "bit flipped (a change of 1 in 255) scores fidelity 96.1 (-3.40); a variant's "
                                  "fidelity loss within that is within what an imperceptible change of these images "
                                  "costs FP32 itself"]
    row.fidelity_floor = None
    assert floor_lines([row]) == []


def test_fidelity_floor_gate():
    base = _row("onnx-fp32", 90.0, 70.0, 10.0, 98.0)
    msgs = check(_row("x", 90.0, 70.0, 10.0, 80.0), {"min_fidelity_map50_95": 85.0}, base)
    assert msgs == ["x: fidelity mAP50-95 80.00 < floor 85.00"]


def test_data_yaml_keeps_awkward_class_names(tmp_path):
    """Real models name classes '-', '+', '.', '' or 'a: b' (a 147-class molecule detector does): the
    written YAML must load back with the same names, as Ultralytics reads it."""
    from ultralytics.utils import YAML

    from quant.model.data import write_data_yaml

    names = {0: "-", 1: "+", 2: ".", 3: "", 4: "a: b", 5: "Solid wedge", 6: "#x", 7: "[1]", 8: "yes"}
    path = write_data_yaml(tmp_path / "d.yaml", tmp_path, tmp_path / "list.txt", names)
    assert YAML.load(path)["names"] == names


def test_fidelity_is_set_against_the_labelled_loss_row_by_row_and_said_to_be_fidelity_without_labels():
    from quant.measure.row import Row
    from quant.report.tables import scale_lines

    base = Row(variant="onnx-fp32", precision="fp32", map50_95=50.0, fidelity_map50_95=99.5, delta_points=0.0)
    int8 = Row(variant="onnx-int8-x", precision="int8", map50_95=48.5, fidelity_map50_95=89.0, delta_points=-1.5)
    tiny = Row(variant="onnx-int8-auto", precision="int8", map50_95=49.9, fidelity_map50_95=99.0, delta_points=-0.1)
    noisy = Row(variant="ov-int8-y", precision="int8", map50_95=49.5, fidelity_map50_95=90.0, delta_points=-0.5,
                delta_ci=[-1.3, 0.3])
    (line,) = scale_lines([base, int8, tiny, noisy])
    assert "onnx-int8-x 7.0x" in line and "onnx-int8-auto" not in line  # 10.5 / 1.5; too small a loss for a ratio
    assert "ov-int8-y" not in line  # its loss is inside its interval around zero: 19x of nothing is no ratio
    assert scale_lines([base, tiny]) == []
    free = [Row(variant=r.variant, precision=r.precision, label_free=True) for r in (base, int8)]
    assert "fidelity points" in scale_lines(free)[0] and "results/label-free-scale.md" in scale_lines(free)[0]
