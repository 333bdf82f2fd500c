"""Reading SMAX's world state in tests, and two scripted policies built on it.

The state is one block of F features per unit (health fraction first, then x, y divided by the
map size; all zeros for a dead unit), followed by the unit teams and unit types.
"""

from __future__ import annotations

import numpy as np

STOP = 4  # SMAX ally actions: 0-3 moves (N, E, S, W), 4 stop (always available), 5+ attacks
MOVES = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]], np.float32)
MAP_SIZE = 32.0  # SMAX's default map is 32 x 32; touching a wall kills a unit


def units(state: np.ndarray, info) -> tuple[np.ndarray, np.ndarray]:
    """(health fraction (..., U), position in map units (..., U, 2)) of every unit, allies
    first. The state holds positions divided by the map size."""
    u = info.n_agents + info.n_enemies
    f = (info.state_dim - 2 * u) // u
    assert u * f + 2 * u == info.state_dim, "unexpected SMAX world-state layout"
    blocks = state[..., : u * f].reshape(state.shape[:-1] + (u, f))
    return blocks[..., 0], blocks[..., 1:3] * MAP_SIZE


def side_alive(state: np.ndarray, info) -> tuple[np.ndarray, np.ndarray]:
    health, _ = units(state, info)
    return (health[..., : info.n_agents] > 0).any(-1), (health[..., info.n_agents:] > 0).any(-1)


class StopPolicy:
    def __call__(self, obs, first):
        return np.full(obs.avail.shape[:2], STOP)


class FleePolicy:
    """Each ally takes the move that leaves it farthest from the nearest living enemy, staying 2
    units off the walls. It never attacks, so it never wins; most battles reach the time limit
    undecided (the enemies are as fast as the allies), some end with the allies caught."""

    def __init__(self, info):
        self.info = info

    def __call__(self, obs, first):
        info, step = self.info, 3.15 * 8 / 16  # marine speed * world steps * dt: one env step
        health, pos = units(obs.state, info)
        allies, enemies = pos[:, : info.n_agents], pos[:, info.n_agents:]
        enemy_alive = health[:, info.n_agents:] > 0
        cand = allies[:, :, None, :] + MOVES[None, None] * step  # (N, a, 4, 2)
        dist = np.linalg.norm(cand[:, :, :, None, :] - enemies[:, None, None], axis=-1)
        dist = np.where(enemy_alive[:, None, None, :], dist, np.inf).min(-1)
        inside = np.all((cand > 2.0) & (cand < MAP_SIZE - 2.0), axis=-1)
        acts = np.where(inside, dist, -np.inf).argmax(-1)
        ok = np.take_along_axis(obs.avail, acts[..., None], -1)[..., 0]
        return np.where(ok, acts, STOP)
