"""Probe for the synthetic_hand study: why does Bayesian DeepPrior not improve with labels?

The study's protocol (64 px crops, from scratch, 30 epochs and >= 450 steps, batch 32, Adam
1e-3) on the same labelled sets for every variant: seed 0's initial 200 and those plus 300
more random pool records (500). Variants: plain DeepPrior (MSE); dropout 'A' with MSE only;
Bayesian DeepPrior with the CKE paper's Eq. 2 loss (what the simulator trains); the same plus
1.0 x MSE (the reference code's total loss). Bayesian variants are evaluated as the mean of 70
MC passes (as the simulator) and with dropout off. Prints one JSON line per training.
Usage: probe.py [REPEATS [MIN_STEPS [VARIANT;...]]] (VARIANT: a key of VARIANTS; default all).
"""
import dataclasses
import json
import sys

import jax
import numpy as np
import optax

from vl4pose_jax import data, evaluation, fit, nets, protocol, records, train

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
MIN_STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 450
cfg = protocol.Config(dataset="synthetic_hand", methods=("random",), init_size=200, budget=100,
                      rounds=3, epochs=30, retrain="scratch", preset="small", batch_size=32,
                      data_config="small", min_steps=MIN_STEPS, progress=False)
d = records.validate(cfg)
init = records.initial_labelled(cfg, d)
rest = np.setdiff1d(np.arange(d.pool_start, len(d.source)) if d.pool_start else
                    np.arange(len(d.source)), init)
extra = np.sort(np.random.default_rng(0).permutation(rest)[:300])
sets = {200: init, 500: np.sort(np.concatenate([init, extra]))}


def variant(dropout, aleatoric, mse_weight=0.0):
    n = nets.nets("regression", data.spec(cfg.dataset).skeleton, cfg.preset, None,
                  train.DEEPPRIOR_LR, (dropout, aleatoric), "float32", 70)
    if mse_weight:
        tx = optax.adam(train.DEEPPRIOR_LR)
        n = dataclasses.replace(n, step=train.make_regression_train_step(
            n.model, None, tx, tx, skeleton=data.spec(cfg.dataset).skeleton,
            mse_weight=mse_weight))
    return n


VARIANTS = {"plain (MSE)": variant(None, False), "dropout A, MSE": variant("A", False),
            "Bayesian, Eq. 2 (simulator)": variant("A", True),
            "Bayesian, Eq. 2 + MSE (reference)": variant("A", True, 1.0)}
if len(sys.argv) > 3:
    VARIANTS = {k: VARIANTS[k] for k in sys.argv[3].split(";")}


def deterministic(n):
    model = n.model
    return dataclasses.replace(n, predict=jax.jit(
        lambda state, depth: model.apply({"params": state.params}, depth, mc=False)))


for size, labelled in sets.items():
    for rep in range(REPEATS):
        for name, n in VARIANTS.items():
            state = n.init(protocol.round_key(0, rep, "init"))
            state = fit.fit(cfg, d, n, state, labelled, cfg.epochs, rep, name)
            ev = evaluation.evaluate(cfg, d, n, state)
            row = {"labelled": size, "repeat": rep, "variant": name, "min_steps": MIN_STEPS,
                   "mean_error_mm": ev["metrics"]["mean_error_mm"],
                   "in_distribution_mm": ev["metrics_by_kind"]["in_distribution"]["mean_error_mm"]}
            if n.model.dropout:
                row["dropout_off_mm"] = evaluation.evaluate(
                    cfg, d, deterministic(n), state)["metrics"]["mean_error_mm"]
            print(json.dumps(row), flush=True)
