#!/usr/bin/env bash
# Study (issue 27): synthetic people in the cycle-training regime, the `synthetic_human`
# protocol's defaults (config 'families', 200 labelled + 100 x 3 rounds, round 0 60 epochs,
# 12 epochs per cycle from the previous round's best state with a fresh Adam, ReduceLROnPlateau
# on the validation loss, the best-on-validation state evaluated). The primary comparison
# (vl4pose vs random, seeds 0-9) was written in studies/README.md before it ran.
# One workdir per seed and group, so that a cut session loses one seed at most; each seed's rows
# are copied to raw/ as soon as it finishes. Round 0 of a seed is the same network in both
# groups (the hourglass does not see the auxiliary heads), so the secondary methods pair with
# the primary group's random. Run it from a clean `git archive` of the commit in COMMIT (the
# code under study does not move while other work lands).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${STUDY_RUNS:-runs/study_cycle}
OUT=${STUDY_OUT:-studies/synthetic_human_cycle}
mkdir -p "$OUT/raw"
run() {  # name seed methods
    python -m experiments.al --dataset=synthetic_human --method="$3" --seed="$2" --trials=1 \
        --workdir="$R/$1_seed$2"
    cp "$R/$1_seed$2/results.jsonl" "$OUT/raw/$1_seed$2.jsonl"
    cp "$R/$1_seed$2/config.json" "$OUT/raw/$1_seed$2.config.json"
}
for k in 0 1 2 3 4 5 6 7 8 9; do run primary "$k" random,vl4pose; done
for k in 0 1 2 3 4; do run secondary "$k" multipeak_entropy,learning_loss,coreset; done
