"""Shared value-decomposition machinery: agent RNN, mixers, episode buffer, learner, loops."""

from o2omarl.qmix.acting import Actor, Schedule, epsilon_greedy, evaluate
from o2omarl.qmix.algorithm import QmixConfig, QmixO2O, load_checkpoint
from o2omarl.qmix.buffer import Batch, EpisodeStore
from o2omarl.qmix.conservative import ConservativeLoss, CounterfactualConservativeLoss
from o2omarl.qmix.learner import Learner, LearnerConfig, UpdateContext
from o2omarl.qmix.train import Diverged, OnlineConfig, Parts, PretrainConfig

__all__ = [
    "Actor", "Batch", "ConservativeLoss", "CounterfactualConservativeLoss", "Diverged",
    "EpisodeStore", "Learner",
    "LearnerConfig", "OnlineConfig", "Parts", "PretrainConfig", "QmixConfig", "QmixO2O",
    "Schedule", "UpdateContext", "epsilon_greedy", "evaluate", "load_checkpoint",
]
