"""PyTorch (the Ultralytics .pt itself) on CPU: the framework baseline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from quant.build.context import BuildContext


def unavailable(variant=None) -> str | None:
    if variant is not None and variant.setting("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
    return None


def eval_args(variant, artifact) -> dict:
    cuda = variant.setting("device") == "cuda"
    return {"device": "0" if cuda else "cpu", "half": variant.precision == "fp16"}


def build(variant, ctx: BuildContext, out_dir: Path):
    out = out_dir / "model.pt"
    shutil.copyfile(ctx.weights, out)  # cached like any artifact: the row reports this exact file
    return out, {}


def runner(variant, artifact: Path, ctx: BuildContext):
    import torch

    from quant.model.weights import load_weights

    model = load_weights(artifact).model.fuse().eval()  # fused Conv+BN, as Ultralytics' validator runs it
    if variant.setting("device", "cpu") == "cpu":
        if ctx.threads:
            torch.set_num_threads(int(ctx.threads))

        def run(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x))

        run.runs_as = {"precision": str(next(model.parameters()).dtype), "threads": torch.get_num_threads(),
                       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}
        return run
    half = variant.precision == "fp16"
    model = model.cuda().half() if half else model.cuda()

    def run_cuda(x):
        with torch.inference_mode():
            t = torch.from_numpy(x).cuda()
            out = model(t.half() if half else t)
            torch.cuda.synchronize()
            return out

    run_cuda.runs_as = {"precision": str(next(model.parameters()).dtype), "device": torch.cuda.get_device_name(0)}
    return run_cuda
