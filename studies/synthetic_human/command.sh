#!/usr/bin/env bash
# Study 1 (issue "Evidence"): synthetic people, the CPU regime's default protocol (200 labelled,
# +100 x 3 rounds, 'small' hourglass, round 0 shared by the methods of a seed), 5 seeds.
# Three workdirs: the first five methods, then aleatoric, CoreGCN and UncertainGCN, then EGL
# (each added later; round 0 of a seed is bit for bit the same in all, so the later ones pair
# with the first's random). EGL costs 30 backward passes per pool image (1.8 images/s alone on
# the 2-core CPU with this network, ~27 min per seed). Rerunning resumes from the workdirs; small
# outputs are copied here.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/study_synthetic_human
W2=runs/study_synthetic_human_more
W3=runs/study_synthetic_human_egl
OUT=studies/synthetic_human
python -m experiments.al --dataset=synthetic_human --protocol=synthetic_human_v1 \
    --method=random,vl4pose,multipeak_entropy,learning_loss,coreset --trials=5 --workdir="$W"
python -m experiments.al --dataset=synthetic_human --protocol=synthetic_human_v1 \
    --method=aleatoric,coregcn,uncertaingcn --trials=5 --workdir="$W2"
python -m experiments.al --dataset=synthetic_human --protocol=synthetic_human_v1 --method=egl --trials=5 --workdir="$W3"
python -m experiments.report "$W" "$W2" "$W3" --out="$OUT"
cp "$W/config.json" "$OUT/"
cp "$W2/config.json" "$OUT/config_more.json"
cp "$W3/config.json" "$OUT/config_egl.json"
cat "$W/results.jsonl" "$W2/results.jsonl" "$W3/results.jsonl" > "$OUT/results.jsonl"
mkdir -p "$OUT/plots"
cp "$W"/plots/*seed0*_scores.png "$W2"/plots/*seed0*_scores.png "$W3"/plots/*seed0*_scores.png "$OUT/plots/"
# seed 0's round-0 galleries as JPEG (the PNGs of noisy synthetic images are 1-2 MB each)
python -c "
import glob, os, sys
from PIL import Image
for w in sys.argv[1:-1]:
    for f in glob.glob(w + '/plots/*seed0_round0_gallery.png'):
        Image.open(f).convert('RGB').save(sys.argv[-1] + '/plots/' + os.path.basename(f)[:-4] + '.jpg', quality=80)
" "$W" "$W2" "$W3" "$OUT"
