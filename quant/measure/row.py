"""One variant's measured row: what the table, report.json, the history and the gates read.

Fields are grouped as they are measured: what the variant is, its accuracy (against labels, and
against the FP32 model's own detections), its paired latency, its build, and the gate's verdict.
``to_dict()`` is the record written to report.json and attached to pytest-benchmark's history
(``box_precision`` is the detection precision P; ``precision`` the numeric precision, fp32/int8).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# How the FP32 model's detections become fidelity labels (quant.measure.fidelity): the detections Ultralytics'
# validator itself scores for it, confidence >= 0.25. Recorded with every row that has a fidelity, so
# that runs whose labels were made another way are not compared on it (quant.gate.compare).
FIDELITY_LABELS = "validator detections, conf 0.25"
# How predicted boxes are scored (quant.measure.evaluate.clip_to_image). Recorded with every row, so that runs
# scored another way (a row recorded before it was kept scored unclipped boxes) are not compared on accuracy.
SCORING = "boxes clipped to the image"


@dataclass
class Row:
    # what it is
    variant: str
    backend: str
    format: str
    precision: str  # numeric: fp32 | fp16 | bf16 | int8
    peer: bool
    config: dict
    # accuracy (0-1), against the val labels (label-free mode: against FP32's detections)
    box_precision: float
    recall: float
    map50: float
    map50_95: float
    fidelity_map50: float | None
    fidelity_map50_95: float | None
    delta_ci: list | None  # mAP50-95 minus the baseline's on the same images: 95 % paired bootstrap, points
    evaluation: str | None  # "cached" | "measured"
    preprocess_ms: float
    postprocess_ms: float
    val_inference_ms: float
    # latency, paired against the baseline in this process (quant.measure.latency.paired)
    latency_ms: float
    baseline_ms: float
    latency_ratio: float
    latency_ratio_ci: list
    latency_ratio_rounds: list
    latency_rounds: int
    latency_calls: int
    timing: dict | None
    runs_as: dict | None
    threads: int | None
    engine_gpu_ms: float | None
    # build
    size_mb: float
    artifact: str
    artifact_dir: str
    reports: list
    cached: bool
    built_because: str | None
    seconds: dict
    int8_share: str | None  # "INT8 convolutions/convolutions"
    float_nodes: list | None
    engine: dict | None  # TensorRT: whether an engine was built, and on what (quant.backends.tensorrt)
    auto: dict | None  # the searched recipe (quant.search.recipe)
    cache_notices: list
    # verdict
    status: str = "measured"  # measured | baseline only | pass | FAIL | peer | pass (...)
    aa_verdict: str | None = None  # the baseline's row: whether latency could be judged in this run
    limits: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    # what the accuracy was measured against
    label_free: bool = False  # --images: mAP50-95 etc. are against FP32's own detections too
    fidelity_labels: str | None = None  # FIDELITY_LABELS where a figure is against FP32's detections
    scoring: str = SCORING  # how predicted boxes were scored
    fidelity_floor: float | None = None  # the baseline's row: its fidelity on its images perturbed imperceptibly
    float_choice: dict | None = None  # a target's own pick among float sets (quant.search.float_choice), e.g. ov-int8-auto
    class_losses: list | None = None  # the classes that cost most against the baseline (quant.measure.classloss)

    @property
    def engine_missing(self) -> bool:
        """A TensorRT row measured on its CPU stand-in: no engine was built."""
        return self.engine is not None and not self.engine["built"]

    def to_dict(self) -> dict:
        return asdict(self)


def floor_loss_points(row: dict) -> float | None:
    """The fidelity points the baseline's row loses to the fidelity floor's imperceptible change of the images
    (``fidelity_map50_95`` − ``fidelity_floor``, :meth:`quant.run.suite.Suite.fidelity_floor`); None where it has none."""
    floor, ceiling = row.get("fidelity_floor"), row.get("fidelity_map50_95")
    numbers = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (floor, ceiling))
    return 100 * (ceiling - floor) if numbers else None
