#!/usr/bin/env bash
# The README's first command in the cycle-training regime (issue 27; the synthetic_human
# protocol's defaults), on a fresh data directory (data build included), timed by
# /usr/bin/time -v on a quiet machine (time.txt). The commit it ran on is in COMMIT.
# 8 min 54 s wall clock and 1.96 GB peak RSS on the 2-core CPU machine (quiet), 2026-12-06.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=$(mktemp -d)
W=runs/readme_command_cycle
OUT=studies/readme_command_cycle
if [ -e "$W" ]; then echo "$W exists: move it away for a fresh, timed run" >&2; exit 1; fi
git rev-parse HEAD > "$OUT/COMMIT"
/usr/bin/time -v -o "$OUT/time.txt" python -m experiments.al --dataset=synthetic_human --method=vl4pose,random \
    --data_dir="$DATA" --workdir="$W"
rm -rf "$DATA"
cp "$W"/config.json "$W"/results.jsonl "$W"/report.* "$W"/aubc.csv "$W"/by_kind.csv "$W"/*.png "$OUT/"
