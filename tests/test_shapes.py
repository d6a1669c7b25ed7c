from pathlib import Path

import numpy as np

from quant.embedded import shapes


def test_generation_is_deterministic(tmp_path):
    splits = {"val": (3, 5)}
    a = shapes.generate(tmp_path / "a", splits).parent
    b = shapes.generate(tmp_path / "b", splits).parent
    digest = lambda root: shapes.tree_digest(Path(root) / "val")  # noqa: E731
    assert digest(a) == digest(b)
    c = shapes.generate(tmp_path / "c", {"val": (3, 6)}).parent  # another seed, other images
    assert digest(a) != digest(c)


def test_labels_are_valid_yolo_boxes(tiny_data):
    root = tiny_data.parent
    lines = [ln.split() for f in sorted((root / "val" / "labels").glob("*.txt")) for ln in f.read_text().splitlines()]
    assert len(lines) >= 6 * 2  # 2-6 shapes per image
    arr = np.array(lines, dtype=float)
    assert set(arr[:, 0].astype(int)) <= set(range(len(shapes.CLASSES)))
    assert (arr[:, 1:] > 0).all() and (arr[:, 1:] <= 1).all()
    assert len(list((root / "val" / "images").glob("*.png"))) == 6


def test_generate_is_atomic_and_reuses_existing(tmp_path):
    yaml = shapes.generate(tmp_path / "d", {"val": (1, 1)})
    mtime = yaml.stat().st_mtime_ns
    assert shapes.generate(tmp_path / "d", {"val": (1, 1)}) == yaml and yaml.stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind
