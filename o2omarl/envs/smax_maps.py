"""SMAX's maps as data, so that commands which simulate nothing (`bench maps`, planning a run,
refusing an unknown map, skipping a finished sweep) never import jaxmarl (~15 s on a busy
machine). `tests/test_envs.py` checks every row against SMAX itself."""

# map -> (agents, enemies, obs dim, state dim, actions, episode limit), in SMAX's map order
MAPS = {
    "3m": (3, 3, 75, 72, 8, 100),
    "2s3z": (5, 5, 127, 120, 10, 100),
    "25m": (25, 25, 647, 600, 30, 100),
    "3s5z": (8, 8, 205, 192, 13, 100),
    "8m": (8, 8, 205, 192, 13, 100),
    "5m_vs_6m": (5, 6, 140, 132, 11, 100),
    "10m_vs_11m": (10, 11, 270, 252, 16, 100),
    "27m_vs_30m": (27, 30, 738, 684, 35, 100),
    "3s5z_vs_3s6z": (8, 9, 218, 204, 14, 100),
    "3s_vs_5z": (3, 5, 101, 96, 10, 100),
    "6h_vs_8z": (6, 8, 179, 168, 13, 100),
    "smacv2_5_units": (5, 5, 127, 120, 10, 100),
    "smacv2_10_units": (10, 10, 257, 240, 15, 100),
    "smacv2_20_units": (20, 20, 517, 480, 25, 100),
}
