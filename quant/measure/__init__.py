"""Measuring one variant: accuracy with Ultralytics' validator (``evaluate``), label-free fidelity
against the FP32 model's own detections (``fidelity``), per-image statistics and the paired bootstrap
interval of a difference (``imagestats``), where accuracy went by class (``classloss``), paired latency
(``latency``), where a model's time goes by precision from its runtime's profile (``profile``), mAP50-95
from raw outputs held in memory (``boxmap``), and the row that holds a variant's figures (``row``).

May import: quant.model, quant.util.
"""
