"""Demo: train a small hourglass + VL4Pose auxiliary net, evaluate it, score a pool.

On the built-in synthetic people (built on first use, no download): trains the pose network and
the auxiliary net jointly on the initial labelled split, reports PCK@0.2 on the test split
(overall and per joint), then scores the unlabelled pool with the VL4Pose likelihood and
reports how well low likelihood finds the pool's out-of-distribution examples (AUROC) and what
share of them a budget of the lowest-likelihood images would catch.

    python -m experiments.demo [--preset=tiny] [--epochs=40] [--data_dir=...]
"""
from __future__ import annotations

import json
import time

import jax
import numpy as np
import optax
from absl import app, flags
from tqdm import tqdm

from vl4pose_jax import data, likelihood, metrics, models, train

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "synthetic_human", "A human-pose dataset (see vl4pose_jax.data).")
flags.DEFINE_string("config", "small", "Dataset config (synthetic sets: tiny, small, default).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $VL4POSE_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_enum("preset", "tiny", sorted(models.PRESETS), "Hourglass configuration.")
flags.DEFINE_integer("epochs", 40, "Training epochs over the labelled split.")
flags.DEFINE_integer("batch_size", 16, "Batch size.")
flags.DEFINE_float("lr", train.HOURGLASS_LR * 10, "Adam learning rate (pose and auxiliary net).")
flags.DEFINE_integer("budget", 100, "Pool images a VL4Pose round would select.")
flags.DEFINE_integer("num_peaks", 1, "VL4Pose: local maxima per joint (reference default 1).")
flags.DEFINE_integer("seed", 0, "Seed for initialisation and data order.")


def main(argv):
    del argv
    spec = data.spec(FLAGS.dataset)
    if spec.kind != "human":
        raise app.UsageError(f"--dataset={FLAGS.dataset} is a hand dataset; the demo trains the "
                             "human-pose hourglass (use synthetic_human, lsp, lspet or mpii)")
    skeleton, preset = spec.skeleton, models.PRESETS[FLAGS.preset]
    size = preset.input_size
    build = dict(data_dir=FLAGS.data_dir, config=FLAGS.config, build_if_missing=True)
    labelled_split = "train" if "train" in spec.splits else "pool"
    labelled = data.load(FLAGS.dataset, labelled_split, **build)
    pool = data.load(FLAGS.dataset, "pool", **build) if labelled_split == "train" else None
    test = data.load(FLAGS.dataset, "test", **build)
    print(f"data: {labelled!r}, {pool!r}, {test!r}")

    model = models.StackedHourglass(num_joints=skeleton.num_joints, **preset.kwargs)
    aux = models.AuxNet(head="vl4pose_heatmap", num_links=skeleton.num_links)
    tx = optax.adam(FLAGS.lr)
    state = train.init_heatmap_state(model, aux, jax.random.key(FLAGS.seed), size, tx, tx)
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=skeleton)
    predict = train.make_heatmap_predict(model, aux)

    steps_per_epoch = max(1, len(labelled) // FLAGS.batch_size)
    batches = iter(data.make_loader(labelled, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
                                    train=True, image_size=size))
    start = time.perf_counter()
    with tqdm(total=FLAGS.epochs * steps_per_epoch, desc="train", unit="step") as bar:
        for _ in range(FLAGS.epochs * steps_per_epoch):
            batch = next(batches)
            state, logs = step(state, {k: batch[k] for k in ("image", "heatmaps", "joints",
                                                             "visible")})
            bar.update()
            bar.set_postfix(pose=f"{float(logs['pose_loss']):.3f}",
                            aux=f"{float(logs['aux_loss']):.3f}", refresh=False)
    seconds_train = time.perf_counter() - start

    def run(source, desc):
        """Predictions, likelihoods and labels over a split, one batch in memory at a time."""
        out = {k: [] for k in ("pred", "joints", "visible", "normalizer", "score", "ood")}
        loader = data.make_loader(source, batch_size=FLAGS.batch_size, train=False,
                                  image_size=size)
        for batch in tqdm(loader, desc=desc, unit="batch",
                          total=-(-len(source) // FLAGS.batch_size)):
            result = predict(state, batch["image"])
            score = likelihood.score_heatmaps(
                result["heatmaps_BxHxWxJ"], result["link_params_BxLx2"], skeleton,
                num_peaks=FLAGS.num_peaks, mode="reference")
            for key, value in (("pred", result["joints_BxJx2"]), ("joints", batch["joints"]),
                               ("visible", batch["visible"]), ("score", score),
                               ("normalizer", batch["normalizer"]), ("ood", batch["ood"])):
                out[key].append(np.asarray(value))
        return {k: np.concatenate(v) for k, v in out.items()}

    evaluated = run(test, "test")
    pck = metrics.pck(evaluated["pred"], evaluated["joints"], evaluated["visible"],
                      evaluated["normalizer"], threshold=0.2)
    report = {"dataset": FLAGS.dataset, "preset": FLAGS.preset,
              "labelled": len(labelled), "test": len(test), "epochs": FLAGS.epochs,
              "seconds_train": round(seconds_train, 1), "pck@0.2": float(pck.mean),
              "test_mean_log_likelihood": float(np.mean(evaluated["score"]))}
    print(metrics.per_joint_table(100 * pck.per_joint, skeleton))
    if pool is not None:
        scored = run(pool, "pool")
        is_ood = scored["ood"] > 0
        chosen = np.argsort(scored["score"], kind="stable")[:FLAGS.budget]
        report.update({
            "pool": len(pool), "pool_ood_fraction": float(is_ood.mean()),
            # low likelihood = out of distribution, so rank by the negated score
            "ood_auroc": metrics.auroc(-scored["score"], is_ood),
            "ood_fraction_in_budget": float(is_ood[chosen].mean()),
        })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app.run(main)
