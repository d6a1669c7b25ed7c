"""quant-bench's pytest plugin: hooks and fixtures only. The work is :class:`quant.run.benchrun.BenchRun`'s.

Installed with the package (a ``pytest11`` entry point), so it loads in every pytest run of the environment:
the project's own tests and other projects' suites too. There it adds its options and does nothing else
(no torch or runtime imports, no network guard, no environment changes) unless it is asked for: a conftest
of a collected folder sets ``quant_bench = True`` (``benchmarks/conftest.py`` does), or one of its options is
given on the command line (``quant-bench run`` gives them).

Works the same with pytest-xdist (``-n 2``): each worker measures its variants and attaches each row to its
test report; the controlling process collects the rows and writes the report.
"""

from __future__ import annotations

import pytest

from quant.run.options import DEPRECATED, OPTIONS, dest

MARKERS = {"gpu": "needs an NVIDIA GPU with CUDA", "tensorrt": "builds or runs a TensorRT engine",
           "slow": "end-to-end runs (minutes)"}
_RUNS: list = []  # this process's BenchRun (pytest_keyboard_interrupt gets no config)
_KEY = pytest.StashKey()  # the BenchRun of a config


def pytest_addoption(parser):
    group = parser.getgroup("quant-bench", "quant-bench: YOLO quantization benchmarks")
    for flag, spec in OPTIONS.items():
        spec = dict(spec)
        group.addoption(flag, *spec.pop("aliases", ()), dest=dest(flag), **spec)


def requested(config) -> bool:
    """Whether this pytest run is the benchmark's: a loaded conftest says ``quant_bench = True``, or one of the
    plugin's options is on the command line."""
    flags = {a.split("=", 1)[0] for a in config.invocation_params.args if isinstance(a, str)}
    return bool(flags & (set(OPTIONS) | set(DEPRECATED))) or any(getattr(p, "quant_bench", False) is True
                                             for p in config.pluginmanager.get_plugins())


def pytest_configure(config):
    if not requested(config):
        return
    from quant.run.benchrun import BenchRun

    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # the suite saves its histories itself (quant.run.history): pytest-benchmark, given --benchmark-autosave, would
    # say it saved nothing
    config.addinivalue_line("filterwarnings", "ignore:Not saving anything, no benchmarks have been run")
    run = BenchRun(config)
    config.stash[_KEY] = run
    _RUNS.append(run)
    if not run.worker:
        config.pluginmanager.register(run, "quant-bench-run")  # collects the rows the tests report
    run.open()


def pytest_unconfigure(config):
    run = config.stash.get(_KEY, None)
    if run is not None:
        run.close()


def pytest_generate_tests(metafunc):
    """The benchmark runs once per variant of the run (the registry, in its order; the baseline first)."""
    run = metafunc.config.stash.get(_KEY, None)
    if "variant" not in metafunc.fixturenames or run is None:
        return
    variants = run.bench.suite.builder.variants
    order = sorted(run.selected, key=lambda n: n != run.bench.timing.baseline)  # every other gate compares with it
    metafunc.parametrize("variant", [pytest.param(n, marks=[getattr(pytest.mark, m) for m in variants[n].markers])
                                     for n in order], scope="session")


def pytest_collection_finish(session):
    run = session.config.stash.get(_KEY, None)
    if run is not None:
        run.start_progress(len(session.items))


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    """With the overall progress line on, pytest's per-test letters are left out (the line counts the tests)."""
    run = config.stash.get(_KEY, None)
    if run is not None and run.overall is not None and report.nodeid.split("::")[-1].startswith("test_variant"):
        outcome = report.outcome  # the categories pytest's own hooks give (a passed setup or teardown: none)
        if report.when in ("setup", "teardown"):
            outcome = "error" if report.failed else "skipped" if report.skipped else ""
        return outcome, "", ""
    return None


@pytest.fixture(scope="session")
def bench(pytestconfig):
    """The session that measures and gates (:class:`quant.run.session.BenchSession`)."""
    run = pytestconfig.stash.get(_KEY, None)
    if run is None:
        pytest.skip("quant-bench is not active in this run: collect a folder whose conftest sets quant_bench = True, "
                    "or give one of its options")
    return run.bench


@pytest.fixture(scope="session")
def artifact(variant, bench, pytestconfig):
    """The variant's artifact, built once per cache key and reused across runs; skipped with the reason where
    the variant cannot run here."""
    from pathlib import Path

    from quant.run.benchmark import one_line_failures

    reason = bench.skip_reason(variant)
    if reason:
        pytest.skip(reason)
    with one_line_failures(variant, Path(pytestconfig.option.report_dir)):
        return bench.suite.builder.artifact(variant)


def pytest_sessionfinish(session, exitstatus):
    run = session.config.stash.get(_KEY, None)
    if run is not None:
        run.finish(session)


def pytest_terminal_summary(terminalreporter, config):
    run = config.stash.get(_KEY, None)
    if run is not None:
        run.summary(terminalreporter)


def pytest_keyboard_interrupt(excinfo):
    """Ctrl-C: say which build was cut short (its temp folder is already gone; nothing was cached)."""
    import sys

    for run in _RUNS:
        message = run.interrupted()
        if message:
            print(f"\n{message}", file=sys.stderr)

