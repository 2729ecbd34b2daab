#!/usr/bin/env bash
# Study 1 (issue "Evidence"): synthetic people, the CPU regime's default protocol (200 labelled,
# +100 x 3 rounds, 'small' hourglass, round 0 shared by the methods of a seed), 5 seeds.
# Two workdirs: the first five methods, then aleatoric, CoreGCN and UncertainGCN (added later;
# round 0 of a seed is bit for bit the same in both, so the latter pair with the first's random).
# EGL is left out: it scores ~5 images/s on this CPU (benchmarks/RESULTS.md), about 7 min per
# round and seed for this pool. Rerunning resumes from the workdirs; small outputs are copied here.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=runs/study_synthetic_human
W2=runs/study_synthetic_human_more
OUT=studies/synthetic_human
python -m experiments.al --dataset=synthetic_human \
    --method=random,vl4pose,multipeak_entropy,learning_loss,coreset --trials=5 --workdir="$W"
python -m experiments.al --dataset=synthetic_human \
    --method=aleatoric,coregcn,uncertaingcn --trials=5 --workdir="$W2"
python -m experiments.report "$W" "$W2" --out="$OUT"
cp "$W/config.json" "$OUT/"
cp "$W2/config.json" "$OUT/config_more.json"
cat "$W/results.jsonl" "$W2/results.jsonl" > "$OUT/results.jsonl"
mkdir -p "$OUT/plots" && cp "$W"/plots/*seed0*_scores.png "$W2"/plots/*seed0*_scores.png "$OUT/plots/"
# seed 0's round-0 galleries as JPEG (the PNGs of noisy synthetic images are 1-2 MB each)
python -c "
import glob, os, sys
from PIL import Image
for w in sys.argv[1:-1]:
    for f in glob.glob(w + '/plots/*seed0_round0_gallery.png'):
        Image.open(f).convert('RGB').save(sys.argv[-1] + '/plots/' + os.path.basename(f)[:-4] + '.jpg', quality=80)
" "$W" "$W2" "$OUT"
