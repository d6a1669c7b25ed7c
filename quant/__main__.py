"""``python -m quant``: the ``quant-bench`` command (:mod:`quant.cli`).

May import: anything in quant.
"""

import sys

from quant.cli import main

if __name__ == "__main__":
    sys.exit(main())
