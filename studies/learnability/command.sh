#!/usr/bin/env bash
# Can the CPU model learn the synthetic rare-pose families from ~100 labelled ones? (check.py,
# README.md.) Seeds 0-2, 120 epochs per training; the families config builds on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
python studies/learnability/check.py --seeds=0,1,2 --epochs=120 \
    --out=studies/learnability/results.jsonl
# How often a wrist lies within the PCK@0.2 radius of its own shoulder, per kind ('small': the
# old rare poses; 'families'): a few seconds.
python studies/learnability/wrist_share.py --out=studies/learnability/wrist_share.json
# The families as they look: four rare-pose test people of each (families.png).
python studies/learnability/gallery.py --out=studies/learnability/families.png
