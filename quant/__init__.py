"""Export, quantize and benchmark Ultralytics YOLO detectors (ONNX Runtime, TensorRT, OpenVINO, PPQ).

Importing the package does nothing to the process. Entry points (the pytest plugin, ``python -m
quant``, the PPQ worker) call :func:`quant.util.offline.configure` first; every path into Ultralytics goes
through :mod:`quant.util.offline`, which configures on first use, so no download is ever attempted.
"""

__version__ = "0.1.0"
