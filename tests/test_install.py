"""The package as a user installs it: ``pip install`` of a clone into a fresh virtual environment gives the
``quant-bench`` command, the pytest plugin and the package data (default thresholds, the embedded default), and
``quant-bench run --preset quick`` passes from an empty folder with the package's own thresholds; ``quant-bench
init`` writes thresholds that the next run passes and a planted regression fails.

The fresh environment gets this environment's dependencies through a path file (no downloads; torch alone is
gigabytes) and the package itself from the clone, not editable, so nothing of this checkout is imported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import checkout_copy

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--imgsz", "96", "--allow-imgsz", "--calib-images", "8", "--auto-images", "8", "--auto-max-evals", "4",
        "--auto-sensitivity-images", "2", "--latency-rounds", "5", "--latency-calls", "1", "--latency-warmup", "1"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the clone installed (not editable); its bin folder."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to make a clone from")
    tmp = tmp_path_factory.mktemp("install")
    clone = checkout_copy(tmp / "clone")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # this environment's packages, after the venv's own; path files in them are not run, so this checkout's
    # editable install stays out
    (site / "deps.pth").write_text("\n".join(dict.fromkeys([sysconfig.get_path("purelib"),
                                                            sysconfig.get_path("platlib")])) + "\n")
    import importlib.util

    # offline where this environment has setuptools to build with; else pip fetches it (a package registry)
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    out = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", *offline, "-q", str(clone)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return venv / "bin"


def _quant_bench(bin_dir: Path, cwd: Path, *args, timeout=1200) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    return subprocess.run([bin_dir / "quant-bench", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_the_installed_package_is_the_clone_s_copy_with_its_data(installed, tmp_path):
    out = subprocess.run([installed / "python", "-c", "import quant, quant.run.options as o; print(quant.__file__); "
                          "print(o.DEFAULT_THRESHOLDS.is_file(), o.DEFAULT_WEIGHTS.is_file())"],
                         cwd=tmp_path, capture_output=True, text=True)
    path, data = out.stdout.splitlines()
    assert str(installed.parent) in path and str(ROOT) not in path
    assert data == "True True"
    assert _quant_bench(installed, tmp_path, "list", "--preset", "quick").returncode == 0


@pytest.mark.slow
def test_quick_preset_passes_from_an_empty_folder_then_init_s_thresholds_catch_a_planted_regression(
        installed, tmp_path, tiny_weights, tiny_data):
    work = tmp_path / "empty"
    work.mkdir()
    cache = ["--cache-dir", tmp_path / "cache"]
    data = ["--weights", tiny_weights, "--data", tiny_data, *TINY, *cache]
    run = _quant_bench(installed, work, "run", "--preset", "quick", *data)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    report = json.loads((work / "bench-report" / "report.json").read_text())
    assert report["thresholds"].endswith(os.path.join("quant", "gate", "thresholds.toml")), report["thresholds"]
    assert str(installed.parent) in report["thresholds"]  # the installed package's own file
    assert [r["variant"] for r in report["rows"]] == ["onnx-fp32", "onnx-int8-percentile", "ov-int8",
                                                     "onnx-int8-auto-quick"]
    # every gate held (on a 1-2 ms model the A/A control may find the machine too noisy to judge latency: "pass
    # (latency inconclusive)")
    assert all(r["status"].startswith("pass") for r in report["rows"]), [r["status"] for r in report["rows"]]
    assert "[4/4] onnx-int8-auto-quick: done" in run.stdout and "× FP32 [95 % CI]" in run.stdout
    assert {p.name for p in (work / "bench-report").iterdir()} >= {"report.json", "report.md", "report.html",
                                                                   "report.png"}

    init = _quant_bench(installed, work, "init", *data, "--report-dir", "init-report")
    assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-2000:]
    assert (work / "thresholds.toml").is_file()
    again = _quant_bench(installed, work, "run", "--preset", "quick", *data, "--thresholds", "thresholds.toml",
                         "--report-dir", "r2")
    assert again.returncode == 0, again.stdout[-4000:]

    # the planted regression: the same model with its weights disturbed (a worse model), gated by init's file
    worse = tmp_path / "worse.pt"
    subprocess.run([installed / "python", "-c", f"""
import torch
ckpt = torch.load({str(tiny_weights)!r}, weights_only=False)
g = torch.Generator().manual_seed(0)
for p in ckpt["model"].parameters():
    if p.dim() == 4:
        p.data.mul_(1 + 0.15 * torch.randn(p.shape, generator=g).to(p.dtype))
torch.save(ckpt, {str(worse)!r})
"""], check=True)
    planted = _quant_bench(installed, work, "run", "--preset", "quick", "--weights", worse, "--data", tiny_data, *TINY,
                           *cache, "--thresholds", "thresholds.toml", "--report-dir", "r3", "-k", "onnx-fp32")
    assert planted.returncode == 1, planted.stdout[-3000:]
    assert "onnx-fp32: mAP50-95" in planted.stdout and "< floor" in planted.stdout
