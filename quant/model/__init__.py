"""The user's model and data as the suite reads them: the weights (load, check the input size, export
to ONNX: ``weights``), the structure of an exported YOLO ONNX (box decode, head, what stays float as a
``FloatScope`` value: ``graph``), data YAMLs and image folders (``data``), the data checks made before any
work (``preflight``), and a folder of unlabeled images split into calibration, search and validation
images (``labelfree``).

May import: quant.util.
"""
