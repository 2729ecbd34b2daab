#!/usr/bin/env bash
# Study 1 (issue "Evidence"): synthetic people, the CPU regime's default protocol (200 labelled,
# +100 x 3 rounds, 'small' hourglass, round 0 shared by the methods of a seed), 5 seeds, the
# heatmap methods that fit a few CPU hours (EGL, CoreGCN and UncertainGCN left out: EGL scores
# ~5 images/s on a CPU). Rerunning resumes from the workdir; the small outputs are copied here.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/study_synthetic_human
OUT=studies/synthetic_human
python -m experiments.al --dataset=synthetic_human \
    --method=random,vl4pose,multipeak_entropy,learning_loss,coreset --trials=5 --workdir="$W"
python -m experiments.report "$W" --out="$OUT"
cp "$W/config.json" "$W/results.jsonl" "$OUT/"
mkdir -p "$OUT/plots" && cp "$W"/plots/*seed0*_scores.png "$OUT/plots/"
# seed 0's round-0 galleries as JPEG (the PNGs of noisy synthetic images are 1-2 MB each)
python -c "
import glob, os, sys
from PIL import Image
for f in glob.glob(sys.argv[1] + '/plots/*seed0_round0_gallery.png'):
    Image.open(f).convert('RGB').save(sys.argv[2] + '/plots/' + os.path.basename(f)[:-4] + '.jpg', quality=80)
" "$W" "$OUT"
