#!/usr/bin/env bash
# The study's report from its committed rows: one folder per raw file (experiments.report reads
# WORKDIR/results.jsonl), random paired by seed across them, everything written into this folder.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dirs=()
for f in raw/*.jsonl; do
    name=$(basename "$f" .jsonl)
    mkdir "$tmp/$name"
    cp "$f" "$tmp/$name/results.jsonl"
    dirs+=("$tmp/$name")
done
cd ../..
python -m experiments.report "${dirs[@]}" --out=studies/synthetic_human_cycle
