"""Why does VL4Pose's regression likelihood rank rare synthetic hands poorly?

Takes the trained vl4pose state (DeepPrior + `vl4pose_regression` head) of one seed from an AL
workdir (`wd.load_trained`: its newest round) and scores its unlabelled pool six ways,
each as an OOD score (higher = rarer), with its AUROC for rare poses and for odd appearance
against in-distribution hands:
  vl4pose_pred   -log N(predicted links; aux offsets, aux covariance): VL4Pose's score;
  vl4pose_gt     the same likelihood of the ground-truth pose: does the image-conditioned
                 skeleton model flag a rare pose when it sees it?
  prior_pred     -log N(predicted links; per-link Gaussians fitted to the labelled set's
                 ground-truth links, no image): a fixed skeleton prior of the prediction;
  prior_gt       the fixed prior of the ground-truth pose (how rare the rare poses are);
  aux_volume     log det of the aux covariance, summed over links: how unsure the skeleton
                 model is, whatever the pose;
  error          the prediction's mean joint error (mm): an oracle that knows the labels.
Also per kind: mean error (mm) and the mean distance (normalised units) between predicted links,
ground-truth links and the aux net's offsets. Prints one JSON line; with --plot=PATH also
histograms of vl4pose_pred and prior_pred per kind.
Usage: diagnose.py WORKDIR SEED [--plot=PATH]
"""
import json
import sys

import jax
import numpy as np

from vl4pose_jax import acquisition, data, likelihood, metrics, records
from vl4pose_jax import workdir as wd
from vl4pose_jax.acquisition import common

KEYS = ("pose_BxJx3", "offsets_BxLx3", "cov_factor_BxLx3x3")


def links(joints_NxJx3, skeleton):
    return joints_NxJx3[:, skeleton.link_child] - joints_NxJx3[:, skeleton.link_parent]


def fixed_prior(links_NxLx3):
    """Per-link mean offset and Cholesky factor of its covariance, fitted by maximum likelihood."""
    mean_Lx3 = links_NxLx3.mean(0)
    cov_Lx3x3 = np.stack([np.cov(links_NxLx3[:, l].T, bias=True) + 1e-8 * np.eye(3)
                          for l in range(links_NxLx3.shape[1])])
    return mean_Lx3, np.linalg.cholesky(cov_Lx3x3)


def ground_truth(ctx, indices):
    """Normalised-UVD ground truth (N, J, 3) and its crop centre and cube, sorted by record."""
    parts = {k: [] for k in ("index", "joints", "center_uvd", "cube_mm")}
    for batch in ctx.batches(indices):
        for k in parts:
            parts[k].append(np.asarray(batch[k]))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.argsort(cat["index"])
    return {k: v[order] for k, v in cat.items()}


def main(workdir, seed, plot=None):
    t = wd.load_trained(workdir, "vl4pose", seed)
    d = records.load_data(t.config)
    spec = data.spec(t.config.dataset)
    skeleton = spec.skeleton
    labelled = np.asarray(t.meta["labelled_indices"], np.int64)
    pool = np.setdiff1d(np.arange(d.pool_start, len(d.source)), labelled)
    ctx = acquisition.Context(
        task="regression", model=t.nets.model, state=t.state, aux=t.nets.aux,
        batches=acquisition.loader_batches(d.source, t.config.batch_size,
                                           image_size=d.image_size),
        labelled=labelled, pool=pool, budget=0, key=jax.random.key(seed), skeleton=skeleton,
        progress=False)
    idx, out = common.stream_outputs(ctx, pool, KEYS)
    gt = ground_truth(ctx, pool)
    assert np.array_equal(idx, gt["index"])
    pred, offsets, cov = out["pose_BxJx3"], out["offsets_BxLx3"], out["cov_factor_BxLx3x3"]
    gt_labelled = ground_truth(ctx, labelled)["joints"]
    prior_mean, prior_chol = fixed_prior(links(gt_labelled, skeleton).astype(np.float64))
    n = len(pool)
    prior_offsets = np.broadcast_to(prior_mean, (n,) + prior_mean.shape)
    prior_cov = np.broadcast_to(prior_chol, (n,) + prior_chol.shape)

    def ll(joints, o, c):
        return np.asarray(likelihood.score_regression(joints, o, c, skeleton), np.float64)

    def to_mm(joints):
        return np.asarray(data.normalised_uvd_to_xyz_mm(joints, gt["center_uvd"], gt["cube_mm"],
                                                        spec.intrinsics))

    log_det_N = 2 * np.log(np.abs(np.diagonal(cov, axis1=-2, axis2=-1))).sum((-1, -2))
    error_mm = np.linalg.norm(to_mm(pred) - to_mm(gt["joints"]), axis=-1).mean(-1)
    scores = {"vl4pose_pred": -ll(pred, offsets, cov),
              "vl4pose_gt": -ll(gt["joints"], offsets, cov),
              "prior_pred": -ll(pred, prior_offsets, prior_cov),
              "prior_gt": -ll(gt["joints"], prior_offsets, prior_cov),
              "aux_volume": log_det_N, "error": error_mm}
    kind = d.ood_N[pool]
    row = {"seed": seed, "round": t.meta["round"],
           "labelled": len(labelled), "pool": n, "auroc": {}, "by_kind": {}}
    for name, s in scores.items():
        row["auroc"][name] = {
            k: round(metrics.auroc(s[(kind == 0) | (kind == c)],
                                   kind[(kind == 0) | (kind == c)] == c), 4)
            for c, k in enumerate(data.OOD_KINDS) if c > 0}
    link_pred, link_gt = links(pred, skeleton), links(gt["joints"], skeleton)
    for c, k in enumerate(data.OOD_KINDS):
        m = kind == c
        row["by_kind"][k] = {
            "count": int(m.sum()), "error_mm": round(float(error_mm[m].mean()), 3),
            "pred_vs_aux": round(float(np.linalg.norm(link_pred - offsets, axis=-1)[m].mean()), 5),
            "gt_vs_aux": round(float(np.linalg.norm(link_gt - offsets, axis=-1)[m].mean()), 5),
            "pred_vs_gt": round(float(np.linalg.norm(link_pred - link_gt, axis=-1)[m].mean()), 5),
            "aux_log_det": round(float(log_det_N[m].mean()), 3)}
    print(json.dumps(row))
    if plot:
        histograms(scores, kind, plot, f"seed {seed}, round {t.meta['round']}")


def histograms(scores, kind, path, title):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    names = ("vl4pose_pred", "vl4pose_gt", "prior_pred", "prior_gt")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2))
    for ax, name in zip(axes, names):
        s = scores[name]
        lo, hi = np.percentile(s, [0.5, 99.5])
        bins = np.linspace(lo, hi, 40)
        for c, k in enumerate(data.OOD_KINDS):
            ax.hist(np.clip(s[kind == c], lo, hi), bins=bins, alpha=0.5, density=True, label=k)
        ax.set_title(f"-log likelihood: {name}", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--plot=")]
    plots = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--plot=")]
    main(args[0], int(args[1]), plots[0] if plots else None)
