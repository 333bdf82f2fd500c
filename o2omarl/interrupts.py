"""Ctrl-C that is never lost in a long loop.

Python raises KeyboardInterrupt wherever the signal lands; when it lands inside a callback
(XLA's garbage-collection hook, during `bench collect`) the exception is printed as "Exception
ignored ..." and swallowed, and the loop carried on to write its dataset. Here the first SIGINT
or SIGTERM only sets a flag that the loop polls between steps, where KeyboardInterrupt is then
raised for real; a second one raises at once. Before any loop, `bench` stops on the first
(`terminate`); if that raise is swallowed, the next loop is handed the signal on entry.
"""

from __future__ import annotations

import contextlib
import signal
import threading

# Whether main()'s handler (`terminate`) received a signal. Its KeyboardInterrupt can be
# swallowed (XLA's gc hook, e.g. while a simulator compiles before a loop starts): the next loop
# that installs a handler (`handling`) is then handed that signal at once.
_received: list[int] = []


def terminate(signum, frame):
    """The handler outside any loop's (`bench`'s main): SIGINT and SIGTERM stop like Ctrl-C,
    and are remembered in case the raise is lost."""
    _received.append(signum)
    raise KeyboardInterrupt


def forget() -> None:
    """A new command starts (main() called in-process again: tests, scripts)."""
    _received.clear()


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
        if _received:  # a stop asked for before this loop began, its raise swallowed
            handler(_received[-1], None)
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
