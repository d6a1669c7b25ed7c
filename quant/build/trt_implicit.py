"""TensorRT <= 10's implicit INT8 (the path of the YOLOv8n COCO128 report this suite grew from): the FP32 ONNX
built with builder flags and one of TensorRT's own calibrators (``IInt8MinMaxCalibrator``, ``IInt8EntropyCalibrator2``,
``IInt8EntropyCalibrator``, ``IInt8LegacyCalibrator``), fed by the suite's calibration reader; the box decode
pinned to FP32 as in every variant. There is no CPU stage: these variants skip without an engine.
"""

from __future__ import annotations

from pathlib import Path

from quant.build import trt_engine
from quant.build.context import BuildContext
from quant.calibration.readers import reader_for
from quant.util.errors import QuantError


def engine(variant, ctx: BuildContext, onnx_path: Path) -> tuple[Path, dict]:
    """The implicit INT8 engine of the FP32 ``onnx_path`` (calibrator ``variant.implicit``)."""
    def configure(trt, network, config, engine_path: Path) -> None:
        import onnx

        from quant.model.graph import decode_nodes

        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pin_fp32(network, decode_nodes(onnx.load(str(onnx_path))), trt.float32)  # the box decode, as everywhere
        reader = reader_for(ctx.calibration_files(), ctx.imgsz, network.get_input(0).name)
        config.int8_calibrator = make_calibrator(variant.implicit, reader, engine_path.with_name("calibration.cache"))

    return trt_engine.build(variant, ctx, onnx_path, configure)


def _expands(layer_name: str, node: str) -> bool:
    """TensorRT names a layer after its ONNX node, and suffixes the layers one node expands into."""
    return layer_name == node or any(layer_name.startswith(node + sep) for sep in ("_", " ", "/", ".", "(", "["))


def pin_fp32(network, nodes, float32) -> list[str]:
    """Constrain the layers of ``nodes`` (and what TensorRT expanded them into) to FP32: their precision
    and their output types. Fails when nothing matched (the constraint would silently constrain nothing)."""
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if any(_expands(layer.name, n) for n in nodes):
            layer.precision = float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, float32)
            pinned.append(layer.name)
    if nodes and not pinned:
        raise QuantError(f"no TensorRT layer matched the {len(nodes)} box decode nodes (e.g. '{list(nodes)[0]}'): "
                         "the decode cannot be kept FP32")
    return pinned


def make_calibrator(kind, reader, cache_file: Path):
    """One of TensorRT's implicit calibrators, fed by the suite's reader through torch device buffers."""
    import tensorrt as trt
    import torch

    base = {"minmax": trt.IInt8MinMaxCalibrator, "entropy2": trt.IInt8EntropyCalibrator2,
            "entropy": trt.IInt8EntropyCalibrator, "legacy": trt.IInt8LegacyCalibrator}[kind]

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self.batches = iter(reader.tensors())
            self.device = None

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            x = next(self.batches, None)
            if x is None:
                return None
            self.device = torch.from_numpy(x).cuda()  # kept alive until the next call
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache):
            cache_file.write_bytes(bytes(cache))

        # IInt8LegacyCalibrator's extra knobs; TensorRT documents no defaults: these are the values of its
        # own samples (keep the 99.99th percentile, no regression cutoff)
        def get_quantile(self):
            return 0.9999

        def get_regression_cutoff(self):
            return 1.0

        def read_histogram_cache(self, length):
            return None

        def write_histogram_cache(self, data, length):
            return None

    return Calibrator()


