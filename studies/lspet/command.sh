#!/usr/bin/env bash
# Study 3 (issue "Evidence"): real images. The 4,000 LSPET images of the shared data (pool 3,616
# people, test 384, split by a stable hash of the image name), a CPU-sized protocol: the 'small'
# hourglass (128 px input, 32 x 32 heatmaps), 250 labelled, +250 x 3 rounds, round 0 trained
# 60 epochs (shared by the methods of a seed), then fine-tuned 5 epochs per round, lr 3e-3
# (the synthetic_human regime). 3 seeds. Rerunning resumes from the workdir.
# Needs the prepared data once:
#   python -m vl4pose_jax.data.prepare --dataset=lspet --manual_dir=../shared/data/lspet
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/study_lspet
OUT=studies/lspet
python -m experiments.al --dataset=lspet --preset=small --init_size=250 --budget=250 --rounds=3 \
    --epochs=60 --cycle_epochs=5 --retrain=finetune --batch_size=16 --lr=3e-3 \
    --method=random,vl4pose,multipeak_entropy,learning_loss,coreset --trials=3 --workdir="$W"
python -m experiments.report "$W" --out="$OUT"
cp "$W/config.json" "$W/results.jsonl" "$OUT/"
mkdir -p "$OUT/plots" && cp "$W"/plots/*seed0*_scores.png "$OUT/plots/"
# Does VL4Pose's likelihood predict failure, and what does refinement move? (newest round, 3 seeds)
python -m experiments.diagnose "$W" --method=vl4pose --out="$OUT" --fail_below=25
