"""Backends are runtimes, one module each: whether a variant can run here, the batch-1 call its latency is
measured on, and how Ultralytics' validator runs the artifact (``base.Backend`` names the hooks, with no-op
defaults). ONNX Runtime (``onnxruntime``), OpenVINO (``openvino``), TensorRT engines with their CPU stand-in
(``tensorrt``), PyTorch (``pytorch``). A backend builds nothing: builders live in quant.build, and each
variant names its own.

May import: quant.build, quant.measure, quant.model, quant.util.
"""
