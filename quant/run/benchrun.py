"""What one pytest invocation of the benchmark does around its tests: keep Ultralytics offline and the
network blocked, open the :class:`quant.run.session.BenchSession` (every input checked first), collect the
rows the tests attach to their reports (from pytest-xdist workers too), and at the end write the report, save
the history, compare with the reference run and print the summary.

The plugin (:mod:`quant.run.plugin`) makes one :class:`BenchRun` per pytest process and hands it its hooks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from quant.measure.row import Row
from quant.registry import BASELINE
from quant.report import tables
from quant.run.benchmark import ROW, TIMES
from quant.util import offline, progress
from quant.util.errors import QuantError


def _storage(config) -> Path:
    """Where histories are kept: pytest-benchmark's ``--benchmark-storage`` (default ``.benchmarks``)."""
    s = str(config.getoption("benchmark_storage", None) or "file://./.benchmarks")
    return Path(s.removeprefix("file://"))


def _variant_of(nodeid: str) -> str:
    """``benchmarks/test_variants.py::test_variant[ov-int8]`` -> ``ov-int8``."""
    return nodeid.rsplit("[", 1)[-1].rstrip("]") if nodeid.endswith("]") else nodeid.rsplit("::", 1)[-1]


class _TerminalFile:
    """pytest's terminal writer as the file tqdm draws on (past output capture)."""

    def __init__(self, tw, uncaptured) -> None:
        self.tw, self.uncaptured = tw, uncaptured

    def write(self, text: str) -> None:
        with self.uncaptured():
            self.tw.write(text)
            self.tw.flush()

    def flush(self) -> None:
        with self.uncaptured():
            self.tw.flush()


class BenchRun:
    def __init__(self, config) -> None:
        self.config = config
        self.rows: dict[str, Row] = {}  # collected from the tests' reports (the controller's view)
        self.times: dict[str, list] = {}
        self.guard: offline.NetworkGuard | None = None
        self.bench = None  # quant.run.session.BenchSession
        self.paths: dict[str, Path] | None = None
        self.report_error: str | None = None
        self.comparison = None  # (Comparison, its text)
        self.selected: list[str] = []  # the variants of --preset, in the registry's order
        self.ab = None  # quant.run.ab.ABResult, with --compare-to a commit
        self.ab_error: str | None = None
        self.overall: progress.Overall | None = None

    @property
    def worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    def open(self) -> None:
        """Offline switches, the network guard, progress lines past output capture, then the session:
        ``pytest.UsageError`` (one line) on the first bad input, before any work."""
        from quant.run.options import deprecated, open_session

        offline.configure()  # Ultralytics' offline switches, before anything imports it
        # PyTorch's OpenMP threads, like ONNX Runtime's (quant.measure.latency.ort_session_options), do not
        # spin-wait between calls: spinning threads of an idle model, or any other load on the cores, made
        # pt-fp32 4x slower (2 cores, two busy processes: 110 ms against 47 ms passive; 27 vs 32 ms idle).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads its OpenMP runtime
        if not self.config.option.allow_network:
            self.guard = offline.NetworkGuard().__enter__()
        progress.set_sink(self.write_line)  # long builds (the recipe search) report progress past output capture
        for line in deprecated(self.config.invocation_params.args):
            progress.say(line)
        try:
            self.bench = open_session(self.config.option, _storage(self.config))
        except QuantError as e:
            raise pytest.UsageError(str(e)) from None
        from quant.registry import PRESETS

        self.selected = PRESETS[self.config.option.preset].select(self.bench.suite.builder.variants)

    # ---- the overall progress line ------------------------------------------------------------------
    def start_progress(self, items: int) -> None:
        """One overall line for the ``items`` tests to run (--progress): a tqdm bar on a terminal, one line per
        step elsewhere; not in a pytest-xdist worker, nor with -v (pytest's own lines say it there)."""
        mode = self.config.option.progress
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.worker or mode == "off" or terminal is None or self.config.option.verbose > 0 or not items:
            return
        if mode == "auto":
            mode = "bar" if terminal.isatty else "lines"
        bar_file = _TerminalFile(terminal._tw, self.uncaptured) if mode == "bar" else None
        self.overall = progress.Overall(items, self.write_line, bar_file=bar_file)
        progress.start_overall(self.overall)

    def uncaptured(self):
        """A context in which writes reach the terminal while a test's output is captured."""
        import contextlib

        capman = self.config.pluginmanager.get_plugin("capturemanager")
        return capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()

    def write_line(self, line: str) -> None:
        """One line on the terminal, also from inside a test or fixture (a build, a search)."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")  # looked up now: registered after us
        with self.uncaptured():
            if terminal is None:
                print(line, file=sys.stderr, flush=True)
            else:
                terminal.write_line(line)

    def stop_progress(self) -> None:
        if self.overall is not None:
            self.overall.close()
            progress.start_overall(None)
            self.overall = None

    def close(self) -> None:
        self.stop_progress()
        if self.guard is not None:
            self.guard.__exit__(None, None, None)
            self.guard = None
        progress.set_sink(None)

    # ---- rows from the tests (this process's, and with -n the workers') ---------------------------
    def pytest_runtest_logstart(self, nodeid, location) -> None:
        if self.overall is not None:
            self.overall.begin(_variant_of(nodeid))

    def pytest_runtest_logreport(self, report) -> None:
        """Collect the rows tests attach to their reports: a measured row wins over a "baseline only" one."""
        ends = report.when == "call" or (report.when == "setup" and not report.passed)
        if self.overall is not None and ends:
            self.overall.end({"passed": "done", "skipped": "skipped"}.get(report.outcome, "FAILED"))
        for key, value in report.user_properties:
            if key == ROW:
                have = self.rows.get(value["variant"])
                if have is None or have.status == "baseline only":
                    self.rows[value["variant"]] = Row.from_dict(value)
            elif key == TIMES:
                self.times.update(value)

    def table(self) -> list[Row]:
        return tables.table_rows(list(self.rows.values()), list(self.bench.suite.builder.variants))

    def cache_notices(self) -> list[str]:
        """Damaged cache entries found in this process or, with -n, in the workers (they travel with the rows)."""
        return list(dict.fromkeys([*self.bench.suite.builder.cache.notices,
                                   *(n for r in self.rows.values() for n in r.cache_notices or [])]))

    # ---- the end of the run ----------------------------------------------------------------------
    def finish(self, session) -> None:
        """Write the report and the history, and compare with the reference run (regressions fail the session)."""
        from quant.report.write import write_report

        if self.worker or not self.rows:
            return
        header = {**self.bench.header(), "network_attempts": self.guard.attempts if self.guard is not None else None,
                  "cache_notices": self.cache_notices()}
        base = self.rows.get(BASELINE)
        if header["aa_control"] is None and base is not None:  # -n: the A/A control ran in a worker
            header["aa_control"] = {"ratio": base.latency_ratio, "ci": base.latency_ratio_ci,
                                    "ratios": base.latency_ratio_rounds, "verdict": base.aa_verdict}
        out, rows = Path(self.config.option.report_dir), self.table()
        try:
            self.paths = write_report(rows, out, header)
        except OSError as e:
            self.report_error = f"report not written to '{out}': {e.strerror or e}"
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        self._save_history(rows, header["machine"])
        if self.bench.ab_reference is not None:
            self._ab(session, rows, out, header)
        elif self.config.option.compare_to:
            self._compare(session, rows, out, header)

    def _save_history(self, rows: list[Row], machine: dict) -> None:
        name, auto = self.config.getoption("benchmark_save", None), self.config.getoption("benchmark_autosave", False)
        if name or auto:
            from quant.run.history import save

            self.paths["history"] = save(_storage(self.config), name, rows, machine, self.times)

    def _compare(self, session, rows: list[Row], out: Path, header: dict) -> None:
        from quant.gate.compare import compare, format_comparison, load_run, markdown_summary
        from quant.report.html import write_html

        bench = self.bench
        cmp = compare(load_run(self.config.option.compare_to, _storage(self.config)), load_run(out / "report.json"),
                      limits_for=lambda v: bench.thresholds.for_variant(v, embedded=bench.embedded),
                      force_latency=self.config.option.compare_force, force_models=self.config.option.compare_force)
        self.comparison = (cmp, format_comparison(cmp))
        summary = markdown_summary(cmp) + tables.breach_section(rows)
        (out / "comparison.md").write_text(summary)
        write_html(rows, out / "report.html", header, summary)  # the page again, with its comparison
        if cmp.regressions and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _ab(self, session, rows: list[Row], out: Path, header: dict) -> None:
        """A/B against a commit: every measured row (not peers, not TensorRT's CPU stand-ins) timed interleaved with
        the reference checkout's build; regressions fail the session and explain themselves."""
        import json

        from quant.calibration.readers import letterbox, read_image
        from quant.report.html import write_html
        from quant.run.ab import ab_markdown, explain, run_ab

        bench, o = self.bench, self.config.option
        names = [r.variant for r in rows if not r.peer and not r.engine_missing and r.latency_ms is not None]
        try:
            result = run_ab(o, bench.ab_reference, names, {r.variant: r.map50_95 for r in rows},
                            lambda v: bench.thresholds.for_variant(v, embedded=bench.embedded), o.latency_rounds,
                            o.latency_calls, o.latency_warmup, log_dir=out / "logs", say=self.write_line)
            if result.regressions:
                inputs = bench.suite.inputs
                feeds = [{"images": letterbox(read_image(p), inputs.imgsz)} for p in inputs.images(inputs.data.val)[:4]]
                from quant.build.ir import runtime_config

                builder = bench.suite.builder
                explain(result, builder.artifact(BASELINE), feeds, builder.threads,
                        lambda v: runtime_config(builder.variants[v], builder.threads))
        except QuantError as e:
            self.ab_error = f"A/B against {bench.ab_reference.name}: {e}"
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        self.ab = result
        summary = ab_markdown(result) + tables.breach_section(rows)
        (out / "comparison.md").write_text(summary)
        (out / "ab.json").write_text(json.dumps(result.to_dict(), indent=1))
        write_html(rows, out / "report.html", header, summary)
        if result.regressions and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def summary(self, tr) -> None:
        """The table and what goes with it, at the end of the terminal output."""
        from quant.util.hardware import describe

        if self.worker or not self.rows:
            return
        self.stop_progress()
        inputs, rows = self.bench.suite.inputs, self.table()
        tr.section("YOLO quantization benchmark")
        tr.write_line(f"weights {inputs.weights}  imgsz {inputs.imgsz}  data {inputs.data.yaml}")
        tr.write_line(f"machine {describe(self.bench.machine())}")
        tr.write_line("mAP in %, Δ = mAP50-95 points vs onnx-fp32 (same run), fidelity = mAP50-95 against onnx-fp32's "
                      "own detections (label-free), ms/img = median model call at batch 1, × FP32 = paired median "
                      "ratio vs onnx-fp32 with its 95 % interval")
        if inputs.label_free:
            tr.write_line("label-free (--image-dir): P, R, mAP50 and mAP50-95 score each variant against onnx-fp32's own "
                          "detections on the val images, as fidelity does; the gates judge those", yellow=True)
        tr.write_line(tables.table(rows, wide=self.config.option.wide))
        for line in (tables.interval_lines(rows) + tables.floor_lines(rows) + tables.scale_lines(rows)
                     + tables.auto_lines(rows)
                     + [f"what ran: {ln}" for ln in tables.ran_lines(rows)]
                     + [f"trade-off (Pareto front): {ln}" for ln in tables.front_lines(rows)]
                     + tables.build_lines(rows) + tables.latency_lines(rows)):
            tr.write_line(line)
        for note in inputs.notes:
            tr.write_line(f"data: {note}", yellow=True)
        for notice in self.cache_notices():
            tr.write_line(notice, yellow=True)
        for line in tables.breach_lines(rows):
            tr.write_line(f"GATE: {line}", red=True)
        if self.guard is not None and self.guard.attempts:
            tr.write_line(f"network access attempted and blocked: {self.guard.attempts[:5]}", red=True)
        if self.report_error:
            tr.write_line(f"ERROR: {self.report_error}", red=True)
        elif self.paths:
            tr.write_line("report: " + "  ".join(str(p) for p in self.paths.values()))
        if self.ab_error:
            tr.write_line(f"ERROR: {self.ab_error}", red=True)
        if self.ab is not None:
            from quant.run.ab import ab_table

            ref = self.ab.reference
            tr.section(f"A/B against {ref.name}" + (f" ({ref.commit[:12]})" if ref.commit else "") + ", interleaved")
            tr.write_line(ab_table(self.ab))
            for note in self.ab.notes:
                tr.write_line(note, yellow=True)
            for r in self.ab.rows:
                for line in r.failures:
                    tr.write_line(f"REGRESSION: {line}", red=True)
                for line in r.explanation:
                    tr.write_line(f"  {line}")
        if self.comparison:
            cmp, text = self.comparison
            tr.section(f"comparison with {cmp.old_source} (cross-run, less sensitive)")
            tr.write_line(text)
            for line in cmp.regressions:
                tr.write_line(f"REGRESSION: {line}", red=True)

    def interrupted(self) -> str | None:
        """Ctrl-C during a build: which one (its temp folder is already gone; nothing was cached)."""
        building = self.bench.suite.builder.interrupted if self.bench is not None else None
        return f"interrupted while building {building}: nothing was written to the cache for it" if building else None
