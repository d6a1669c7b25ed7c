"""pytest plugin for the benchmark suite: options, the session, the report and the comparison at the end.

Works the same with pytest-xdist (``-n 2``): each worker measures its variants and attaches each
row to its test report; the controlling process collects the rows and writes the report.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quant.util import offline
from quant.util import progress

offline.configure()  # Ultralytics' offline switches, before anything imports it
# PyTorch's OpenMP threads, like ONNX Runtime's (quant.backends.onnxruntime.session_options), do not
# spin-wait between calls: spinning threads of an idle model, or any other load on the cores, made
# pt-fp32 4x slower (2 cores, two busy processes: 110 ms against 47 ms passive; 27 vs 32 ms idle).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads its OpenMP runtime

from quant.run.session import BenchSession, table_rows, write_report  # noqa: E402
from quant.util.errors import QuantError  # noqa: E402
from quant.run.options import OPTIONS, open_session  # noqa: E402
from quant.registry import BASELINE  # noqa: E402

ROW = "quant_row"  # user_properties key a test's row travels under (to the xdist controller too)
MARKERS = {"gpu": "needs an NVIDIA GPU with CUDA", "tensorrt": "builds or runs a TensorRT engine",
           "slow": "end-to-end runs (minutes)"}


def pytest_addoption(parser):
    g = parser.getgroup("quant", "YOLO quantization benchmarks")
    for flag, spec in OPTIONS.items():
        g.addoption(flag, **spec)


def _storage(config) -> Path:
    s = str(getattr(config.option, "benchmark_storage", None) or "file://./.benchmarks")
    return Path(s.removeprefix("file://"))


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if not hasattr(config.option, "weights"):
        return
    guard = None
    if not config.option.allow_network:
        guard = offline.NetworkGuard().__enter__()
    config._quant_guard = guard
    config._quant_rows = {}
    _CONFIGS.append(config)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:  # long builds (the recipe search) report progress past output capture
        progress.set_sink(lambda line: terminal.write_line(line))
    if not _is_worker(config):
        config.pluginmanager.register(RowCollector(config._quant_rows), "quant-rows")
    try:
        config._quant = open_session(config.option, _storage(config))
    except QuantError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_unconfigure(config):
    guard = getattr(config, "_quant_guard", None)
    if guard is not None:
        guard.__exit__(None, None, None)


def pytest_collection_modifyitems(config, items):
    """Baseline first: every other variant's gates compare against it."""
    items.sort(key=lambda it: 0 if getattr(it, "callspec", None) and it.callspec.params.get("variant") == BASELINE else 1)


@pytest.fixture(scope="session")
def bench(pytestconfig) -> BenchSession:
    return pytestconfig._quant


_CONFIGS: list = []  # this process's pytest config (pytest_keyboard_interrupt gets none)


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


class RowCollector:
    """Collects the rows the tests attach to their reports (from xdist workers too): a measured row wins
    over a "baseline only" row of the same variant."""

    def __init__(self, rows: dict) -> None:
        self.rows = rows

    def pytest_runtest_logreport(self, report):
        for key, row in report.user_properties:
            if key == ROW:
                have = self.rows.get(row["variant"])
                if have is None or have["status"] == "baseline only":
                    self.rows[row["variant"]] = row


def pytest_sessionfinish(session, exitstatus):
    """Write the report, and compare with the reference run (regressions fail the session)."""
    from quant.report import tables as report

    config = session.config
    bench: BenchSession | None = getattr(config, "_quant", None)
    if bench is None or _is_worker(config) or not config._quant_rows:
        return
    guard = getattr(config, "_quant_guard", None)
    rows = list(config._quant_rows.values())
    header = {**bench.header(), "network_attempts": guard.attempts if guard is not None else None,
              "cache_notices": cache_notices(bench, rows)}
    base = config._quant_rows.get(BASELINE)
    if header["aa_control"] is None and base is not None:  # -n: the A/A control ran in a worker
        header["aa_control"] = {"ratio": base["latency_ratio"], "ci": base["latency_ratio_ci"],
                                "ratios": base["latency_ratio_rounds"], "verdict": base.get("aa_verdict")}
    out = Path(config.option.report_dir)
    try:
        config._quant_paths = write_report(rows, out, header)
    except OSError as e:
        config._quant_report_error = f"report not written to '{out}': {e.strerror or e}"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if config.option.compare_to:
        from quant.gate.compare import compare, format_comparison, load_run, markdown_summary

        cmp = compare(load_run(config.option.compare_to, _storage(config)), load_run(out / "report.json"),
                      limits_for=lambda v: bench.thresholds.for_variant(v, embedded=bench.embedded),
                      force_latency=config.option.compare_force)
        config._quant_comparison = (cmp, format_comparison(cmp))
        breaches = report.breach_section(table_rows(rows))
        (out / "comparison.md").write_text(markdown_summary(cmp) + breaches)
        if cmp.regressions and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    bench: BenchSession | None = getattr(config, "_quant", None)
    if bench is None or _is_worker(config) or not config._quant_rows:
        return
    from quant.report import tables as report
    from quant.util.hardware import describe

    rows = table_rows(list(config._quant_rows.values()))
    tr = terminalreporter
    tr.section("YOLO quantization benchmark")
    tr.write_line(f"weights {bench.suite.weights}  imgsz {bench.suite.imgsz}  data {bench.suite.data.yaml}")
    tr.write_line(f"machine {describe(bench.machine())}")
    tr.write_line("mAP in %, Δ = mAP50-95 points vs onnx-fp32 (same run), fidelity = mAP50-95 against onnx-fp32's "
                  "own detections (label-free), ms/img = median model call at batch 1, × FP32 = paired median ratio "
                  "vs onnx-fp32 with its 95 % interval")
    if bench.suite.label_free:
        tr.write_line("label-free (--images): P, R, mAP50 and mAP50-95 score each variant against onnx-fp32's own "
                      "detections on the val images, as fidelity does; the gates judge those", yellow=True)
    tr.write_line(report.table(rows))
    for line in (report.interval_lines(rows) + report.floor_lines(rows) + report.auto_lines(rows)
                 + [f"trade-off (Pareto front): {ln}" for ln in report.front_lines(rows)]
                 + report.build_lines(rows) + report.latency_lines(rows)):
        tr.write_line(line)
    for note in bench.suite.notes:
        tr.write_line(f"data: {note}", yellow=True)
    for notice in cache_notices(bench, rows):
        tr.write_line(notice, yellow=True)
    for line in report.breach_lines(rows):
        tr.write_line(f"GATE: {line}", red=True)
    guard = getattr(config, "_quant_guard", None)
    if guard is not None and guard.attempts:
        tr.write_line(f"network access attempted and blocked: {guard.attempts[:5]}", red=True)
    if getattr(config, "_quant_report_error", None):
        tr.write_line(f"ERROR: {config._quant_report_error}", red=True)
    elif getattr(config, "_quant_paths", None):
        tr.write_line("report: " + "  ".join(str(p) for p in config._quant_paths.values()))
    if getattr(config, "_quant_comparison", None):
        cmp, text = config._quant_comparison
        tr.section(f"comparison with {cmp.old_source}")
        tr.write_line(text)
        for line in cmp.regressions:
            tr.write_line(f"REGRESSION: {line}", red=True)


def cache_notices(bench: BenchSession, rows: list[dict]) -> list[str]:
    """Damaged cache entries found in this process or, with -n, in the workers (they travel with the rows)."""
    return list(dict.fromkeys([*bench.suite.cache.notices, *(n for r in rows for n in r.get("cache_notices") or [])]))


def pytest_keyboard_interrupt(excinfo):
    """Ctrl-C: say which build was cut short (its temp folder is already gone; nothing was cached)."""
    import sys

    for config in _CONFIGS:
        bench = getattr(config, "_quant", None)
        if bench is not None and bench.suite.interrupted:
            print(f"\ninterrupted while building {bench.suite.interrupted}: nothing was written to the cache for it",
                  file=sys.stderr)
