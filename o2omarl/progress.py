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


class Progress:
    def __init__(self, label: str, total: int, unit: str, every: float = 5.0, stream=None,
                 rate_unit: str | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.start = self._last = time.monotonic()
        self.rate_unit = rate_unit or unit

    def update(self, done: int, extra: str = "", rate: float | None = None, force=False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.start
        rate = rate if rate is not None else done / max(elapsed, 1e-9)
        # ETA from the overall pace of `done`, whatever unit the displayed rate is in.
        pace = done / max(elapsed, 1e-9)
        eta = (self.total - done) / pace if pace > 0 else float("inf")
        line = (
            f"{self.label}: {done}/{self.total} {self.unit} | {rate:,.0f} {self.rate_unit}/s"
            + (f" | {extra}" if extra else "")
            + f" | ETA {fmt_duration(eta) if eta != float('inf') else '?'}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
