"""The catalogue of bad inputs and bad states (docs/design.md, "What is checked"): each one stops the run before
any work with one line naming the problem, and adds nothing to the cache."""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from quant.util.errors import BuildError, QuantError
from quant.run.options import defaults, open_session
from quant.run.suite import Suite

ROOT = Path(__file__).resolve().parents[1]


def _yaml(tmp, tiny_data, **replace) -> Path:
    text = tiny_data.read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    p = tmp / "data.yaml"
    p.write_text(text)
    return p


def _weights_text(tmp, _w, _d):
    (tmp / "w.pt").write_text("not a checkpoint")
    return {"weights": str(tmp / "w.pt")}


def _weights_dict(tmp, _w, _d):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp / "w.pt")
    return {"weights": str(tmp / "w.pt")}


def _weights_truncated(tmp, w, _d):
    (tmp / "w.pt").write_bytes(w.read_bytes()[: 20000])
    return {"weights": str(tmp / "w.pt")}


def _weights_segment(tmp, _w, _d):
    from quant.util.offline import ultralytics_yolo

    ultralytics_yolo()("yolov8n-seg.yaml").save(str(tmp / "seg.pt"))
    return {"weights": str(tmp / "seg.pt")}


def _not_yaml(tmp, _w, _d):
    (tmp / "d.yaml").write_text("val: [unclosed\n")
    return {"data": str(tmp / "d.yaml")}


def _val_folder_missing(tmp, _w, d):
    return {"data": str(_yaml(tmp, d, **{"val: val/images": "val: nowhere/images"}))}


def _val_without_labels(tmp, _w, d):
    import shutil

    shutil.copytree(d.parent / "val" / "images", tmp / "bare" / "pics")
    return {"data": str(_yaml(tmp, d, **{"val: val/images": f"val: {tmp / 'bare' / 'pics'}"}))}


def _calib_empty(tmp, _w, d):
    (tmp / "empty").mkdir()
    return {"data": str(_yaml(tmp, d, **{"calib: calib/images": f"calib: {tmp / 'empty'}"}))}


def _calib_unreadable(tmp, _w, d):
    import shutil

    shutil.copytree(d.parent / "calib" / "images", tmp / "calib")
    (tmp / "calib" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return {"data": str(_yaml(tmp, d, **{"calib: calib/images": f"calib: {tmp / 'calib'}"}))}


def _few_frames(tmp, _w, d):
    import shutil

    (tmp / "frames").mkdir()
    for f in sorted((d.parent / "val" / "images").glob("*.png"))[:5]:
        shutil.copy(f, tmp / "frames" / f.name)
    return {"data": None, "image_dir": str(tmp / "frames")}


def _other_model_report(tmp, _w, _d):
    """A report of other weights at another imgsz."""
    import json

    (tmp / "other.json").write_text(json.dumps({"weights_sha256": "0123456789abcdef", "imgsz": 640, "baseline": "onnx-fp32",
                                                "rows": [{"variant": "onnx-fp32", "map50_95": 50.0}]}))
    return {"compare_to": str(tmp / "other.json")}


def _thresholds(text):
    def setup(tmp, _w, _d):
        (tmp / "t.toml").write_text(text)
        return {"thresholds": str(tmp / "t.toml")}
    return setup


def _a_file(option):
    def setup(tmp, _w, _d):
        (tmp / "afile").write_text("x")
        return {option: str(tmp / "afile")}
    return setup


def _empty_fidelity(tmp, _w, _d):
    (tmp / "none").mkdir()
    return {"fidelity_image_dir": str(tmp / "none")}


def _read_only_cache(tmp, _w, _d, monkeypatch=None):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # root ignores mode bits: simulate a read-only folder
    return {"cache_dir": str(tmp / "ro-cache")}


# id -> (setup(tmp, weights, data) -> option overrides, the message (regex) the user sees after "ERROR: ")
def _broken_checkout(tmp, _w, _d):
    (tmp / "broken" / "quant").mkdir(parents=True)
    (tmp / "broken" / "quant" / "__init__.py").write_text("import no_such_module_xyz\n")
    return {"compare_to": str(tmp / "broken")}


CATALOGUE = {
    "weights-missing": (lambda t, w, d: {"weights": str(t / "missing.pt")}, r"weights '.*missing\.pt' not found"),
    "weights-not-a-checkpoint": (_weights_text, r"weights '.*' is not an Ultralytics YOLO checkpoint \("),
    "weights-torch-dict": (_weights_dict, r"is not an Ultralytics YOLO checkpoint"),
    "weights-truncated": (_weights_truncated, r"is not an Ultralytics YOLO checkpoint"),
    "weights-segmentation-model": (_weights_segment, r"is a 'segment' model; the suite benchmarks detection models"),
    "data-yaml-missing": (lambda t, w, d: {"data": str(t / "none.yaml")}, r"data YAML '.*none\.yaml' not found"),
    "data-yaml-not-yaml": (_not_yaml, r"data YAML '.*' is not valid YAML"),
    "val-folder-missing": (_val_folder_missing, r"image folder '.*nowhere/images' not found"),
    "val-without-labels": (_val_without_labels, r"val images in '.*' have no YOLO label files"),
    "calib-folder-empty": (_calib_empty, r"image folder '.*empty' has no images"),
    "calib-image-unreadable": (_calib_unreadable,
                               r"1 unreadable image\(s\): .*zz-broken\.png \(fix or remove them, or pass --skip-bad-images\)"),
    "images-too-few": (_few_frames, r"--image-dir '.*frames' has 5 images; label-free mode needs at least 20 \(4 to "
                                    r"calibrate with --calib-images, 16 to score on\)"),
    "images-and-data": (lambda t, w, d: {"image_dir": str(t)}, r"--image-dir \(unlabeled images\) and --data \(a "
                                                                r"labelled data YAML\) exclude each other"),
    "imgsz-outside-the-supported-range": (lambda t, w, d: {"imgsz": 4000, "allow_imgsz": False},
                                          r"imgsz 4000 is outside 320-1280, the sizes the suite supports .* pass "
                                          r"--allow-imgsz to run it anyway"),
    "imgsz-not-multiple-of-32": (lambda t, w, d: {"imgsz": 100}, r"imgsz 100 must be a positive multiple of 32"),
    "imgsz-negative": (lambda t, w, d: {"imgsz": -32}, r"imgsz -32 must be a positive multiple of 32"),
    "calib-images-zero": (lambda t, w, d: {"calib_images": 0}, r"--calib-images must be at least 1, got 0"),
    "thresholds-missing": (lambda t, w, d: {"thresholds": str(t / "no.toml")}, r"thresholds file '.*no\.toml' not found"),
    "thresholds-not-toml": (_thresholds("[defaults\n"), r"thresholds file '.*' is not valid TOML"),
    "thresholds-unknown-key": (_thresholds("[defaults]\nmax_drop = 1\n"), r"unknown key 'max_drop' in \[defaults\]"),
    "thresholds-bad-value": (_thresholds("[defaults]\nmax_drop_points = 'x'\n"),
                             r"'max_drop_points' in \[defaults\] must be a non-negative number"),
    "thresholds-floor-as-a-fraction": (_thresholds("[defaults]\nmin_map50_95 = 0.45\n"),
                                       r"'min_map50_95' in \[defaults\] is 0\.45, a fraction; accuracy limits are "
                                       r"points \(0-100\): write 45"),
    "thresholds-section-matches-no-variant": (_thresholds('[variants."onnx-int8-percentil"]\nmax_drop_points = 1\n'),
                                              r'\[variants\."onnx-int8-percentil"\] matches no variant; did you mean '
                                              r"'onnx-int8-percentile'\?"),
    "device-profile-unknown": (lambda t, w, d: {"device_profile": "nope"}, r"device profile 'nope' is not in thresholds file"),
    "fidelity-images-empty": (_empty_fidelity, r"image folder '.*none' has no images"),
    "cache-dir-is-a-file": (_a_file("cache_dir"), r"cache directory '.*afile' is a file, not a directory"),
    "cache-dir-read-only": (_read_only_cache, r"cache directory '.*ro-cache' is not writable \(Permission denied\)"),
    "report-dir-is-a-file": (_a_file("report_dir"), r"--report-dir '.*afile' is a file, not a directory"),
    "compare-to-missing": (lambda t, w, d: {"compare_to": str(t / "old.json")}, r"old\.json"),
    "compare-to-another-model": (_other_model_report, r"runs measured different models \(weights 0123456789ab in "
                                                      r".*other\.json, [0-9a-f]{12} in this run\).* --compare-force"),
    "compare-to-unknown-ref": (lambda t, w, d: {"compare_to": "no-such-branch-xyz"},
                               r"--compare-to no-such-branch-xyz: not a report file, a history id or a git ref"),
    "compare-to-broken-checkout": (_broken_checkout, r"--compare-to .*broken: its quant package cannot be imported for "
                                                     r"A/B timing \(.*no_such_module_xyz"),
    "latency-rounds-zero": (lambda t, w, d: {"latency_rounds": 0}, r"--latency-rounds and --latency-calls must be at least 1"),
    "threads-zero": (lambda t, w, d: {"threads": 0}, r"--threads must be at least 1, got 0"),
    "build-timeout-zero": (lambda t, w, d: {"build_timeout": 0.0}, r"--build-timeout must be positive, got 0"),
    "auto-option-zero": (lambda t, w, d: {"auto_max_evals": 0}, r"--auto-max-evals and --auto-budget-s must be positive"),
    "auto-int8-share-out-of-range": (lambda t, w, d: {"auto_min_int8_macs": 1.5},
                                     r"--auto-min-int8-macs must be between 0 and 1, got 1\.5"),
    "auto-profile-runs-negative": (lambda t, w, d: {"auto_profile_runs": -1},
                                   r"--auto-profile-runs must be 0 \(count MACs\) or more, got -1"),
}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_catalogue_case_is_one_line_before_any_work(case, tmp_path, tiny_weights, tiny_data, monkeypatch):
    setup, message = CATALOGUE[case]
    kwargs = {"monkeypatch": monkeypatch} if setup is _read_only_cache else {}
    options = {"weights": str(tiny_weights), "data": str(tiny_data), "imgsz": 96, "allow_imgsz": True, "calib_images": 4,
               "cache_dir": str(tmp_path / "cache"), "report_dir": str(tmp_path / "report")}
    options.update(setup(tmp_path, tiny_weights, tiny_data, **kwargs))
    with pytest.raises(QuantError) as e:
        open_session(defaults(**options), storage=tmp_path / "hist")
    assert re.search(message, str(e.value)), str(e.value)
    assert "\n" not in str(e.value)
    monkeypatch.undo()
    cache = Path(options["cache_dir"])
    assert not (cache / "artifacts").exists() and not (cache / "results").exists()  # nothing built or cached


def test_every_catalogue_case_is_in_the_docs():
    design = (ROOT / "docs" / "design.md").read_text()
    section = design.split("## What is checked", 1)[1].split("\n## ", 1)[0]
    missing = [case for case in CATALOGUE if f"`{case}`" not in section]
    assert not missing, f"docs/design.md 'What is checked' lacks {missing}"


def test_skip_bad_images_leaves_them_out_and_says_so(tmp_path, tiny_weights, tiny_data):
    options = _calib_unreadable(tmp_path, tiny_weights, tiny_data)
    s = open_session(defaults(weights=str(tiny_weights), imgsz=96, allow_imgsz=True, calib_images=4, cache_dir=str(tmp_path / "c"),
                              report_dir=str(tmp_path / "r"), skip_bad_images=True, **options))
    assert [p.name for p in s.suite.inputs.skip_images] == ["zz-broken.png"]
    assert all(f.name != "zz-broken.png" for f in s.suite.inputs.images(s.suite.inputs.data.calib))
    assert any("skipped 1 unreadable image(s)" in n and "zz-broken.png" in n for n in s.suite.inputs.notes)
    assert s.header()["skipped_images"][0].endswith("zz-broken.png")


def test_calibration_shortfall_is_stated(tmp_path, tiny_weights, tiny_data):
    s = open_session(defaults(weights=str(tiny_weights), data=str(tiny_data), imgsz=96, allow_imgsz=True, calib_images=50,
                              cache_dir=str(tmp_path / "c"), report_dir=str(tmp_path / "r")))
    assert any("fewer than --calib-images 50: calibrating on 6" in n for n in s.suite.inputs.notes), s.suite.inputs.notes


# ---- contained failures: a crashed, killed or hung worker or build fails its variant alone ---------------
def test_killed_ppq_worker_fails_only_that_variant_in_one_line(tmp_path, tiny_weights, tiny_data, monkeypatch):
    from quant.build import ppq

    suite = Suite.create(tiny_weights, tiny_data, 96, tmp_path / "cache", calib_images=4)
    suite.builder.artifact("onnx-fp32")
    kill = [sys.executable, "-c", "import os, signal, sys; print('loading', file=sys.stderr); "
                                  "os.kill(os.getpid(), signal.SIGKILL)"]
    monkeypatch.setattr(ppq, "worker_command", lambda job: kill)
    with pytest.raises(BuildError) as e:
        suite.builder.artifact("ppq-int8")
    assert str(e.value) == "PPQ worker for ppq-int8 was killed by SIGKILL; last stderr: loading"
    assert not [p for p in (tmp_path / "cache" / "artifacts" / "ppq-int8").iterdir()]  # nothing half-written
    assert suite.builder.manifest("onnx-fp32").cached is False  # the other variant is untouched


def test_crashed_and_hung_workers_say_how(tmp_path):
    from quant.build.ppq import run_worker

    crash = [sys.executable, "-c", "import sys; print('a'); print('Traceback', file=sys.stderr); "
                                   "print('ValueError: bad op', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(BuildError, match=r"exited with code 3; last stderr: Traceback \| ValueError: bad op$"):
        run_worker(crash, "ppq-int8", None, tmp_path, {})
    t0 = time.monotonic()
    with pytest.raises(BuildError, match=r"PPQ worker for ppq-int8 hung: no result after --build-timeout 0.5 s"):
        run_worker([sys.executable, "-c", "import time; time.sleep(60)"], "ppq-int8", 0.5, tmp_path, {})
    assert time.monotonic() - t0 < 10


def test_hung_build_times_out_and_keeps_nothing(tmp_path, tiny_weights, tiny_data, monkeypatch):
    from dataclasses import replace

    from quant.registry import REGISTRY

    def hang(variant, ctx, out_dir):
        (out_dir / "model.pt").write_bytes(b"half")
        time.sleep(60)

    monkeypatch.setitem(REGISTRY, "pt-fp32", replace(REGISTRY["pt-fp32"], build=hang))
    suite = Suite.create(tiny_weights, tiny_data, 96, tmp_path / "cache", calib_images=4, build_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(BuildError, match=r"building pt-fp32 took longer than --build-timeout 0.5 s; nothing was kept"):
        suite.builder.artifact("pt-fp32")
    assert time.monotonic() - t0 < 10 and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert not [p for p in (tmp_path / "cache" / "artifacts" / "pt-fp32").iterdir()]


def test_interrupted_build_names_the_variant_and_keeps_nothing(tmp_path, tiny_weights, tiny_data, monkeypatch):
    from dataclasses import replace

    from quant.registry import REGISTRY

    def interrupted(variant, ctx, out_dir):
        (out_dir / "model.pt").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setitem(REGISTRY, "pt-fp32", replace(REGISTRY["pt-fp32"], build=interrupted))
    suite = Suite.create(tiny_weights, tiny_data, 96, tmp_path / "cache", calib_images=4)
    with pytest.raises(KeyboardInterrupt):
        suite.builder.artifact("pt-fp32")
    assert suite.builder.interrupted == "pt-fp32"
    assert not [p for p in (tmp_path / "cache" / "artifacts" / "pt-fp32").iterdir()]


def test_a_long_worker_reports_progress_while_it_runs(tmp_path):
    from quant.util import progress
    from quant.build.ppq import run_worker

    lines = []
    progress.set_sink(lines.append)
    try:
        run_worker([sys.executable, "-c", "import time; time.sleep(1.2)"], "ppq-int8", 30, tmp_path, {}, heartbeat=0.4)
    finally:
        progress.set_sink(None)
    assert len(lines) >= 2 and lines[0].startswith("ppq-int8: PPQ worker running, ")
    assert lines[0].endswith(" s so far (--build-timeout 30 s)")


def test_a_worker_heartbeat_says_where_the_worker_is(tmp_path):
    from quant.util import progress
    from quant.build.ppq import run_worker

    worker = ("import sys, time; from quant.util.progress import StepFile; s = StepFile(sys.argv[1]); "
              "s.begin_outer('LSQ blocks', 4); s.begin('Tuning Procedure', 10); time.sleep(1.1); "
              "s.advance(5); time.sleep(1.5)")
    lines = []
    progress.set_sink(lines.append)
    try:
        run_worker([sys.executable, "-c", worker, str(tmp_path / "progress.json")], "ppq-int8", 30, tmp_path,
                   {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, heartbeat=0.5,
                   steps=tmp_path / "progress.json")
    finally:
        progress.set_sink(None)
    assert lines and lines[-1].startswith("ppq-int8: PPQ worker running, ")
    assert re.search(r" s so far \(--build-timeout 30 s\): LSQ blocks 0/4; Tuning Procedure 5/10, ~\d+s left$",
                     lines[-1]), lines
