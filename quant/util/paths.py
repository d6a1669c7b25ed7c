"""Where the suite keeps generated data and cached artifacts."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$YQB_CACHE_DIR``, else ``~/.cache/yolo-quant-bench``."""
    env = os.environ.get("YQB_CACHE_DIR")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yolo-quant-bench"
