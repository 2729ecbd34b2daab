#!/usr/bin/env bash
# Why does Bayesian DeepPrior not improve with labels in the synthetic_hand study? Four DeepPrior
# variants trained on the same labelled sets (see probe.py); 2 trainings each at 200 and 500.
set -euo pipefail
cd "$(dirname "$0")/../.."
python studies/bayesian_probe/probe.py 2 > studies/bayesian_probe/results.jsonl
# Is the Bayesian model undertrained? The same, 4x the step floor, one training per size.
python studies/bayesian_probe/probe.py 1 1800 "Bayesian, Eq. 2 (simulator);dropout A, MSE" \
    > studies/bayesian_probe/results_1800_steps.jsonl
# Does plain DeepPrior (random's model) also gain from 4x the steps? One training per size.
python studies/bayesian_probe/probe.py 1 1800 "plain (MSE)" \
    > studies/bayesian_probe/results_1800_steps_plain.jsonl
