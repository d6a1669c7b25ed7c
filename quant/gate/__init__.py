"""Judging rows: the limits of a thresholds file and the checks that compare a row with the same run's
baseline (``thresholds``), and the history comparison between two runs (``compare``).

May import: quant.measure, quant.registry, quant.util.
"""
