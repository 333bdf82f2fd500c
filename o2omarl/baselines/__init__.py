"""The O2O baselines OVMSE must beat (DESIGN.md section 5), each a few lines on `qmix/`.

| name      | start           | online behaviour                          | target                |
|-----------|-----------------|-------------------------------------------|-----------------------|
| qmix      | random init     | epsilon-greedy 1.0 -> 0.05                | plain TD              |
| ft-qmix   | offline weights | same schedule as qmix (configurable)      | plain TD              |
| cql-ft    | offline weights | epsilon-greedy                            | TD + conservative term|
| hybrid    | random init     | epsilon-greedy; half offline episodes     | plain TD              |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from o2omarl.qmix import ConservativeLoss, QmixConfig, QmixO2O
from o2omarl.qmix.algorithm import NON_NEGATIVE, PROBABILITY


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
    online_cql_alpha: float = 5.0  # conservative term weight kept during fine-tuning

    RANGES: ClassVar[dict] = {**QmixConfig.RANGES, "online_cql_alpha": NON_NEGATIVE}


class CqlFt(QmixO2O):
    """Offline weights; the conservative term stays in the loss online."""

    name = "cql-ft"
    Config = CqlFtConfig

    def online_losses(self) -> tuple:
        return (ConservativeLoss(self.cfg.online_cql_alpha),)


@dataclass
class HybridConfig(QmixConfig):
    init: str = "random"
    offline_fraction: float = 0.5  # share of every batch drawn from the offline dataset

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
