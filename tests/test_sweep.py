"""Sweep files (`bench run --config sweep.yaml`): the same jobs as the command line they spell
out, named variants beside their method in one run store, one line for every bad value, and a
rerun of a finished sweep that skips everything without importing the simulator."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import o2omarl.benchmark
from o2omarl.benchmark import plan
from o2omarl.benchmark.sweep import plan_sweep
from test_envs import SIMULATOR, bench_in_fresh_python
from test_errors import bench

PAPER = Path(__file__).parents[1] / "benchmarks" / "paper.yaml"
TINY = ["--set", "hidden=16", "--set", "num_envs=4", "--set", "eval_episodes=4"]


@pytest.fixture
def sweep_of(monkeypatch, capsys):
    """The `Sweep` that `bench ARGV` would run (planning, running and printing stop there)."""

    def parse(argv):
        seen = []
        monkeypatch.setattr(o2omarl.benchmark, "run_sweep",
                            lambda s, say, **_: seen.append(s) or [])
        code, _, err = bench(["run", *argv], capsys)
        assert code == 0, err
        return seen[0]

    return parse


def write(tmp_path, text: str) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return str(path)


def test_a_sweep_file_plans_the_jobs_of_its_command_line(heuristic_3m, tmp_path, sweep_of):
    line = ["ft-qmix", "qmix", "--map", "3m", "--dataset", "heuristic", "--seeds", "2",
            "--seed-offset", "1", "--steps", "50k", "--pretrain-steps", "100", "--workers", "3",
            "--runs-dir", "r", "--set", "hidden=16", "--set", "eps_start=0.3", "--set", "lr=1e-3"]
    config = write(tmp_path, "runs_dir: r\nmaps: 3m\ndatasets: [heuristic]\nseeds: 2\n"
                             "seed_offset: 1\nsteps: 5e4\npretrain_steps: 100\nworkers: 3\n"
                             "set: {hidden: 16, eps_start: 0.3, lr: 1e-3}\n"
                             "methods: [ft-qmix, qmix]\n")
    from_line, from_file = sweep_of(line), sweep_of(["--config", config])
    assert (from_file.runs_dir, from_file.workers) == (from_line.runs_dir, from_line.workers)
    jobs = plan_sweep(from_file)  # YAML reads 1e-3 as text, --set as a number: same config
    assert jobs == plan_sweep(from_line) == plan(
        ["ft-qmix", "qmix"], "3m", "heuristic", [1, 2], 50_000, 100,
        overrides={"hidden": 16, "eps_start": 0.3, "lr": 0.001})
    assert [(j.method, j.seed) for j in jobs] == [("ft-qmix", 1), ("ft-qmix", 2), ("qmix", 1),
                                                 ("qmix", 2)]


def test_a_variant_is_its_method_labelled_and_options_beside_the_file_win(
        heuristic_3m, tmp_path, sweep_of):
    config = write(tmp_path, "maps: {3m: heuristic}\nseeds: [0, 4]\nsteps: 1000\n"
                             "set: {hidden: 16, lr: 0.002}\nmethods: ft-qmix\nvariants:\n"
                             "  ft-qmix_eps0.2: {method: ft-qmix, set: {eps_start: 0.2}}\n")
    common = ["--map", "3m", "--dataset", "heuristic", "--seed", "4", "--steps", "2000",
              "--set", "hidden=16", "--set", "lr=0.001"]
    plain = plan_sweep(sweep_of(["ft-qmix", *common]))
    labelled = plan_sweep(sweep_of(["ft-qmix", "--label", "ft-qmix_eps0.2", *common,
                                    "--set", "eps_start=0.2"]))
    # --seed, --steps and --set replace the file's keys (--set key by key: hidden stays).
    from_file = plan_sweep(sweep_of(["--config", config, "--seed", "4", "--steps", "2000",
                                     "--set", "lr=0.001"]))
    assert from_file == plain + labelled
    variant = from_file[1]
    assert (variant.method, variant.name, variant.config.eps_start) == (
        "ft-qmix", "ft-qmix_eps0.2", 0.2)
    assert variant.run_dir(Path("runs")) == Path("runs/3m/heuristic-v0/ft-qmix_eps0.2/seed_4")
    assert from_file[0].config.eps_start == 1.0


@pytest.mark.parametrize("extra, seeds", [([], [5, 6, 7]), (["--seed", "2"], [2]),
                                          (["--seeds", "2"], [5, 6]),
                                          (["--seed-offset", "1"], [1, 2, 3])])
def test_seed_options_beside_a_file(tmp_path, sweep_of, extra, seeds):
    config = write(tmp_path, "maps: 3m\nseeds: 3\nseed_offset: 5\nmethods: qmix\n")
    assert sweep_of(["--config", config, *extra]).seeds == seeds


def test_the_paper_experiment_file(sweep_of):
    sweep = sweep_of(["--config", str(PAPER)])
    assert sweep.tasks == [("2s3z", "medium"), ("2s3z", "replay"), ("5m_vs_6m", "poor"),
                           ("6h_vs_8z", "medium")]
    assert sorted(sweep.methods) == ["cql-ft", "ft-qmix", "hybrid", "ovm", "ovmse", "qmix", "se"]
    assert {n: (v.method, v.overrides) for n, v in sweep.variants.items()} == {
        "ft-qmix_eps0.2": ("ft-qmix", {"eps_start": 0.2})}
    assert (sweep.seeds, sweep.steps, sweep.pretrain_steps) == ([0, 1, 2], 500_000, 5000)



@pytest.mark.parametrize("path", sorted(PAPER.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_reads(path, sweep_of):
    """Their methods, variants, maps and settings are all known (checked before any job)."""
    sweep = sweep_of(["--config", str(path)])
    assert sweep.methods or sweep.variants
    assert all(m for m, _ in sweep.tasks)


def test_the_pretraining_length_is_one_config_field_however_it_is_given(
        heuristic_3m, tmp_path, sweep_of):
    """`--set pretrain_steps=N` (or a sweep file's `set:`) lands in the config; it was once
    overwritten by --pretrain-steps' default. Given twice, it is refused."""
    common = ["ft-qmix", "--map", "3m", "--dataset", "heuristic", "--seed", "0"]
    by_set = plan_sweep(sweep_of([*common, "--set", "pretrain_steps=20"]))
    by_flag = plan_sweep(sweep_of([*common, "--pretrain-steps", "20"]))
    config = write(tmp_path, "maps: {3m: heuristic}\nseeds: [0]\nmethods: ft-qmix\n"
                             "set: {pretrain_steps: 20}\n")
    by_file = plan_sweep(sweep_of(["--config", config]))
    assert [j.config.pretrain_steps for j in by_set + by_flag + by_file] == [20, 20, 20]
    assert by_set == by_flag == by_file
    default = plan_sweep(sweep_of(common))[0]
    fields = {f.name: f.default for f in dataclasses.fields(type(default.config))}
    assert (default.config.pretrain_steps, default.steps) == (fields["pretrain_steps"],
                                                              fields["steps"])  # the config's
    assert plan_sweep(sweep_of([*common, "--set", "steps=2k"]))[0].steps == 2000
    # a variant's own set still wins over the sweep's length
    config = write(tmp_path, "maps: {3m: heuristic}\nseeds: [0]\npretrain_steps: 20\n"
                             "variants: {ft-qmix_long: {method: ft-qmix, "
                             "set: {pretrain_steps: 40}}}\n")
    assert plan_sweep(sweep_of(["--config", config]))[0].config.pretrain_steps == 40


@pytest.mark.parametrize("argv", [["--pretrain-steps", "20", "--set", "pretrain_steps=30"],
                                  ["--set", "pretrain_steps=0"],
                                  ["--steps", "200", "--set", "steps=300"],
                                  ["--set", "steps=0"]])
def test_a_pretraining_length_given_twice_or_out_of_range_is_refused(heuristic_3m, tmp_path,
                                                                      capsys, argv):
    runs = tmp_path / "runs"
    code, out, err = bench(["run", "ft-qmix", "--map", "3m", "--dataset", "heuristic", "--seed",
                            "0", "--runs-dir", str(runs), *argv], capsys)
    key = argv[-1].partition("=")[0]
    assert code == 2 and key in err and len(err.strip().splitlines()) == 1, err
    assert not runs.exists()

BAD = [
    ("seed: 3\nmethods: qmix\n", "unknown key 'seed' (did you mean 'seeds'?); accepted: "),
    ("methods: [ovmes]\n", "methods: unknown method 'ovmes' (did you mean 'ovmse'?)"),
    ("methods: qmix\nmaps: [4m]\n", "maps: unknown map '4m'; accepted: 3m"),
    ("methods: qmix\nsteps: 1.5\n", "steps: expected a positive whole number"),
    ("methods: qmix\nsteps: yes\n", "steps: expected a positive whole number"),
    ("methods: qmix\nseeds: [0, -1]\n", "seeds: expected a number of seeds"),
    ("methods: qmix\nworkers: two\n", "workers: expected a positive integer, got 'two'"),
    ("methods: qmix\ndevice: gpu\n", "device: unknown device 'gpu'; accepted: auto, cpu, cuda"),
    ("methods: qmix\nset: [lr]\n", "set: expected a mapping of config fields"),
    ("maps: [3m]\n", "runs nothing: name its methods"),
    ("- qmix\n", "expected a mapping of settings"),
    ("methods: [qmix\n", "not valid YAML"),
    ("methods: qmix\nmethods: ovmse\n", "'methods' is given twice (line 2)"),
    ("methods: qmix\nvariants: {v: {method: qmix, sett: {}}}\n",
     "variants: v: unknown key 'sett' (did you mean 'set'?)"),
    ("methods: qmix\nvariants: {v: {set: {lr: 0.1}}}\n", "variants: v: names no method"),
    ("methods: qmix\nvariants: {v: {method: qmx}}\n", "variants: v: method: unknown method"),
    ("methods: qmix\nvariants: {a/b: {method: qmix}}\n", "'a/b' cannot name a variant"),
    ("methods: qmix\nvariants: {ovm: {method: ovmse}}\n", "variant 'ovm' has a method's name"),
    ("methods: qmix\nvariants: {ovmse_v: {method: ovmse, set: {lambda_0: -1}}}\n",
     "variant 'ovmse_v': "),
    ("methods: qmix\nvariants: {long: {method: ovmse}}\n",
     "variant 'long' of ovmse: start its name with the method and an underscore (e.g. "
     "ovmse_long), so that reports show it beside ovmse"),
    ("methods: qmix\nvariants: {ovm_x: {method: ovmse}}\n", "variant 'ovm_x' of ovmse: "),
    ("methods: qmix\nset: {hiden: 8}\n", "unknown setting 'hiden' (did you mean 'hidden'?)"),
    ("methods: [qmix, qmix]\n", "the sweep runs qmix seed 0 on 3m heuristic-v0 twice"),
    ("methods: qmix\nseeds: [1, 2]\nseed_offset: 3\n", "a seed offset shifts a number of seeds"),
]


@pytest.mark.parametrize("text, says", BAD, ids=[s.split(":")[0][:40] for _, s in BAD])
def test_a_bad_sweep_file_is_one_line_and_starts_nothing(heuristic_3m, tmp_path, capsys, text,
                                                         says):
    config = write(tmp_path, text)
    runs = tmp_path / "runs"
    argv = ["run", "--config", config, "--runs-dir", str(runs), "--dataset", "heuristic"]
    code, _, err = bench(argv + (["--map", "3m"] if "maps" not in text else []), capsys)
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1
    assert not runs.exists()


@pytest.mark.parametrize("argv, says", [
    (["qmix", "--config", "CONFIG"], "give them there, not as arguments beside --config"),
    (["--label", "v", "--config", "CONFIG"], "not as --label beside --config"),
    (["qmix", "ovmse", "--label", "v", "--map", "3m"], "--label names a variant of one method"),
    (["--seeds", "2", "--seed", "1", "--config", "CONFIG"], "give --seed or --seeds, not both"),
])
def test_what_the_command_line_cannot_add_to_a_file(tmp_path, capsys, argv, says):
    config = write(tmp_path, "methods: qmix\n")
    code, _, err = bench(["run", *[config if a == "CONFIG" else a for a in argv]], capsys)
    assert code == 2 and says in err, err


def test_a_label_must_start_with_its_method_on_the_command_line_too(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = bench(["run", "ft-qmix", "--label", "long", "--map", "3m", "--dataset",
                          "heuristic", "--runs-dir", str(runs)], capsys)
    assert code == 2 and "start its name with the method" in err and "ft-qmix_long" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not runs.exists()


@pytest.mark.slow
def test_a_finished_sweep_reruns_without_the_simulator(heuristic_3m, tmp_path, capsys):
    """A method and its variant share a store and their pretrained weights; a rerun skips both
    without importing jax (nor starting workers), and reading the store needs no torch."""
    runs = tmp_path / "runs"
    config = write(tmp_path, f"runs_dir: {runs}\nmaps: {{3m: {heuristic_3m.dataset_id}}}\n"
                             "seeds: [0]\nsteps: 400\npretrain_steps: 20\nworkers: 2\n"
                             "set: {hidden: 16, num_envs: 4, eval_episodes: 4, "
                             "eval_interval: 200, batch_size: 4}\nmethods: [ft-qmix]\n"
                             "variants:\n"
                             "  ft-qmix_eps0.2: {method: ft-qmix, set: {eps_start: 0.2}}\n")
    code, out, err = bench(["run", "--config", config], capsys)
    assert code == 0, err
    base = runs / "3m" / "heuristic-v0"
    for name, eps in (("ft-qmix", 1.0), ("ft-qmix_eps0.2", 0.2)):
        cfg = json.loads((base / name / "seed_0" / "config.json").read_text())
        assert (cfg["method"], cfg["label"], cfg["config"]["eps_start"]) == ("ft-qmix", name, eps)
    assert len(list((runs / ".pretrained").rglob("model.pt"))) == 1  # pretrained once

    code, out, err, imported = bench_in_fresh_python(["run", "--config", config], tmp_path)
    assert code == 0, err
    assert out.count("already done, skipped") == 2 and "[3m/" not in out  # no worker started
    assert not imported & SIMULATOR, imported
    for argv in (["runs", "list", "--runs-dir", str(runs)],
                 ["report", "--runs-dir", str(runs), "--out", str(tmp_path / "report"),
                  "--format", "png"]):
        code, out, err, imported = bench_in_fresh_python(argv, tmp_path)
        assert code == 0 and "ft-qmix_eps0.2" in out + "".join(
            p.read_text() for p in (tmp_path / "report").rglob("*.csv")), err
        assert not imported, f"{argv[0]} imported {imported}"


def test_a_plan_line_says_what_will_run_before_the_first_job(heuristic_3m):
    from o2omarl.benchmark import plan_line

    jobs = plan(["ft-qmix", "qmix"], "3m", "heuristic", [0, 1], 300, 10)
    assert plan_line(jobs, 1, 2) == (
        "4 jobs (2 methods x 2 seeds x 1 task), 300 online env steps each, 10 offline updates "
        "(cached per dataset, settings and seed); 1 already done; 2 at a time")
    (one,) = plan(["qmix"], "3m", "heuristic", [0], 300)  # no pretraining: no offline part
    assert plan_line([one], 0, 1) == "1 job (1 method x 1 seed x 1 task), 300 online env " \
        "steps each; 1 at a time"


@pytest.mark.slow
def test_one_method_and_seed_on_two_tiers_of_a_map_in_a_parallel_sweep(fresh_root, tmp_path):
    """Two workers. ft-qmix reads the data: on two tiers it is two jobs side by side (the pool
    once knew a job by map, method and seed, and took the second's report for the first's).
    qmix reads none: its job on the second tier waits for the first's and copies it."""
    import subprocess
    import sys

    from o2omarl import datasets

    for tier in ("medium", "replay"):
        datasets.collect("3m", "random", episodes=4, seed=0, num_envs=4, show_progress=False,
                         tier=tier)
    runs = tmp_path / "runs"

    def sweep(method):
        config = write(tmp_path, f"runs_dir: {runs}\nmaps: {{3m: [medium, replay]}}\n"
                                 "seeds: [0]\nsteps: 400\npretrain_steps: 20\nworkers: 2\n"
                                 f"methods: [{method}]\n"
                                 "set: {hidden: 16, num_envs: 4, eval_episodes: 4, "
                                 "eval_interval: 200, batch_size: 2}\n")
        done = subprocess.run([sys.executable, "-m", "o2omarl.cli", "run", "--config", config],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        for tier in ("medium", "replay"):
            run_dir = runs / "3m" / f"{tier}-v0" / method / "seed_0"
            status = json.loads((run_dir / "status.json").read_text())
            assert status["state"] == "done" and status["final"]["env_step"] == 400
            assert done.stdout.count(f"{run_dir}\n") == 1, done.stdout  # the final table
        assert "1 of 2 jobs finished | ETA" in done.stdout
        assert "2 of 2 jobs finished\n" in done.stdout
        return done.stdout

    out = sweep("ft-qmix")
    assert "[3m/medium-v0/ft-qmix/seed_0]" in out and "[3m/replay-v0/ft-qmix/seed_0]" in out
    assert "copied" not in out
    out = sweep("qmix")
    assert "reads no data), copied" in out
    copy = runs / "3m" / "replay-v0" / "qmix" / "seed_0"
    assert json.loads((copy / "config.json").read_text())["copied_from"] == \
        "3m/medium-v0/qmix/seed_0"


def test_a_sweep_says_how_many_jobs_are_finished_and_when_the_rest_will_be(monkeypatch):
    from o2omarl.benchmark import executors

    now = [0.0]
    monkeypatch.setattr(executors.time, "monotonic", lambda: now[0])
    pace = executors.SweepPace(4, workers=2)
    pace.started("a"), pace.started("b")
    now[0] = 10.0
    assert pace.finished("a") == "1 of 4 jobs finished | ETA 0:15"  # 3 left x 10 s / 2 workers
    pace.started("c")
    now[0] = 30.0
    assert pace.finished("b") == "2 of 4 jobs finished | ETA 0:20"  # 2 x mean(10, 30) / 2
    pace.started("d")
    now[0] = 40.0
    pace.finished("c")
    assert pace.finished("d") == "4 of 4 jobs finished"
    one = executors.SweepPace(1, workers=1)
    one.started("a")
    assert one.finished("a") is None  # a job alone: its own line says it all
