"""Dataset cards: the return's spread, the episode length and SACo (joint state-action
coverage) for every stored version, in `bench datasets show`, in Minari's own metadata, and
computed from the episodes for versions written before the card had SACo."""

from __future__ import annotations

import json
import math

import minari
import numpy as np
import pytest

from o2omarl import datasets
from o2omarl.datasets.store import SIDECAR, saco
from test_errors import bench


def test_saco_counts_distinct_state_cells_and_joint_actions_by_hand():
    states = np.array([[0.1, 0.9], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9]])
    # rounded to whole numbers, rows 0, 1 and 3 are one cell (0, 1); row 2 is (1, 0)
    same = np.array([[1, 2], [1, 2], [0, 0], [1, 2]])
    assert saco(states, same) == pytest.approx(2 / 4)  # (0,1)+(1,2) thrice, (1,0)+(0,0)
    other = np.array([[1, 2], [2, 1], [0, 0], [1, 2]])  # one agent's action differs
    assert saco(states, other) == pytest.approx(3 / 4)
    assert saco(states, same, decimals=1) == pytest.approx(3 / 4)  # a finer grid splits 0, 1
    assert math.isnan(saco(states[:0], same[:0]))


@pytest.mark.slow
def test_the_card_is_in_show_and_in_minaris_metadata(heuristic_3m, capsys):
    arrays = datasets.load(heuristic_3m)
    T = arrays.filled.shape[1]
    returns = (arrays.reward * arrays.filled).sum(1)
    lengths = arrays.filled.sum(1)
    code, out, err = bench(["datasets", "show", heuristic_3m.dataset_id], capsys)
    assert code == 0, err
    card = json.loads(out)["stats"]
    assert card["episodes"] == len(arrays) and card["steps"] == int(lengths.sum())
    assert card["return_mean"] == pytest.approx(returns.mean(), rel=1e-5)
    assert card["return_std"] == pytest.approx(returns.std(), rel=1e-4)
    assert (card["return_min"], card["return_max"]) == pytest.approx((returns.min(),
                                                                      returns.max()))
    assert card["length_mean"] == pytest.approx(lengths.mean())
    assert card["saco"] == pytest.approx(saco(arrays.state[:, :T][arrays.filled],
                                              arrays.actions[arrays.filled]))
    assert 0 < card["saco"] <= 1
    meta = minari.load_dataset(heuristic_3m.dataset_id).storage.metadata
    assert meta["dataset_card"] == pytest.approx(card)


@pytest.mark.slow
def test_a_version_written_before_saco_gets_it_from_its_episodes(fresh_root, capsys):
    rec = datasets.collect("3m", "random", episodes=12, seed=1, num_envs=4,
                           show_progress=False).record
    stored = rec.stats["saco"]
    sidecar = rec.path / SIDECAR
    meta = json.loads(sidecar.read_text())
    del meta["stats"]["saco"], meta["stats"]["saco_decimals"]
    sidecar.write_text(json.dumps(meta))
    code, out, err = bench(["datasets", "show", rec.dataset_id], capsys)
    assert code == 0, err
    assert json.loads(out)["stats"]["saco"] == pytest.approx(stored)
    assert "saco" not in json.loads(sidecar.read_text())["stats"]  # the record is not changed
