"""Export, quantize and benchmark Ultralytics YOLO detectors (ONNX Runtime, TensorRT, OpenVINO, PPQ)."""

from quant import offline as _offline

_offline.configure()  # before anything imports ultralytics

__version__ = "0.1.0"
