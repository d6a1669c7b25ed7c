"""Progress of long work (the recipe search, PPQ): one line per step with the elapsed time and an
estimate of what is left, to the terminal and to a log file beside the artifact.

The pytest plugin points :func:`set_sink` at its terminal reporter (output capture would hide plain
prints); elsewhere lines go to stderr. A worker process reports where it is through a small JSON file
(:class:`StepFile`), which the parent reads and words (:func:`describe`) on each heartbeat.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

_sink: Callable[[str], None] | None = None


def set_sink(write: Callable[[str], None] | None) -> None:
    """Where progress lines go (None: stderr)."""
    global _sink
    _sink = write


def say(line: str) -> None:
    if _sink is not None:
        _sink(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _left(seconds: float, done: int, total: int) -> float:
    """Seconds the rest takes at the mean time per item so far (``done`` > 0)."""
    return seconds / done * max(total - done, 0)


class Progress:
    """Counts steps of at most ``total``; each :meth:`step` says what was done, the time so far and,
    from the mean step time, at most how long the rest takes."""

    def __init__(self, what: str, total: int, log: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.log, self.clock = what, total, log, clock
        self.done = 0
        self.start = clock()

    def step(self, message: str) -> str:
        self.done += 1
        elapsed = self.clock() - self.start
        left = _left(elapsed, self.done, self.total)
        line = (f"{self.what}: {self.done}/{self.total} {message} "
                f"[{_clock(elapsed)} elapsed, at most ~{_clock(left)} left]")
        say(line)
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(line + "\n")
        return line


class StepFile:
    """A worker's progress, in one small JSON file rewritten atomically (at most once a second unless a
    step ends): the current step (name, items done of total, its seconds so far) and an outer count
    (e.g. LSQ blocks) with its own seconds. :meth:`history` keeps every step's final count and time."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.monotonic, every: float = 1.0):
        self.path, self.clock, self.every = (Path(path) if path else None), clock, every
        self.start = clock()
        self.step: dict | None = None
        self.outer: dict | None = None
        self.steps: list[dict] = []
        self._written = -1e9

    def begin(self, name: str, total: int | None) -> None:
        self.step = {"name": name, "done": 0, "total": total, "start": self.clock()}
        self.steps.append(self.step)
        self._write(force=True)

    def advance(self, n: int = 1) -> None:
        self.step["done"] += n
        self._write(force=self.step["total"] is not None and self.step["done"] >= self.step["total"])

    def begin_outer(self, name: str, total: int) -> None:
        self.outer = {"name": name, "done": 0, "total": total, "start": self.clock()}
        self._write(force=True)

    def advance_outer(self) -> None:
        self.outer["done"] += 1
        self._write(force=True)

    def history(self) -> list[dict]:
        """Every step so far: name, items done, total, seconds (a step ends where the next begins)."""
        ends = [s["start"] for s in self.steps[1:]] + [self.clock()]
        return [{"name": s["name"], "done": s["done"], "total": s["total"], "seconds": round(end - s["start"], 3)}
                for s, end in zip(self.steps, ends)]

    def _write(self, force: bool = False) -> None:
        now = self.clock()
        if self.path is None or (not force and now - self._written < self.every):
            return
        self._written = now
        state = {"seconds": now - self.start}
        for key, part in (("step", self.step), ("outer", self.outer)):
            if part is not None:
                state[key] = {**{k: part[k] for k in ("name", "done", "total")}, "seconds": now - part["start"]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)


def _phrase(part: dict) -> str:
    """``name done/total``, and from the mean time per item so far, about how long the rest takes."""
    text = f"{part['name']} {part['done']}/{part['total'] if part['total'] is not None else '?'}"
    if part["total"] and part["done"]:
        text += f", ~{_clock(_left(part['seconds'], part['done'], part['total']))} left"
    return text


def describe(path: Path) -> str | None:
    """One phrase for a :class:`StepFile`'s state, e.g. ``LSQ blocks 3/20, ~4m10s left; Tuning Procedure
    120/500, ~20s left``; None when there is none (yet) or it cannot be read."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    parts = [_phrase(state[k]) for k in ("outer", "step") if k in state]
    return "; ".join(parts) or None
