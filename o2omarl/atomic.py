"""Writing files so that a kill or a full disk never leaves a half-written one.

Every file the suite writes (checkpoints, metrics rewrites, summaries, reports, replay chunks)
goes through `replacing`: the bytes go to a hidden temporary file beside the target, which is
renamed over it only once complete (`os.replace` is atomic within a filesystem) and removed if
anything fails on the way, ENOSPC included.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ""):
    """Yield a temporary path to write; it becomes `path` on success and vanishes on failure.

    `suffix` keeps an extension that a writer insists on (np.savez appends ".npz").
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))
