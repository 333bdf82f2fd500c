"""Ctrl-C that is never lost in a long loop.

Python raises KeyboardInterrupt wherever the signal lands; when it lands inside a callback
(XLA's garbage-collection hook, during `bench collect`) the exception is printed as "Exception
ignored ..." and swallowed, and the loop carried on to write its dataset. Here the first SIGINT
or SIGTERM only sets a flag that the loop polls between steps, where KeyboardInterrupt is then
raised for real; a second one raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Deferred:
    def __init__(self):
        self.pending = False

    def __call__(self) -> bool:
        return self.pending

    def check(self) -> None:
        """Raise KeyboardInterrupt here if a signal came since entering."""
        if self.pending:
            raise KeyboardInterrupt

    def _handle(self, signum, frame):
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True


@contextlib.contextmanager
def deferred():
    """Within: SIGINT/SIGTERM set the flag of the yielded `Deferred` (outside the main thread,
    where signals never arrive, it is never set)."""
    flag = Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    old = {s: signal.signal(s, flag._handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
