#!/usr/bin/env bash
# The study's report from its committed rows: one folder per raw file under
# runs/study_cycle_report/ (experiments.report reads WORKDIR/results.jsonl), random paired by
# seed across them, everything written into this folder.
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
