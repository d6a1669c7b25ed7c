"""Small helpers every stage uses: one-line errors (``errors``), atomic folders and file hashes
(``fsutil``), where the cache lives (``paths``), Ultralytics kept offline (``offline``), the CPU and its
ISA flags (``hardware``), progress lines for long work (``progress``).

May import: nothing else of quant.
"""
