#!/usr/bin/env bash
# The study's report from its committed rows: one folder per raw file under
# runs/study_cycle_report/ (experiments.report reads WORKDIR/results.jsonl), random paired by
# seed across them, everything written into this folder; then the same without the seeds that
# fail the regime check (regime_pass_only/).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=runs/study_cycle_report
rm -rf "$R" && mkdir -p "$R"
dirs=()
for f in studies/synthetic_human_cycle/raw/*.jsonl; do
    name=$(basename "$f" .jsonl)
    mkdir "$R/$name" && cp "$f" "$R/$name/results.jsonl"
    dirs+=("$R/$name")
done
python -m experiments.report "${dirs[@]}" --out=studies/synthetic_human_cycle
# Sensitivity (not the pre-registered analysis): the same report without the seeds that fail
# the regime check, in regime_pass_only/.
failing=$(python studies/synthetic_human_cycle/check_regime.py | tail -1 \
    | python -c "import json, sys; print(' '.join(map(str, json.load(sys.stdin)['failing'])))")
kept=()
for d in "${dirs[@]}"; do
    seed=${d##*_seed}
    [[ " $failing " == *" $seed "* ]] || kept+=("$d")
done
python -m experiments.report "${kept[@]}" --out=studies/synthetic_human_cycle/regime_pass_only
