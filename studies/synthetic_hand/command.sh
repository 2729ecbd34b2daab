#!/usr/bin/env bash
# Study 2 (issue "Evidence"): synthetic depth hands, the regression methods, DeepPrior retrained
# from scratch every round (200 labelled, +100 x 3 rounds from a pool of 1,000 with 20 % OOD;
# 30 epochs and at least 450 steps per round, batch 32), 5 seeds. CPU-sized: --preset=small
# crops 64 x 64 instead of the paper's 128 (a step costs ~6x less on this CPU).
# Workdirs: seeds 0-2 and 3-4 of the first six methods (run at once, one per CPU core; every
# seed's results depend on its seed alone); Learning Loss, CoreGCN and UncertainGCN (added
# later); and random selection on Bayesian DeepPrior (--bayesian_deepprior), the fair baseline
# of mc_dropout and cke, which train that model. Rerunning resumes. The committed results hold
# what had finished when they were committed (studies/README.md says which).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/study_synthetic_hand
OUT=studies/synthetic_hand
FLAGS="--dataset=synthetic_hand --preset=small"
python -m experiments.al $FLAGS --method=random,vl4pose,aleatoric,mc_dropout,cke,coreset \
    --seed=0 --trials=3 --workdir="$W" & a=$!
python -m experiments.al $FLAGS --method=random,vl4pose,aleatoric,mc_dropout,cke,coreset \
    --seed=3 --trials=2 --workdir="${W}_seeds34" & b=$!
wait $a; wait $b
python -m experiments.al $FLAGS --method=random --bayesian_deepprior --trials=5 \
    --workdir="${W}_bayesian" & a=$!
python -m experiments.al $FLAGS --method=learning_loss,coregcn,uncertaingcn --trials=5 \
    --workdir="${W}_more" & b=$!
wait $a; wait $b
python -m experiments.report "$W" "${W}_seeds34" "${W}_more" --out="$OUT"
# mc_dropout and cke against random on their own model (Bayesian DeepPrior)
python -m experiments.report "${W}_bayesian" "$W:mc_dropout,cke" "${W}_seeds34:mc_dropout,cke" \
    --out="$OUT/bayesian"
cp "$W/config.json" "$OUT/config.json"
cp "${W}_seeds34/config.json" "$OUT/config_seeds34.json"
cp "${W}_more/config.json" "$OUT/config_more.json"
cp "${W}_bayesian/config.json" "$OUT/config_bayesian.json"
cat "$W/results.jsonl" "${W}_seeds34/results.jsonl" "${W}_more/results.jsonl" > "$OUT/results.jsonl"
cp "${W}_bayesian/results.jsonl" "$OUT/results_bayesian.jsonl"
