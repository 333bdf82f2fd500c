"""Reading the run store: every run folder as a `RunRecord`, and the summaries tools read.

A run folder is any folder under the runs directory holding a `config.json` written by
`bench run` (the hidden `.pretrained` cache is skipped). Two summaries are refreshed beside the
runs as jobs finish:

    runs/summary.json   the marl-eval layout: env -> task -> algorithm -> run -> step_k
    runs/results.csv    tidy: one row per (run, evaluation point), for pandas

Damaged folders (unreadable config or status) are reported with state "damaged" instead of
raising, so `bench runs list` and `bench report` can show them next to the healthy runs.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from o2omarl import atomic
from o2omarl.errors import BenchError, UsageError
from o2omarl.locks import is_held
from o2omarl.protocol import MIN_EVALUATIONS, final_rows

# The columns of results.csv, in order; metric columns follow these.
ID_COLUMNS = ("map", "backend", "dataset", "method", "seed", "budget", "pretrain_steps", "state")
METRIC_COLUMNS = ("env_step", "test_win_rate", "test_return", "test_length", "train_win_rate",
                  "train_return", "train_episodes", "epsilon", "exploring_agents",
                  "ovm_lambda", "ovm_lifted_fraction", "loss", "updates", "wall_s")
STORE_VERSION = 1  # written in config.json; bumped when the run folder layout changes


@dataclass
class RunRecord:
    path: Path
    method: str = "?"
    map: str = "?"
    backend: str = "smax"
    dataset: str | None = None  # dataset id, None for a run without one
    seed: int = -1
    budget: int = 0  # online env steps asked for
    pretrain_steps: int = 0
    state: str = "damaged"  # running | stopped | done | failed | damaged
    error: str | None = None
    rows: list[dict] = field(default_factory=list)  # metrics.jsonl, in order
    config: dict = field(default_factory=dict)
    pretrain_rows: list[dict] = field(default_factory=list)  # pretrain.jsonl: offline evaluations

    stopped_at: int | None = None  # env step where a stopped run saved its checkpoint

    @property
    def steps_done(self) -> int:
        """Env steps trained: the last evaluation's, or where a stopped run stopped."""
        return max(int(self.rows[-1]["env_step"]) if self.rows else 0, self.stopped_at or 0)

    @property
    def last_win_rate(self) -> float | None:
        return float(self.rows[-1]["test_win_rate"]) if self.rows else None

    @property
    def dataset_name(self) -> str:
        """The dataset's `<tier>-v<N>` (the last part of its id), or "online"."""
        return self.dataset.rsplit("/", 1)[1] if self.dataset else "online"


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a torn last line (from a kill mid-write) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def read_run(path: Path) -> RunRecord:
    rec = RunRecord(path=Path(path))
    try:
        cfg = json.loads((rec.path / "config.json").read_text())
        rec.config = cfg
        # A labelled variant (benchmarks/unlearning.py) is its own "method" in every summary.
        rec.method = cfg.get("label") or cfg["method"]
        rec.map, rec.backend = cfg["map"], cfg.get("backend", "smax")
        rec.dataset, rec.seed = cfg.get("dataset"), int(cfg["seed"])
        rec.budget, rec.pretrain_steps = int(cfg["steps"]), int(cfg.get("pretrain_steps", 0))
    except (OSError, ValueError, KeyError, TypeError) as e:
        rec.error = f"unreadable config.json: {e}"
        return rec
    version = cfg.get("store_version", 0)
    if not isinstance(version, int) or version > STORE_VERSION:
        rec.error = f"written by a newer o2omarl (run store version {version})"
        return rec
    try:
        status = json.loads((rec.path / "status.json").read_text())
        rec.state, rec.error = status["state"], status.get("error")
        rec.stopped_at = status.get("env_step") if rec.state == "stopped" else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        rec.state, rec.error = "damaged", f"unreadable status.json: {e}"
    if rec.state == "running" and not is_held(rec.path / ".lock"):
        rec.state, rec.error = "stopped", "killed (no process holds it); rerun to resume"
    rec.rows = read_jsonl(rec.path / "metrics.jsonl")
    rec.pretrain_rows = read_jsonl(rec.path / "pretrain.jsonl")
    return rec


MAKE_RUNS = "`bench run ovmse --map 3m --dataset heuristic --seeds 2` makes runs"


# The episodes. Minari's metadata.json beside them also holds the card's text and fields,
# which a newer o2omarl writes differently for the same episodes (a re-collection is not
# other data for that), so it is not compared.
EPISODES_FILE = "data/main_data.hdf5"


def changed_datasets(runs: list[RunRecord]) -> dict[str, str]:
    """Run path -> a note, for runs whose dataset id holds other episodes in this dataset store
    than the run trained on (another MINARI_DATASETS_PATH, an id reused after a delete). Runs
    written before their files were recorded, or whose dataset is not here, are not judged."""
    from o2omarl.datasets import store

    current: dict[str, str | None] = {}
    notes = {}
    for r in runs:
        digest = (r.config.get("dataset_files") or {}).get(EPISODES_FILE)
        if not r.dataset or not digest:
            continue
        if r.dataset not in current:
            try:
                current[r.dataset] = store.get(r.dataset).meta.get("files", {}).get(EPISODES_FILE)
            except (UsageError, BenchError):
                current[r.dataset] = None
        if current[r.dataset] is not None and current[r.dataset] != digest:
            notes[str(r.path)] = (f"dataset {r.dataset} now holds other bytes than this run "
                                  "trained on")
    return notes


def scan_store(runs_dir: Path) -> list[RunRecord]:
    """`scan`, for commands that read a store: a missing, empty or foreign folder is one error
    naming it, the same for every command."""
    runs = scan(runs_dir)
    if not runs:
        state = "does not exist" if not Path(runs_dir).is_dir() else "holds no runs"
        raise UsageError(f"run store {str(runs_dir)!r} {state}; {MAKE_RUNS}")
    return runs


def scan(runs_dir: Path) -> list[RunRecord]:
    """Every run under `runs_dir`, sorted by map, dataset, method, seed."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = []
    for cfg in runs_dir.rglob("config.json"):
        # hidden: the `.pretrained` cache, and an archive's folder not yet renamed into place
        if any(part.startswith(".") for part in cfg.relative_to(runs_dir).parts):
            continue
        found.append(read_run(cfg.parent))
    return sorted(found, key=lambda r: (r.map, r.dataset or "", r.method, r.seed, str(r.path)))


def marl_eval_summary(runs: list[RunRecord]) -> dict:
    """The marl-eval raw-data layout (env -> task -> algorithm -> run_k -> step_k).

    The task is the map and dataset (`2s3z/medium-v0`), so runs on different datasets are never
    pooled. Each step holds `step_count` and one-element metric lists, as marl-eval expects;
    `absolute_metrics` holds the final win rate and return as the report computes them
    (`protocol.final_rows`: the last 3 evaluations after step 0; null on a shorter run).
    Only finished runs are included.
    """
    out: dict = {}
    for r in runs:
        if r.state != "done" or not r.rows:
            continue
        task = f"{r.map}/{r.dataset_name}"
        run = {f"step_{k}": {"step_count": int(row["env_step"]),
                             "win_rate": [float(row["test_win_rate"])],
                             "return": [float(row["test_return"])]}
               for k, row in enumerate(r.rows)}
        # the report's "final": never step 0 (the offline policy); null without enough
        last = final_rows(r.rows)
        enough = len(last) >= MIN_EVALUATIONS
        run["absolute_metrics"] = {
            k: [sum(x[key] for x in last) / len(last) if enough else None]
            for k, key in (("win_rate", "test_win_rate"), ("return", "test_return"))}
        out.setdefault(r.backend, {}).setdefault(task, {}).setdefault(r.method, {})[
            f"seed_{r.seed}"] = run
    return out


def write_summaries(runs_dir: Path) -> tuple[Path, Path] | None:
    """Rewrite runs/summary.json and runs/results.csv from the store (atomic renames); None
    where no job ever made the store (every job was refused before its run folder)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    runs = scan(runs_dir)
    summary, table = runs_dir / "summary.json", runs_dir / "results.csv"
    atomic.write_text(summary, json.dumps(marl_eval_summary(runs), indent=1, sort_keys=True))
    with atomic.replacing(table) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(ID_COLUMNS + METRIC_COLUMNS)
        for r in runs:
            ids = [r.map, r.backend, r.dataset or "", r.method, r.seed, r.budget,
                   r.pretrain_steps, r.state]
            for row in r.rows:
                w.writerow(ids + [row.get(c, "") for c in METRIC_COLUMNS])
    return summary, table


# -- archiving: a finished run's record, small enough for git ----------------------------------
# What `bench report` and a sweep's skip read; weights, replay chunks and TensorBoard events stay.
RECORD_FILES = ("config.json", "status.json", "metrics.jsonl", "pretrain.jsonl", "run.log")


def _record(run_dir: Path) -> dict[str, bytes]:
    return {n: (run_dir / n).read_bytes() for n in RECORD_FILES if (run_dir / n).is_file()}


def archive_runs(runs_dir: Path, dest: Path) -> dict[str, list[Path]]:
    """Copy the record of every finished run under `runs_dir` to the same path under `dest`.

    Runs outside any one machine's life: `bench report --runs-dir DEST` rebuilds every table and
    figure from it (not replays: no weights), and a store seeded with a copy of it skips those
    jobs. Returns {"archived", "same", "unfinished"} run paths. Every conflict is found before
    anything is written: a run already in `dest` with another record is a UsageError; each run
    lands whole (written in a hidden folder, then renamed), so a kill leaves no half of one.
    """
    import os
    import shutil

    runs_dir, dest = Path(runs_dir), Path(dest)
    src, out = runs_dir.resolve(), dest.resolve()
    if out == src or out.is_relative_to(src) or src.is_relative_to(out):
        raise UsageError(f"archive folder {str(dest)!r} overlaps the run store {str(runs_dir)!r};"
                         " accepted: a folder outside it")
    runs = scan_store(runs_dir)
    todo, same = [], []
    for r in (r for r in runs if r.state == "done"):
        target = dest / r.path.relative_to(runs_dir)
        if not target.exists():
            todo.append((r.path, target))
        elif _record(target) == _record(r.path):
            same.append(target)
        else:
            raise UsageError(f"{target} already holds another record of this run; archive "
                             "into another folder, or delete that one first")
    for source, target in todo:
        for stale in target.parent.glob(f".{target.name}.*.tmp"):  # an earlier, killed copy
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.mkdir(parents=True)
        for name, data in _record(source).items():
            (tmp / name).write_bytes(data)
        os.replace(tmp, target)
    return {"archived": [t for _, t in todo], "same": same,
            "unfinished": [r.path for r in runs if r.state != "done"]}
