"""One variant's measured row: what the table, report.json, the history and the gates read.

Fields are grouped as they are measured: what the variant is, its accuracy (against labels, and against the
FP32 model's own detections), its paired latency, its build, the gate's verdict, and what the table adds
beside the baseline. A row stays a :class:`Row` until it is written: ``to_dict()`` is the record in
report.json (its keys are the field names), ``Row.from_dict`` reads one back, from this version or an
older one (fields it lacks are None). ``box_precision`` is the detection precision P; ``precision`` the
numeric precision (fp32, int8, ...). Every accuracy is in points (0-100), as the table prints it: P, R,
mAP50, mAP50-95, fidelity and Δ alike (Ultralytics' validator reports fractions; the row multiplies).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

# How the FP32 model's detections become fidelity labels (quant.measure.fidelity): the detections Ultralytics'
# validator itself scores for it, confidence >= 0.25. Recorded with every row that has a fidelity, so
# that runs whose labels were made another way are not compared on it (quant.gate.compare).
FIDELITY_LABELS = "validator detections, conf 0.25"
# How predicted boxes are scored (quant.measure.evaluate.clip_to_image). Recorded with every row, so that runs
# scored another way (a row recorded before it was kept scored unclipped boxes) are not compared on accuracy.
SCORING = "boxes clipped to the image"
# The unit of every accuracy in a row, recorded in report.json's header and each history entry; records
# without it are from a version that kept fractions (0-1) and are read back in points.
ACCURACY_UNIT = "points"
ACCURACY_FIELDS = ("box_precision", "recall", "map50", "map50_95", "fidelity_map50", "fidelity_map50_95",
                   "fidelity_floor")


@dataclass
class Row:
    # what it is
    variant: str
    backend: str | None = None
    format: str | None = None
    precision: str | None = None  # numeric: fp32 | fp16 | bf16 | int8
    peer: bool = False
    config: dict = field(default_factory=dict)
    # accuracy in points (0-100), against the val labels (label-free mode: against FP32's detections)
    box_precision: float | None = None
    recall: float | None = None
    map50: float | None = None
    map50_95: float | None = None
    fidelity_map50: float | None = None
    fidelity_map50_95: float | None = None
    delta_ci: list | None = None  # mAP50-95 minus the baseline's on the same images: 95 % paired bootstrap, points
    evaluation: str | None = None  # "cached" | "measured"
    preprocess_ms: float | None = None
    postprocess_ms: float | None = None
    val_inference_ms: float | None = None
    # latency, paired against the baseline in this process (quant.measure.latency.paired)
    latency_ms: float | None = None
    baseline_ms: float | None = None
    latency_ratio: float | None = None
    latency_ratio_ci: list | None = None
    latency_ratio_rounds: list | None = None
    latency_rounds: int | None = None
    latency_calls: int | None = None
    timing: dict | None = None
    runs_as: dict | None = None
    threads: int | None = None
    engine_gpu_ms: float | None = None
    # build
    size_mb: float | None = None
    artifact: str | None = None
    artifact_dir: str | None = None
    reports: list = field(default_factory=list)
    cached: bool = False
    built_because: str | None = None
    seconds: dict = field(default_factory=dict)
    int8_share: str | None = None  # "INT8 convolutions/convolutions" the graph asks for
    executed: dict | None = None  # what the runtime runs: convs_int8, convs_float and its own counts
    time_split: dict | None = None  # where the time goes by precision, from the runtime's profile (measure.profile)
    float_nodes: list | None = None
    engine: dict | None = None  # TensorRT: whether an engine was built, and on what (quant.build.trt_engine)
    auto: dict | None = None  # the searched recipe (quant.search.recipe)
    cache_notices: list = field(default_factory=list)
    # verdict
    status: str = "measured"  # measured | baseline only | pass | FAIL | peer | pass (...)
    aa_verdict: str | None = None  # the baseline's row: whether latency could be judged in this run
    limits: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    # what the accuracy was measured against
    label_free: bool = False  # --image-dir: mAP50-95 etc. are against FP32's own detections too
    fidelity_labels: str | None = None  # FIDELITY_LABELS where a figure is against FP32's detections
    scoring: str | None = SCORING  # how predicted boxes were scored
    fidelity_floor: float | None = None  # the baseline's row: its fidelity on its images perturbed imperceptibly
    float_choice: dict | None = None  # a target's own pick among float sets (quant.search.float_choice)
    class_losses: list | None = None  # the classes that cost most against the baseline (quant.measure.classloss)
    # beside the baseline and the peers, in the table (quant.report.tables.table_rows)
    delta_points: float | None = None  # mAP50-95 minus the baseline's, in points
    vs_peer: dict | None = None  # against the best Ultralytics INT8 peer

    @property
    def engine_missing(self) -> bool:
        """A TensorRT row measured on its CPU stand-in: no engine was built."""
        return self.engine is not None and not self.engine["built"]

    @property
    def floor_loss_points(self) -> float | None:
        """The fidelity points the baseline's row loses to the fidelity floor's imperceptible change of the images
        (``fidelity_map50_95`` − ``fidelity_floor``, :meth:`quant.run.evaluations.Evaluations.fidelity_floor`); None
        where it has none."""
        floor, ceiling = self.fidelity_floor, self.fidelity_map50_95
        numbers = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (floor, ceiling))
        return ceiling - floor if numbers else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, fractions: bool = False) -> "Row":
        """A row from a record (report.json, a history's extra_info, an older version's row): its known fields;
        what it lacks keeps its default, what this version does not know is left out. Scoring and fidelity
        labels are taken as recorded (absent: None), so that records made another way are not compared on them.
        ``fractions``: the record keeps accuracy as fractions (0-1), as versions before points did."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {"scoring": None, **{k: v for k, v in d.items() if k in known}}
        if fractions:
            values.update({k: 100 * values[k] for k in ACCURACY_FIELDS if isinstance(values.get(k), (int, float))})
        return cls(**values)
