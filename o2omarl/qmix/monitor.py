"""What the training loops (online and offline) watch and report: the window of metrics
between two evaluations, the progress line, a non-finite loss (a stop), values leaving the
return scale and uncalibrated values at the end of pretraining (warnings)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable

import numpy as np

from o2omarl.envs.base import MAX_RETURN
from o2omarl.errors import BenchError
from o2omarl.progress import warn
from o2omarl.protocol import CALIBRATED, calibrated, calibration, greedy_calibration

# Where a loop writes its metrics rows. A log may also offer `scalars(step, metrics)`: the
# loop then hands it the training metrics between two rows as well, at a finer grain
# (`Window.tail`), for TensorBoard (`benchmark.rundir.TensorBoardLog`).
Log = Callable[[dict], None]

# Training points a loop hands `log.scalars` per evaluation interval (at its boundaries): 10
# makes curves finer than evaluations, and costs ~10 x the tags of one row per evaluation.
POINTS_PER_EVAL = 10


def points_every(eval_interval: int) -> int:
    """Steps (env steps online, updates offline) between two training points."""
    return max(1, eval_interval // POINTS_PER_EVAL)


class Diverged(BenchError):
    pass


class Window:
    """Averages of training episodes and update metrics between two evaluations; `tail` gives
    those since its previous call, the finer points between two evaluations."""

    def __init__(self):
        self.returns, self.wins, self.metrics = [], [], defaultdict(list)
        self.explorers: list[float] = []
        self.marks: dict[str, int] = {}  # list -> its length at the last `tail()`

    def _lists(self) -> dict[str, list]:
        return {"returns": self.returns, "wins": self.wins, "explorers": self.explorers,
                **{f"metrics/{k}": v for k, v in self.metrics.items()}}

    def _means(self, start: dict[str, int]) -> dict:
        lists = {k: v[start.get(k, 0):] for k, v in self._lists().items()}
        row = {k.removeprefix("metrics/"): float(np.mean(v)) for k, v in lists.items()
               if k.startswith("metrics/") and v}
        if lists["returns"]:
            row.update(train_return=float(np.mean(lists["returns"])),
                       train_win_rate=float(np.mean(lists["wins"])),
                       train_episodes=len(lists["wins"]))
        if lists["explorers"]:
            row["exploring_agents"] = float(np.mean(lists["explorers"]))
        return row

    def flush(self) -> dict:
        row = self._means({})
        self.__init__()
        return row

    def tail(self) -> dict:
        """The means since the previous `tail()` (or `flush()`); {} if nothing came since."""
        row = self._means(self.marks)
        self.marks = {k: len(v) for k, v in self._lists().items()}
        return row

    def state_dict(self) -> dict:
        return {"returns": list(self.returns), "wins": list(self.wins),
                "metrics": {k: list(v) for k, v in self.metrics.items()},
                "explorers": list(self.explorers), "marks": dict(self.marks)}

    def load_state_dict(self, sd: dict) -> None:
        self.returns, self.wins = list(sd["returns"]), list(sd["wins"])
        self.metrics = defaultdict(list, {k: list(v) for k, v in sd["metrics"].items()})
        self.explorers = list(sd["explorers"])
        self.marks = dict(sd.get("marks", {}))  # checkpoints from before TensorBoard: none


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
    """The progress line's metrics: win rate, Q_tot against what the data earned, and (at an
    offline evaluation) Q_tot of the greedy actions against what their battles earned."""
    text = f"win rate {row.get('test_win_rate', float('nan')):.2f}"
    if "q_taken_mean" in row and "return_to_go_mean" in row:
        text += f" | Q_tot {row['q_taken_mean']:.2f} vs {row['return_to_go_mean']:.2f} earned"
        ratio = calibration(row)
        if not math.isnan(ratio):
            text += f" ({ratio:.2f}x)"
    ratio = greedy_calibration(row)
    if not math.isnan(ratio):
        text += (f" | greedy {row['test_q_mean']:.2f} vs {row['test_earned_mean']:.2f} "
                 f"({ratio:.2f}x)")
    return text


def check_calibration(row: dict, label: str) -> None:
    """Warns, in one line, when pretraining ends with values off the return they estimate: on
    the greedy policy's battles where it was evaluated (right on any data), else on the data's
    actions."""
    lo, hi = CALIBRATED
    ratio = greedy_calibration(row)
    if not math.isnan(ratio):
        if not calibrated(ratio):
            warn(f"{label}: Q_tot of the greedy actions is {ratio:.2f}x the return their "
                 f"battles earned ({row['test_q_mean']:.2f} vs {row['test_earned_mean']:.2f}) "
                 f"at the end of pretraining, outside [{lo}, {hi}]: the online phase starts "
                 "from miscalibrated values (README, 'Offline pretraining')")
        return
    ratio = calibration(row)
    if not math.isnan(ratio) and not calibrated(ratio):
        warn(f"{label}: Q_tot of the data's actions is {ratio:.2f}x the return those episodes "
             f"earned ({row['q_taken_mean']:.2f} vs {row['return_to_go_mean']:.2f}) at the end "
             f"of pretraining, outside [{lo}, {hi}]: the online phase starts from miscalibrated "
             "values (README, 'Offline pretraining')")


def check_finite(metrics: dict, where: str, kept: str) -> None:
    if not math.isfinite(metrics["loss"]):
        raise Diverged(f"training diverged at {where}: loss is {metrics['loss']}; {kept}")
