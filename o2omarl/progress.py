"""One progress line for long work: rate, a metric or two, and an ETA, on stderr.

On a terminal the line rewrites itself; in logs and CI it prints at most every `every` seconds so
output stays readable.
"""

from __future__ import annotations

import sys
import time


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# Where progress lines go instead of the stream: a worker of a parallel `bench run` forwards
# (label, line) to its parent, which shows one live line per job (`Board`).
_sink = None


def set_sink(fn) -> None:
    global _sink
    _sink = fn


def warn(msg: str, stream=None) -> None:
    """One line, `warning: ...`, on stderr (on its own line, even under a live progress line)."""
    stream = stream or sys.stderr
    stream.write(("\r\033[K" if stream.isatty() else "") + f"warning: {msg}\n")
    stream.flush()


class Progress:
    def __init__(self, label: str, total: int, unit: str, every: float = 5.0, stream=None,
                 rate_unit: str | None = None, start_at: int = 0):
        self.label, self.total, self.unit = label, total, unit
        self.start_at = start_at  # work already done before (a resumed run): not in the pace
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty or _sink else every
        self.start = self._last = time.monotonic()
        self.rate_unit = rate_unit or unit

    def update(self, done: int, extra: str = "", rate: float | None = None, force=False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.start
        rate = rate if rate is not None else (done - self.start_at) / max(elapsed, 1e-9)
        # ETA from the overall pace of `done`, whatever unit the displayed rate is in.
        pace = (done - self.start_at) / max(elapsed, 1e-9)
        eta = (self.total - done) / pace if pace > 0 else float("inf")
        self.extra = extra = extra or getattr(self, "extra", "")  # keep the last win rate shown
        line = (
            f"{self.label}: {done}/{self.total} {self.unit} | {rate:,.0f} {self.rate_unit}/s"
            + (f" | {extra}" if extra else "")
            + f" | ETA {fmt_duration(eta) if eta != float('inf') else '?'}"
        )
        if _sink is not None:
            _sink(self.label, line)
        elif self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and _sink is None:
            self.stream.write("\n")
            self.stream.flush()


class Board:
    """One live line per parallel job. On a terminal the lines are redrawn in place under the
    messages; elsewhere (logs, CI) each job's line is printed at most every `every` seconds."""

    def __init__(self, stream=None, every: float = 10.0, out=None):
        self.stream = stream or sys.stderr  # the live lines
        self.out = out or sys.stdout  # messages, where a single-job run prints them too
        self.tty = self.stream.isatty()
        self.every, self.lines, self.shown, self.last = every, {}, 0, {}

    def update(self, key: str, line: str) -> None:
        self.lines[key] = line
        if self.tty:
            self._redraw()
        elif time.monotonic() - self.last.get(key, -1e9) >= self.every:
            self.last[key] = time.monotonic()
            self.stream.write(line + "\n")
            self.stream.flush()

    def remove(self, key: str) -> None:
        self.lines.pop(key, None)
        if self.tty:
            self._redraw()

    def say(self, msg: str) -> None:
        """A message (on stdout) above the live lines (on stderr)."""
        if self.tty:
            self._clear()
            self.stream.flush()
        self.out.write(msg + "\n")
        self.out.flush()
        if self.tty:
            self._redraw()

    def _clear(self) -> None:
        if self.shown:
            self.stream.write(f"\033[{self.shown}F\033[J")
            self.shown = 0

    def _redraw(self) -> None:
        self._clear()
        for line in self.lines.values():
            self.stream.write(line + "\n")
        self.shown = len(self.lines)
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._clear()
            self.stream.flush()
