#!/usr/bin/env bash
# Study 2 (issue "Evidence"): synthetic depth hands, the regression methods, DeepPrior retrained
# from scratch every round (200 labelled, +100 x 3 rounds from a pool of 1,000 with 20 % OOD;
# 30 epochs and at least 450 steps per round, batch 32), 5 seeds. CPU-sized: --preset=small
# crops 64 x 64 instead of the paper's 128 (a step costs ~6x less on this CPU).
# Learning Loss, CoreGCN and UncertainGCN were left out for CPU time. Seeds 0-2 and 3-4 run in
# two workdirs at once (both CPU cores); every seed's results depend on its seed alone.
# Rerunning resumes. The committed results hold seeds 0, 1 and 3: the session ended before
# seeds 2 and 4 (rerun this script to add them).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/study_synthetic_hand
OUT=studies/synthetic_hand
FLAGS="--dataset=synthetic_hand --preset=small --method=random,vl4pose,aleatoric,mc_dropout,cke,coreset"
python -m experiments.al $FLAGS --seed=0 --trials=3 --workdir="$W" &
python -m experiments.al $FLAGS --seed=3 --trials=2 --workdir="${W}_seeds34" &
wait
python -m experiments.report "$W" "${W}_seeds34" --out="$OUT"
cp "$W/config.json" "$OUT/config.json"
cp "${W}_seeds34/config.json" "$OUT/config_seeds34.json"
cat "$W/results.jsonl" "${W}_seeds34/results.jsonl" > "$OUT/results.jsonl"
