"""PyTorch (the Ultralytics .pt itself): the framework baseline, on the CPU or, for ``pt-fp16``, a CUDA GPU."""

from __future__ import annotations

import os
from pathlib import Path

from quant.backends.base import Backend
from quant.build.variant import Device


class PyTorch(Backend):
    name = "pytorch"

    def unavailable(self, variant=None) -> str | None:
        if variant is not None and variant.runtime.device == Device.CUDA:
            import torch

            if not torch.cuda.is_available():
                return "no CUDA GPU visible to torch"
        return None

    def eval_args(self, variant, artifact) -> dict:
        cuda = variant.runtime.device == Device.CUDA
        return {"device": "0" if cuda else "cpu", "half": variant.precision == "fp16"}

    def runner(self, variant, artifact: Path, ctx):
        import torch

        from quant.model.weights import load_weights

        model = load_weights(artifact).model.fuse().eval()  # fused Conv+BN, as Ultralytics' validator runs it
        if variant.runtime.device == Device.CPU:
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


PYTORCH = PyTorch()
