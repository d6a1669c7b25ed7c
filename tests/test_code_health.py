"""Structure checks that keep the package easy to change: no import cycle inside quant/ (imports inside
functions and importlib calls count), no module of quant imported by a name string, each stage importing only
what its docstring allows, no function longer than about 60 lines without a stated reason."""

from __future__ import annotations

import ast
from pathlib import Path

from quant.run import codehash

ROOT = Path(__file__).resolve().parents[1]
LONG_FUNCTIONS: dict[tuple[str, str], str] = {}  # (module, function): why it is longer than 60 lines


def _modules(root: Path = ROOT) -> list[str]:
    out = []
    for p in sorted((root / "quant").rglob("*.py")):
        parts = p.relative_to(root).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _imports(module: str, root: Path = ROOT) -> list[str]:
    path = codehash.module_path(module, root)
    return [m for m in codehash._imports(path, path.stat().st_mtime_ns, module, root) if m != module]


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in graph.get(m, []):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state:
                found = visit(d, path + [d])
                if found:
                    return found
        state[m] = 2
        return None

    for m in graph:
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": [], "c": ["a"]}) is None


def test_no_import_cycle_in_quant():
    graph = {m: _imports(m) for m in _modules()}
    assert len(graph) > 20
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def _dynamic_imports(root: Path = ROOT) -> list[str]:
    """Every ``importlib.import_module`` / ``__import__`` of a quant module by a literal name, as ``file: module``."""
    out = []
    for p in sorted((root / "quant").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            name = codehash.dynamic_import(node)
            if name and name.split(".")[0] == "quant":
                out.append(f"{p.relative_to(root).as_posix()}: {name}")
    return out


def test_no_module_of_quant_is_imported_by_a_name_string():
    """Builders are functions the registry imports, so go-to-definition and the import graph see every edge;
    none is left that only an import by name would reach."""
    assert _dynamic_imports() == []


def test_a_cycle_hidden_in_a_function_level_importlib_call_is_found(tmp_path):
    """Plant ``importlib.import_module("quant.run.session")`` inside a function of a low module: the dynamic-import
    scan names it, and the cycle test, which follows such calls, fails on the cycle it closes."""
    import shutil

    shutil.copytree(ROOT / "quant", tmp_path / "quant", ignore=shutil.ignore_patterns("__pycache__"))
    low = tmp_path / "quant" / "measure" / "row.py"
    low.write_text(low.read_text() + "\n\ndef _hidden():\n    import importlib\n\n"
                   "    return importlib.import_module(\"quant.run.session\")\n")
    assert _dynamic_imports(tmp_path) == ["quant/measure/row.py: quant.run.session"]
    cycle = _cycle({m: _imports(m, tmp_path) for m in _modules(tmp_path)})
    assert cycle is not None and "quant.measure.row" in cycle and "quant.run.session" in cycle


def _stage(module: str) -> str:
    """The stage a module of quant belongs to: its subpackage, or the top-level module's own name."""
    return module.split(".")[1] if "." in module else "quant"


def _may_import(stage: str, root: Path = ROOT) -> set[str] | None:
    """The stages a stage's docstring says it may import ("May import: quant.x, quant.y."); None: anything."""
    path = root / "quant" / stage / "__init__.py"
    path = path if path.is_file() else root / "quant" / f"{stage}.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    line = next((ln for ln in doc.split("\n\n") if ln.startswith("May import:")), None)
    assert line is not None, f"{path.relative_to(root)}: its docstring says nothing of what it may import"
    if "anything in quant" in line:
        return None
    return {w.removeprefix("quant.").strip(".,()") for w in line.split() if w.startswith("quant.")}


def _out_of_bounds(root: Path = ROOT) -> list[str]:
    """Every import of a stage that its docstring does not allow."""
    stages = sorted({_stage(m) for m in _modules(root)} - {"quant"})
    allowed = {s: _may_import(s, root) for s in stages}
    return [f"{m} imports {d}" for m in _modules(root) if _stage(m) in allowed and allowed[_stage(m)] is not None
            for d in _imports(m, root) if _stage(d) not in {_stage(m), "quant"} | allowed[_stage(m)]]


def test_each_stage_imports_only_what_its_docstring_allows(tmp_path):
    """Every subpackage (and the registry) states what it may import; lower stages never import higher ones. A
    builder importing a backend, planted in a copy, is named."""
    import shutil

    stages = {_stage(m) for m in _modules()}
    assert {"util", "model", "calibration", "measure", "search", "build", "backends", "registry", "gate", "report",
            "run"} <= stages, stages
    assert _out_of_bounds() == []
    shutil.copytree(ROOT / "quant", tmp_path / "quant", ignore=shutil.ignore_patterns("__pycache__"))
    qdq = tmp_path / "quant" / "build" / "qdq.py"
    qdq.write_text(qdq.read_text() + "\n\ndef _runner():\n    from quant.backends import onnxruntime\n")
    assert _out_of_bounds(tmp_path) == ["quant.build.qdq imports quant.backends.onnxruntime"]


def test_no_function_longer_than_60_lines_without_a_reason():
    long = []
    for p in sorted((ROOT / "quant").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                if (rel, n.name) not in LONG_FUNCTIONS:
                    long.append(f"{rel}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)")
    assert not long, long


BUILD_MODULES = ["quant/backends/" + p.name for p in sorted((ROOT / "quant" / "backends").glob("*.py"))
                 if p.name != "__init__.py"] + ["quant/build/" + p.name for p in sorted((ROOT / "quant" / "build").glob("*.py"))
                                                if p.name != "__init__.py"] + ["quant/search/float_choice.py"]


def _ctx_uses(path: Path) -> set[str]:
    """Every ``ctx.<name>`` the module reads, where ``ctx`` is a function parameter."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ctx":
            used.add(node.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and \
                getattr(node.args[0], "id", None) == "ctx":
            used.add(f"getattr:{ast.unparse(node.args[1])}")  # dynamic access defeats the contract
    return used


def test_builds_use_only_the_build_context():
    """Backends and builders ask the context for what quant.build.context.BuildContext names, nothing else,
    and the run's Builder provides all of it."""
    from quant.build.context import BuildContext
    from quant.run.builder import Builder

    members = {n for n in dir(BuildContext) if not n.startswith("_")} | set(BuildContext.__annotations__)
    for module in BUILD_MODULES:
        extra = _ctx_uses(ROOT / module) - members
        assert not extra, f"{module} reads ctx.{sorted(extra)} outside quant.build.context.BuildContext"
    assert all(hasattr(Builder, m) or m in Builder.__dataclass_fields__ for m in members), members
    assert "ctx" not in (ROOT / "quant/search/recipe.py").read_text()  # the recipe itself sees no context


def test_ctx_use_finder_sees_attribute_and_getattr_reads(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def build(v, ctx):\n    return ctx.cache.root, getattr(ctx, 'secret', None)\n")
    assert _ctx_uses(p) == {"cache", "getattr:'secret'"}
