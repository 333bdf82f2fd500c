"""WSRL (Zhou et al., ICLR 2025, "Efficient Online Reinforcement Learning Fine-Tuning Need Not
Retain Offline Data", arXiv 2412.07762) on the shared QMIX machinery.

The offline data is discarded at the switch: the replay starts empty and is first filled by a
short warm-up of the pretrained policy, unchanged (no update before `warmup_steps` env
steps), after which fine-tuning is plain online TD from the pretrained weights. The warm-up
replaces the offline data as what the first updates see: transitions of the policy that is
being fine-tuned, so its values are not pulled towards a dataset's distribution, nor do they
collapse on a handful of first online episodes.

Where it differs from the paper, which fine-tunes SAC-style actor-critics (Cal-QL pretraining,
a high update-to-data ratio): here the pretraining is the suite's (the same cached weights as
every method's), the learner and its update rate are the shared ones, and the warm-up acts
epsilon-greedily with the O2O schedule (0.2 -> 0.05) where the paper samples its stochastic
actor; `eps_start=0` makes the warm-up the greedy pretrained policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from o2omarl.errors import UsageError
from o2omarl.qmix import Parts, QmixConfig, QmixO2O
from o2omarl.qmix.algorithm import NON_NEGATIVE
from o2omarl.settings import setting


@dataclass
class WsrlConfig(QmixConfig):
    eps_start: float = 0.2  # the O2O schedule, as OVMSE's: the pretrained policy is good
    # 5,000: the paper's warm-up in every domain it reports (environment steps)
    warmup_steps: int = setting(5000, "env steps of the pretrained policy, unchanged, before "
                                      "the first update (the offline data is never replayed)")

    RANGES: ClassVar[dict] = {**QmixConfig.RANGES, "warmup_steps": NON_NEGATIVE}

    def check(self) -> None:
        super().check()
        if self.init != "offline":
            raise UsageError(f"wsrl warms up with the pretrained policy: it needs "
                             f"init=offline, not init={self.init} (from scratch, use qmix)")
        if self.warmup_steps >= self.steps:
            raise UsageError(f"warmup_steps={self.warmup_steps} is not below the online budget "
                             f"steps={self.steps}: the run would never update; accepted: "
                             f"0 <= warmup_steps < steps")


class Wsrl(QmixO2O):
    """Offline weights; no offline data online; a warm-up of the pretrained policy first."""

    name = "wsrl"
    Config = WsrlConfig

    def parts(self) -> Parts:
        parts = super().parts()
        parts.learning_starts = self.cfg.warmup_steps
        return parts
