"""PyTorch (the Ultralytics .pt itself) on CPU: the framework baseline."""

from __future__ import annotations

import shutil
from pathlib import Path


def unavailable(variant=None) -> str | None:
    return None


def build(variant, ctx, out_dir: Path):
    out = out_dir / "model.pt"
    shutil.copyfile(ctx.weights, out)  # cached like any artifact: the row reports this exact file
    return out, {}


def runner(artifact: Path, ctx):
    import torch

    from quant.model import load_weights

    model = load_weights(artifact).model.fuse().eval()  # fused Conv+BN, as Ultralytics' validator runs it

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return run
