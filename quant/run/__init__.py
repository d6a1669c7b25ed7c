"""One benchmark run: the command-line options and their checks (``options``), the session that measures
and gates each variant (``session``), the run's inputs, artifacts and evaluations (``suite``), the
artifact and result caches (``cache``) and the code digests in their keys (``codehash``).

May import: anything in quant.
"""
