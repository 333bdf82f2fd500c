"""`QmixO2O`: one implementation of every O2O method's operations on the shared machinery.

A method is a subclass that sets its name, its config dataclass (defaults documented there) and
overrides at most three small hooks: `parts()` (exploration, epsilon schedule, batch mixing),
`target_rule()` and `online_losses()`. Whether it starts from offline weights is a config field.
These classes satisfy `benchmark.Algorithm` structurally; they never import `benchmark/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch

from o2omarl.envs.base import EnvInfo, VecEnv
from o2omarl.episodes import EpisodeArrays
from o2omarl.errors import BenchError, UsageError, did_you_mean
from o2omarl.qmix.acting import Actor, Schedule, epsilon_greedy
from o2omarl.qmix.buffer import ReplayBuffer
from o2omarl.qmix.checkpoint import Checkpoint
from o2omarl.qmix.conservative import OFFLINE_LOSSES, offline_loss
from o2omarl.qmix.learner import Learner, LearnerConfig
from o2omarl.qmix.monitor import Log
from o2omarl.qmix.pretrain import PretrainConfig, Resume, pretrain
from o2omarl.qmix.train import OnlineConfig, OnlineTraining, Parts
from o2omarl.settings import parse_count, setting

# (what is accepted, test) for the numeric ranges of config fields
POSITIVE = ("a number > 0", lambda v: v > 0)
NON_NEGATIVE = ("a number >= 0", lambda v: v >= 0)
PROBABILITY = ("a number in [0, 1]", lambda v: 0 <= v <= 1)
DISCOUNT = ("a number in (0, 1]", lambda v: 0 < v <= 1)


@dataclass
class QmixConfig(LearnerConfig, OnlineConfig):
    """Settings shared by every method (learner, online loop, offline pretraining)."""

    init: str = setting("offline", "offline: start from pretrained weights; random: from "
                                   "scratch")
    eps_start: float = setting(1.0, "epsilon at the first online step")
    eps_end: float = setting(0.05, "epsilon after eps_anneal_steps")
    eps_anneal_steps: int = setting(50_000, "env steps of linear epsilon annealing")
    # 2,500: the selection rule's length (docs/results/offline_calibration.md, "Length"): the
    # best mean greedy return over the four confirmation tasks (1.42x the data's, 6,000: 1.35x)
    # with values calibrated on each (greedy ratio 1.00 on 2s3z replay, 3 seeds); the greedy
    # return is flat from 1,000 updates on, so longer only costs time.
    pretrain_steps: int = setting(2500, "offline updates (--pretrain-steps; cached per dataset, "
                                        "settings and seed)")
    pretrain_batch_size: int = setting(32, "episodes per offline update")
    # The conservative term of offline pretraining (README, "Offline pretraining"): cql (per
    # agent, weight cql_alpha) or cfcql (counterfactual on Q_tot, weight cfcql_alpha; agents
    # weighted by a softmax at cfcql_temperature, 0: equally). CFCQL's defaults are its authors'
    # most common SMAC setting (alpha 50, temperature 0.5). The default, cql at alpha 1, is the
    # selection rule's choice over four tasks (docs/results/offline_calibration.md, "The
    # rule"): the one variant whose values are calibrated on every task (Q_tot of the greedy
    # actions / their battles' return: task means 0.99-1.17; alpha 5: 1.32 on 2s3z replay),
    # with the best mean greedy return. CFCQL at alpha 50 ended at ~2x, its policy worsening.
    offline_loss: str = setting("cql", "conservative term of offline pretraining")
    cql_alpha: float = setting(1.0, "per-agent CQL weight (offline_loss=cql)")
    cfcql_alpha: float = setting(50.0, "CFCQL weight (offline_loss=cfcql)")
    cfcql_temperature: float = setting(0.5, "CFCQL's agent-weighting softmax temperature; 0: "
                                            "equal weights")
    pretrain_eval_interval: int = setting(1000, "offline updates between greedy evaluations; "
                                                "0: only at the end")

    def pretrain_config(self) -> PretrainConfig:
        return PretrainConfig(steps=self.pretrain_steps, batch_size=self.pretrain_batch_size,
                              eval_interval=self.pretrain_eval_interval,
                              eval_episodes=self.eval_episodes)

    def offline_loss_term(self):
        return offline_loss(self.offline_loss, self.cql_alpha, self.cfcql_alpha,
                            self.cfcql_temperature)

    def pretrain_key(self) -> dict:
        """The settings that determine pretrained weights (the cache key, with dataset + seed).
        Only the chosen loss's weights: caches made before cfcql existed keep their keys."""
        names = {f.name for f in fields(LearnerConfig)} | {
            "pretrain_steps", "pretrain_batch_size"}
        names |= ({"cql_alpha"} if self.offline_loss == "cql" else
                  {"offline_loss", "cfcql_alpha", "cfcql_temperature"})
        return {k: v for k, v in asdict(self).items() if k in names}

    def to_dict(self) -> dict:
        return asdict(self)

    # Fields restricted to a set of values (subclasses add theirs).
    CHOICES: ClassVar[dict] = {"init": ("offline", "random"), "mixer": ("qmix", "vdn"),
                               "offline_loss": OFFLINE_LOSSES}
    # Numeric fields' ranges (subclasses add theirs); every field of a built config is checked.
    RANGES: ClassVar[dict] = {
        **dict.fromkeys(("hidden", "mixer_embed", "hypernet_hidden", "target_update_interval",
                         "num_envs", "batch_size", "buffer_episodes", "eval_episodes",
                         "eps_anneal_steps", "steps", "pretrain_steps", "pretrain_batch_size",
                         "lr",
                         "grad_clip", "updates_per_episode"), POSITIVE),
        **dict.fromkeys(("eval_interval", "pretrain_eval_interval", "cql_alpha", "cfcql_alpha",
                         "cfcql_temperature"), NON_NEGATIVE),
        **dict.fromkeys(("td_lambda", "eps_start", "eps_end"), PROBABILITY),
        "gamma": DISCOUNT,
    }

    @classmethod
    def build(cls, **overrides) -> "QmixConfig":
        """Defaults with `overrides` applied, each cast to its field's type and checked.

        Raises UsageError naming the key and the accepted values, so `bench run --set` fails
        before any job starts.
        """
        types = {f.name: type(f.default) for f in fields(cls)}
        values = {}
        for key, value in overrides.items():
            if key not in types:
                raise UsageError(f"unknown setting {key!r}{did_you_mean(key, types)}; accepted: "
                                 f"{', '.join(sorted(types))}")
            values[key] = _cast(key, value, types[key])
            allowed = cls.CHOICES.get(key)
            if allowed and values[key] not in allowed:
                raise UsageError(f"{key}={value!r} is not accepted; accepted: "
                                 f"{', '.join(allowed)}")
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Every numeric field within its range (UsageError naming the first that is not)."""
        for key, (accepted, ok) in self.RANGES.items():
            value = getattr(self, key)
            if not ok(value):
                raise UsageError(f"{key}={value!r} is not accepted; accepted: {accepted}")
        if self.batch_size > self.buffer_episodes:  # learning waits for a full batch: forever
            raise UsageError(f"batch_size={self.batch_size} is larger than buffer_episodes="
                             f"{self.buffer_episodes}: the replay can never hold one batch, so "
                             "no update would run; accepted: batch_size <= buffer_episodes")


def build_configs(config_classes: list[type], overrides: dict, names: list[str]) -> list:
    """One config per class from shared overrides (`bench run --set`, for several methods at
    once): each class takes the keys it has fields for; a key none has is refused, naming the
    methods (`names`) and every accepted key."""
    own = [{f.name for f in fields(c)} for c in config_classes]
    unknown = sorted(set(overrides) - set().union(*own))
    if unknown:
        known = sorted(set().union(*own))
        raise UsageError(f"unknown setting {unknown[0]!r}{did_you_mean(unknown[0], known)} for "
                         f"{', '.join(names)}; accepted: {', '.join(known)}")
    return [c.build(**{k: v for k, v in overrides.items() if k in keys})
            for c, keys in zip(config_classes, own)]


def _cast(key: str, value, kind: type):
    if kind is bool:
        if isinstance(value, bool) or str(value).lower() in ("true", "false"):
            return value if isinstance(value, bool) else str(value).lower() == "true"
    else:
        try:
            # integers as budgets are written (--steps' rule): 2000, 2_000, 2e3, 2k
            return parse_count(value) if kind is int else kind(value)
        except (TypeError, ValueError):
            pass
    raise UsageError(f"{key}={value!r} is not a valid {kind.__name__}")


class QmixO2O:
    name = "qmix-o2o"
    Config = QmixConfig

    def __init__(self, info: EnvInfo, config: QmixConfig | None = None, seed: int = 0,
                 device: str = "cpu"):
        self.info, self.cfg, self.seed, self.device = info, config or self.Config(), seed, device
        torch.manual_seed(seed)
        self.learner = Learner(info, self.cfg, device, self.target_rule(), self.online_losses())

    # -- hooks a method overrides ------------------------------------------------------------
    @property
    def uses_offline_init(self) -> bool:
        return self.cfg.init == "offline"

    @property
    def uses_offline_data(self) -> bool:
        """Whether fine-tuning needs the dataset itself (not only pretrained weights)."""
        return self.parts().offline_fraction > 0

    def parts(self) -> Parts:
        c = self.cfg
        return Parts(explore=epsilon_greedy,
                     epsilon=Schedule(c.eps_start, c.eps_end, c.eps_anneal_steps))

    def target_rule(self):
        return None

    def online_losses(self) -> tuple:
        return ()

    # -- operations the runner needs ---------------------------------------------------------
    def pretrain(self, data: EpisodeArrays, log: Log, eval_env: VecEnv | None = None,
                 should_stop=None, resume: Path | None = None) -> dict:
        """Offline QMIX + conservative term on `data`; leaves the weights in this method.
        `should_stop()`, polled between updates, ends it early (Interrupted); `resume`: where
        its state is kept at each evaluation, and continued from if there (`pretrain.Resume`)."""
        offline = Learner(self.info, self.cfg, self.device,
                          extra_losses=(self.cfg.offline_loss_term(),))
        row = pretrain(offline, ReplayBuffer.from_arrays(data, self.info),
                       self.cfg.pretrain_config(), self.seed, log, eval_env, should_stop,
                       None if resume is None else Resume(resume))
        self.load_pretrained(offline.state_dict())
        return row

    def load_pretrained(self, state: dict) -> None:
        """Start fine-tuning from offline weights (fresh optimizer, targets synced)."""
        self.learner.load_state_dict(state, weights_only=True)
        self.on_pretrained()

    def on_pretrained(self) -> None:
        """Called once offline weights are in place (OVM freezes its memory here)."""

    def online(self, env: VecEnv, eval_env: VecEnv, budget: int, log: Log,
               data: EpisodeArrays | None = None, buffer=None,
               learner_mode: str | None = None) -> OnlineTraining:
        """The online phase as a resumable object: `.run()` it, checkpoint it with `save`.
        `learner_mode`: where its updates run ("inline" | "process"; None: as the
        environment decides, `qmix.updates.learner_mode`)."""
        parts = self.parts()
        offline = None
        if parts.offline_fraction > 0:
            if data is None:
                raise BenchError(f"method {self.name} mixes offline episodes into its batches "
                                 "and needs a dataset")
            offline = ReplayBuffer.from_arrays(data, self.info)
        return OnlineTraining(self.learner, parts, self.cfg, env, eval_env, budget, self.seed,
                              log, offline, label=f"{self.name} seed {self.seed}",
                              buffer=buffer, learner_mode=learner_mode)

    def actor(self, num_envs: int) -> Actor:
        """A greedy batched policy (obs, first -> actions) with the current weights."""
        return Actor(self.learner.agent, num_envs, self.info.n_agents, self.info.n_actions,
                     None, self.seed, self.device)

    def save(self, path: Path, training: OnlineTraining | None = None,
             replay_chunks: int | None = None) -> None:
        """Write a `Checkpoint` atomically; with `training`, also the online loop's state (and
        how many replay chunks on disk it refers to) so a run can resume exactly."""
        Checkpoint(self.name, self.info.to_dict(), self.cfg.to_dict(), self.learner.state_dict(),
                   None if training is None else training.state_dict(),
                   replay_chunks).write(path)

    @classmethod
    def from_checkpoint(cls, path: Path, info: EnvInfo, device: str = "cpu") -> "QmixO2O":
        """Any checkpoint's weights (a run's, a snapshot's) in this method, with the network
        settings it was saved with; UsageError if it is for another map."""
        ckpt = Checkpoint.read(path)
        ckpt.check_map(info, path)
        known = {k: v for k, v in ckpt.config.items() if k in cls.Config.__dataclass_fields__}
        method = cls(info, cls.Config(**known), device=device)
        method.learner.load_state_dict(ckpt.learner)
        return method
