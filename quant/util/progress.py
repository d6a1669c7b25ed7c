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
    if _overall is not None and _overall.bar is not None:  # a terminal's bar: the line becomes its detail
        _overall.inner(line.removeprefix(f"{_overall.variant} "))
        return
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


# ---- the run's one overall line ------------------------------------------------------------------
_overall: "Overall | None" = None


class Overall:
    """The run's one progress line, e.g. ``[7/27] ov-int8-auto: building, search 4/12 ... · ~6m00s left``.

    ``bar``: a tqdm line rewritten in place (a terminal); inner progress (:func:`say`) becomes its detail.
    ``lines``: one line per variant and stage (CI logs), inner progress printed as it comes. What is left is
    the mean time of the finished variants times those to go (tqdm's estimate in ``bar`` mode).
    """

    def __init__(self, total: int, write_line: Callable[[str], None], bar_file=None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.write_line, self.clock = total, write_line, clock
        self.done, self.index, self.variant, self.what, self.detail = 0, 0, "", "", ""
        self.start = self.began = clock()
        self.bar = None
        if bar_file is not None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=bar_file, dynamic_ncols=True, leave=False, mininterval=0.5,
                            bar_format="{desc} {bar:12} {elapsed}<{remaining}")

    def left(self) -> str:
        """About how long the variants to go take: the finished ones' mean time each, less what the one under way
        has taken so far ('' before the first has finished)."""
        if not self.done:
            return ""
        now = self.clock()
        mean = (self.began - self.start if self.index > self.done else now - self.start) / self.done
        current = now - self.began if self.index > self.done else 0.0  # the variant under way, so far
        return f"~{_clock(max(mean * (self.total - self.done) - current, 0.0))} left"

    def line(self) -> str:
        parts = [p for p in (self.what, self.detail) if p]
        text = f"[{self.index}/{self.total}] {self.variant}: {', '.join(parts)}"
        left = self.left()
        return f"{text} · {left}" if left else text

    def _show(self, new_line: bool = True) -> None:
        if self.bar is not None:
            detail = ", ".join(p for p in (self.what, self.detail) if p)
            self.bar.set_description_str(f"[{self.index}/{self.total}] {self.variant}: {detail}", refresh=True)
        elif new_line:
            self.write_line(self.line())

    def begin(self, variant: str, what: str = "building") -> None:
        self.index, self.began = min(self.done + 1, self.total), self.clock()
        self.variant, self.what, self.detail = variant, what, ""
        self._show()

    def stage(self, what: str) -> None:
        if what != self.what:
            self.what, self.detail = what, ""
            self._show()

    def inner(self, text: str) -> None:
        """Progress inside a stage (a search trial, a PPQ step): the bar's detail; in ``lines`` mode the caller
        prints the line itself."""
        self.detail = text
        self._show(new_line=False)

    def end(self, outcome: str) -> None:
        self.done += 1
        self.what, self.detail = outcome, ""
        if self.bar is not None:
            self.bar.update(1)
        self._show()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def start_overall(overall: Overall | None) -> None:
    """Make ``overall`` the run's progress line (None: none)."""
    global _overall
    _overall = overall


def stage(what: str, variant: str | None = None) -> None:
    """The current variant's stage (validating, fidelity, timing), on the overall line if there is one; ``variant``:
    the one the stage is for, where it is another (the baseline, measured within a variant's test)."""
    if _overall is not None:
        _overall.stage(what if variant in (None, _overall.variant) else f"{variant} {what}")
