"""CLI conventions researchers expect: budgets as 1e5 / 100k, `--json` on the list commands,
shell completion of methods and dataset ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from o2omarl import datasets
from o2omarl.cli import COUNT
from test_errors import bench


@pytest.mark.parametrize("text, value", [("100000", 100_000), ("100_000", 100_000),
                                         ("1e5", 100_000), ("100k", 100_000), ("2M", 2_000_000),
                                         ("1.5k", 1500)])
def test_counts_are_read_as_researchers_write_them(text, value):
    assert COUNT.convert(text, None, None) == value


@pytest.mark.parametrize("text", ["1.5", "abc", "k", "nan", "1e-3"])
def test_a_count_that_is_not_whole_is_refused(text):
    with pytest.raises(click.BadParameter, match="not a whole number"):
        COUNT.convert(text, None, None)


@pytest.mark.slow
def test_steps_in_scientific_notation_reach_the_run(fresh_root, tmp_path, capsys):
    """`--steps 2e3` is 2,000 steps in the run's config (and `--pretrain-steps 1k`)."""
    rec = datasets.collect("3m", "random", episodes=8, seed=0, num_envs=8,
                           show_progress=False).record
    runs = tmp_path / "runs"
    code, _, err = bench(["run", "ft-qmix", "--map", "3m", "--dataset", rec.dataset_id,
                          "--steps", "2e3", "--pretrain-steps", "0.02k", "--seed", "0",
                          "--runs-dir", str(runs), "--set", "hidden=8", "--set",
                          "eval_episodes=4", "--set", "num_envs=4"], capsys)
    assert code == 0, err
    (config,) = runs.rglob("config.json")
    cfg = json.loads(config.read_text())
    assert (cfg["steps"], cfg["pretrain_steps"]) == (2000, 20)

    code, out, _ = bench(["runs", "list", "--runs-dir", str(runs), "--json"], capsys)
    (row,) = json.loads(out)
    assert code == 0 and row["method"] == "ft-qmix" and row["status"] == "done"
    assert (row["steps_done"], row["budget"], row["seed"]) == (2000, 2000, 0)
    assert 0.0 <= row["last_win_rate"] <= 1.0

    code, out, _ = bench(["datasets", "list", "--json"], capsys)
    (ds,) = json.loads(out)
    assert code == 0 and ds["id"] == rec.dataset_id and ds["episodes"] == 8
    assert ds["return_mean"] == pytest.approx(rec.stats["return_mean"])


def _complete(words: str, root: Path) -> list[str]:
    """What bash completion offers after `words` (Click's own completion protocol)."""
    exe = Path(sys.executable).parent / "bench"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "o2omarl.cli"]
    env = {**os.environ, "_BENCH_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
           "MINARI_DATASETS_PATH": str(root)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120).stdout
    return [line.split(",", 1)[1] for line in out.splitlines() if "," in line]


def test_shell_completion_of_methods_and_dataset_ids(fresh_root):
    rec = datasets.collect("3m", "random", episodes=4, seed=0, num_envs=4,
                           show_progress=False).record
    assert _complete("bench run ov", fresh_root) == ["ovm", "ovmse"]
    assert _complete("bench datasets show smax/3", fresh_root) == [rec.dataset_id]
    assert "datasets" in _complete("bench da", fresh_root)
