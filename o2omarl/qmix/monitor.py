"""What the training loops (online and offline) watch and report: the window of metrics
between two evaluations, the progress line, the evaluation seed, a non-finite loss (a stop) and
values leaving the return scale (a warning)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable

import numpy as np

from o2omarl.envs.base import MAX_RETURN
from o2omarl.errors import BenchError
from o2omarl.progress import warn


Log = Callable[[dict], None]  # where a loop writes its metrics rows


class Diverged(BenchError):
    pass


class Window:
    """Averages of training episodes and update metrics between two evaluations."""

    def __init__(self):
        self.returns, self.wins, self.metrics = [], [], defaultdict(list)
        self.explorers: list[float] = []

    def flush(self) -> dict:
        row = {k: float(np.mean(v)) for k, v in self.metrics.items()}
        if self.returns:
            row.update(train_return=float(np.mean(self.returns)),
                       train_win_rate=float(np.mean(self.wins)), train_episodes=len(self.wins))
        if self.explorers:
            row["exploring_agents"] = float(np.mean(self.explorers))
        self.__init__()
        return row


# Q_tot above this many times the best possible return (~20) is no estimate of any return: the
# targets are chasing themselves upward (DESIGN.md section 5). A warning, not a stop.
DIVERGED_FACTOR = 1.5


class Divergence:
    """Says once per run, in one line, when the mean Q_tot leaves the return scale."""

    def __init__(self, label: str):
        self.label, self.said = label, False

    def check(self, row: dict, where: str) -> None:
        q = row.get("q_taken_mean")
        if self.said or q is None or q <= DIVERGED_FACTOR * MAX_RETURN:
            return
        self.said = True
        warn(f"{self.label}: Q_tot mean {q:.1f} at {where} is above the best possible return "
             f"(~{MAX_RETURN:.0f}) by a wide margin, while the data earned "
             f"{row.get('return_to_go_mean', float('nan')):.1f}: the values are diverging")


def summary(row: dict) -> str:
    """The progress line's metrics: win rate, and Q_tot against what the data earned."""
    text = f"win rate {row.get('test_win_rate', float('nan')):.2f}"
    if "q_taken_mean" in row and "return_to_go_mean" in row:
        text += f" | Q_tot {row['q_taken_mean']:.2f} vs {row['return_to_go_mean']:.2f} earned"
    return text


def eval_seed(seed: int) -> int:
    """The battles every evaluation of a run plays (offline and online alike), so the same
    weights evaluated twice on as many episodes give the same number."""
    return seed + 1_000_003


def check_finite(metrics: dict, where: str, kept: str) -> None:
    if not math.isfinite(metrics["loss"]):
        raise Diverged(f"training diverged at {where}: loss is {metrics['loss']}; {kept}")
