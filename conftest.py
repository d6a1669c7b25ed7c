"""Repository root: makes `fixtures` importable and turns Ultralytics offline before any test imports it."""

import quant  # noqa: F401
