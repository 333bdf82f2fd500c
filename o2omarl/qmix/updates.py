"""Where the online updates run: in this process, or in a learner process beside collection.

Both follow one schedule, so they give the same numbers. When a batched step makes updates
due, their replay indices are drawn and the updates submitted at once, and collection goes on;
the actor gets the weights those updates produce at the next submission. So the actor acts on
weights one submission (~4 episodes, one or two updates) old, the kind of lag a parallel runner
has. In a learner process, collection and learning overlap on two cores, free of the GIL.

The learner process keeps a replica of the replay buffer, fed with each episode once (~0.15 MB
on 2s3z), and builds its batches itself: sending built batches (~9 MB each) took 6-10 ms per
update and cut the gain from 1.3x to 1.2x (docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing as mp
import os
import signal
import weakref
from typing import Callable, Protocol

import numpy as np
import torch

from o2omarl.errors import BenchError, UsageError
from o2omarl.qmix.acting import MIXER_PREFIX
from o2omarl.qmix.buffer import Batch, ReplayBuffer
from o2omarl.qmix.learner import Learner, UpdateContext, overlap_target_unroll

MODES = ("auto", "inline", "process")

# One update's data: replay indices, and the offline episodes to put before them (or None).
Request = tuple[np.ndarray, "Batch | None"]


class Transport(Protocol):
    """Where submitted updates run: `InlineTransport` or `ProcessTransport`."""

    def submit(self, requests: list[Request], ctx: UpdateContext) -> None:
        """Start one update per request; at most one submission is in flight."""

    def wait(self) -> tuple[list[dict], dict]:
        """Finish the submission in flight: (metrics of each update, agent weights after)."""

    def sync(self) -> None:
        """Make the learner in this process hold the newest state (nothing in flight)."""

    def close(self) -> None: ...


class UpdateSchedule:
    """The one schedule of online updates, whatever the transport: a submission starts the
    updates now due while collection goes on; its metrics and weights come back when the next
    one is submitted (or at `sync`), and the actor takes those weights then. The online loop
    only calls `run_due`, `sync` and `close`."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.in_flight: int | None = None  # env step of the submitted, unfinished updates
        self.fresh: dict | None = None  # weights the actor gets at the next submission

    @property
    def idle(self) -> bool:
        return self.in_flight is None

    def run_due(self, requests: list[Request], ctx: UpdateContext,
                record: Callable[[list[dict], int], None]) -> dict | None:
        """Finish the submission in flight and hand its metrics, with the env step it was
        submitted at, to `record` (which may raise: then nothing new starts); then start
        `requests`. Returns the weights the actor acts with from now on (None: its own)."""
        record(*self._finish())
        weights, self.fresh = self.fresh, None
        self.transport.submit(requests, ctx)
        self.in_flight = ctx.env_step
        return weights

    def finish(self) -> tuple[list[dict], int]:
        """Wait for the submission in flight, if any: its metrics and env step (as `run_due`
        records them); its weights still reach the actor at the next submission, as always."""
        return self._finish()

    def sync(self) -> tuple[list[dict], int]:
        """Nothing in flight, and the learner here up to date (evaluations, checkpoints);
        returns the finished submission's metrics and env step, as `run_due` records them."""
        done = self._finish()
        self.transport.sync()
        return done

    def _finish(self) -> tuple[list[dict], int]:
        if self.in_flight is None:
            return [], -1
        step, self.in_flight = self.in_flight, None
        done, self.fresh = self.transport.wait()
        return done, step

    def close(self) -> None:
        self.transport.close()


def acting_weights(learner: Learner, with_mixer: bool = False) -> dict:
    """What the actor acts with: the agent's weights, and with `with_mixer` the mixer's too
    (keys prefixed `MIXER_PREFIX`), for an actor that scores joint actions (`Actor.holds_mixer`)."""
    weights = {k: v.detach().clone() for k, v in learner.agent.state_dict().items()}
    if with_mixer:
        weights.update({MIXER_PREFIX + k: v.detach().clone()
                        for k, v in learner.mixer.state_dict().items()})
    return weights


def _run(learner: Learner, replay: ReplayBuffer, requests: list[Request],
         ctx: UpdateContext) -> list[dict]:
    out = []
    for idx, offline in requests:
        batch = replay.batch(idx, learner.device)
        out.append(learner.update(batch if offline is None else Batch.cat(offline, batch), ctx))
    return out


class InlineTransport:
    """The updates run in this process, when submitted."""

    def __init__(self, learner: Learner, replay: ReplayBuffer, with_mixer: bool = False):
        self.learner, self.replay, self.with_mixer, self._done = learner, replay, with_mixer, None

    def submit(self, requests: list[Request], ctx: UpdateContext) -> None:
        self._done = _run(self.learner, self.replay, requests, ctx)

    def wait(self) -> tuple[list[dict], dict]:
        metrics, self._done = self._done, None
        return metrics, acting_weights(self.learner, self.with_mixer)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessTransport:
    """The updates run in a learner process that holds the learner and a replay replica.

    The child starts at the first submission from this process's learner (so a resumed run's
    restored state travels with it) and ends when the pipe closes: at `close()`, when this
    object is collected, or when this process dies. `sync()` copies its state back here
    (evaluations, checkpoints, the end of a run).
    """

    def __init__(self, learner: Learner, replay: ReplayBuffer, with_mixer: bool = False):
        self.learner, self.replay, self.with_mixer = learner, replay, with_mixer
        self._conn = self._proc = None
        self._sent = 0  # replay episodes the child has (global numbers below this)

    def _start(self) -> None:
        buf = io.BytesIO()
        torch.save(self.learner, buf)
        ctx = mp.get_context("spawn")  # fork after JAX/torch threads exist can deadlock
        here, there = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, daemon=True, name="o2omarl-learner",
                                 args=(there, buf.getvalue(), self.replay.info,
                                       self.replay.capacity, self.with_mixer))
        self._proc.start()
        there.close()
        self._conn, self._sent = here, 0
        weakref.finalize(self, here.close)

    def submit(self, requests: list[Request], ctx: UpdateContext) -> None:
        if self._conn is None:
            self._start()
        new = [(g, _numpy(ep)) for g, ep in self.replay.numbered(since=self._sent)]
        self._sent = self.replay.added
        off = [(idx, None if b is None else _numpy(b)) for idx, b in requests]
        self._send(("update", new, off, ctx))

    def _send(self, msg) -> None:
        try:
            self._conn.send(msg)
        except OSError:
            self._died()

    def _died(self):
        self._proc.join(5)
        raise BenchError(f"the learner process died (exit code {self._proc.exitcode}); "
                         "the last good checkpoint is kept") from None

    def _recv(self):
        try:
            kind, *reply = self._conn.recv()
        except (EOFError, OSError):
            self._died()
        if kind == "error":
            raise BenchError(f"the learner process failed: {reply[0]}")
        return reply

    def wait(self) -> tuple[list[dict], dict]:
        metrics, weights, self.learner.updates = self._recv()
        return metrics, {k: torch.from_numpy(v) for k, v in weights.items()}

    def sync(self) -> None:
        if self._conn is None:
            return
        self._send(("state",))
        (state,) = self._recv()
        self.learner.load_state_dict(torch.load(io.BytesIO(state), weights_only=False))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
            self._conn = self._proc = None


def _numpy(x):
    """Episodes and batches cross the pipe as numpy arrays (and weights as numpy or bytes):
    pickled by value, where torch tensors would each go through a new shared-memory file,
    slower for small ones, and /dev/shm is only 64 MB in a default container."""
    values = {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
    return type(x), {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                     for k, v in values.items()}


def _from_numpy(packed, device):
    kind, fields = packed
    if kind is Batch:
        return Batch(**{k: torch.from_numpy(v).to(device) for k, v in fields.items()})
    return kind(**fields)


def _serve(conn, learner_bytes: bytes, info, capacity: int, with_mixer: bool) -> None:
    """The learner process: one request at a time, in order, until the pipe closes."""
    # Ctrl-C and a scheduler's SIGTERM (to the whole process group) are the parent's to
    # handle: it stops at a step it can checkpoint, then closes this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    overlap_target_unroll(False)  # no side thread for target networks: the other core is busy
    learner: Learner = torch.load(io.BytesIO(learner_bytes), weights_only=False)
    replay = ReplayBuffer(info, capacity)
    try:
        while True:
            kind, *args = conn.recv()
            try:
                if kind == "update":
                    new, requests, ctx = args
                    for g, ep in new:
                        replay.put(g, _from_numpy(ep, "cpu"))
                    requests = [(idx, None if b is None else _from_numpy(b, learner.device))
                                for idx, b in requests]
                    metrics = _run(learner, replay, requests, ctx)
                    weights = {k: v.cpu().numpy()
                               for k, v in acting_weights(learner, with_mixer).items()}
                    reply = ("done", metrics, weights, learner.updates)
                else:  # "state"
                    buf = io.BytesIO()
                    torch.save(learner.state_dict(), buf)
                    reply = ("state", buf.getvalue())
            except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
                reply = ("error", f"{type(e).__name__}: {e}")
            conn.send(reply)
    except (EOFError, OSError):  # the parent closed the pipe or died
        return


def learner_mode(device: str, mode: str | None = None) -> str:
    """`inline` or `process`: O2OMARL_LEARNER (auto, inline, process; default auto) decides.

    auto takes a learner process when it has a core of its own: a CPU learner and at least two
    cores for this job (O2OMARL_CORES, which `bench run --workers` sets, or the machine's
    CPUs). A daemonic pool worker may not start processes: it always runs inline.
    """
    mode = mode or os.environ.get("O2OMARL_LEARNER", "auto")
    if mode not in MODES:
        raise UsageError(f"O2OMARL_LEARNER={mode!r} is not accepted; accepted: "
                         f"{', '.join(MODES)}")
    if mp.current_process().daemon or mode == "inline":
        return "inline"
    if mode == "process":
        return mode
    cores = os.environ.get("O2OMARL_CORES") or str(os.cpu_count() or 1)
    if not cores.isdigit():
        raise UsageError(f"O2OMARL_CORES={cores!r} is not accepted; accepted: a whole number "
                         "of cores")
    spare = int(cores) >= 2 and torch.device(device).type == "cpu"
    return "process" if spare else "inline"


def make_transport(learner: Learner, replay: ReplayBuffer, mode: str,
                   with_mixer: bool = False) -> Transport:
    """`mode`: "inline" or "process", as `learner_mode` decided it; `with_mixer`: the actor
    gets the mixer's weights too (`acting_weights`)."""
    if mode not in ("inline", "process"):
        raise ValueError(f"unknown learner mode {mode!r}; accepted: inline, process")
    return (ProcessTransport if mode == "process" else InlineTransport)(learner, replay,
                                                                        with_mixer)
