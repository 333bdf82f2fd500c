"""What lets a killed run continue exactly: the last checkpoint, and the replay buffer on disk
in chunks (rewriting the whole buffer at every checkpoint would cost hundreds of MB each time)."""

from __future__ import annotations

from pathlib import Path

from o2omarl.benchmark.jobs import JobSpec
from o2omarl.envs import env_info
from o2omarl.errors import BenchError
from o2omarl.qmix.buffer import load_episodes, save_episodes
from o2omarl.qmix.checkpoint import Checkpoint


def load_resume(run_dir: Path, job: JobSpec, say) -> Checkpoint | None:
    """The last checkpoint with its training state, or None (start afresh, saying why)."""
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return None
    try:
        ckpt = Checkpoint.read(path)
    except BenchError as e:
        say(f"{e}; starting the run afresh")
        return None
    env = env_info(job.map_name, job.backend).to_dict()
    if ckpt.method != job.method or ckpt.env != env:
        say(f"checkpoint {path} is from method {ckpt.method!r} on "
            f"{(ckpt.env or {}).get('map_name')!r}, not {job.method!r} on "
            f"{job.map_name!r}; starting the run afresh")
        return None
    if ckpt.training is None:
        say(f"checkpoint {path} holds no training state (an older o2omarl); starting afresh")
        return None
    say(f"resuming from the checkpoint at env step {ckpt.training['last_eval']:,}")
    return ckpt


class ReplayLog:
    """The online replay buffer on disk as numbered chunks, each holding the episodes added
    since the previous checkpoint, so a checkpoint costs only the new episodes."""

    def __init__(self, folder: Path):
        self.folder, self.chunks, self.saved = folder, 0, 0

    def _path(self, k: int) -> Path:
        return self.folder / f"chunk_{k:06d}.npz"

    def save_new(self, buffer) -> int:
        new = list(buffer.episodes(since=self.saved))
        if new:
            self.folder.mkdir(exist_ok=True)
            save_episodes(self._path(self.chunks), buffer.added - len(new), new)
            self.chunks, self.saved = self.chunks + 1, buffer.added
        return self.chunks

    def restore(self, buffer, chunks: int) -> None:
        for k in range(chunks):
            first, eps = load_episodes(self._path(k))
            for g, ep in enumerate(eps, first):
                buffer.put(g, ep)
        # Chunks written after the checkpoint, and any write a kill cut short, are stale.
        for path in self.folder.glob("*.npz"):
            if path.name not in {self._path(k).name for k in range(chunks)}:
                path.unlink()
        self.chunks, self.saved = chunks, buffer.added
