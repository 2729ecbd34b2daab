#!/usr/bin/env bash
# A random-only pilot for the next experiment (not part of the planned study): the
# synthetic_human protocol with --retrain=scratch (every round re-initialised and trained 60
# epochs, al_bhpe's way), seed 0, to budget the CPU and see random's curve before any
# informative method runs in that regime. The commit it ran on is in COMMIT.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=studies/synthetic_human_cycle/pilot_scratch
W=runs/pilot_scratch_seed0
git rev-parse HEAD > "$OUT/COMMIT"
python -m experiments.al --dataset=synthetic_human --method=random --retrain=scratch --seed=0 \
    --trials=1 --workdir="$W"
cp "$W/config.json" "$W/results.jsonl" "$OUT/"
