"""The one checkpoint type: final weights (model.pt), a run's resumable state (checkpoint.pt),
cached pretrained weights and behaviour-training snapshots are all a `Checkpoint`, written and
read only here."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from o2omarl import atomic
from o2omarl.envs.base import EnvInfo
from o2omarl.errors import BenchError, UsageError


@dataclass
class Checkpoint:
    method: str  # the registry name of the method that saved it
    env: dict  # `EnvInfo.to_dict()` of the map it was trained on
    config: dict  # the method's resolved config
    learner: dict  # `Learner.state_dict()`: networks, targets, optimizer, update count
    training: dict | None = None  # `OnlineTraining.state_dict()`: present if a run can resume
    replay_chunks: int | None = None  # replay chunks on disk that `training` refers to

    def write(self, path: Path) -> None:
        """Atomically (temporary file, then rename): a kill never leaves half a checkpoint."""
        buf = io.BytesIO()
        torch.save({k: v for k, v in asdict(self).items() if v is not None}, buf)
        atomic.write_bytes(Path(path), buf.getvalue())

    @classmethod
    def read(cls, path: Path) -> "Checkpoint":
        """BenchError naming the file if it is missing, truncated or not a checkpoint."""
        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=False)
            return cls(**{k: state.get(k) for k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise BenchError(f"checkpoint {path} does not exist") from None
        except Exception as e:  # truncated, not a torch file, or not a dict of ours
            raise BenchError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") \
                from None

    def check_map(self, info: EnvInfo, path: Path) -> None:
        """UsageError if it was trained on another map (or another version of its spaces)."""
        if self.env != info.to_dict():
            raise UsageError(f"checkpoint {path} is for map {self.env['map_name']!r} "
                             f"({self.env['backend']}), not {info.map_name!r}")
