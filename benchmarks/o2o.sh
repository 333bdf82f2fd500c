#!/usr/bin/env bash
# The paper's comparison on one map and tier (an experiment, not a test), through the commands
# a user types: `bench run` and `bench report`, nothing else.
#
#   bash benchmarks/o2o.sh 2s3z medium          # SEEDS=3 STEPS=500000 RUNS=runs/o2o by default
#   SEEDS=5 bash benchmarks/o2o.sh 6h_vs_8z medium
#
# Every method of the suite from the tier's newest dataset, on the same seeds and budget; the
# harness skips finished runs and resumes unfinished ones, so the same command continues a
# sweep a later sitting left off. ft-qmix with the O2O epsilon schedule (0.2 -> 0.05) is the
# same method with other settings: a labelled variant in the same store, so it starts from the
# same cached offline weights. Reports land in docs/results/o2o_<map>[_<tier>]/.
# (benchmarks/paper.yaml is the same experiment as one sweep file.)
set -euo pipefail
MAP=${1:?usage: o2o.sh MAP [TIER]}
TIER=${2:-medium}
SEEDS=${SEEDS:-3}
STEPS=${STEPS:-500000}
RUNS=${RUNS:-runs/o2o}
WORKERS=${WORKERS:-2}
STORE="$RUNS/$MAP-$TIER"
OUT="docs/results/o2o_$MAP$([ "$TIER" = medium ] || echo "_$TIER")"
set -x
bench run ovmse ovm se ft-qmix cql-ft hybrid qmix --map "$MAP" --dataset "$TIER" \
    --seeds "$SEEDS" --steps "$STEPS" --workers "$WORKERS" --runs-dir "$STORE"
bench run ft-qmix --map "$MAP" --dataset "$TIER" --seeds "$SEEDS" --steps "$STEPS" \
    --workers "$WORKERS" --runs-dir "$STORE" --set eps_start=0.2 --label ft-qmix_eps0.2
bench report --runs-dir "$STORE" --out "$OUT" --format png
