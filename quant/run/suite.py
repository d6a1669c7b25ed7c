"""A benchmark run's three parts, made together: its inputs (:class:`quant.run.inputs.RunInputs`), the
artifact builder with its cache (:class:`quant.run.builder.Builder`) and the evaluations
(:class:`quant.run.evaluations.Evaluations`). Every variant goes through them: build -> validate -> time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from quant.build.variant import Variant
from quant.run.builder import Builder
from quant.run.cache import ArtifactCache
from quant.run.evaluations import Evaluations
from quant.run.inputs import RunInputs


@dataclass(frozen=True)
class Suite:
    inputs: RunInputs
    builder: Builder
    evaluations: Evaluations

    @classmethod
    def create(cls, weights, data_yaml, imgsz: int, cache_dir, calib_images: int = 64, *, verify_cache: bool = False,
               revalidate: bool = False, variants: Mapping[str, Variant] | None = None, build_timeout: float | None = None,
               threads: int | None = None, require_engines: bool = False, **checks) -> "Suite":
        """Check the inputs (``checks``: :meth:`RunInputs.create`'s data checks), then the builder over the cache
        in ``cache_dir`` and the evaluations; ``variants`` defaults to the registry."""
        inputs = RunInputs.create(weights, data_yaml, imgsz, calib_images, **checks)
        kw = {"variants": variants} if variants is not None else {}
        builder = Builder(inputs, ArtifactCache(Path(cache_dir), verify=verify_cache), build_timeout=build_timeout,
                          threads=threads, require_engines=require_engines, **kw)
        return cls(inputs, builder, Evaluations(builder, revalidate=revalidate))
