#!/usr/bin/env bash
# The synthetic_hand study again with at least 1,800 training steps per round (--min_steps=1800:
# 1,800 x batch 32 = 57,600 samples, what the reference code sees at its 1,000-image stage);
# studies/bayesian_probe showed that the first study's 450-step floor undertrains every DeepPrior,
# the Bayesian one most. Same protocol otherwise (200 labelled, +100 x 3 from a pool of 1,000 with
# 20 % OOD, DeepPrior retrained from scratch every round, 64 px crops).
# First the CKE paper's comparison: mc_dropout and cke against random selection on their own model
# (Bayesian DeepPrior, --bayesian_deepprior). Then the seven methods that train plain DeepPrior
# (random, vl4pose, aleatoric, coreset, learning_loss, coregcn, uncertaingcn) in seed workdirs,
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
# The seven plain-DeepPrior methods, one workdir per seed (a seed's rows depend on its seed
# alone; round 0 of random, coreset, coregcn and uncertaingcn is trained once per seed). The
# committed rows were made in pieces over sessions: seed 0 and part of seed 1 in one workdir with
# --trials=5, the rest of seed 1 with --method=learning_loss,coregcn,uncertaingcn, later seeds in
# seed workdirs as below; studies/README.md says which seeds are committed.
PLAIN=random,vl4pose,aleatoric,coreset,learning_loss,coregcn,uncertaingcn
for S in 0 1 2 3 4; do
    python -m experiments.al ${FLAGS/--trials=5/--trials=1} --seed=$S --method=$PLAIN \
        --workdir="${W}_plain_s$S"
done
mkdir -p "$OUT/all_methods"
cat "${W}"_plain_s[0-4]/results.jsonl > "$OUT/all_methods/results.jsonl"
cp "${W}_plain_s0/config.json" "$OUT/all_methods/config.json"
python -m experiments.report "$OUT/all_methods" "$W:mc_dropout,cke" --out="$OUT/all_methods"
