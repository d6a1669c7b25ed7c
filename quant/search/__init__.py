"""The automatic INT8 recipe, backend-neutral: the search over calibration methods and float sets
(``recipe``), the layerwise sensitivity that ranks layers (``sensitivity``), measured per-layer INT8
savings (``layertime``), a target's own pick among float sets (``float_choice``), and the search's
settings (``settings``). Nothing here builds an artifact or knows a backend: builders hand the search
callables that write and score candidates.

May import: quant.calibration, quant.measure, quant.model, quant.util.
"""
