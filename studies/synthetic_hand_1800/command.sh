#!/usr/bin/env bash
# The synthetic_hand study again with at least 1,800 training steps per round (--min_steps=1800:
# 1,800 x batch 32 = 57,600 samples, what the reference code sees at its 1,000-image stage);
# studies/bayesian_probe showed that the first study's 450-step floor undertrains every DeepPrior,
# the Bayesian one most. Same protocol otherwise (200 labelled, +100 x 3 from a pool of 1,000 with
# 20 % OOD, DeepPrior retrained from scratch every round, 64 px crops).
# First the CKE paper's comparison: mc_dropout and cke against random selection on their own model
# (Bayesian DeepPrior, --bayesian_deepprior). Then the seven methods that train plain DeepPrior
# (random, vl4pose, aleatoric, coreset, learning_loss, coregcn, uncertaingcn) in a third workdir,
# reported in all_methods/ with mc_dropout and cke, every method against random on plain
# DeepPrior (the first hand study's table). Rerunning resumes; the committed results hold what
# had finished when they were committed (studies/README.md says which seeds).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/study_synthetic_hand_1800
OUT=studies/synthetic_hand_1800
FLAGS="--dataset=synthetic_hand --preset=small --min_steps=1800 --trials=5"
python -m experiments.al $FLAGS --method=random --bayesian_deepprior --workdir="${W}_bayesian" & a=$!
python -m experiments.al $FLAGS --method=mc_dropout,cke --workdir="$W" & b=$!
wait $a; wait $b
python -m experiments.report "${W}_bayesian" "$W" --out="$OUT"
cp "$W/config.json" "$OUT/config.json"
cp "${W}_bayesian/config.json" "$OUT/config_bayesian.json"
cat "${W}_bayesian/results.jsonl" "$W/results.jsonl" > "$OUT/results.jsonl"
python -m experiments.al $FLAGS \
    --method=random,vl4pose,aleatoric,coreset,learning_loss,coregcn,uncertaingcn --workdir="${W}_plain"
mkdir -p "$OUT/all_methods"
cp "${W}_plain/results.jsonl" "$OUT/all_methods/results.jsonl"
cp "${W}_plain/config.json" "$OUT/all_methods/config.json"
python -m experiments.report "$OUT/all_methods" "$W:mc_dropout,cke" --out="$OUT/all_methods"
