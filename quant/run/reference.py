"""What ``--compare-to`` names: a recorded run (a report.json, a pytest-benchmark JSON or history id), compared
cross-run, or a commit of quant-bench itself (a git ref such as ``origin/main``, or the path of a checkout), timed
A/B beside this run's code (:mod:`quant.run.ab`).

Everything here is checked before any work: a ref that does not exist, or a checkout whose package cannot be
imported, is one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from quant.util.errors import QuantError

ROOT = Path(__file__).resolve().parents[2]  # the folder holding this run's `quant` package


@dataclass(frozen=True)
class Checkout:
    """A tree of quant-bench's code to time against: ``root`` holds its ``quant`` package; ``name`` is what the
    user gave (a ref or a path), ``commit`` the commit it resolved to (None for a plain folder)."""

    root: Path
    name: str
    commit: str | None = None


def is_checkout(path: Path) -> bool:
    return (Path(path) / "quant" / "__init__.py").is_file()


def _git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def git_commit(ref: str, repo: Path = ROOT) -> str | None:
    """The commit ``ref`` names in the repository holding ``repo``, or None (no such ref, no git, no repository)."""
    if shutil.which("git") is None or ref.startswith("-"):
        return None
    out = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
    return out.stdout.strip() or None if out.returncode == 0 else None


def extract(commit: str, cache: Path, repo: Path = ROOT) -> Path:
    """The commit's files under ``cache/checkouts/<commit>`` (``git archive``, kept for the next run; written to a
    temporary folder first, so a cut-short extraction is never taken for a whole one)."""
    dst = Path(cache) / "checkouts" / commit
    if is_checkout(dst):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=dst.parent))
    try:
        archive = tmp / "tree.tar"
        out = _git("archive", "--format=tar", "-o", str(archive), commit, cwd=repo)
        if out.returncode != 0:
            raise QuantError(f"cannot extract commit {commit[:12]}: {out.stderr.strip() or 'git archive failed'}")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "tree", filter="data")
        os.replace(tmp / "tree", dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def check_importable(root: Path, name: str) -> None:
    """The checkout's package imports, with what the A/B worker calls (one line if not)."""
    code = "import quant.run.options as o, quant.run.session; o.open_session; o.defaults"
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no error message"])[-1]
        raise QuantError(f"--compare-to {name}: its quant package cannot be imported for A/B timing ({last})")


def resolve(ref: str, cache: Path, storage: Path | None = None) -> Checkout | None:
    """The checkout ``--compare-to ref`` names, or None when it names a recorded run (a file, or a history id that
    the history folder holds). One QuantError line when it names neither."""
    path = Path(ref)
    if path.is_file():
        return None
    if path.is_dir():
        if not is_checkout(path):
            raise QuantError(f"--compare-to {ref}: a folder, but not a checkout of quant-bench (no quant/__init__.py)")
        checkout = Checkout(path.resolve(), ref)
    else:
        if storage is not None and any(Path(storage).glob(f"*/{ref}*.json")):
            return None  # a history id
        # the ref in this package's repository (a clone, editable install), else in the current folder's (an
        # installed package run from a checkout of quant-bench, as CI does)
        repo = next((r for r in dict.fromkeys([ROOT, Path.cwd()]) if git_commit(ref, r)), None)
        if repo is None:
            raise QuantError(f"--compare-to {ref}: not a report file, a history id or a git ref of {ROOT} or the "
                             "current folder (give a report.json, a checkout folder, or a ref such as origin/main)")
        commit = git_commit(ref, repo)
        checkout = Checkout(extract(commit, cache, repo), ref, commit)
    check_importable(checkout.root, ref)
    return checkout
