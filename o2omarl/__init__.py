"""o2omarl: offline-to-online multi-agent RL benchmarks (OVMSE and its baselines on SMAX/SMAC)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("o2omarl")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
