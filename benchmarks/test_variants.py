"""One test per registered variant: build (cached) -> accuracy -> latency -> gates."""

from __future__ import annotations

import pytest

from quant.errors import QuantError
from quant.variants import REGISTRY


@pytest.fixture(scope="session", params=[
    pytest.param(name, marks=[getattr(pytest.mark, m) for m in v.markers]) for name, v in REGISTRY.items()])
def variant(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def artifact(variant, bench):
    """The variant's artifact, built once per cache key and reused across runs."""
    reason = bench.skip_reason(variant)
    if reason:
        pytest.skip(reason)
    try:
        return bench.suite.artifact(variant)
    except QuantError as e:  # bad input: one line, no traceback
        pytest.fail(f"{variant}: {e}", pytrace=False)


def test_variant(variant, artifact, bench, benchmark):
    run, x = bench.suite.runner(variant), bench.suite.sample_input()
    benchmark.group = "batch-1 model call"
    if benchmark.disabled:
        from quant.latency import measure

        lat = measure(run, x, bench.rounds, bench.warmup)
        latency_ms, rounds = lat.median_ms, lat.rounds
    else:
        benchmark.pedantic(run, args=(x,), rounds=bench.rounds, warmup_rounds=bench.warmup, iterations=1)
        latency_ms, rounds = 1000 * benchmark.stats.stats.median, bench.rounds
    extra = {}
    if getattr(run, "gpu_ms", None):  # a TensorRT engine: CUDA-event time of the execution alone
        import statistics

        extra["engine_gpu_ms"] = statistics.median(run.gpu_ms)
    row = bench.row(variant, latency_ms, rounds, extra)
    failures = bench.gate(variant)
    benchmark.extra_info.update({k: row[k] for k in (
        "precision_P", "recall", "map50", "map50_95", "fidelity_map50_95", "size_mb", "preprocess_ms", "postprocess_ms", "int8_share",
        "cached", "config", "status")}, **extra)
    assert not failures, "; ".join(failures)
