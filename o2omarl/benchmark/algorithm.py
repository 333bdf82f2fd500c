"""The shared Algorithm interface the runner drives. Methods satisfy it structurally (they never
import `benchmark/`); `registry.py` names them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from o2omarl.envs.base import EnvInfo, VecEnv
from o2omarl.episodes import EpisodeArrays

Log = Callable[[dict], None]


class Algorithm(Protocol):
    """Everything the runner (`runner.py`, `pretrained.py`) and the tier pipeline use."""

    name: ClassVar[str]
    Config: ClassVar[type]  # a dataclass with documented defaults
    info: EnvInfo
    cfg: Any  # the resolved Config: num_envs, eval_episodes, pretrain_key() are read
    learner: Any  # its state_dict / load_state_dict carry a run's weights across a resume

    def __init__(self, info: EnvInfo, config: Any = None, seed: int = 0,
                 device: str = "cpu") -> None: ...

    @property
    def uses_offline_init(self) -> bool: ...  # starts from pretrained weights

    @property
    def uses_offline_data(self) -> bool: ...  # reads dataset episodes while fine-tuning

    def pretrain(self, data: EpisodeArrays, log: Log, eval_env: VecEnv | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 resume: Path | None = None) -> dict: ...

    def load_pretrained(self, state: dict) -> None: ...

    # The online phase as a resumable object: .run(on_eval, should_stop), .state_dict(),
    # .load_state_dict(), .buffer, .row, .env_step, .last_eval, .finished, .close()
    # (qmix.train.OnlineTraining).
    def online(self, env: VecEnv, eval_env: VecEnv, budget: int, log: Log,
               data: EpisodeArrays | None = None, buffer: Any = None,
               learner_mode: str | None = None) -> Any: ...

    def actor(self, num_envs: int): ...  # a greedy policy (obs, first) -> actions

    def save(self, path: Path, training: Any = None, replay_chunks: int | None = None) -> None:
        ...  # a qmix.Checkpoint

    @classmethod
    def from_checkpoint(cls, path: Path, info: EnvInfo, device: str = "cpu") -> "Algorithm": ...
