"""Structure checks that keep the package easy to change: no import cycle inside quant/ (imports inside
functions count), no function longer than about 60 lines without a stated reason."""

from __future__ import annotations

import ast
from pathlib import Path

from quant import codehash

ROOT = Path(__file__).resolve().parents[1]
LONG_FUNCTIONS = {  # (module, function): why it is longer than 60 lines
    ("quant/autoselect.py", "search"): "one search loop with its stop/return paths; split with the search rework",
    ("quant/autoselect.py", "auto_quantize"): "the search glue: to become a backend-neutral recipe object",
}


def _modules() -> list[str]:
    out = []
    for p in sorted((ROOT / "quant").rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _imports(module: str) -> list[str]:
    path = codehash.module_path(module, ROOT)
    return [m for m in codehash._imports(path, path.stat().st_mtime_ns, module, ROOT) if m != module]


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


def test_no_function_longer_than_60_lines_without_a_reason():
    long = []
    for p in sorted((ROOT / "quant").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                if (rel, n.name) not in LONG_FUNCTIONS:
                    long.append(f"{rel}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)")
    assert not long, long
