"""A stop asked for before any loop polls for it is never lost: `bench`'s own handler raises
KeyboardInterrupt, and where a callback swallows that raise (XLA's garbage-collection hook, while
a simulator compiles before the loop starts) the next loop is handed the signal on entry."""

from __future__ import annotations

import gc
import os
import signal

import pytest

from o2omarl import interrupts
from o2omarl.benchmark.runner import StopFlag


@pytest.fixture
def bench_handler():
    """SIGTERM handled as `bench`'s main() handles it before a loop installs its own."""
    interrupts.forget()
    before = signal.signal(signal.SIGTERM, interrupts.terminate)
    yield
    signal.signal(signal.SIGTERM, before)
    interrupts.forget()


def _sigterm_inside_a_gc_callback():
    """SIGTERM delivered while a gc callback runs: its KeyboardInterrupt is printed as
    "Exception ignored" and swallowed, as in XLA's hook."""
    def hook(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # bytecode for the handler to run in

    fired: list[int] = []
    gc.callbacks.append(hook)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(hook)
    assert fired


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_swallowed_stop_is_handed_to_the_next_loop(bench_handler):
    _sigterm_inside_a_gc_callback()  # no KeyboardInterrupt reaches here: it was swallowed
    with interrupts.deferred() as flag:  # collection's loop
        assert flag()
    stop = StopFlag()
    with stop.installed():  # bench run's jobs
        assert stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_stop_asked_for_sets_no_flag(bench_handler):
    with interrupts.deferred() as flag:
        assert not flag()
    _sigterm_inside_a_gc_callback()
    interrupts.forget()  # a new command (main() in-process) starts clean
    stop = StopFlag()
    with stop.installed():
        assert not stop()
