"""Errors the CLI turns into one clear line and an exit code (DESIGN.md section 8).

Library code raises these instead of printing; `cli/` is the only place that maps them to exit
codes, so every command answers bad input the same way.
"""

from __future__ import annotations

import difflib


class BenchError(Exception):
    """A failure that is not the user's typing: a corrupt file, a diverging run (exit 1)."""

    exit_code = 1


class UsageError(BenchError):
    """Bad input: an unknown name, a non-positive budget, a dataset that does not fit (exit 2)."""

    exit_code = 2


class Interrupted(BenchError):
    """The user stopped the work (Ctrl-C / SIGTERM) after it saved what it had (exit 130)."""

    exit_code = 130


def did_you_mean(value, accepted) -> str:
    """` (did you mean 'ovmse'?)` for a near miss of one accepted name, else ''."""
    close = difflib.get_close_matches(str(value), [str(a) for a in accepted], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(kind: str, value, accepted) -> UsageError:
    """`unknown map '4m'; accepted: 3m, 8m, ...` - the shape of every unknown-name error, with
    a suggestion for a typo (`unknown method 'ovmes' (did you mean 'ovmse'?); accepted: ...`)."""
    return UsageError(f"unknown {kind} {value!r}{did_you_mean(value, accepted)}; accepted: "
                      f"{', '.join(map(str, accepted))}")


def check_seed(name: str, value) -> None:
    """A seed: an integer in [0, MAX_SEED] (numpy refuses negatives, C longs overflow)."""
    from o2omarl.protocol import MAX_SEED

    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UsageError(f"{name} {value} is not accepted; accepted: an integer in "
                         f"[0, {MAX_SEED:,}]")


def positive(name: str, value) -> None:
    """Reject zero and negative counts and budgets with one line naming the value."""
    if value is None or value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value}")
