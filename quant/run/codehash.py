"""Digests of the project's own source code that a build runs, for code-aware cache keys.

A cached artifact is only as trustworthy as its key: if the key ignored the code, a change to a
calibration method would be served the old, cached model. Each artifact's key therefore holds the
SHA-256 of every project module in the *import closure* of the modules that build it: every
``import quant.x`` / ``from quant.x import y`` / ``from fixtures import z`` anywhere in a module,
at module level or inside a function, followed transitively. A module may also name modules it
runs without importing them (a worker started with ``python -m``) in a module-level
``RUNS_MODULES = ("quant.backends.ppq_worker",)``.

Which modules build a variant is declared by its backend (``quant.backends.code_entries``) and is
the same value the build is dispatched through, so the declaration cannot drift from what runs.
Editing ``quant/report/tables.py`` or ``quant/gate/thresholds.py`` re-keys nothing; editing
``quant/calibration/ranges.py`` re-keys exactly the variants whose builders import it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `quant` and `fixtures` packages
PACKAGES = ("quant", "fixtures")


def module_path(name: str, root: Path = ROOT) -> Path | None:
    """The source file of a project module (``quant.x`` -> quant/x.py or quant/x/__init__.py)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module an ``from X import ...`` names (``package``: the importing module's package)."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


@lru_cache(maxsize=512)
def _imports(path: Path, mtime_ns: int, name: str, root: Path) -> tuple[str, ...]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name if path.name == "__init__.py" else name.rpartition(".")[0])
            for a in node.names:  # `from quant import offline`: a module; `from quant.x import f`: a name in x
                found.add(f"{base}.{a.name}" if module_path(f"{base}.{a.name}", root) else base)
        elif (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RUNS_MODULES" for t in node.targets)
              and isinstance(node.value, (ast.Tuple, ast.List))):
            found.update(e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return tuple(sorted(m for m in found if module_path(m, root)))


def closure(entries, root: Path = ROOT) -> list[str]:
    """Every project module reachable from ``entries`` by imports (sorted)."""
    seen: set[str] = set()
    todo = [e for e in entries if module_path(e, root)]
    missing = [e for e in entries if not module_path(e, root)]
    if missing:
        raise ValueError(f"not a module of this project: {', '.join(missing)}")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(name, root)
        todo.extend(_imports(path, path.stat().st_mtime_ns, name, root))
    return sorted(seen)


@lru_cache(maxsize=512)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(entries, root: Path = ROOT) -> dict[str, str]:
    """``{module: sha256 of its source}`` for the import closure of ``entries``."""
    out = {}
    for name in closure(entries, root):
        p = module_path(name, root)
        st = p.stat()
        out[name] = _file_digest(p, st.st_mtime_ns, st.st_size)
    return out


def combined(d: dict[str, str]) -> str:
    """One digest of a ``digests()`` result."""
    return hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(d.items())).encode()).hexdigest()
