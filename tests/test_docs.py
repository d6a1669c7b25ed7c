"""The documents say what the code does: one default per limit wherever it is written, the README's shape,
and the docs site's links (``mkdocs build --strict`` in CI checks the rest)."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from quant.gate.thresholds import HISTORY_DEFAULTS, LIMITS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _docs_limits() -> dict[str, tuple[str, str]]:
    """key -> (unit, default) from the keys table of docs/guide/gates.md."""
    out = {}
    for line in (DOCS / "guide" / "gates.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[0].strip("`") in LIMITS:
            unit = re.sub(r"\s*\(.*\)$", "", cells[1]).replace("`", "")
            out[cells[0].strip("`")] = (unit, cells[3])
    return out


def test_max_latency_regression_has_one_default_in_code_file_cli_and_docs():
    code = HISTORY_DEFAULTS["max_latency_regression"]
    in_file = tomllib.loads((ROOT / "quant" / "gate" / "thresholds.toml").read_text())["defaults"]["max_latency_regression"]
    helptext = subprocess.run([sys.executable, "-m", "quant", "compare", "--help"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    in_help = float(re.search(r"max_latency_regression = ([0-9.]+)", " ".join(helptext.split())).group(1))
    in_docs = float(_docs_limits()["max_latency_regression"][1])
    assert {code, in_file, in_help, in_docs} == {0.25}, (code, in_file, in_help, in_docs)


def test_the_docs_keys_table_is_the_codes():
    docs = _docs_limits()
    assert set(docs) == set(LIMITS)
    for key, limit in LIMITS.items():
        unit, default = docs[key]
        assert unit == limit.unit, key
        assert default == ("none" if limit.default is None else f"{limit.default:g}"), key


def test_readme_is_short_and_starts_with_the_users_model():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    first = "\n".join(lines[:60])
    assert re.search(r"pytest benchmarks/ --weights \S+\.pt", first), "the own-model command is not in the first 60 lines"
    blocks = re.findall(r"```bash\n(.*?)```", "\n".join(lines), re.S)
    assert "pytest benchmarks/" in blocks[0] and "pytest tests/" in blocks[1]  # the two fresh-machine commands


def test_readme_links_into_the_docs_resolve():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert links, "the README links into the docs"
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")]
    assert [p for p in pages if p not in nav] == []


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def test_every_report_key_is_documented():
    """docs/guide/report-json.md lists every key report.json can hold: the Row's fields and the header's."""
    import dataclasses
    import inspect

    from quant.measure.row import Row
    from quant.run import benchrun, session

    page = (DOCS / "guide" / "report-json.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_]+)`", page))
    fields = {f.name for f in dataclasses.fields(Row)}
    header = set(re.findall(r'"([a-z0-9_]+)": ', inspect.getsource(session.BenchSession.header)))
    header |= set(re.findall(r'"([a-z0-9_]+)": self\.guard', inspect.getsource(benchrun)))
    assert "accuracy_unit" in header and "network_attempts" in header
    assert sorted((fields | header) - documented) == []


def test_every_option_is_in_the_users_guide():
    from quant.run.options import DEPRECATED, OPTIONS

    page = (DOCS / "guide" / "own-model.md").read_text()
    assert [flag for flag in [*OPTIONS, *DEPRECATED] if f"`{flag}" not in page] == []


def test_ci_runs_the_readmes_test_command_and_builds_the_site():
    readme = (ROOT / "README.md").read_text()
    test_command = re.findall(r"```bash\n(.*?)```", readme, re.S)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci
    assert "mkdocs build --strict" in ci
