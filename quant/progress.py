"""Progress of long work (the recipe search, PPQ): one line per step with the elapsed time and an
estimate of what is left, to the terminal and to a log file beside the artifact.

The pytest plugin points :func:`set_sink` at its terminal reporter (output capture would hide plain
prints); elsewhere lines go to stderr.
"""

from __future__ import annotations

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
        left = elapsed / self.done * max(self.total - self.done, 0)
        line = (f"{self.what}: {self.done}/{self.total} {message} "
                f"[{_clock(elapsed)} elapsed, at most ~{_clock(left)} left]")
        say(line)
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(line + "\n")
        return line
