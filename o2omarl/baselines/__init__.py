"""The O2O baselines OVMSE must beat (DESIGN.md section 5), each a few lines on `qmix/`.

| name      | start           | online behaviour                          | target                |
|-----------|-----------------|-------------------------------------------|-----------------------|
| qmix      | random init     | epsilon-greedy 1.0 -> 0.05                | plain TD              |
| ft-qmix   | offline weights | same schedule as qmix (configurable)      | plain TD              |
| cql-ft    | offline weights | epsilon-greedy                            | TD + offline's term   |
| hybrid    | random init     | epsilon-greedy; half offline episodes     | plain TD              |
| wsrl      | offline weights | warm-up of the pretrained policy, then    | plain TD; no offline  |
|           |                 | epsilon-greedy 0.2 -> 0.05 (`wsrl.py`)    | data online           |
| sim2o     | offline weights | per agent, the frozen offline or the      | plain TD; half        |
|           |                 | online (eps 0.2 -> 0.05) proposal, chosen | offline episodes      |
|           |                 | by beam search on Q_tot (`sim2o.py`)      |                       |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from o2omarl.qmix import QmixConfig, QmixO2O
from o2omarl.qmix.algorithm import NON_NEGATIVE, PROBABILITY
from o2omarl.qmix.conservative import offline_loss
from o2omarl.settings import setting


@dataclass
class QmixScratchConfig(QmixConfig):
    init: str = "random"


class Qmix(QmixO2O):
    """Online QMIX from scratch: the reference that ignores the offline data."""

    name = "qmix"
    Config = QmixScratchConfig


class FtQmix(QmixO2O):
    """Offline weights, then plain online QMIX. Set `eps_start` to choose how hard it explores."""

    name = "ft-qmix"
    Config = QmixConfig


@dataclass
class CqlFtConfig(QmixConfig):
    # The kept term is pretraining's own (`offline_loss`, cfcql by default), its weight scaled
    # by this: 1.0 keeps it as it was offline, 0 turns cql-ft into ft-qmix.
    online_alpha_scale: float = setting(1.0, "the weight of pretraining's conservative term "
                                             "kept online, relative to its offline weight")

    RANGES: ClassVar[dict] = {**QmixConfig.RANGES, "online_alpha_scale": NON_NEGATIVE}


class CqlFt(QmixO2O):
    """Offline weights; the conservative term of pretraining stays in the loss online."""

    name = "cql-ft"
    Config = CqlFtConfig

    def online_losses(self) -> tuple:
        c, scale = self.cfg, self.cfg.online_alpha_scale
        return (offline_loss(c.offline_loss, scale * c.cql_alpha, scale * c.cfcql_alpha,
                             c.cfcql_temperature),)


@dataclass
class HybridConfig(QmixConfig):
    init: str = "random"
    offline_fraction: float = setting(0.5, "share of every batch drawn from the offline "
                                           "dataset")

    RANGES: ClassVar[dict] = {**QmixConfig.RANGES, "offline_fraction": PROBABILITY}


class Hybrid(QmixO2O):
    """RLPD (Ball et al., ICML 2023, "Efficient Online Reinforcement Learning with Offline
    Data"): no pretraining (random init), and every batch drawn symmetrically, half offline
    episodes and half online (`offline_fraction`), as Hy-Q's hybrid sampling also does.

    What differs from RLPD: its critic ensemble (10 Q-networks, a random subset for the
    target), LayerNorm in the critic and its high update-to-data ratio (20) are not here; the
    learner is the suite's shared QMIX, at its own update rate, and sampling is by episode
    (RLPD samples transitions)."""

    name = "hybrid"
    Config = HybridConfig

    def parts(self):
        parts = super().parts()
        parts.offline_fraction = self.cfg.offline_fraction
        return parts


from o2omarl.baselines.wsrl import Wsrl  # noqa: E402 - a module of its own, on the same base

BASELINES = (Qmix, FtQmix, CqlFt, Hybrid, Wsrl)
