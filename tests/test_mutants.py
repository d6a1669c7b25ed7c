"""tools/mutation_check.py's mutants still aim at the code: each one's text occurs exactly once in its file, so a
refactor cannot quietly turn a mutant into one that plants nothing."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import mutation_check  # noqa: E402


def test_every_mutant_finds_its_line_once():
    stale = [(m.name, m.file) for m in mutation_check.MUTANTS if (ROOT / m.file).read_text().count(m.old) != 1]
    assert stale == []


def test_every_mutant_names_tests_that_exist():
    missing = [(m.name, t) for m in mutation_check.MUTANTS for t in m.tests if not (ROOT / t.split("::")[0]).exists()]
    assert missing == []
