#!/usr/bin/env bash
# The README's first command, on a fresh data directory (data build included), timed:
# The regime before issue 27 (--protocol=synthetic_human_v1; it was the default protocol then).
# 5 min 33 s wall clock and 1.63 GB peak RSS on the 2-core CPU machine (quiet), 2026-12-02.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=$(mktemp -d)
W=runs/synthetic_human_vl4pose_random
OUT=studies/readme_command
/usr/bin/time -v python -m experiments.al --dataset=synthetic_human --protocol=synthetic_human_v1 --method=vl4pose,random \
    --data_dir="$DATA"
cp "$W"/config.json "$W"/results.jsonl "$W"/report.* "$W"/aubc.csv "$W"/by_kind.csv "$W"/*.png "$OUT/"
mkdir -p "$OUT/plots" && cp "$W"/plots/*_scores.png "$OUT/plots/"
# round-0 galleries as JPEG (the PNGs of noisy synthetic images are 1-2 MB each)
python -c "
import glob, os, sys
from PIL import Image
for f in glob.glob(sys.argv[1] + '/plots/*_round0_gallery.png'):
    Image.open(f).convert('RGB').save(sys.argv[2] + '/plots/' + os.path.basename(f)[:-4] + '.jpg', quality=80)
" "$W" "$OUT"
