"""Core-Set (Sener & Savarese, ICLR 2018): k-center greedy from the labelled set.

Features: human (heatmap task) the hourglass `penultimate` (256-d GAP of the last stack's
features, as the VL4Pose reference §5.3); hands (regression task) the predicted pose in
normalised UVD, flattened (3J) -- the MC-dropout mean with `mc_samples` > 0 (the CKE
reference's `kcg` with MC on), the deterministic pose with 0 -- or `features='embedding'`
(DeepPrior's fc2 output). The k-center greedy runs in JAX with O(N) memory (`common.kcenter_greedy`),
not on the reference's N x |labelled| matrix; the picks are the same.
Scores: each candidate's distance to the labelled set before the first pick.
"""
import numpy as np

from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = ("heatmap", "regression")
REQUIRES_AUX = None


def features(ctx: Context, indices, *, features: str = "auto", mc_samples: int | None = None,
             mc_chunk: int | None = None):
    """(record_indices, (N, D) float32) features used by Core-Set for `indices`."""
    if ctx.task == "heatmap":
        idx, out = common.stream_outputs(ctx, indices, ("penultimate_BxC",), desc="features")
        return idx, (out["penultimate_BxC"] if len(idx) else np.zeros((0, 1), np.float32))
    if features in ("auto", "pose"):
        if mc_samples is None:
            mc_samples = 70 if ctx.model.dropout else 0
        idx, mean, _ = common.mc_pool_stats(ctx, indices, num_samples=mc_samples, chunk=mc_chunk)
        return idx, (mean if len(idx) else np.zeros((0, 1), np.float32))
    if features == "embedding":
        idx, out = common.stream_outputs(ctx, indices, ("embedding_BxD",), desc="features")
        return idx, (out["embedding_BxD"] if len(idx) else np.zeros((0, 1), np.float32))
    raise ValueError(f"features must be 'auto', 'pose' or 'embedding', got {features!r}")


def select(ctx: Context, *, features: str = "auto", mc_samples: int | None = None,
           mc_chunk: int | None = None) -> Selection:
    """k-center greedy over pool features from the labelled features (module doc)."""
    opts = dict(features=features, mc_samples=mc_samples, mc_chunk=mc_chunk)
    pool_idx, pool_feat = globals()["features"](ctx, ctx.pool, **opts)
    _, lab_feat = globals()["features"](ctx, ctx.labelled, **opts)
    picks, dist = common.kcenter_greedy(pool_feat, lab_feat.reshape(-1, pool_feat.shape[1]),
                                        common.num_to_select(ctx),
                                        key=ctx.derive_key("kcenter"))
    return Selection(indices=pool_idx[picks], scores=dist, scored_indices=pool_idx)
