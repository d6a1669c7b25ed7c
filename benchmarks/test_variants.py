"""One test per registered variant: build (cached) -> accuracy (cached) -> paired latency -> gates."""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path

import pytest

from quant.util.errors import QuantError
from quant.registry import BASELINE, REGISTRY

ROW = "quant_row"


@pytest.fixture(scope="session", params=[
    pytest.param(name, marks=[getattr(pytest.mark, m) for m in v.markers]) for name, v in REGISTRY.items()])
def variant(request) -> str:
    return request.param


@contextlib.contextmanager
def one_line_failures(variant: str, log_dir: Path):
    """A failing build or measurement fails this variant alone, in one line. Bad input or a bad state
    (QuantError) says what is wrong; anything unexpected names the exception, and its traceback goes to
    ``<report-dir>/logs/<variant>.log`` instead of the screen."""
    try:
        yield
    except QuantError as e:
        pytest.fail(f"{variant}: {e}", pytrace=False)
    except Exception as e:  # noqa: BLE001  (a backend's own failure: contained to its variant)
        log = log_dir / "logs" / f"{variant}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        message = " ".join(str(e).split())[:300]
        pytest.fail(f"{variant}: {type(e).__name__}: {message} (traceback: {log})", pytrace=False)


@pytest.fixture(scope="session")
def artifact(variant, bench, pytestconfig):
    """The variant's artifact, built once per cache key and reused across runs."""
    reason = bench.skip_reason(variant)
    if reason:
        pytest.skip(reason)
    with one_line_failures(variant, Path(pytestconfig.option.report_dir)):
        return bench.suite.artifact(variant)


def test_variant(variant, artifact, bench, benchmark, request):
    with one_line_failures(variant, Path(request.config.option.report_dir)):
        bench.measure(variant)
        failures = bench.gate(variant)
    row = bench.rows[variant].to_dict()
    request.node.user_properties.append((ROW, row))
    if variant != BASELINE:  # the baseline's row travels too when its own test did not run here
        request.node.user_properties.append((ROW, bench.rows[BASELINE].to_dict()))
    benchmark.group = "batch-1 model call (paired rounds)"
    if not benchmark.disabled:  # pytest-benchmark's statistics and history from the paired variant calls
        benchmark._mode = "paired rounds (quant.measure.latency.paired)"  # the fixture is used, through its stats
        stats = benchmark._make_stats(1)
        for t in bench.variant_times.get(variant, ()):
            stats.update(t)
    benchmark.extra_info.update({k: row.get(k) for k in (
        "variant", "peer", "precision", "box_precision", "recall", "map50", "map50_95", "delta_ci", "fidelity_map50_95",
        "latency_ms", "latency_ratio", "latency_ratio_ci", "latency_ratio_rounds", "size_mb", "preprocess_ms",
        "postprocess_ms", "int8_share", "cached", "built_because", "config", "status")}, machine=bench.header()["machine"])
    if failures:
        pytest.fail("; ".join(failures), pytrace=False)
