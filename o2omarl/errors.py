"""Errors the CLI turns into one clear line and an exit code (DESIGN.md section 8).

Library code raises these instead of printing; `cli.py` is the only place that maps them to exit
codes, so every command answers bad input the same way.
"""


class BenchError(Exception):
    """A failure that is not the user's typing: a corrupt file, a diverging run (exit 1)."""

    exit_code = 1


class UsageError(BenchError):
    """Bad input: an unknown name, a non-positive budget, a dataset that does not fit (exit 2)."""

    exit_code = 2


class Interrupted(BenchError):
    """The user stopped the work (Ctrl-C / SIGTERM) after it saved what it had (exit 130)."""

    exit_code = 130


def one_of(kind: str, value, accepted) -> UsageError:
    """`unknown map '4m'; accepted: 3m, 8m, ...` - the shape of every unknown-name error."""
    return UsageError(f"unknown {kind} {value!r}; accepted: {', '.join(map(str, accepted))}")


def positive(name: str, value) -> None:
    """Reject zero and negative counts and budgets with one line naming the value."""
    if value is None or value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value}")
