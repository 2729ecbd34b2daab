"""Benchmark: acquisition functions.

Prints one JSON object:
  * `kcenter`: k-center greedy seconds (after a small warm-up compile) and the process's peak-RSS
    growth for N = 100,000 pool points, d = 256, |labelled| = 1,000, budget 1,000 (O(N d) for the
    features themselves, O(N) working memory);
  * `pool_images_per_s`: for every registered method, pool images scored per second, end to
    end (`acquisition.select`, labelled-set streaming, k-center greedy and GCN training
    included), timed on a second identical call (the first compiles); human methods on the tiny hourglass preset (64 px input) and hand methods on
    the paper DeepPrior (128 px input, dropout 'C', aleatoric head); then the paper hourglass
    (256 px, 2 stacks, 256 channels) for `--paper-methods` only, a few batches (CPU is slow;
    all human methods when an accelerator is present).
Random weights: the timing does not depend on training. Run:
`python benchmarks/acquisition.py [--pool 64] [--batch 16] [--paper-pool 16]`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout
from vl4pose_jax import acquisition, models, skeletons, train  # noqa: E402

HUMAN, HAND = skeletons.lsp14, skeletons.icvl16
HUMAN_HEADS = {"vl4pose": "vl4pose_heatmap", "aleatoric": "aleatoric",
               "learning_loss": "learning_loss"}
HAND_HEADS = {"vl4pose": "vl4pose_regression", "learning_loss": "learning_loss"}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_kcenter(n=100_000, d=256, m=1000, budget=1000):
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(n, d)).astype(np.float32)
    centres = rng.normal(size=(m, d)).astype(np.float32)
    acquisition.kcenter_greedy(pool[:2000], centres[:10], 10)  # compile the small shapes
    before = peak_rss_mb()
    start = time.perf_counter()
    picks, _ = acquisition.kcenter_greedy(pool, centres, budget)
    seconds = time.perf_counter() - start
    return {"n": n, "d": d, "labelled": m, "budget": budget, "seconds": round(seconds, 2),
            "peak_rss_growth_mb": round(peak_rss_mb() - before, 1),
            "features_mb": round(pool.nbytes / 2**20, 1), "unique_picks": int(len(set(picks)))}


def human_setup(preset):
    model = models.StackedHourglass(num_joints=HUMAN.num_joints, **models.PRESETS[preset].kwargs)
    size = models.PRESETS[preset].input_size
    base = train.init_heatmap_state(model, None, jax.random.key(0), size, optax.adam(1e-3))
    feats = jax.jit(lambda s, x: model.apply({"params": s.params, "batch_stats": s.batch_stats},
                                             x, train=False))(base, jnp.zeros((1, size, size, 3)))
    auxes, states = {None: None}, {None: base}
    for head in HUMAN_HEADS.values():
        auxes[head] = models.AuxNet(head=head, num_links=HUMAN.num_links,
                                    num_joints=HUMAN.num_joints)
        states[head] = base.replace(aux_params=auxes[head].init(jax.random.key(1), feats)["params"])
    return model, auxes, states, size


def hand_setup():
    model = models.DeepPrior(num_joints=HAND.num_joints, dropout="C", aleatoric=True)
    auxes = {None: None}
    for head in HAND_HEADS.values():
        auxes[head] = models.AuxNet(head=head, num_links=HAND.num_links, pooling="vector")
    tx = optax.adam(1e-3)
    states = {h: train.init_regression_state(model, a, jax.random.key(0), 128, tx, tx)
              for h, a in auxes.items()}
    return model, auxes, states, 128


def time_method(name, task, setup, pool_size, labelled_size, batch, options):
    model, auxes, states, size = setup
    channels = 3 if task == "heatmap" else 1
    rng = np.random.default_rng(0)
    n = pool_size + labelled_size
    key = "image" if task == "heatmap" else "depth"
    arrays = {key: rng.random((n, size, size, channels), np.float32)}
    head = (HUMAN_HEADS if task == "heatmap" else HAND_HEADS).get(name)

    def ctx(pool):
        return acquisition.Context(
            task=task, model=model, aux=auxes[head], state=states[head],
            batches=acquisition.array_batches(arrays, batch), labelled=np.arange(labelled_size),
            pool=pool, budget=max(1, pool_size // 8), key=jax.random.key(0),
            skeleton=HUMAN if task == "heatmap" else HAND, progress=False)

    pool = np.arange(labelled_size, n)
    acquisition.select(name, ctx(pool), **options)  # compile (every shape, k-center/GCN too)
    start = time.perf_counter()
    acquisition.select(name, ctx(pool), **options)
    seconds = time.perf_counter() - start
    return round(pool_size / seconds, 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--labelled", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--paper-pool", type=int, default=16)
    parser.add_argument("--paper-batch", type=int, default=8)
    parser.add_argument("--paper-methods", default="random,vl4pose,multipeak_entropy")
    parser.add_argument("--skip-kcenter", action="store_true")
    args = parser.parse_args()
    accelerator = jax.default_backend() != "cpu"
    opts = {"egl": dict(chunk=10), "mc_dropout": dict(chunk=10), "cke": dict(chunk=10),
            "coreset": {}}
    result = {"benchmark": "acquisition", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "backend": jax.default_backend(), "devices": len(jax.devices()),
              "machine": platform.machine(), "jax": jax.__version__}
    if not args.skip_kcenter:
        result["kcenter"] = bench_kcenter()
    rates = {}
    tiny, hand = human_setup("tiny"), hand_setup()
    for name in acquisition.names():
        method = acquisition.get(name)
        for task, setup, label in (("heatmap", tiny, "hourglass_tiny"),
                                   ("regression", hand, "deepprior_paper")):
            if task in method.tasks:
                rates.setdefault(label, {})[name] = time_method(
                    name, task, setup, args.pool, args.labelled, args.batch, opts.get(name, {}))
    paper = human_setup("paper")
    paper_methods = [n for n in acquisition.names() if "heatmap" in acquisition.get(n).tasks] \
        if accelerator else args.paper_methods.split(",")
    for name in paper_methods:
        rates.setdefault("hourglass_paper", {})[name] = time_method(
            name, "heatmap", paper, args.paper_pool, args.paper_batch, args.paper_batch,
            opts.get(name, {}))
    result["pool_images_per_s"] = rates
    result["settings"] = vars(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
