"""Bad input: one clear line naming the problem, nothing half-written left behind."""

import pytest
import torch

from quant.model.graph import load_onnx
from quant.model.data import DataSpec
from quant.util.errors import QuantError
from quant.model.weights import check_imgsz, export_onnx, load_weights
from quant.run.suite import Suite


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_missing_weights(tmp_path):
    with pytest.raises(QuantError, match="not found") as e:
        load_weights(tmp_path / "nope.pt")
    assert "nope.pt" in _one_line(e)


@pytest.mark.parametrize("content", [b"this is not a checkpoint", None])
def test_non_yolo_weights(tmp_path, content):
    p = tmp_path / "bad.pt"
    if content is None:
        torch.save({"state_dict": {"w": torch.zeros(1)}}, p)
    else:
        p.write_bytes(content)
    with pytest.raises(QuantError, match="not an Ultralytics YOLO checkpoint") as e:
        load_weights(p)
    _one_line(e)


def test_non_detection_model(tmp_path):
    from quant.util.offline import ultralytics_yolo

    p = tmp_path / "cls.pt"
    ultralytics_yolo()("yolov8n-cls.yaml").save(str(p))
    with pytest.raises(QuantError, match="'classify' model"):
        load_weights(p)


def test_wrong_suffix(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"x")
    with pytest.raises(QuantError, match=r"must be an Ultralytics \.pt"):
        load_weights(p)


@pytest.mark.parametrize("bad", [0, -32, 100, 330, "320", 320.5])
def test_bad_imgsz(bad):
    with pytest.raises(QuantError, match="imgsz") as e:
        check_imgsz(bad)
    _one_line(e)


def test_p6_model_needs_a_multiple_of_64(tmp_path, tiny_data):
    """A P6 model (four scales, stride 64) is refused at a multiple of 32 that is not one of 64."""
    from conftest import untrained_weights

    weights = untrained_weights(tmp_path / "p6.pt", "yolov8n-p6.yaml", 320)
    with pytest.raises(QuantError, match="multiple of 64") as e:
        Suite.create(weights, tiny_data, 352, tmp_path / "cache")
    assert "352" in _one_line(e)
    assert Suite.create(weights, tiny_data, 384, tmp_path / "cache").inputs.imgsz == 384


def test_export_rejects_bad_imgsz_before_writing(tiny_weights, tmp_path):
    with pytest.raises(QuantError, match="multiple of 32"):
        export_onnx(tiny_weights, tmp_path / "out" / "m.onnx", 100)
    assert not list((tmp_path / "out").glob("*"))


def test_corrupt_onnx(tmp_path, tiny_onnx):
    p = tmp_path / "corrupt.onnx"
    p.write_bytes(tiny_onnx.read_bytes()[:5000])  # truncated
    with pytest.raises(QuantError, match="corrupt or invalid") as e:
        load_onnx(p)
    assert "corrupt.onnx" in _one_line(e)


def test_data_yaml_errors(tmp_path):
    with pytest.raises(QuantError, match="not found"):
        DataSpec.from_yaml(tmp_path / "none.yaml")
    (tmp_path / "a.yaml").write_text("val: [unclosed\n")
    with pytest.raises(QuantError, match="not valid YAML"):
        DataSpec.from_yaml(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("train: x\n")
    with pytest.raises(QuantError, match="needs 'val' and 'names'"):
        DataSpec.from_yaml(tmp_path / "b.yaml")


def test_empty_calibration_folder_fails_the_build_and_caches_nothing(tiny_weights, tiny_data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    yaml = tmp_path / "data.yaml"
    yaml.write_text(tiny_data.read_text().replace("calib: calib/images", f"calib: {empty}"))
    suite = Suite.create(tiny_weights, yaml, 96, tmp_path / "cache", calib_images=4)
    with pytest.raises(QuantError, match="has no images"):
        suite.builder.artifact("onnx-int8-minmax")
    int8_dir = tmp_path / "cache" / "artifacts" / "onnx-int8-minmax"
    assert not int8_dir.exists() or not list(int8_dir.iterdir())
    assert suite.builder.manifest("onnx-fp32").cached is False  # the FP32 export before it is complete and kept


def test_bad_calib_count(tiny_weights, tiny_data, tmp_path):
    with pytest.raises(QuantError, match="calib-images"):
        Suite.create(tiny_weights, tiny_data, 96, tmp_path, calib_images=0)
