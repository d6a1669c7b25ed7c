"""Builders: functions ``build(variant, ctx, out_dir) -> (artifact path, manifest info)`` that make an
artifact from the FP32 ONNX, asking ``ctx`` (a ``BuildContext``, ``context``) for their inputs: static
Q/DQ INT8 (``qdq``), the searched recipe's Q/DQ (``auto_qdq``), FP16 and mixed INT8/FP16 ONNX
(``fp16``), NNCF's OpenVINO IR (``nncf_ir``) and Q/DQ ONNX (``nncf_qdq``), and OpenVINO IR folders
(``ir``). A builder never imports a backend: each backend names the builder functions it uses.

May import: quant.calibration, quant.measure, quant.model, quant.search, quant.util.
"""
