"""Digests of the project's own source code that a build runs, for code-aware cache keys.

A cached artifact is only as trustworthy as its key: if the key ignored the code, a change to a
calibration method would be served the old, cached model. Each artifact's key therefore holds the
SHA-256 of every project module in the *import closure* of the modules that build it: every
``import quant.x`` / ``from quant.x import y`` anywhere in a module,
at module level or inside a function (and ``importlib.import_module("quant.x")`` with a literal
name), followed transitively. Imports under ``if TYPE_CHECKING:`` never run and are not followed.

Which modules build a variant are the modules its builder functions live in
(:meth:`quant.build.variant.Variant.builders`, :func:`variant_digests`): the same functions the
build calls, so the key cannot drift from what runs. Editing ``quant/report/tables.py`` or
``quant/gate/thresholds.py`` re-keys nothing; editing ``quant/calibration/ranges.py`` re-keys
exactly the variants whose builders import it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `quant` package
PACKAGES = ("quant",)


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


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): a block that never runs."""
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _nodes(tree: ast.AST):
    """Every node of ``tree`` but those inside ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(tree):
        if _type_checking(child):
            yield from (n for branch in child.orelse for n in [branch, *_nodes(branch)])
            continue
        yield child
        yield from _nodes(child)


def dynamic_import(node: ast.AST) -> str | None:
    """The module a call ``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")`` names
    with a literal string, else None."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    value = node.args[0].value
    return value if name in ("import_module", "__import__") and isinstance(value, str) else None


@lru_cache(maxsize=512)
def _imports(path: Path, mtime_ns: int, name: str, root: Path) -> tuple[str, ...]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name if path.name == "__init__.py" else name.rpartition(".")[0])
            for a in node.names:  # `from quant import offline`: a module; `from quant.x import f`: a name in x
                found.add(f"{base}.{a.name}" if module_path(f"{base}.{a.name}", root) else base)
        elif dynamic_import(node):
            found.add(dynamic_import(node))
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


def variant_digests(variant, root: Path = ROOT) -> dict[str, str]:
    """:func:`digests` of the modules ``variant``'s builder functions live in: the code in its artifact's key.
    A builder defined outside the project (your own) counts by its source file alone."""
    import inspect

    modules = {f.__module__: f for f in variant.builders()}
    out = digests(sorted(m for m in modules if module_path(m, root)), root)
    for m, f in modules.items():
        if not module_path(m, root):
            path = Path(inspect.getsourcefile(f))
            st = path.stat()
            out[m] = _file_digest(path, st.st_mtime_ns, st.st_size)
    return out
