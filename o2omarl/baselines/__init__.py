"""The O2O baselines OVMSE must beat (DESIGN.md section 5), each a few lines on `qmix/`.

| name      | start           | online behaviour                          | target                |
|-----------|-----------------|-------------------------------------------|-----------------------|
| qmix      | random init     | epsilon-greedy 1.0 -> 0.05                | plain TD              |
| ft-qmix   | offline weights | same schedule as qmix (configurable)      | plain TD              |
| cql-ft    | offline weights | epsilon-greedy                            | TD + offline's term   |
| hybrid    | random init     | epsilon-greedy; half offline episodes     | plain TD              |
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
    """RLPD / Hy-Q style: random init, every batch mixes offline and online episodes."""

    name = "hybrid"
    Config = HybridConfig

    def parts(self):
        parts = super().parts()
        parts.offline_fraction = self.cfg.offline_fraction
        return parts


BASELINES = (Qmix, FtQmix, CqlFt, Hybrid)
