"""The pytest plugin as an installed package registers it: in a run that is not the benchmark's it adds its options
and does nothing else; the benchmark's own folder turns it on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OTHER_SUITE = '''
import os, socket, sys


def test_the_plugin_left_this_process_alone():
    heavy = {"torch", "onnxruntime", "openvino", "nncf", "ultralytics", "onnx", "cv2", "quant.registry",
             "quant.run.benchrun", "quant.run.session"}
    assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))
    assert not {"YOLO_OFFLINE", "YOLO_CONFIG_DIR", "OMP_WAIT_POLICY"} & set(os.environ)
    assert "NetworkGuard" not in getattr(socket.socket.connect, "__qualname__", "")  # the network is not guarded
    assert "quant.run.plugin" in sys.modules  # ... though the plugin is loaded
'''


def _pytest(args, cwd: Path) -> subprocess.CompletedProcess:
    """pytest in ``cwd`` with the plugin loaded as an installed package's entry point loads it (``-p``), in an
    environment without the switches this test session set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "PYTEST_XDIST", "OMP_WAIT"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "quant.run.plugin", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_in_another_projects_suite_the_plugin_only_adds_its_options(tmp_path):
    (tmp_path / "test_other.py").write_text(OTHER_SUITE)
    out = _pytest(["-q"], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 passed" in out.stdout
    helptext = _pytest(["--help"], tmp_path).stdout
    assert "quant-bench: YOLO quantization benchmarks:" in helptext and "--weights=WEIGHTS" in helptext


def test_the_benchmark_fixture_says_why_it_is_not_active(tmp_path):
    (tmp_path / "test_uses_bench.py").write_text("def test_x(bench):\n    pass\n")
    out = _pytest(["-q", "-rs"], tmp_path)
    assert out.returncode == 0 and "quant-bench is not active in this run" in out.stdout, out.stdout[-2000:]


def test_a_conftest_that_asks_for_it_turns_it_on(tmp_path):
    """A folder whose conftest sets ``quant_bench = True``: the plugin opens its session, so a bad option is one line
    and exit code 4 before any work."""
    (tmp_path / "conftest.py").write_text("quant_bench = True\n")
    (tmp_path / "test_nothing.py").write_text("def test_x():\n    pass\n")
    out = _pytest(["-q", "--calib-images", "0"], tmp_path)
    assert out.returncode == 4 and "ERROR: --calib-images must be at least 1, got 0" in out.stderr, out.stderr[-2000:]
    out = _pytest(["-q", "--calib-images", "0"], tmp_path.parent)  # an option alone turns it on too
    assert out.returncode == 4 and "--calib-images must be at least 1" in out.stderr


def test_progress_from_inside_a_test_reaches_the_terminal_past_output_capture(tmp_path):
    """A build runs inside a fixture, where pytest captures output: its progress lines (the recipe search's trials)
    must still reach the terminal, as the run's own lines."""
    (tmp_path / "test_build.py").write_text(
        "from quant.run.benchrun import BenchRun\n"
        "from quant.util import progress\n\n"
        "def test_x(pytestconfig):\n"
        "    progress.set_sink(BenchRun(pytestconfig).write_line)\n"
        "    progress.say('onnx-int8-auto search: 1/3 percentile screened')\n"
        "    print('this stays captured')\n"
        "    progress.set_sink(None)\n")
    out = _pytest(["-q", "-p", "no:cacheprovider"], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "onnx-int8-auto search: 1/3 percentile screened" in out.stdout and "this stays captured" not in out.stdout
