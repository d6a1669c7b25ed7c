"""Shared, seeded, small fixtures: the embedded YOLOv8n at 96 px, an untrained YOLO11n, a small shapes
data set, their ONNX."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from quant.util import offline

offline.configure()  # Ultralytics' offline switches, as the plugin sets them

TINY_IMGSZ = 96


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from quant.embedded import shapes

    root = tmp_path_factory.mktemp("data") / "shapes-mini"
    return shapes.generate(root, {"val": (6, 11), "calib": (6, 12)})


def untrained_weights(path: Path, yaml: str, imgsz: int) -> Path:
    """An Ultralytics model built from its YAML (no download), the shapes set's 5 classes, seeded random
    init, saved as a checkpoint trained at ``imgsz``."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from quant.util.offline import ultralytics_yolo

    torch.manual_seed(0)
    model = ultralytics_yolo()(yaml, task="detect")
    model.model = DetectionModel(yaml, nc=5, verbose=False)
    model.model.names = {i: n for i, n in enumerate(("circle", "rectangle", "triangle", "star", "cross"))}
    model.model.args = {"imgsz": imgsz}
    model.save(str(path))
    return path


def checkout_copy(dst: Path) -> Path:
    """This checkout's files as a clone has them (tracked and new, not ignored), copied to ``dst``."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (root / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / f, dst / f)
    return dst


EMBEDDED = Path(__file__).resolve().parents[1] / "quant" / "embedded" / "yolov8n-shapes.pt"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """The embedded default (YOLOv8n trained on the shapes set, 5 classes), run at 96 px: fast to export and
    run, and its output depends on the image. An untrained YOLOv8n would not do for comparing a quantized
    model's output with FP32's: with Ultralytics' default init the activations shrink layer by layer to
    ~1e-8 at the head, so its output is the head's biases whatever the input, and such a comparison could
    not fail."""
    import shutil

    return Path(shutil.copy(EMBEDDED, tmp_path_factory.mktemp("weights") / "tiny.pt"))


def error_vs_spread(suite, variant: str, images: int = 4) -> tuple[float, float]:
    """(box, class-score) mean error of ``variant``'s output against FP32's on the first val images, each as a
    fraction of how much FP32's own output changes between those images: near 0 where the variant tracks FP32,
    near 1 where it has lost the image (a model whose output ignores the image gives nan or inf)."""
    from quant.calibration.readers import letterbox, read_image

    xs = [letterbox(read_image(p), suite.inputs.imgsz) for p in suite.inputs.images(suite.inputs.data.val)[:images]]
    fp32, run = suite.builder.runner("onnx-fp32"), suite.builder.runner(variant)
    ref, out = [fp32(x)[0] for x in xs], [run(x)[0] for x in xs]
    assert all(o.shape == r.shape for o, r in zip(out, ref))
    ratios = []
    for part in (slice(0, 4), slice(4, None)):  # box coordinates, class scores
        err = np.mean([np.abs(o[:, part] - r[:, part]).mean() for o, r in zip(out, ref)])
        spread = np.mean([np.abs(r[:, part] - ref[0][:, part]).mean() for r in ref[1:]])
        ratios.append(float(err / spread))
    return ratios[0], ratios[1]


@pytest.fixture(scope="session")
def yolo11_weights(tmp_path_factory) -> Path:
    """YOLO11n (attention block, depthwise head convs), 5 classes, random init, 96 px: for what its graph
    exercises (its output, like any untrained model's, barely depends on the image)."""
    return untrained_weights(tmp_path_factory.mktemp("weights") / "yolo11n.pt", "yolo11n.yaml", TINY_IMGSZ)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_weights, tmp_path_factory) -> Path:
    from quant.model.weights import export_onnx

    return export_onnx(tiny_weights, tmp_path_factory.mktemp("onnx") / "tiny.onnx", TINY_IMGSZ)


@pytest.fixture(scope="module")
def suite(tiny_weights, tiny_data, tmp_path_factory):
    """The tiny model on the mini shapes set, imgsz 96, 4 calibration images; a cache of its own per test
    module (modules needing something else define their own ``suite``)."""
    from quant.run.suite import Suite

    return Suite.create(tiny_weights, tiny_data, TINY_IMGSZ, tmp_path_factory.mktemp("cache"), calib_images=4)
