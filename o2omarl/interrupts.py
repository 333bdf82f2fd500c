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
def handling(handler):
    """Within: `handler(signum, frame)` receives SIGINT and SIGTERM. Outside the main thread
    (e.g. a Ray task), where signals never arrive, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred():
    """Within: SIGINT/SIGTERM set the flag of the yielded `Deferred`."""
    flag = Deferred()
    with handling(flag._handle):
        yield flag
