"""One test per registered variant: build (cached) -> accuracy (cached) -> paired latency -> gates."""

from quant.run.benchmark import test_variant  # noqa: F401  (collected here; the plugin parametrizes it)
