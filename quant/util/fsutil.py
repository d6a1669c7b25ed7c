"""Files and folders: content hashes, and folders written so that readers see a complete tree or nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(out: str | os.PathLike, replace: bool = False):
    """Yield a temp folder beside ``out`` (``.<name>-XXXX``), renamed to ``out`` when the block succeeds:
    readers see a complete tree or nothing; on an exception nothing is kept.

    If ``out`` exists when the block ends: ``replace=False`` keeps it (another process finished the same
    content first); ``replace=True`` removes it first (the caller holds the lock on ``out`` and knows
    what is there is stale or incomplete)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        if replace and out.exists():
            shutil.rmtree(out)
        try:
            os.rename(tmp, out)
        except OSError:
            if replace or not out.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
