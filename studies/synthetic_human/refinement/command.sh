#!/usr/bin/env bash
# What does VL4Pose's refinement (Eq. 6) move on synthetic people, and does the score predict
# per-image PCK there? vl4pose seeds 0-1 of the synthetic_human study rerun in their own workdir
# (every row equals the study's vl4pose rows of those seeds: metrics, refinement, selections),
# then experiments.diagnose on each seed's model after its last round (500 labelled), on the
# 200 test people (failed: per-image PCK@0.2 below 50 %). About 8 min on the 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
W=runs/study_synthetic_human_refine
OUT=studies/synthetic_human/refinement
python -m experiments.al --dataset=synthetic_human --protocol=synthetic_human_v1 --method=vl4pose --trials=2 --workdir="$W"
python -m experiments.diagnose "$W" --method=vl4pose --out="$OUT"
cp "$W/config.json" "$W/results.jsonl" "$OUT/"
