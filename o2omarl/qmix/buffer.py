"""Episode storage for learning: the online replay buffer and the offline dataset sampler are
the same padded-array store, so the learner sees one batch type whichever the source."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import torch

from o2omarl.envs.base import EnvInfo
from o2omarl.episodes import FIELDS, PER_OBSERVATION, SPEC, TRAINING_FIELDS, Episode, EpisodeArrays
from o2omarl.qmix.networks import build_inputs


@dataclass
class Batch:
    """B episodes as tensors, trimmed to the longest episode in the batch (T)."""

    obs: torch.Tensor  # (B, T+1, n, obs_dim)
    state: torch.Tensor  # (B, T+1, state_dim)
    avail: torch.Tensor  # (B, T+1, n, A) bool
    actions: torch.Tensor  # (B, T, n) long
    reward: torch.Tensor  # (B, T)
    terminated: torch.Tensor  # (B, T) float
    truncated: torch.Tensor  # (B, T) float
    filled: torch.Tensor  # (B, T) float
    offline: torch.Tensor  # (B,) bool: which rows came from the offline dataset

    @cached_property
    def agent_inputs(self) -> torch.Tensor:
        """(B, T+1, n, input_dim): obs + previous action (none at t=0) + agent id. Built once
        per batch, since the online, target and frozen-memory unrolls all read it."""
        prev = torch.cat([torch.full_like(self.actions[:, :1], -1), self.actions], dim=1)
        return build_inputs(self.obs, prev, self.avail.shape[-1])

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) observations that matter per episode: its T filled steps + the bootstrap one."""
        return self.filled.sum(1).long() + 1

    @staticmethod
    def cat(a: "Batch", b: "Batch") -> "Batch":
        T = max(a.reward.shape[1], b.reward.shape[1])
        out = {}
        for f in fields(Batch):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if f.name != "offline":
                extra = 1 if f.name in PER_OBSERVATION else 0
                x, y = _pad_time(x, T + extra), _pad_time(y, T + extra)
            out[f.name] = torch.cat([x, y])
        return Batch(**out)


def _pad_time(x: torch.Tensor, T: int) -> torch.Tensor:
    if x.shape[1] == T:
        return x
    pad = x.new_zeros((x.shape[0], T - x.shape[1]) + x.shape[2:])
    if x.dtype == torch.bool and x.dim() == 4:  # avail: keep a valid action on padded steps
        pad[..., 0] = True
    return torch.cat([x, pad], dim=1)


class ReplayBuffer:
    """Up to `capacity` padded episodes in a ring (the online replay), or a loaded dataset
    (`from_arrays`); uniform episode sampling."""

    def __init__(self, info: EnvInfo, capacity: int, offline: bool = False):
        self.info, self.capacity, self.offline = info, capacity, offline
        self.data = EpisodeArrays.zeros(capacity, info)
        self.lengths = np.zeros(capacity, np.int64)
        self.won = np.zeros(capacity, bool)  # battle_won is only ever true on the last step
        self.size = 0
        self.added = 0  # episodes ever added: episode g lives in slot g % capacity

    @classmethod
    def from_arrays(cls, arrays: EpisodeArrays, info: EnvInfo) -> "ReplayBuffer":
        """Wrap a loaded offline dataset without copying it."""
        store = cls.__new__(cls)
        store.info, store.capacity = info, len(arrays)
        store.size = len(arrays)
        store.offline, store.data = True, arrays
        store.lengths = arrays.filled.sum(1)
        store.won = np.zeros(len(arrays), bool)
        store.added = len(arrays)
        return store

    def add(self, ep: Episode) -> None:
        self.put(self.added, ep)

    def put(self, g: int, ep: Episode) -> None:
        """Store episode number `g` (global count) in its slot; `add` is put(added, ep).

        Restoring saved episodes with their numbers rebuilds the exact ring, so sampling after
        a resume draws the same episodes as an uninterrupted run.
        """
        i, L = g % self.capacity, ep.length
        d = self.data
        for f in TRAINING_FIELDS:
            arr = getattr(d, f)
            arr[i] = 0
            arr[i, : L + SPEC[f].per_observation] = getattr(ep, f)
        d.avail[i, L + 1:, :, 0] = True  # padded steps keep one valid action (finite masked max)
        d.filled[i] = False
        d.filled[i, :L] = True
        self.lengths[i], self.won[i] = L, ep.won
        self.added = max(self.added, g + 1)
        self.size = min(self.added, self.capacity)

    def episodes(self, since: int = 0):
        """The stored episodes numbered `since` or later, oldest first, as `Episode`s (to write
        a replay dataset, or the part of the replay a checkpoint has not saved yet)."""
        return (ep for _, ep in self.numbered(since))

    def numbered(self, since: int = 0):
        """(number, episode) for the stored episodes numbered `since` or later: `put` them
        into another store to copy the ring exactly."""
        d = self.data
        for g in range(max(since, self.added - self.size), self.added):
            i = g % self.capacity
            L = int(self.lengths[i])
            yield g, Episode(**{f: getattr(d, f)[i, : L + SPEC[f].per_observation]
                                for f in TRAINING_FIELDS},
                             battle_won=self.won[i] & (np.arange(L) == L - 1))

    def draw(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Slots of `batch_size` episodes drawn uniformly (with replacement), sorted."""
        return np.sort(rng.integers(0, self.size, batch_size))

    def sample(self, batch_size: int, rng: np.random.Generator, device="cpu") -> Batch:
        return self.batch(self.draw(batch_size, rng), device)

    def batch(self, idx: np.ndarray, device="cpu") -> Batch:
        T = int(self.lengths[idx].max())
        d = self.data
        t = lambda a, extra=0, dtype=None: torch.as_tensor(  # noqa: E731
            a[idx, : T + extra], device=device
        ).to(dtype or torch.float32)
        return Batch(
            obs=t(d.obs, 1), state=t(d.state, 1), avail=t(d.avail, 1, torch.bool),
            actions=t(d.actions, 0, torch.long), reward=t(d.reward),
            terminated=t(d.terminated), truncated=t(d.truncated), filled=t(d.filled),
            offline=torch.full((len(idx),), self.offline, dtype=torch.bool, device=device),
        )


def save_episodes(path, first: int, episodes: list[Episode]) -> None:
    """Write episodes numbered first, first+1, ... to one .npz (temporary file, then rename)."""
    from o2omarl import atomic

    arrays = {f: np.concatenate([getattr(e, f) for e in episodes]) for f in FIELDS}
    with atomic.replacing(path, suffix=".npz") as tmp:  # np.savez insists on ".npz"
        np.savez(tmp, first=first, lengths=np.array([e.length for e in episodes]), **arrays)


def load_episodes(path) -> tuple[int, list[Episode]]:
    """(number of the first episode, the episodes) from `save_episodes`."""
    with np.load(path) as z:
        lengths, a = z["lengths"], {f: z[f] for f in FIELDS}
        first = int(z["first"])
    out, t, s = [], 0, 0  # t: offset in per-step arrays, s: in per-observation arrays
    for L in lengths:
        out.append(Episode(**{f: a[f][s: s + L + 1] if f in PER_OBSERVATION
                              else a[f][t: t + L] for f in FIELDS}))
        t, s = t + L, s + L + 1
    return first, out
