#!/usr/bin/env bash
# Why does Bayesian DeepPrior not improve with labels in the synthetic_hand study? Four DeepPrior
# variants trained on the same labelled sets (see probe.py); 2 trainings each at 200 and 500.
set -euo pipefail
cd "$(dirname "$0")/../.."
python studies/bayesian_probe/probe.py 2 > studies/bayesian_probe/results.jsonl
