"""The benchmark itself: one test per variant, build (cached) -> accuracy (cached) -> paired latency -> gates.

``benchmarks/test_variants.py`` collects :func:`test_variant` from here; the plugin (:mod:`quant.run.plugin`)
parametrizes it over the run's variants and provides its fixtures.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path

import pytest

from quant.registry import BASELINE
from quant.util.errors import QuantError

ROW, TIMES = "quant_row", "quant_times"  # user_properties keys a test's row and call times travel under


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


def test_variant(variant, artifact, bench, request):
    with one_line_failures(variant, Path(request.config.option.report_dir)):
        bench.measure(variant)
        failures = bench.gate(variant)
    request.node.user_properties.append((ROW, bench.rows[variant].to_dict()))
    request.node.user_properties.append((TIMES, {variant: list(bench.variant_times.get(variant, ()))}))
    if variant != BASELINE:  # the baseline's row travels too when its own test did not run here
        request.node.user_properties.append((ROW, bench.rows[BASELINE].to_dict()))
    if failures:
        pytest.fail("; ".join(failures), pytrace=False)
