"""Advisory file locks (flock): one process at a time per dataset family, run folder or
pretraining cache entry. The OS releases a lock when its holder dies, so a killed process never
leaves a stale lock behind."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from o2omarl.errors import BenchError


@contextlib.contextmanager
def file_lock(path: Path, what: str, wait: bool = True):
    """Hold an exclusive lock on `path` (created if needed). With wait=False another holder
    is a one-line BenchError naming `what`, not a wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BenchError(f"{what} is in use by another process; wait for it to finish "
                             "or use another --runs-dir") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on `path` (a missing file: nobody)."""
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False
