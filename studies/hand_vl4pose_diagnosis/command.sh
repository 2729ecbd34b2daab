#!/usr/bin/env bash
# Why does VL4Pose's regression likelihood rank rare synthetic hands poorly (pool AUROC
# 0.55-0.73 in synthetic_hand_1800/all_methods, against 0.89-0.90 for the aleatoric head)?
# diagnose.py scores the pool of a trained vl4pose state six ways (see its docstring).
# Round 0 (200 labelled): one training per seed with --rounds=0, the hand_1800 protocol.
# Round 3 (500 labelled): the vl4pose runs of the synthetic_hand_1800 seed workdirs
# (synthetic_hand_1800/command.sh), when they exist.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=studies/hand_vl4pose_diagnosis
W=runs/study_hand_vl4pose_diagnosis
FLAGS="--dataset=synthetic_hand --preset=small --min_steps=1800 --trials=1 --method=vl4pose"
: > "$OUT/results.jsonl"
for S in 0 1; do
    python -m experiments.al $FLAGS --seed=$S --rounds=0 --workdir="${W}_s$S"
    python "$OUT/diagnose.py" "${W}_s$S" $S --plot="$OUT/scores_seed${S}_round0.png" \
        >> "$OUT/results.jsonl"
done
for S in 2 3 4; do
    P=runs/study_synthetic_hand_1800_plain_s$S
    if [ -d "$P" ]; then
        python "$OUT/diagnose.py" "$P" $S --plot="$OUT/scores_seed${S}_round3.png" \
            >> "$OUT/results.jsonl"
    fi
done
