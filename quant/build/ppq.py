"""PPQ (0.6.6) INT8 (a tool of the report this suite grew from), run in a worker process with its compatibility
fixes (:mod:`quant.build.ppq_compat`), exported as an ONNX Runtime Q/DQ model that the suite scores.

Each build also saves PPQ's error analysis: graphwise (each quantized op's output error with the
whole network quantized: accumulated error) and layerwise (the graph output's error when only that
op is quantized, measured on the class scores), as SNR = noise power / signal power, in ``error_analysis.json`` / ``.md`` beside
the artifact; the benchmark report copies them next to its table. Ops above PPQ's 0.1 threshold
come first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from quant.build import ppq_worker
from quant.build.context import BuildContext, needs
from quant.util import progress
from quant.util.errors import BuildError, QuantError

THRESHOLD = 0.1  # PPQ's own "this op needs attention" SNR threshold


class PpqPlatform(StrEnum):
    """The PPQ target platforms the suite can score (every one exported as ONNX Runtime Q/DQ)."""

    ONNXRUNTIME = "ONNXRUNTIME"
    OPENVINO_INT8 = "OPENVINO_INT8"
    TRT_INT8 = "TRT_INT8"
    PPL_CUDA_INT8 = "PPL_CUDA_INT8"


@dataclass(frozen=True)
class PpqConfig:
    """PPQ's settings (``--ppq-*`` options override them for every PPQ variant)."""

    platform: PpqPlatform = PpqPlatform.ONNXRUNTIME
    calib_steps: int = 32  # calibration steps (PPQ needs at least 8)
    lsq_steps: int = 0  # LSQ optimization steps per block (0: off)
    analysis_images: int = 4  # images of PPQ's error analysis
    float_set_from: str | None = None  # the variant whose searched float set stays float here too

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "platform", PpqPlatform(self.platform))
        except ValueError:
            raise QuantError(f"PPQ platform '{self.platform}' cannot be evaluated here (choose from "
                             f"{', '.join(p.value for p in PpqPlatform)})") from None


@needs("ppq", "tqdm", extra="ppq")
def build(variant, ctx: BuildContext, out_dir: Path):
    import onnx

    from quant.model.graph import int8_conv_counts, qdq_int8_convs, remove_qdq_before
    from quant.model.weights import onnx_metadata

    cfg = variant.ppq
    platform = cfg.platform.value
    src = ctx.artifact(variant.source)
    model = onnx.load(str(src))
    float_nodes = ctx.float_nodes(variant, model)
    out, analysis = out_dir / "model.onnx", out_dir / "error_analysis.json"
    job = {"src": str(src), "out": str(out), "analysis": str(analysis), "platform": platform, "imgsz": ctx.imgsz,
           "calib_files": [str(f) for f in ctx.calibration_files()], "float_nodes": float_nodes,
           "calib_steps": cfg.calib_steps, "lsq_steps": cfg.lsq_steps,
           "analysis_images": cfg.analysis_images, "score_output": class_score_tensor(model),
           "progress": str(out_dir / "progress.json")}
    (out_dir / "job.json").write_text(json.dumps(job, indent=1))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    try:
        run_worker(worker_command(out_dir / "job.json"), variant.name, ctx.build_timeout, out_dir, env,
                   steps=Path(job["progress"]))
    finally:
        Path(job["progress"]).unlink(missing_ok=True)
    qmodel = onnx.load(str(out))
    del qmodel.metadata_props[:]  # PPQ's export drops Ultralytics' metadata: put it back
    for k, v in onnx_metadata(src).items():
        qmodel.metadata_props.add(key=k, value=v)
    remove_qdq_before(qmodel, float_nodes)  # the decode reads float, as in every INT8 variant
    onnx.save(qmodel, str(out))
    write_analysis_markdown(json.loads(analysis.read_text()), analysis.with_suffix(".md"), variant.name)
    for f in out_dir.glob("*.wts"):  # PPQ's TensorRT exporter side files
        f.unlink()
    return out, {"float_nodes": float_nodes, "calibration_images": len(job["calib_files"]),
                 **int8_conv_counts(model, qdq_int8_convs(qmodel)), "platform": platform,
                 "reports": ["error_analysis.json", "error_analysis.md"]}


def worker_command(job: Path) -> list[str]:
    return [sys.executable, "-m", ppq_worker.__name__, str(job)]  # imported above: its code is in the key


HEARTBEAT_S = 30.0  # a progress line this often while the worker runs (its calibration and LSQ take minutes)


def run_worker(cmd: list[str], name: str, timeout: float | None, cwd: Path, env: dict,
               heartbeat: float | None = None, steps: Path | None = None) -> None:
    """Run the PPQ worker, saying every ``heartbeat`` seconds (default: ``HEARTBEAT_S`` as it is at the
    call) that it still runs and, from its ``steps``
    file (:class:`quant.util.progress.StepFile`), where it is and about how long that part has left; a crash, a
    kill or a hang fails this variant alone, in one line naming the exit code or signal and the worker's
    last words on stderr."""
    start, heartbeat = time.monotonic(), HEARTBEAT_S if heartbeat is None else heartbeat
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            stderr = _wait(proc, name, timeout, heartbeat, start, steps)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise BuildError(f"PPQ worker for {name} hung: no result after --build-timeout {timeout:g} s; "
                             "it was killed and nothing was kept") from None
        except BaseException:  # the suite's own deadline, Ctrl-C: the worker goes too
            proc.kill()
            raise
    if proc.returncode == 0:
        return
    how = (f"was killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
           else f"exited with code {proc.returncode}")
    last = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()][-3:] or ["(nothing on stderr)"]
    raise BuildError(f"PPQ worker for {name} {how}; last stderr: {' | '.join(last)}")


def _wait(proc, name: str, timeout: float | None, heartbeat: float, start: float, steps: Path | None) -> str:
    """The worker's stderr once it exits; a progress line every ``heartbeat`` s; TimeoutExpired at ``timeout``."""
    while True:
        elapsed = time.monotonic() - start
        if timeout is not None and elapsed >= timeout:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            return proc.communicate(timeout=heartbeat if timeout is None else min(heartbeat, timeout - elapsed))[1]
        except subprocess.TimeoutExpired:
            limit = f" (--build-timeout {timeout:g} s)" if timeout is not None else ""
            where = progress.describe(steps) if steps is not None else None
            progress.say(f"{name}: PPQ worker running, {time.monotonic() - start:.0f} s so far{limit}"
                         + (f": {where}" if where else ""))


def class_score_tensor(model) -> str:
    """The decode's class-score tensor (the Sigmoid output). Layerwise error is measured there: at the
    final output, box coordinates in pixels swamp the signal and every op looks harmless."""
    from quant.model.graph import decode_nodes

    decode = set(decode_nodes(model))
    sig = [n.output[0] for n in model.graph.node if n.name in decode and n.op_type == "Sigmoid"]
    return sig[0] if sig else model.graph.output[0].name


def ranked(analysis: dict) -> list[tuple[str, float | None, float | None]]:
    """(op, graphwise, layerwise), ops over the threshold first, each group by graphwise error."""
    g, lw = analysis["graphwise"], analysis["layerwise"]
    ops = sorted(set(g) | set(lw), key=lambda op: (-(max(g.get(op, 0), lw.get(op, 0)) > THRESHOLD), -g.get(op, 0)))
    return [(op, g.get(op), lw.get(op)) for op in ops]


def write_analysis_markdown(analysis: dict, path: Path, variant: str) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    rows = ranked(analysis)
    over = sum(1 for _, g, lw in rows if max(g or 0, lw or 0) > THRESHOLD)
    lines = [f"# PPQ error analysis: {variant}", "",
             f"Platform {analysis['platform']}, {analysis['images']} images, SNR = noise power / signal power "
             f"(lower is better). {over} of {len(rows)} ops exceed PPQ's {THRESHOLD} threshold (listed first).", "",
             "| op | graphwise (accumulated) | layerwise (alone, at the class scores) |", "|---|---|---|"]
    lines += [f"| {op} | {fmt(g)} | {fmt(lw)} |" for op, g, lw in rows]
    path.write_text("\n".join(lines) + "\n")
