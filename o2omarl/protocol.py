"""The evaluation protocol, in one place: how often a run is evaluated and on which battles,
which evaluations are "final", the unlearning window, the calibration band of the offline
values, and the random streams by name. Training, `summary.json`/`results.csv` and
`bench report` all import it, so they cannot disagree (DESIGN.md section 6).

Plain Python (no numpy, no torch): the CLI and the reports import it cheaply.
"""

from __future__ import annotations

# Greedy battles per evaluation (the config's `eval_episodes` default, and `bench eval`'s).
EVAL_EPISODES = 32
# Battles stepped in parallel while collecting a dataset (`bench collect --num-envs`, the
# trained tiers, the random reference score) and for `bench perf`'s raw figures.
COLLECT_ENVS = 32
# Online evaluations: every min(10,000, budget / 20) env steps (below), so a run has >= 20
# and its unlearning window >= 3.
EVALUATIONS_PER_RUN = 20
MAX_EVAL_INTERVAL = 10_000
# "Final" is the mean of the last FINAL_EVALS evaluations after step 0 (step 0 is the
# offline policy, never part of it); a window metric with fewer than MIN_EVALUATIONS
# evaluations in its window is NaN, not a number from one noisy point.
FINAL_EVALS = 3
MIN_EVALUATIONS = 3
# The early window of the unlearning drop: the first 10% of the online budget, step 0 included.
UNLEARNING_WINDOW = 0.1
# Q_tot / earned outside this band at the end of pretraining hands the online phase values
# that are off by a third or more (CFCQL at alpha 50 ended at ~2x on 2s3z medium).
CALIBRATED = (0.75, 1.33)

# The numpy streams of one seed, `numpy.random.default_rng([seed, STREAMS[name]])`: each
# consumer draws from its own, so adding draws to one never shifts another's numbers.
# (named for their consumers: the dataset behaviour's epsilon, the acting policy's exploration,
# the online and the offline batch draws)
STREAMS = {"epsilon_mix": 1, "actor": 2, "online_batches": 3, "offline_batches": 4}
# The battles every evaluation of a run plays, offset far from the training envs' seeds.
EVAL_SEED_OFFSET = 1_000_003
# Seeds users give (--seed, --seeds, --seed-offset, sweep files): every generator (numpy,
# torch, the simulator's keys) takes them, offsets added, without overflow.
MAX_SEED = 2**31 - 1


def default_eval_interval(budget: int) -> int:
    """min(10,000, budget / 20): >= 20 evaluations per run, >= 3 in its first 10%."""
    return max(1, min(MAX_EVAL_INTERVAL, budget // EVALUATIONS_PER_RUN))


def eval_seed(seed: int) -> int:
    """The battles every evaluation of a run plays (offline and online alike), so the same
    weights evaluated twice on as many episodes give the same number."""
    return seed + EVAL_SEED_OFFSET


def stream(seed: int, name: str) -> list[int]:
    """The seed sequence of the named stream (`numpy.random.default_rng(stream(seed, ...))`)."""
    return [seed, STREAMS[name]]


def final_rows(rows: list[dict]) -> list[dict]:
    """The evaluations "final" averages: the last FINAL_EVALS after step 0 (fewer on a short
    run: the callers then say NaN or "-")."""
    return [r for r in rows if r["env_step"] > 0][-FINAL_EVALS:]


def calibration(row: dict) -> float:
    """Q_tot of the data's actions / the discounted return those steps earned (NaN if the row
    lacks either or nothing was earned)."""
    q, earned = row.get("q_taken_mean"), row.get("return_to_go_mean")
    if q is None or earned is None or abs(earned) < 1e-6:
        return float("nan")
    return q / earned


def greedy_calibration(row: dict) -> float:
    """Q_tot of the greedy policy's own actions along its evaluation battles / the discounted
    return that followed them (NaN if the row lacks either or nothing was earned): the values
    against the policy they are the values of, right on any data. `calibration` compares Q_tot
    of a dataset's actions with what its *behaviour* earned afterwards, so where the greedy
    policy is far better than the behaviour (a replay tier) a right Q_tot sits above it."""
    q, earned = row.get("test_q_mean"), row.get("test_earned_mean")
    if q is None or earned is None or abs(earned) < 1e-6:
        return float("nan")
    return q / earned


def calibrated(ratio: float) -> bool:
    lo, hi = CALIBRATED
    return lo <= ratio <= hi
