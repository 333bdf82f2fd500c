"""Dataset loading benchmark (not a test): seconds to load a stored version into training arrays.

    bench collect --map 2s3z --behaviour heuristic --episodes 14000 --seed 5   # ~1M steps, 4.1 GB
    python benchmarks/loading.py smax/2s3z/heuristic-v0 [--repeats 3]

Times `o2omarl.datasets.load` as `bench run` calls it (checksum, shape and finiteness checks
included), each repeat in a fresh process so that no repeat reuses another's memory. The file
itself is in the page cache after the first read; the first repeat is reported apart.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import sys, time
from o2omarl.datasets import load, store
rec = store.get(sys.argv[1])
start = time.perf_counter()
data = load(rec, rec.env)
print(time.perf_counter() - start, data.steps)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="a stored version, e.g. smax/2s3z/heuristic-v0")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.repeats < 1:
        sys.exit(f"error: --repeats {args.repeats}: accepted: 1 or more")
    times = []
    for i in range(args.repeats + 1):
        child = subprocess.run([sys.executable, "-c", CHILD, args.dataset],
                               capture_output=True, text=True)
        if child.returncode != 0:  # e.g. an unknown dataset id: show the loader's own line
            lines = child.stderr.strip().splitlines() or [f"exit {child.returncode}"]
            sys.exit(f"error: loading {args.dataset} failed: {lines[-1]}")
        out = child.stdout.split()
        seconds, steps = float(out[0]), int(out[1])
        label = "first (cold page cache possible)" if i == 0 else f"repeat {i}"
        print(f"{label:34s} {seconds:6.1f} s  {seconds * 1e5 / steps:5.2f} s per 100k steps")
        if i:
            times.append(seconds)
    print(f"{args.dataset}: {steps:,} steps, median {sorted(times)[len(times) // 2]:.1f} s")


if __name__ == "__main__":
    main()
