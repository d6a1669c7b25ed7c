"""Runs PPQ in its own process: ``python -m quant.build.ppq_worker job.json``.

The job (written by :mod:`quant.build.ppq`) names the FP32 ONNX, the calibration images, the
target platform, the float nodes and the analysis budget. Outputs: the exported Q/DQ ONNX (ONNX
Runtime format, which every PPQ platform can be evaluated as) and ``error_analysis.json``.

Progress: PPQ counts its own work with tqdm bars (calibration phases, LSQ's reference collection and
tuning steps, the error analyses) that nobody sees from a worker. Here they feed a
:class:`quant.util.progress.StepFile` (the job's ``progress``), with LSQ's blocks as the outer count, which the
suite reads on each heartbeat; the steps' counts and times are kept in ``error_analysis.json``.
"""

from __future__ import annotations

import json
import sys
import time

from quant.util.progress import StepFile


def counting_bar(steps: StepFile):
    """A stand-in for ``tqdm.tqdm`` (the calls PPQ makes) that counts into ``steps`` and draws nothing."""

    class Bar:
        def __init__(self, iterable=None, desc=None, total=None, *args, **kwargs):
            if total is None and iterable is not None and hasattr(iterable, "__len__"):
                total = len(iterable)
            self.iterable, self.total, self.n = iterable, total, 0
            steps.begin(str(desc or "PPQ").strip(" #:.") or "PPQ", total)

        def __iter__(self):
            for item in self.iterable:
                yield item
                self.update()

        def __len__(self):
            return self.total or 0

        def update(self, n=1):
            self.n += n
            steps.advance(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def close(self, *args, **kwargs):
            pass

        set_description = set_postfix = refresh = close

        @staticmethod
        def write(text, *args, **kwargs):
            print(text, file=sys.stderr)

    return Bar


def count_lsq_blocks(steps: StepFile) -> None:
    """LSQ tunes the network block by block: the blocks are the outer count."""
    from ppq.quantization.optim.training import LearnedStepSizePass

    split, finetune = LearnedStepSizePass.split_graph_into_blocks, LearnedStepSizePass.finetune

    def counted_split(self, *args, **kwargs):
        blocks = split(self, *args, **kwargs)
        steps.begin_outer("LSQ blocks", len(blocks))
        return blocks

    def counted_finetune(self, *args, **kwargs):
        result = finetune(self, *args, **kwargs)
        steps.advance_outer()
        return result

    LearnedStepSizePass.split_graph_into_blocks, LearnedStepSizePass.finetune = counted_split, counted_finetune


def main(job_path: str) -> None:
    from quant.build import ppq_compat

    ppq_compat.apply()  # before anything imports protobuf/onnx
    import tqdm

    job = json.loads(open(job_path).read())
    steps = StepFile(job.get("progress"))
    tqdm.tqdm = counting_bar(steps)  # before PPQ's modules bind it
    import onnx
    import torch

    from quant.calibration.readers import letterbox, read_image

    ppq_compat.check_opset(onnx.load(job["src"], load_external_data=False))
    from ppq import QuantizationSettingFactory, TargetPlatform
    from ppq.api import export_ppq_graph, quantize_onnx_model
    from ppq.quantization.analyse import graphwise_error_analyse, layerwise_error_analyse

    count_lsq_blocks(steps)
    imgsz = job["imgsz"]
    calib = [torch.from_numpy(letterbox(read_image(f), imgsz)) for f in job["calib_files"]]
    setting = QuantizationSettingFactory.default_setting()
    for name in job["float_nodes"]:
        setting.dispatching_table.append(name, TargetPlatform.FP32)
    if job["lsq_steps"]:
        setting.lsq_optimization = True
        setting.lsq_optimization_setting.steps = job["lsq_steps"]
        setting.lsq_optimization_setting.collecting_device = "cpu"
    platform = getattr(TargetPlatform, job["platform"])
    t0 = time.time()
    graph = quantize_onnx_model(onnx_import_file=job["src"], calib_dataloader=calib,
                                calib_steps=max(8, job["calib_steps"]), input_shape=[1, 3, imgsz, imgsz],
                                platform=platform, setting=setting, device="cpu", verbose=0)
    quantize_s = time.time() - t0
    data = calib[: job["analysis_images"]]
    t0 = time.time()
    graphwise = graphwise_error_analyse(graph=graph, running_device="cpu", dataloader=data, method="snr",
                                        steps=len(data), verbose=False)
    graphwise_s = time.time() - t0
    t0 = time.time()
    layerwise = layerwise_error_analyse(graph=graph, dataloader=data, running_device="cpu", method="snr",
                                        steps=max(1, len(data) - 1), verbose=False,  # it reads steps + 1 batches
                                        interested_outputs=[job["score_output"]])
    layerwise_s = time.time() - t0
    # every platform is evaluated as ONNX Runtime Q/DQ; PPL_CUDA's INT32 bias needs quantized parameters
    export_ppq_graph(graph, platform=TargetPlatform.ONNXRUNTIME, graph_save_to=job["out"],
                     quantized_param=job["platform"] == "PPL_CUDA_INT8")
    json.dump({"platform": job["platform"], "method": "snr (noise power / signal power)",
               "images": len(data), "layerwise_measured_at": job["score_output"], "seconds": {"quantize": quantize_s, "graphwise": graphwise_s,
                                                "layerwise": layerwise_s},
               "steps": steps.history(),
               "graphwise": {k: float(v) for k, v in graphwise.items()},
               "layerwise": {k: float(v) for k, v in layerwise.items()}},
              open(job["analysis"], "w"), indent=1)


if __name__ == "__main__":
    from quant.util.offline import NetworkGuard, configure

    configure()
    with NetworkGuard() as guard:  # PPQ has no business on the network either
        main(sys.argv[1])
    if guard.attempts:
        sys.exit(f"PPQ tried to reach the network: {guard.attempts[:3]}")
