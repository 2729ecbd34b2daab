"""Pose metrics: PCK (LSP torso), PCKh (MPII head size), per-joint tables, AUC, mm error.

All functions take predictions and ground truth in the same units (pixels or heatmap cells for
2-D, millimetres for 3-D) with a validity mask; masked joints (absent or invisible, as the
caller decides) are excluded from every statistic. They are `jax.numpy` functions, usable on
numpy arrays and under `jax.jit`.

Conventions (stated because papers and codes differ):
  * a joint is correct when its normalised distance is <= the threshold (the official MPII
    evaluation uses <=; the VL4Pose reference uses <, which only differs on exact ties);
  * `mean` pools all valid joint instances (the official "total"); `per_joint` is the rate per
    joint, NaN for a joint that is never valid;
  * PCKh uses the official MPII head size 0.6 x head-box diagonal by default;
    `head_size(..., factor=1.0)` gives the VL4Pose reference's variant (full diagonal), under
    which its PCKh@t equals the official PCKh@(0.6 t).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from vl4pose_jax import skeletons as skeletons_lib

MPII_HEAD_FACTOR = 0.6


class Rate(NamedTuple):
    mean: jnp.ndarray       # scalar, pooled over valid joint instances
    per_joint: jnp.ndarray  # (J,), NaN where a joint is never valid


def torso_size(joints_BxJx2, skeleton=skeletons_lib.lsp14):
    """LSP torso normaliser: max(|lsho - rhip|, |rsho - lhip|), in the joints' units. (B,)"""
    joints = jnp.asarray(joints_BxJx2, jnp.float32)
    idx = skeleton.index
    diag1 = jnp.linalg.norm(joints[..., idx("lsho"), :] - joints[..., idx("rhip"), :], axis=-1)
    diag2 = jnp.linalg.norm(joints[..., idx("rsho"), :] - joints[..., idx("lhip"), :], axis=-1)
    return jnp.maximum(diag1, diag2)


def head_size(head_box_Bx4, factor: float = MPII_HEAD_FACTOR):
    """MPII PCKh normaliser from head boxes (x1, y1, x2, y2): factor x the box diagonal. (B,)"""
    box = jnp.asarray(head_box_Bx4, jnp.float32)
    return factor * jnp.linalg.norm(box[..., 2:] - box[..., :2], axis=-1)


def normalized_distances(pred_BxJxD, gt_BxJxD, normalizer_B):
    """Euclidean joint errors divided by each image's normaliser. (B, J)"""
    dist = jnp.linalg.norm(jnp.asarray(pred_BxJxD, jnp.float32)
                           - jnp.asarray(gt_BxJxD, jnp.float32), axis=-1)
    return dist / jnp.asarray(normalizer_B, jnp.float32)[..., None]


def _rate(hits_BxJ, valid_BxJ) -> Rate:
    valid = jnp.asarray(valid_BxJ) > 0
    hits = jnp.where(valid, hits_BxJ, False)
    count_J = valid.sum(axis=0)
    per_joint = jnp.where(count_J > 0, hits.sum(axis=0) / jnp.maximum(count_J, 1), jnp.nan)
    mean = hits.sum() / jnp.maximum(valid.sum(), 1)
    return Rate(mean=mean, per_joint=per_joint)


def pck(pred_BxJxD, gt_BxJxD, valid_BxJ, normalizer_B, threshold: float = 0.2) -> Rate:
    """Fraction of valid joints within `threshold` x normaliser of the ground truth.

    PCK@0.2 (LSP) passes `torso_size`; PCKh@0.5 (MPII) passes `head_size`. Images whose
    normaliser is not positive and finite are excluded.
    """
    dist_BxJ = normalized_distances(pred_BxJxD, gt_BxJxD, normalizer_B)
    norm_ok = jnp.isfinite(jnp.asarray(normalizer_B)) & (jnp.asarray(normalizer_B) > 0)
    valid = (jnp.asarray(valid_BxJ) > 0) & norm_ok[..., None]
    return _rate(dist_BxJ <= threshold, valid)


def pck_curve(pred_BxJxD, gt_BxJxD, valid_BxJ, normalizer_B, thresholds_T):
    """PCK at each threshold: (T,) pooled rates and (T, J) per-joint rates."""
    rates = [pck(pred_BxJxD, gt_BxJxD, valid_BxJ, normalizer_B, float(t)) for t in thresholds_T]
    return jnp.stack([r.mean for r in rates]), jnp.stack([r.per_joint for r in rates])


def auc(pred_BxJxD, gt_BxJxD, valid_BxJ, normalizer_B, max_threshold: float = 0.5,
        num_thresholds: int = 51):
    """Area under the pooled PCK curve on [0, max_threshold], divided by max_threshold (in [0,1])."""
    thresholds = np.linspace(0.0, max_threshold, num_thresholds)
    curve, _ = pck_curve(pred_BxJxD, gt_BxJxD, valid_BxJ, normalizer_B, thresholds)
    return jnp.trapezoid(curve, thresholds) / max_threshold


class Error(NamedTuple):
    mean: jnp.ndarray       # scalar, mean over valid joint instances
    per_joint: jnp.ndarray  # (J,), NaN where a joint is never valid


def mean_joint_error(pred_BxJx3, gt_BxJx3, valid_BxJ=None) -> Error:
    """Mean Euclidean 3-D joint error (same units as the inputs, e.g. mm)."""
    dist_BxJ = jnp.linalg.norm(jnp.asarray(pred_BxJx3, jnp.float32)
                               - jnp.asarray(gt_BxJx3, jnp.float32), axis=-1)
    valid = jnp.ones(dist_BxJ.shape, bool) if valid_BxJ is None else jnp.asarray(valid_BxJ) > 0
    dist = jnp.where(valid, dist_BxJ, 0.0)
    count_J = valid.sum(axis=0)
    per_joint = jnp.where(count_J > 0, dist.sum(axis=0) / jnp.maximum(count_J, 1), jnp.nan)
    return Error(mean=dist.sum() / jnp.maximum(valid.sum(), 1), per_joint=per_joint)


def per_joint_table(per_joint_J, skeleton, fmt: str = "{:.1f}") -> str:
    """A one-row Markdown table of per-joint values, named by the skeleton's joints."""
    values = np.asarray(per_joint_J, np.float64)
    header = "| " + " | ".join(skeleton.names) + " |"
    rule = "|" + "---|" * len(skeleton.names)
    row = "| " + " | ".join("n/a" if np.isnan(v) else fmt.format(v) for v in values) + " |"
    return "\n".join([header, rule, row])


def auroc(scores_N, positive_N) -> float:
    """Area under the ROC curve of `scores_N` for telling positives (e.g. out-of-distribution
    examples) from the rest: P(score_pos > score_neg) + 0.5 P(tie), by ranks (ties averaged).
    NaN when either class is empty."""
    scores = np.asarray(scores_N, np.float64)
    positive = np.asarray(positive_N, bool)
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average rank (1-based) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + end + 1)
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))
