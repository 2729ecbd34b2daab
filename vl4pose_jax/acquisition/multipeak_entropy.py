"""Multi-peak entropy (Liu & Ferrari, ICCV 2017; VL4Pose reference §5.6).

Per joint of the last-stack heatmap: up to `num_peaks` (5) local maxima with `min_distance` (5)
and `exclude_border` (True, as the reference AL path), via `heatmaps.local_maxima`; both are
cells of the paper's 64x64 heatmaps (`reference_size=64`, the default of `select`; `entropy`
takes cells of the given maps unless told) scaled to the model's maps (5 is 1 cell on 16x16, 3
on 32x32), so small maps keep their interior peaks. The peak
values become probabilities and H_j = -sum p log p (nats); the image score is sum_j H_j over
joints with at least one peak (the reference AL path; `reduce='mean'` gives the viz variant's
mean over those joints). The highest are selected.
`normalise='sum'` (default, Liu & Ferrari): p = v / sum v over the joint's peaks, with negative
values clipped to 0 (raw hourglass outputs can be negative; a joint whose peaks are all <= 0
contributes 0). `normalise='softmax'`: the reference code's softmax over the raw values, which
for peaks of amplitude ~30 is nearly one-hot.
"""
import functools

import jax
import jax.numpy as jnp

from vl4pose_jax import heatmaps as hm
from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = ("heatmap",)
REQUIRES_AUX = None
SCORES_RECORDS = True   # a score per record alone: the test split can be scored too


@functools.partial(jax.jit, static_argnames=("num_peaks", "min_distance", "exclude_border",
                                             "normalise", "reduce", "reference_size"))
def entropy(heatmaps_BxHxWxJ, *, num_peaks: int = 5, min_distance: int = 5,
            exclude_border: bool | int = True, normalise: str = "sum", reduce: str = "sum",
            reference_size: int | None = None):
    """Multi-peak entropy of each image, (B,); `reference_size` as `heatmaps.local_maxima`."""
    peaks = hm.local_maxima(heatmaps_BxHxWxJ, num_peaks, min_distance=min_distance,
                            exclude_border=exclude_border, reference_size=reference_size)
    valid = peaks.valid
    if normalise == "sum":
        v = jnp.where(valid, jnp.maximum(peaks.values, 0.0), 0.0)
        total = jnp.sum(v, axis=-1, keepdims=True)
        p = jnp.where(total > 0, v / jnp.where(total > 0, total, 1.0), 0.0)
    elif normalise == "softmax":
        logits = jnp.where(valid, peaks.values, -jnp.inf)
        top = jnp.max(logits, axis=-1, keepdims=True)
        e = jnp.where(valid, jnp.exp(logits - jnp.where(jnp.isfinite(top), top, 0.0)), 0.0)
        total = jnp.sum(e, axis=-1, keepdims=True)
        p = jnp.where(total > 0, e / jnp.where(total > 0, total, 1.0), 0.0)
    else:
        raise ValueError(f"normalise must be 'sum' or 'softmax', got {normalise!r}")
    h_BxJ = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
    if reduce == "sum":
        return jnp.sum(h_BxJ, axis=-1)
    if reduce == "mean":
        has = jnp.any(valid, axis=-1)
        return jnp.sum(h_BxJ, axis=-1) / jnp.maximum(jnp.sum(has, axis=-1), 1)
    raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")


def select(ctx: Context, *, num_peaks: int = 5, min_distance: int = 5,
           exclude_border: bool | int = True, normalise: str = "sum", reduce: str = "sum",
           reference_size: int | None = hm.REFERENCE_MAP_SIZE) -> Selection:
    opts = dict(num_peaks=num_peaks, min_distance=min_distance, exclude_border=exclude_border,
                normalise=normalise, reduce=reduce, reference_size=reference_size)
    idx, out = common.stream_outputs(
        ctx, ctx.pool, ("heatmaps_BxHxWxJ",),
        post=lambda o: {"h": entropy(o["heatmaps_BxHxWxJ"], **opts)},
        post_key=("mpe",) + tuple(sorted(opts.items())), desc="multi-peak entropy",
        gather=False)
    return Selection(indices=common.top_pool(out["h"], idx, common.num_to_select(ctx)),
                     scores=out["h"], scored_indices=idx)
