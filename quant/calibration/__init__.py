"""Calibration: images -> letterboxed tensors (``readers``) -> activation statistics (``activations``)
-> per-tensor INT8 ranges (``ranges``: MinMax, Entropy, Percentile, SiLU-aware clipping); and the two
corrections of a Q/DQ model that read calibration images, empirical bias correction (``biascorr``) and
weight rounding by output reconstruction (``rounding``); and that rounding, with a bias correction after it,
on the grid NNCF chose for an OpenVINO model (``ir_rounding``).

May import: quant.model, quant.util.
"""
