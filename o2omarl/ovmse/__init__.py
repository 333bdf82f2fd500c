"""OVMSE: Offline Value function Memory with Sequential Exploration (DESIGN.md section 5).

OVM. A frozen copy of the offline agents and mixer gives Q_tot^off(s_t, a_t) on every sampled
batch (unrolled on the same trajectories, no gradients), and the TD target becomes

    y_OVM = y_TD + lambda_t * max(0, Q_tot^off(s_t, a_t) - y_TD)

with lambda_t annealed from lambda_0 to 0 over the memory horizon. While lambda is high the
target never falls below what offline training knew, which stops the collapse of pre-trained
values when online data arrives.

SE. Epsilon-greedy lets ~eps*n agents deviate at once; SE lets about one agent explore at a time
while the others act greedily (at the start: exactly the offline policy).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from o2omarl.episodes import uniform_available
from o2omarl.errors import UsageError
from o2omarl.qmix import Parts, QmixConfig, QmixO2O, Schedule, UpdateContext
from o2omarl.qmix.algorithm import PROBABILITY
from o2omarl.qmix.buffer import Batch
from o2omarl.qmix.learner import mix_filled
from o2omarl.settings import setting

LAMBDA_SCHEDULES = Schedule.KINDS
SE_MODES = ("decentralized", "centralized")


# -- OVM ------------------------------------------------------------------------------------------
def ovm_target(y_td: torch.Tensor, q_off: torch.Tensor, lam: float) -> torch.Tensor:
    """y_TD + lambda max(0, Q_off - y_TD) = (1 - lambda) y_TD + lambda max(y_TD, Q_off)."""
    return y_td + lam * (q_off - y_td).clamp(min=0)


def memory_lambda(step: int, lambda_0: float, horizon: int, kind: str = "linear") -> float:
    """lambda_t: from lambda_0 at step 0 to exactly 0 at the horizon and after (linear,
    exponential, or constant until the horizon): a `Schedule` from lambda_0 to 0."""
    return Schedule(lambda_0, 0.0, horizon, kind)(step)


class OfflineValueMemory:
    """The OVM target rule: holds the frozen offline networks."""

    def __init__(self, lambda_0: float, horizon_fraction: float, kind: str):
        self.lambda_0, self.horizon_fraction, self.kind = lambda_0, horizon_fraction, kind
        self.agent = self.mixer = None

    def freeze(self, agent: torch.nn.Module, mixer: torch.nn.Module) -> None:
        """Keep a copy of the offline networks that no optimizer and no gradient ever touches."""
        self.agent = copy.deepcopy(agent).requires_grad_(False).eval()
        self.mixer = copy.deepcopy(mixer).requires_grad_(False).eval()

    def lam(self, step: int, budget: int) -> float:
        return memory_lambda(step, self.lambda_0, int(self.horizon_fraction * budget), self.kind)

    @torch.no_grad()
    def q_tot(self, learner, batch: Batch) -> torch.Tensor:
        """Q_tot^off(s_t, a_t) of the batch's own trajectories: (B, T)."""
        T = batch.reward.shape[1]
        q = learner.q_values(self.agent, batch)[:, :T]
        q_taken = q.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        return mix_filled(self.mixer, q_taken, batch.state[:, :T], batch.filled)

    def __call__(self, learner, batch: Batch, y_td: torch.Tensor, ctx: UpdateContext):
        """The OVM target and what it did; lambda_t itself is logged once, by the method's
        schedule (`Ovmse.parts`), at the step of each evaluation."""
        lam = self.lam(ctx.env_step, ctx.budget)
        if self.agent is None or lam == 0.0:
            return y_td, {"ovm_lifted_fraction": 0.0}
        q_off = self.q_tot(learner, batch)
        mask = batch.filled
        lifted = ((q_off > y_td).float() * mask).sum() / mask.sum().clamp(min=1)
        return ovm_target(y_td, q_off, lam), {
            "ovm_lifted_fraction": lifted.item(),
            "q_off_mean": ((q_off * mask).sum() / mask.sum().clamp(min=1)).item()}


# -- SE -------------------------------------------------------------------------------------------
def se_decentralized(greedy, avail, epsilon, rng):
    """Each agent explores independently with probability eps/n: ~Binomial(n, eps/n) explorers."""
    n = greedy.shape[-1]
    explore = rng.random(greedy.shape) < epsilon / n
    return np.where(explore, uniform_available(avail, rng), greedy), explore


def se_centralized(greedy, avail, epsilon, rng):
    """With probability eps exactly one agent, chosen uniformly, explores; otherwise none."""
    N, n = greedy.shape
    chosen = rng.integers(0, n, N)
    explore = np.zeros((N, n), bool)
    explore[np.arange(N), chosen] = rng.random(N) < epsilon
    return np.where(explore, uniform_available(avail, rng), greedy), explore


# -- methods --------------------------------------------------------------------------------------
@dataclass
class OvmseConfig(QmixConfig):
    eps_start: float = 0.2  # O2O default: the pre-trained policy is already good
    eps_end: float = 0.05
    lambda_0: float = setting(1.0, "memory weight at the start of fine-tuning")
    memory_horizon: float = setting(0.2, "fraction of the online budget over which lambda "
                                         "reaches 0")
    lambda_schedule: str = setting("linear", "how lambda falls to 0 over the horizon")
    se_mode: str = setting("decentralized", "decentralized: each agent explores with eps/n; "
                                            "centralized: one agent with eps")
    use_ovm: bool = setting(True, "the offline value memory in the target (needs init=offline)")
    use_se: bool = setting(True, "sequential exploration (else per-agent epsilon-greedy)")

    CHOICES: ClassVar[dict] = {**QmixConfig.CHOICES, "lambda_schedule": LAMBDA_SCHEDULES,
                               "se_mode": SE_MODES}
    RANGES: ClassVar[dict] = {**QmixConfig.RANGES, "lambda_0": PROBABILITY,
                              "memory_horizon": PROBABILITY}

    def check(self) -> None:
        super().check()
        if self.use_ovm and self.init != "offline":
            raise UsageError(f"use_ovm=true needs offline weights (init=offline), not "
                             f"init={self.init}: the memory would hold a random network's "
                             "values; set use_ovm=false (that is `se`) or init=offline")


class Ovmse(QmixO2O):
    """Offline value memory in the target + sequential exploration.

    Its lifecycle, all here: the memory is made with the method (empty), frozen from the
    offline weights once they are in place (`on_pretrained`, loaded from the pretraining
    cache or just trained), and read by the learner as its target rule at every update."""

    name = "ovmse"
    Config = OvmseConfig

    def __init__(self, info, config: OvmseConfig | None = None, seed: int = 0,
                 device: str = "cpu"):
        cfg = config or self.Config()
        self.memory = OfflineValueMemory(cfg.lambda_0, cfg.memory_horizon,
                                         cfg.lambda_schedule) if cfg.use_ovm else None
        super().__init__(info, cfg, seed, device)

    def target_rule(self):
        return self.memory  # None: the plain TD target

    def on_pretrained(self) -> None:
        if self.memory is not None:
            self.memory.freeze(self.learner.agent, self.learner.mixer)

    def parts(self) -> Parts:
        parts = super().parts()
        if self.cfg.use_se:  # se_mode is one of SE_MODES: the config refuses anything else
            parts.explore = se_decentralized if self.cfg.se_mode == "decentralized" \
                else se_centralized
        if self.memory is not None:
            parts.schedules = lambda step, budget: {"ovm_lambda": self.memory.lam(step, budget)}
        return parts


@dataclass
class OvmConfig(OvmseConfig):
    use_se: bool = False


class Ovm(Ovmse):
    """Ablation: the offline value memory with ordinary (per-agent) epsilon-greedy."""

    name = "ovm"
    Config = OvmConfig


@dataclass
class SeConfig(OvmseConfig):
    use_ovm: bool = False


class Se(Ovmse):
    """Ablation: sequential exploration with the plain TD target."""

    name = "se"
    Config = SeConfig


METHODS = (Ovmse, Ovm, Se)
__all__ = ["METHODS", "OfflineValueMemory", "Ovm", "Ovmse", "OvmseConfig", "Se",
           "memory_lambda", "ovm_target", "se_centralized", "se_decentralized"]
