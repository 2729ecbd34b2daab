#!/usr/bin/env bash
# Does the synthetic_hand protocol learn steadily with labels? One seed of random selection
# (DeepPrior retrained from scratch every round: 30 epochs and at least 450 steps).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/hand_check
OUT=studies/hand_protocol_check
python -m experiments.al --dataset=synthetic_hand --method=random --workdir="$W"
cp "$W"/config.json "$W"/results.jsonl "$W"/report.md "$W"/learning_curve.png "$OUT/"
