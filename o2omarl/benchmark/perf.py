"""`bench perf`: what every stage of the pipeline costs on one map, measured in one process.

Each figure comes with the limit it should be read against:

- raw: `SmaxVecEnv.step` with uniform random available actions, the environment's own limit at
  N parallel battles (one jitted vmap call + device_get per batched step);
- collection (`Rollout`, as `bench collect` records episodes) with the random, heuristic and a
  QMIX policy (an untrained actor: only its cost matters), as a fraction of raw at the same N;
- online training end to end (collection + updates at the default ratio + periodic greedy
  evaluation) for `qmix`, `ft-qmix`, `ovmse`, `wsrl` and `sim2o`, as a fraction of raw at the
  training N, and each O2O method's wall time over ft-qmix's for the same env steps (OVM's memory
  is active: the timed span lies inside the memory horizon; sim2o composes every joint action
  by its beam search and mixes the heuristic episodes below into its batches);
- offline pretraining updates/s at batch 32 episodes (TD + conservative term);
- dataset write MB/s and load time into training arrays per 100k steps, under a temporary
  MINARI_DATASETS_PATH (the user's datasets are never touched).

Rates that are compared are timed in alternating chunks (`repeats` rounds over the variants),
so drift in the load of a shared machine hits every variant alike. Compilation is excluded: each
variant is warmed up first, past an episode end so the in-jit reset path has run too.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from o2omarl.datasets.policies import HeuristicPolicy, RandomPolicy
from o2omarl.envs import env_info, make_env
from o2omarl.envs.base import EnvInfo, VecEnv
from o2omarl.episodes import Episode, Rollout, uniform_available
from o2omarl.errors import positive
from o2omarl.protocol import COLLECT_ENVS

Run = Callable[[int], None]  # run(batched_steps)
ONLINE_METHODS = ("qmix", "ft-qmix", "ovmse", "wsrl", "sim2o")
O2O_METHODS = ONLINE_METHODS[2:]  # each timed against ft-qmix, the plain fine-tuning


@dataclass
class PerfConfig:
    map_name: str = "2s3z"
    num_envs: int = COLLECT_ENVS  # parallel battles for raw stepping and collection
    steps: int = 50_000  # env steps per collection timing
    online_steps: int = 20_000  # env steps timed per online method (after the warm-up)
    updates: int = 100  # offline updates timed
    repeats: int = 3  # alternating rounds per comparison
    seed: int = 0
    device: str = "cpu"  # the learner's torch device (the environment stays on JAX's CPU)

    def check(self) -> None:
        """UsageError for an unknown map, a count <= 0, or a bad O2OMARL_LEARNER/CORES."""
        from o2omarl.qmix.updates import learner_mode

        env_info(self.map_name)
        learner_mode(self.device)
        for name in ("num_envs", "steps", "online_steps", "updates", "repeats"):
            positive(f"--{name.replace('_', '-')}", getattr(self, name))


# -- collection -----------------------------------------------------------------------------------
def raw_runner(env: VecEnv, seed: int) -> Run:
    rng = np.random.default_rng(seed)
    obs = env.reset(seed)

    def run(batched_steps: int) -> None:
        nonlocal obs
        for _ in range(batched_steps):
            obs = env.step(uniform_available(obs.avail, rng)).cont

    return run


def rollout_runner(env: VecEnv, policy, seed: int, keep: list[Episode] | None = None) -> Run:
    """`Rollout.step` as `bench collect` runs it; finished episodes go to `keep` if given."""
    rollout = Rollout(env, policy, seed)

    def run(batched_steps: int) -> None:
        for _ in range(batched_steps):
            for _, ep in rollout.step():
                if keep is not None:
                    keep.append(ep)

    return run


def interleaved(runners: dict[str, Run], batched_steps: int, num_envs: int, repeats: int,
                warmup: int) -> dict[str, float]:
    """Median env-steps/s of each runner over `repeats` alternating rounds, after `warmup`."""
    for run in runners.values():
        run(warmup)
    rates: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t = time.perf_counter()
            run(batched_steps)
            rates[name].append(batched_steps * num_envs / (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in rates.items()}


def qmix_actor(info: EnvInfo, num_envs: int, seed: int, device: str = "cpu", epsilon=0.05):
    """An untrained QMIX actor as `bench collect` rolls out tiers (greedy + epsilon 0.05)."""
    from o2omarl.qmix import QmixO2O

    return QmixO2O(info, seed=seed, device=device).actor(num_envs).with_epsilon(epsilon)


def measure_collection(cfg: PerfConfig, keep: list[Episode] | None = None) -> dict[str, float]:
    """env-steps/s: raw and the rollout with each behaviour, each on its own env (an env's
    battles belong to whoever steps it). Heuristic episodes go to `keep`."""
    info, n = env_info(cfg.map_name), cfg.num_envs
    envs = [make_env(cfg.map_name, n) for _ in range(4)]
    runners = {
        "raw": raw_runner(envs[0], cfg.seed),
        "random": rollout_runner(envs[1], RandomPolicy(cfg.seed), cfg.seed),
        "heuristic": rollout_runner(envs[2], HeuristicPolicy(envs[2], cfg.seed), cfg.seed, keep),
        "qmix": rollout_runner(envs[3], qmix_actor(info, n, cfg.seed, cfg.device), cfg.seed),
    }
    return interleaved(runners, max(1, cfg.steps // n), n, cfg.repeats,
                       warmup=info.episode_limit + 10)


@contextmanager
def quiet_progress():
    """The training loops' progress lines are not wanted while timing them, nor their warnings:
    the weights timed are untrained (cost only), so a calibration warning at the end of the
    3-update pretraining would be about nothing. An exception still reaches the caller."""
    from o2omarl import progress

    before = progress._sink
    progress.set_sink(lambda label, line: None)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        progress.set_sink(before)


# -- online training ------------------------------------------------------------------------------
def online_trainer(name: str, info: EnvInfo, cfg: PerfConfig, budget: int, data=None):
    """An `OnlineTraining` of method `name` with its default settings. Methods that start from
    offline weights get freshly initialised ones (cost only), which also freezes OVM's memory
    and sim2o's offline agent; methods that mix offline episodes draw them from `data`."""
    from o2omarl.benchmark.registry import get

    cls = get(name)
    method = cls(info, cls.Config(), cfg.seed, cfg.device)
    if method.uses_offline_init:
        method.load_pretrained(method.learner.state_dict())
    env = make_env(cfg.map_name, method.cfg.num_envs)
    eval_env = make_env(cfg.map_name, method.cfg.eval_episodes)
    return method.online(env, eval_env, budget, lambda row: None,
                         data if method.uses_offline_data else None)


def measure_online(cfg: PerfConfig, methods=ONLINE_METHODS, data=None) -> dict[str, float]:
    """End-to-end env-steps/s of each method, and of the raw step at the training N ("raw"),
    timed in alternating chunks.

    Each method first trains until it has made 2 updates (the buffer holds a batch, every code
    path has compiled), then `repeats` chunks of `online_steps / repeats` env steps are timed.
    The budget is 10x what is run, so OVM's memory (the first 20% of the budget) stays active.
    """
    info = env_info(cfg.map_name)
    chunk = max(1, cfg.online_steps // cfg.repeats)
    budget = 10 * (cfg.online_steps + 50 * info.episode_limit)  # warm-up: < 50 episodes
    trainers = {m: online_trainer(m, info, cfg, budget, data) for m in methods}
    n = next(iter(trainers.values())).rollout.n
    raw = raw_runner(make_env(cfg.map_name, n), cfg.seed)
    raw(info.episode_limit + 10)
    spent = dict.fromkeys([*trainers, "raw"], 0.0)
    steps = dict.fromkeys(spent, 0)
    with quiet_progress():
        for t in trainers.values():
            t.run(should_stop=lambda t=t: t.learner.updates >= 2)
        for _ in range(cfg.repeats):
            for name, t in trainers.items():
                start_step, goal = t.env_step, t.env_step + chunk
                start = time.perf_counter()
                t.run(should_stop=lambda t=t, goal=goal: t.env_step >= goal)
                spent[name] += time.perf_counter() - start
                steps[name] += t.env_step - start_step
            start = time.perf_counter()
            raw(max(1, chunk // n))
            spent["raw"] += time.perf_counter() - start
            steps["raw"] += max(1, chunk // n) * n
    return {k: steps[k] / spent[k] for k in spent}


# -- offline: dataset write/load and pretraining --------------------------------------------------
@contextmanager
def temporary_minari_root():
    """MINARI_DATASETS_PATH pointing at a fresh folder for the duration, then restored."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    with tempfile.TemporaryDirectory(prefix="o2omarl-perf-") as root:
        os.environ["MINARI_DATASETS_PATH"] = root
        try:
            yield root
        finally:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old


def measure_dataset_io(info: EnvInfo, episodes: list[Episode]):
    """(write MB/s, load seconds per 100k steps, the loaded arrays) for `episodes`, written as
    a dataset version exactly as `bench collect` writes one, then loaded as `bench run` does."""
    from o2omarl.datasets import load, store

    with temporary_minari_root():
        start = time.perf_counter()
        record = store.write(info, "perf", {"perf": True}, episodes, {"name": "heuristic"})
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        data = load(record, info)
        load_s = time.perf_counter() - start
        size = record.size_bytes()
    return size / 1e6 / write_s, load_s * 100_000 / data.steps, data


def measure_offline(info: EnvInfo, data, cfg: PerfConfig, batch_size: int = 32) -> float:
    """Offline pretraining updates/s (TD + conservative term, `batch_size` episodes)."""
    from o2omarl.qmix import QmixConfig
    from o2omarl.qmix.buffer import ReplayBuffer
    from o2omarl.qmix.learner import Learner
    from o2omarl.qmix.pretrain import PretrainConfig, pretrain

    qcfg = QmixConfig()
    learner = Learner(info, qcfg, cfg.device, extra_losses=(qcfg.offline_loss_term(),))
    store = ReplayBuffer.from_arrays(data, info)
    pcfg = PretrainConfig(steps=3, batch_size=batch_size, eval_interval=0)
    with quiet_progress():
        pretrain(learner, store, pcfg, cfg.seed, lambda row: None)  # warm-up
        start = time.perf_counter()
        pretrain(learner, store, replace(pcfg, steps=cfg.updates), cfg.seed, lambda row: None)
        return cfg.updates / (time.perf_counter() - start)


# -- everything -----------------------------------------------------------------------------------
def run_perf(cfg: PerfConfig, say: Callable[[str], None] = lambda msg: None) -> dict:
    """Every figure of `bench perf`, with its ratio to the relevant limit (see module doc)."""
    import jax
    import torch

    from o2omarl.devices import limit_torch_threads
    from o2omarl.qmix import QmixConfig
    from o2omarl.qmix.updates import learner_mode

    info = env_info(cfg.map_name)
    online_n = QmixConfig().num_envs
    out: dict = {"map": cfg.map_name, "num_envs": cfg.num_envs, "online_num_envs": online_n,
                 "cpu_count": os.cpu_count(), "torch_threads": limit_torch_threads(),
                 "torch": torch.__version__, "jax": jax.__version__,
                 "jax_backend": jax.default_backend(), "device": cfg.device,
                 "online_updates": learner_mode(cfg.device)}  # inline or in a learner process
    say(f"collection: raw and 3 behaviours, {cfg.num_envs} envs, {cfg.repeats} rounds")
    heuristic_eps: list[Episode] = []
    col = measure_collection(cfg, heuristic_eps)
    out["raw_env_steps_per_s"] = col["raw"]
    for k in ("random", "heuristic", "qmix"):
        out[f"collect_{k}_env_steps_per_s"] = col[k]
        out[f"collect_{k}_vs_raw"] = col[k] / col["raw"]

    say(f"datasets: write and load {len(heuristic_eps)} heuristic episodes")
    write_mb_s, load_s, data = measure_dataset_io(info, heuristic_eps)
    out["dataset_steps"] = data.steps
    out["dataset_write_mb_per_s"] = write_mb_s
    out["dataset_load_s_per_100k_steps"] = load_s

    say(f"online: {', '.join(ONLINE_METHODS)} end to end and raw, {online_n} envs")
    online = measure_online(cfg, data=data)
    raw_online = out["raw_online_env_steps_per_s"] = online.pop("raw")
    for m, rate in online.items():
        out[f"online_{_key(m)}_env_steps_per_s"] = rate
        out[f"online_{_key(m)}_vs_raw"] = rate / raw_online
    out["online_ft_qmix_minutes_per_1m_steps"] = 1e6 / online["ft-qmix"] / 60
    for m in O2O_METHODS:
        out[f"{_key(m)}_vs_ft_qmix_wall_time"] = online["ft-qmix"] / online[m]

    say(f"offline pretraining: {cfg.updates} updates at batch 32 episodes")
    out["offline_updates_per_s"] = measure_offline(info, data, cfg)
    return out


def _key(method: str) -> str:
    return method.replace("-", "_")


# The figures `bench perf` reports: their stable JSON names and their labels in the table.
FIGURES = {
    "raw_env_steps_per_s": "raw SMAX step, random actions (the limit at N)",
    "collect_random_env_steps_per_s": "collection, random behaviour",
    "collect_heuristic_env_steps_per_s": "collection, heuristic behaviour",
    "collect_qmix_env_steps_per_s": "collection, QMIX policy (eps 0.05)",
    "raw_online_env_steps_per_s": "raw SMAX step at the training N (the limit)",
    "online_qmix_env_steps_per_s": "online qmix, end to end",
    "online_ft_qmix_env_steps_per_s": "online ft-qmix, end to end",
    "online_ovmse_env_steps_per_s": "online ovmse, end to end",
    "online_wsrl_env_steps_per_s": "online wsrl, end to end",
    "online_sim2o_env_steps_per_s": "online sim2o, end to end",
    "online_ft_qmix_minutes_per_1m_steps": "ft-qmix wall time per 1M env steps (min)",
    **{f"{_key(m)}_vs_ft_qmix_wall_time": f"{m} wall time / ft-qmix wall time"
       for m in O2O_METHODS},
    "offline_updates_per_s": "offline pretraining updates/s (batch 32 episodes)",
    "dataset_write_mb_per_s": "dataset write MB/s",
    "dataset_load_s_per_100k_steps": "dataset load into training arrays, s per 100k steps",
}
RATIOS = {  # figure -> its ratio to the limit
    "collect_random_env_steps_per_s": "collect_random_vs_raw",
    "collect_heuristic_env_steps_per_s": "collect_heuristic_vs_raw",
    "collect_qmix_env_steps_per_s": "collect_qmix_vs_raw",
    "online_qmix_env_steps_per_s": "online_qmix_vs_raw",
    "online_ft_qmix_env_steps_per_s": "online_ft_qmix_vs_raw",
    "online_ovmse_env_steps_per_s": "online_ovmse_vs_raw",
    "online_wsrl_env_steps_per_s": "online_wsrl_vs_raw",
    "online_sim2o_env_steps_per_s": "online_sim2o_vs_raw",
}


def format_table(out: dict) -> str:
    """The figures as aligned text: value, and its ratio to the limit where there is one."""
    head = (f"bench perf on {out['map']}: {out['num_envs']} envs for collection, "
            f"{out['online_num_envs']} for training; {out['cpu_count']} CPUs, "
            f"{out['torch_threads']} torch thread(s), learner on {out['device']} "
            f"(online updates: {out['online_updates']}), JAX on {out['jax_backend']}")
    lines = [head, f"{'figure':<56}{'value':>12}{'ratio':>8}"]
    for key, label in FIGURES.items():
        ratio = out.get(RATIOS.get(key, ""), None)
        value = out[key]
        text = f"{value:>12,.0f}" if value >= 100 else f"{value:>12.2f}"
        lines.append(f"{label:<56}{text}{'' if ratio is None else f'{ratio:>8.2f}'}")
    lines.append("ratio: collection vs raw at N; online vs raw at the training N")
    return "\n".join(lines)
