"""`bench eval`: the greedy evaluation of any saved model (a run's model.pt or checkpoint.pt, a
pretrained cache entry, a behaviour snapshot) with 95% intervals, and a replay of one battle
drawn by SMAX's own renderer, as a GIF (or an MP4 where ffmpeg is found).

With `--seed S` and as many episodes as the run evaluated on (`eval_episodes`, 32 by default),
the evaluation plays the very battles of the evaluations of the run with seed S, so it gives
that run's last `test_win_rate` again.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from o2omarl import atomic
from o2omarl.envs import env_info, make_env
from o2omarl.envs.smax import split_step_key
from o2omarl.errors import BenchError, UsageError, check_seed, positive
from o2omarl.protocol import EVAL_EPISODES, eval_seed, greedy_calibration
from o2omarl.qmix import QmixO2O
from o2omarl.qmix.acting import greedy_episodes, greedy_values
from o2omarl.qmix.checkpoint import Checkpoint

RENDER_FORMATS = (".gif", ".mp4")
MAX_PARALLEL = 256  # episodes run at once; more are played in turn
LEVEL = 0.95


@dataclass
class Estimate:
    mean: float
    lo: float  # 95% interval; nan where it is undefined (one episode)
    hi: float
    method: str  # how the interval was computed

    def text(self, fmt: str) -> str:
        if math.isnan(self.lo):
            return f"{self.mean:{fmt}}  (no interval from one episode)"
        return f"{self.mean:{fmt}}  95% [{self.lo:{fmt}}, {self.hi:{fmt}}]  ({self.method})"


@dataclass
class Replay:
    path: Path
    frames: int
    width: int
    height: int
    steps: int  # env steps of the battle
    won: bool
    ret: float


@dataclass
class Evaluation:
    checkpoint: Path
    method: str
    map_name: str
    backend: str
    episodes: int
    seed: int
    win_rate: Estimate
    ret: Estimate
    length: Estimate
    q_tot: float  # mean Q_tot of the greedy actions over the battles' steps
    earned: float  # mean discounted return that followed them
    replay: Replay | None = None

    @property
    def calibration(self) -> float:
        return greedy_calibration({"test_q_mean": self.q_tot, "test_earned_mean": self.earned})

    def to_dict(self) -> dict:
        return json_ready({**asdict(self), "calibration": self.calibration})


def json_ready(obj):
    """Paths as strings and nan as None, for `--json`."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def wilson(wins: int, n: int) -> Estimate:
    """Win rate with Wilson's score interval: unlike a bootstrap it does not collapse to a
    point when every battle is won (or lost)."""
    from scipy.stats import binomtest  # scipy comes with jax

    ci = binomtest(wins, n).proportion_ci(LEVEL, method="wilson")
    return Estimate(wins / n, float(ci.low), float(ci.high), "Wilson")


def t_interval(values) -> Estimate:
    """Mean with Student's t interval (undefined for one value)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return Estimate(mean, math.nan, math.nan, "t")
    half = float(t.ppf((1 + LEVEL) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Estimate(mean, mean - half, mean + half, "t")


def load_policy(path: Path, map_name: str | None = None,
                device: str = "cpu") -> tuple[QmixO2O, str]:
    """The weights of any checkpoint, on the map it was trained on, and the name of the method
    that saved them; UsageError if `map_name` is given and is another map, BenchError if the
    file is missing or not a checkpoint."""
    ckpt = Checkpoint.read(path)
    env = ckpt.env if isinstance(ckpt.env, dict) else {}
    if "map_name" not in env or not isinstance(ckpt.learner, dict):
        raise BenchError(f"{path} is not an o2omarl checkpoint (no map or weights in it); "
                         "accepted: a model.pt or checkpoint.pt that `bench run` wrote")
    if map_name is not None and map_name != env["map_name"]:
        raise UsageError(f"checkpoint {path} is for map {env['map_name']!r}, not {map_name!r}; "
                         f"leave out --map or give --map {env['map_name']}")
    try:
        # Every method's agent is the shared one: the base class loads any method's weights.
        policy = QmixO2O.from_checkpoint(path, env_info(env["map_name"], env["backend"]),
                                         device)
    except (KeyError, RuntimeError, TypeError) as e:
        raise BenchError(f"checkpoint {path} holds no usable weights ({type(e).__name__}: "
                         f"{e})") from None
    return policy, ckpt.method


def evaluate_checkpoint(path, episodes: int = EVAL_EPISODES, seed: int = 0,
                        map_name: str | None = None, render: Path | None = None,
                        device: str = "cpu") -> Evaluation:
    """`bench eval`: greedy win rate, return and length over `episodes` battles, each with a
    95% interval; with `render`, also a replay of one battle (`render_replay`)."""
    path = Path(path)
    positive("--episodes", episodes)
    check_seed("--seed", seed)
    if render is not None:
        check_render_path(render)
    policy, method = load_policy(path, map_name, device)
    info = policy.info
    if render is not None:
        check_renderable(info)  # before the battles, not after
    env = make_env(info.map_name, min(episodes, MAX_PARALLEL), info.backend)
    eps = greedy_episodes(policy.learner.agent, env, episodes, eval_seed(seed), device)
    values = greedy_values(policy.learner, eps, info)
    result = Evaluation(path, method, info.map_name, info.backend,
                        episodes, seed, wilson(sum(e.won for e in eps), len(eps)),
                        t_interval([e.ret for e in eps]), t_interval([e.length for e in eps]),
                        values["test_q_mean"], values["test_earned_mean"])
    if render is not None:
        result.replay = _render(policy, Path(render), seed)
    return result


# -- replays ---------------------------------------------------------------------------------

def check_render_path(out: Path) -> None:
    """UsageError unless `out` ends in a format this machine can write."""
    suffix = Path(out).suffix.lower()
    if suffix not in RENDER_FORMATS:
        raise UsageError(f"--render {out}: unknown format {suffix or '(none)'!r}; accepted: "
                         f"{', '.join('FILE' + s for s in RENDER_FORMATS)}")
    if suffix == ".mp4" and ffmpeg_binary() is None:
        raise UsageError(f"--render {out}: MP4 needs ffmpeg, which is not installed (apt-get "
                         "install ffmpeg, or pip install imageio-ffmpeg); a .gif needs nothing")


def ffmpeg_binary() -> str | None:
    """An ffmpeg binary: on PATH, or the one the imageio-ffmpeg package ships."""
    found = shutil.which("ffmpeg")
    if found is None:
        try:
            import imageio_ffmpeg
        except ImportError:
            return None
        found = imageio_ffmpeg.get_ffmpeg_exe()
    return found


def render_replay(checkpoint, out, seed: int = 0, map_name: str | None = None,
                  frames_per_step: int = 2, dpi: int = 50, fps: int = 8) -> Replay:
    """Draw one greedy battle of `checkpoint` into `out` (.gif, or .mp4 with ffmpeg).

    The battle is the first of a one-env evaluation with `seed`; each env step shows
    `frames_per_step` of SMAX's 8 world ticks (plus the opening frame), so the file has
    1 + steps * frames_per_step frames of 6 x 5 inches at `dpi` (300 x 250 pixels at 50);
    at 8 frames/s with 2 per step the battle plays at twice SMAX's game speed. The file is
    written to a temporary name and renamed, so a failure leaves none. SMAX maps only.
    """
    check_render_path(out)
    if not 1 <= frames_per_step <= 8:
        raise UsageError(f"frames_per_step={frames_per_step} is not accepted; accepted: 1 to 8")
    return _render(load_policy(Path(checkpoint), map_name)[0], Path(out), seed,
                   frames_per_step, dpi, fps)


def check_renderable(info) -> None:
    if info.backend != "smax":
        raise UsageError(f"--render draws SMAX battles; this checkpoint is for "
                         f"{info.backend}/{info.map_name} (StarCraft II saves its own replays)")


def _render(policy: QmixO2O, out: Path, seed: int, frames_per_step: int = 2, dpi: int = 50,
            fps: int = 8) -> Replay:
    info = policy.info
    check_renderable(info)
    env = BattleRecorder(make_env(info.map_name, 1, info.backend))
    (episode,) = greedy_episodes(policy.learner.agent, env, 1, eval_seed(seed), policy.device)
    frames = env.frames(frames_per_step)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out, suffix=out.suffix) as tmp:
        width, height = _draw(env.smax, frames, tmp, dpi, fps, env.tick_seconds)
    return Replay(out, len(frames), width, height, episode.length, episode.won, episode.ret)


class BattleRecorder:
    """A one-env SMAX `VecEnv` that notes the battle's state before every step, so the world
    ticks inside each step (SMAX advances 8 per step) can be replayed for drawing."""

    def __init__(self, env):
        self.env, self.info, self.num_envs = env, env.info, env.num_envs
        self.smax = env.smax  # the jaxmarl env: its step and its renderer
        self.tick_seconds = self.smax.time_per_step
        self.before: list[tuple[dict, np.ndarray]] = []

    def reset(self, seed: int):
        self.before.clear()
        return self.env.reset(seed)

    def step(self, actions):
        self.before.append((self.env.state_dict(), np.asarray(actions, dtype=np.int32)))
        return self.env.step(actions)

    def frames(self, per_step: int) -> list[tuple]:
        """(tick, env step, (key, SMAX state, attack actions)) for SMAX's `init_render`:
        `per_step` evenly spaced ticks of every step, after the opening state."""
        import jax

        smax = self.smax
        ticks = smax.world_steps_per_env_step
        picked = [(j + 1) * ticks // per_step - 1 for j in range(per_step)]
        treedef = jax.tree.structure(jax.eval_shape(smax.reset, jax.random.PRNGKey(0))[1])
        frames = []
        for t, (saved, actions) in enumerate(self.before):
            state = jax.tree.unflatten(treedef, [jax.numpy.asarray(x[0])
                                                 for x in saved["leaves"]])
            # The key `SmaxVecEnv`'s step gave SMAX, so the ticks replayed are the very ones
            # of the battle played.
            key = split_step_key(jax.numpy.asarray(saved["keys"][0]))[0]
            acts = {a: actions[0, i] for i, a in enumerate(smax.agents)}
            seq = jax.tree.map(np.asarray, smax.step_env(key, state, acts, True))
            # Who attacks whom during the step, for the bullets (as SMAX's expand_state_seq)
            shots = {a: seq.prev_attack_actions[-1][i] for i, a in enumerate(smax.all_agents)}
            if t == 0:
                frames.append((-1, 0, (None, jax.tree.map(np.asarray, state.state), shots)))
            frames += [(k, t, (None, jax.tree.map(lambda x, k=k: x[k], seq), shots))
                       for k in picked]
        return frames


def _draw(smax, frames: list[tuple], out: Path, dpi: int, fps: int,
          tick_seconds: float) -> tuple[int, int]:
    """Each frame by SMAX's `init_render` on a plain Figure (no pyplot, no GUI backend);
    returns the frames' (width, height) in pixels."""
    import jax
    from matplotlib import animation, rc_context
    from matplotlib.figure import Figure

    writer = (animation.PillowWriter(fps=fps) if out.suffix.lower() == ".gif" else
              animation.FFMpegWriter(fps=fps))
    # init_render screenshots the figure at the figure's dpi: keep both dpis the same
    with rc_context({"figure.dpi": dpi, "savefig.dpi": dpi, "animation.ffmpeg_path":
                     ffmpeg_binary() or "ffmpeg"}):
        fig = Figure(figsize=(6, 5))  # the size of SMAX's own visualiser
        ax = fig.add_subplot()
        clock = fig.text(0.98, 0.02, "", ha="right", fontsize="small")
        # The renderer's lax.cond calls compile anew at every frame under jit: 6x slower
        with writer.saving(fig, str(out), dpi), jax.disable_jit():
            for tick, step, state in frames:
                image = smax.init_render(ax, state, max(tick, 0), step)
                # It also paints that screenshot into the axes (width and height swapped),
                # a smear across the map: hidden.
                image.set_visible(False)
                # Game time: unique per frame, so GIF writers keep every frame
                seconds = (step * smax.world_steps_per_env_step + tick + 1) * tick_seconds
                clock.set_text(f"{seconds:.2f} s")
                writer.grab_frame()
        width, height = fig.canvas.get_width_height()
    return width, height


__all__ = ["BattleRecorder", "Estimate", "Evaluation", "Replay", "check_render_path",
           "evaluate_checkpoint", "ffmpeg_binary", "load_policy", "render_replay"]
