"""`bench report` on hand-written run folders whose every number is known.

The store below: task 3m/heuristic-v0 at budget 100 with ovmse and ft-qmix (2 seeds each), a
failed ft-qmix seed whose perfect curve must not be averaged in, and one ovmse run at budget
200 that must stay in its own row.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from o2omarl.benchmark.results import scan
from o2omarl.cli import main
from o2omarl.reports import build_report, stats
from o2omarl.reports.cells import by_task, group
from o2omarl.reports.figures import curve_bands, curve_figure
from o2omarl.reports.metrics import run_metrics

ROOT = Path(__file__).resolve().parents[1]
PNG, PDF = b"\x89PNG\r\n\x1a\n", b"%PDF-"
CURVES = {  # (method, seed) -> test win rate every 10 env steps, budget 100
    ("ovmse", 0): [0.5, 0.4, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0],
    ("ovmse", 1): [0.5, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7],
    ("ft-qmix", 0): [0.5, 0.0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.4, 0.4],
    ("ft-qmix", 1): [0.5, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5],
}


def make_run(runs_dir: Path, method: str, seed: int, win_rates, budget: int = 100,
             state: str = "done", error: str | None = None, map_name: str = "3m",
             tier: str = "heuristic-v0", train=None) -> Path:
    """A run folder as `bench run` writes it: evaluations evenly spread over the budget."""
    path = runs_dir / map_name / tier / method / f"seed_{seed}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "method": method, "map": map_name, "backend": "smax", "seed": seed, "steps": budget,
        "pretrain_steps": 10, "dataset": f"smax/{map_name}/{tier}"}))
    (path / "status.json").write_text(json.dumps({"state": state, "error": error}))
    steps = np.linspace(0, budget, len(win_rates))
    rows = []
    for k, (step, wr) in enumerate(zip(steps, win_rates)):
        row = {"env_step": int(step), "test_win_rate": wr, "test_return": 20 * wr}
        if train and k:
            row.update(train_win_rate=train[k - 1][0], train_episodes=train[k - 1][1])
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fake_dataset(root: Path, dataset_id: str, **stats_) -> None:
    """The sidecar `store.get` reads (the data files themselves are not needed here)."""
    path = root / dataset_id
    path.mkdir(parents=True)
    (path / "o2omarl.json").write_text(json.dumps({"stats": stats_}))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for (method, seed), wr in CURVES.items():
        make_run(runs, method, seed, wr)
    make_run(runs, "ft-qmix", 2, [1.0] * 11, state="failed", error="training diverged")
    make_run(runs / "long", "ovmse", 0, [0.5] * 21, budget=200)
    return runs


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    minari = tmp_path_factory.mktemp("minari")
    fake_dataset(minari, "smax/3m/heuristic-v0", episodes=200, steps=4321, return_mean=12.5,
                 win_rate=0.75)
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(minari))
        build_report(store, out, say=lambda _: None)
    return out


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def main_row(report: Path, method: str, budget: int = 100) -> dict:
    rows = [r for r in read_csv(report / "tables" / "main.csv")
            if r["method"] == method and int(r["budget"]) == budget]
    assert len(rows) == 1, rows
    return rows[0]


def auc(wr) -> float:
    """Mean win rate over the budget for evenly spaced evaluations (trapezoids)."""
    return float(np.mean([(a + b) / 2 for a, b in itertools.pairwise(wr)]))


def boot_ci(x) -> tuple[float, float]:
    """The documented bootstrap, done here independently of the library."""
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, len(x), size=(2000, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def test_main_table_holds_the_expected_numbers(report):
    r = main_row(report, "ovmse")
    assert int(r["seeds"]) == 2 and r["seed_list"] == "0 1"
    aucs = [auc(CURVES["ovmse", s]) for s in (0, 1)]
    assert float(r["auc_mean"]) == pytest.approx(np.mean(aucs))
    lo, hi = boot_ci(aucs)
    assert (float(r["auc_lo"]), float(r["auc_hi"])) == pytest.approx((lo, hi))
    assert float(r["wr_start_mean"]) == pytest.approx(0.5)
    assert float(r["wr_final_mean"]) == pytest.approx((1.0 + 0.7) / 2)
    # The first 10 env steps hold two evaluations (steps 0 and 10): too few for a drop
    # (test_window_metrics_need_three_evaluations_and_after_never_holds_step_0 has the number)
    assert np.isnan(float(r["unlearning_drop_mean"])) and int(r["unlearning_drop_n"]) == 0
    # only seed 0 reaches 80% (at step 40): the mean is over the seeds that reached it
    assert float(r["steps_to_threshold_mean"]) == 40 and int(r["steps_to_threshold_n"]) == 1
    # identical values: the interval collapses to the mean
    assert float(r["wr_start_lo"]) == float(r["wr_start_hi"]) == pytest.approx(0.5)
    md = (report / "tables" / "main.md").read_text()
    assert "40 [40, 40] (1/2 seeds)" in md
    assert "n/a (2 evaluations)" in md


def test_failed_run_is_listed_apart_and_not_averaged(report):
    r = main_row(report, "ft-qmix")
    assert int(r["seeds"]) == 2  # not the failed seed 2 with its perfect curve
    assert float(r["auc_mean"]) == pytest.approx(
        np.mean([auc(CURVES["ft-qmix", s]) for s in (0, 1)]))
    last3 = [np.mean(CURVES["ft-qmix", s][-3:]) for s in (0, 1)]
    assert float(r["wr_final_mean"]) == pytest.approx(np.mean(last3))
    excluded = read_csv(report / "tables" / "not_included.csv")
    assert [(e["method"], e["seed"]) for e in excluded] == [("ft-qmix", "2")]
    assert "failed: training diverged" in excluded[0]["reason"]


def test_different_budgets_are_not_pooled(report):
    long = main_row(report, "ovmse", budget=200)
    assert int(long["seeds"]) == 1 and float(long["auc_mean"]) == pytest.approx(0.5)
    assert int(main_row(report, "ovmse", budget=100)["seeds"]) == 2
    md = (report / "tables" / "main.md").read_text()
    assert "| 3m | smax/3m/heuristic-v0 | ovmse | 200 |" in md


def test_best_method_is_bold_per_task(report):
    auc_ovmse = float(main_row(report, "ovmse")["auc_mean"])
    md = (report / "tables" / "main.md").read_text()
    tex = (report / "tables" / "main.tex").read_text()
    ovmse_line = next(x for x in md.splitlines() if "| ovmse | 100 |" in x)
    ftqmix_line = next(x for x in md.splitlines() if "| ft-qmix | 100 |" in x)
    assert f"**{auc_ovmse:.3f} [" in ovmse_line
    assert "**" in ftqmix_line  # tie on win rate before: both bold
    assert not any(f"**{v}" in ftqmix_line for v in ("0.2", "0.1"))  # AUC, after: not best
    assert rf"\textbf{{{auc_ovmse:.3f} [" in tex
    # the budget-200 row is its own group of one: nothing to compare, nothing bold
    assert "**" not in next(x for x in md.splitlines() if "| ovmse | 200 |" in x)


def test_aggregates_and_improvement(report):
    agg = {r["method"]: r for r in read_csv(report / "tables" / "aggregate.csv")}
    # ovmse: budget-100 task (2 seeds) and budget-200 task (1 seed), all pooled
    aucs = [auc(CURVES["ovmse", 0]), auc(CURVES["ovmse", 1]), 0.5]
    assert int(agg["ovmse"]["tasks"]) == 2 and int(agg["ovmse"]["runs"]) == 3
    assert float(agg["ovmse"]["auc_mean"]) == pytest.approx(np.mean(aucs))
    poi = read_csv(report / "tables" / "improvement.csv")
    assert [(p["other"], p["shared_tasks"]) for p in poi] == [("ft-qmix", "1")]
    assert float(poi[0]["auc_poi"]) == 1.0  # every ovmse seed beats every ft-qmix seed


def test_dataset_table_reads_the_store(report, store, tmp_path, monkeypatch):
    rows = read_csv(report / "tables" / "datasets.csv")
    assert rows == [{"id": "smax/3m/heuristic-v0", "tier": "heuristic", "episodes": "200",
                     "steps": "4321", "return_mean": "12.5", "win_rate": "0.75",
                     "status": "ok"}]
    # a dataset that cannot be read is listed as missing, not fatal
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    build_report(store, tmp_path / "out", formats=["png"], say=lambda _: None)
    (row,) = read_csv(tmp_path / "out" / "tables" / "datasets.csv")
    assert row["status"].startswith("missing: dataset 'smax/3m/heuristic-v0' does not exist")


def test_curve_figure_has_one_line_per_method(store):
    cells, _ = group(scan(store))
    task, task_cells = next((t, c) for t, c in by_task(cells).items() if t.budget == 100)
    fig = curve_figure(curve_bands(task_cells, "test_win_rate"), "test win rate", task.label,
                       True)
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["ft-qmix (2 seeds)", "ovmse (2 seeds)"]
    ovmse = lines[1]
    np.testing.assert_allclose(ovmse.get_ydata(),
                               np.mean([CURVES["ovmse", 0], CURVES["ovmse", 1]], axis=0))
    assert ovmse.get_xdata()[0] == 0 and ovmse.get_marker() == "o"
    assert ovmse.get_markevery() == [0]  # the offline policy is marked


def test_figures_are_png_and_pdf(report):
    figs = sorted((report / "figures").iterdir())
    names = {f.stem for f in figs}
    assert {"win_smax-3m-heuristic-v0_b100_p10", "return_smax-3m-heuristic-v0_b100_p10",
            "ablation_smax-3m-heuristic-v0_b100_p10", "win_smax-3m-heuristic-v0_b200_p10",
            "profile"} <= names
    assert "ablation_smax-3m-heuristic-v0_b200_p10" not in names  # one ablation method only
    for f in figs:
        assert f.read_bytes().startswith(PNG if f.suffix == ".png" else PDF), f
    assert not [f for f in report.rglob("*.tmp")]


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])


def test_index_html_references_existing_files(report):
    refs = _Refs()
    refs.feed((report / "index.html").read_text())
    assert len(refs.imgs) == 6  # 2 tasks x (win, return), 1 ablation, 1 profile
    for src in refs.imgs:
        assert not src.startswith(("/", "http")), src
        assert (report / src).read_bytes().startswith(PNG), src
    for href in refs.links:
        assert (report / href).is_file(), href
    md = (report / "index.md").read_text()
    assert all(f"]({src})" in md for src in refs.imgs)


def test_html_renders_in_chromium(report):
    sys.path.insert(0, str(ROOT / "scripts"))
    from check_report_html import find_chromium

    if find_chromium() is None:
        pytest.skip("no chromium binary (apt-get install chromium, or set CHROMIUM)")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_report_html.py"),
                          str(report)], check=False, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def bench_report(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["report", *args])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return e.value.code, err


def test_cli_bad_input(store, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = bench_report(capsys, "--runs-dir", str(tmp_path / "none"), "--out", str(out))
    assert code == 2 and "none" in err and "does not exist" in err
    assert "bench run ovmse --map 3m --dataset heuristic --seeds 2" in err
    (tmp_path / "empty").mkdir()
    code, err = bench_report(capsys, "--runs-dir", str(tmp_path / "empty"), "--out", str(out))
    assert code == 2 and "holds no runs" in err
    code, err = bench_report(capsys, "--runs-dir", str(store), "--out", str(out), "--map", "8m")
    assert code == 2 and "'8m'" in err and err.endswith("maps with runs: 3m")
    code, err = bench_report(capsys, "--runs-dir", str(store), "--out", str(out),
                             "--method", "qmix")
    assert code == 2 and "'qmix'" in err and err.endswith("methods with runs: ft-qmix, ovmse")
    code, err = bench_report(capsys, "--runs-dir", str(store), "--out", str(out),
                             "--format", "png,svg")
    assert code == 2 and err == "error: unknown format 'svg'; accepted: png, pdf"
    assert not out.exists()  # bad input writes nothing


def test_cli_filters_and_unfinished_only(store, tmp_path, capsys):
    main(["report", "--runs-dir", str(store), "--out", str(tmp_path / "a"), "--method", "ovmse",
          "--format", "png"])
    assert "report: " in capsys.readouterr().out
    assert {r["method"] for r in read_csv(tmp_path / "a" / "tables" / "main.csv")} == {"ovmse"}
    assert not list((tmp_path / "a" / "figures").glob("*.pdf"))
    # a store with only a failed run still gets a report that lists it
    runs = tmp_path / "runs"
    make_run(runs, "ovmse", 0, [0.5, 0.5], state="failed", error="boom")
    index = build_report(runs, tmp_path / "b", say=lambda _: None)
    assert "boom" in index.read_text() and read_csv(index.parent / "tables" / "main.csv") == []


def test_stats_estimators():
    from scipy.stats import trim_mean

    x = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4])
    assert stats.iqm(x) == pytest.approx(trim_mean(x, 0.25))
    point, lo, hi = stats.stratified_ci([x])
    assert point == pytest.approx(x.mean()) and (lo, hi) == pytest.approx(boot_ci(x))
    # P(X > Y): all pairs won on task 1, ties (0.5) on task 2
    p, lo, hi = stats.probability_of_improvement([np.array([1.0, 2.0]), np.array([3.0])],
                                                 [np.array([0.0, 0.5]), np.array([3.0])])
    assert (p, lo, hi) == (0.75, 0.75, 0.75)
    frac, _, _ = stats.performance_profile([np.array([0.2, 0.6]), np.array([0.9])],
                                           np.array([0.0, 0.5, 0.95]))
    np.testing.assert_allclose(frac, [1.0, 2 / 3, 0.0])


def test_regret_weights_by_training_episodes():
    rows = [{"env_step": 0, "test_win_rate": 0.0},
            {"env_step": 50, "test_win_rate": 0.0, "train_win_rate": 0.5, "train_episodes": 10},
            {"env_step": 100, "test_win_rate": 0.0, "train_win_rate": 1.0, "train_episodes": 30}]
    assert run_metrics(rows, 100)["regret"] == pytest.approx(1 - (0.5 * 10 + 1.0 * 30) / 40)


def test_window_metrics_need_three_evaluations_and_after_never_holds_step_0():
    """Budget 20k, evaluations every 10k (0, 10k, 20k): the unlearning window (first 2k)
    holds step 0 only and "after" two evaluations, so neither is a number."""
    rows = [{"env_step": s, "test_win_rate": w} for s, w in ((0, 0.44), (10_000, 0.0),
                                                             (20_000, 0.1))]
    m = run_metrics(rows, 20_000)
    assert np.isnan(m["unlearning_drop"]) and m["early_evals"] == 1
    assert np.isnan(m["wr_final"]) and m["after_evals"] == 2
    # Evaluations every 1k (the default spacing for a 20k budget): both resolve, and "after"
    # is the last three evaluations after step 0 even when the run has only three.
    dense = [{"env_step": 1000 * k, "test_win_rate": w}
             for k, w in enumerate([0.44, 0.2, 0.0] + [0.3] * 18)]
    m = run_metrics(dense, 20_000)
    assert m["early_evals"] == 3 and m["unlearning_drop"] == pytest.approx(0.44)
    assert m["wr_final"] == pytest.approx(0.3)
    three = run_metrics([{"env_step": 1000 * k, "test_win_rate": w}
                         for k, w in enumerate([0.9, 0.3, 0.4, 0.5])], 3000)
    assert three["wr_final"] == pytest.approx(0.4)  # 0.3, 0.4, 0.5: not the step-0 0.9


def test_report_prints_na_with_the_evaluation_count_and_warns_below_three_seeds(tmp_path):
    runs = tmp_path / "runs"
    for method, curve in (("ovmse", [0.44, 0.3, 0.4]), ("ft-qmix", [0.44, 0.0, 0.0])):
        make_run(runs, method, 0, curve, budget=20_000)
    build_report(runs, tmp_path / "out", formats=["png"], n_boot=50)
    md = (tmp_path / "out" / "index.md").read_text()
    table = (tmp_path / "out" / "tables" / "main.md").read_text()
    rows = {line.split("|")[3].strip(): line for line in table.splitlines()[2:]}
    for method in ("ovmse", "ft-qmix"):
        cells = [c.strip() for c in rows[method].split("|")]
        assert "n/a (2 evaluations)" in cells  # win rate after
        assert "n/a (1 evaluation)" in cells  # unlearning drop
    assert "**n/a" not in table
    assert "fewer than 3 seeds" in md
