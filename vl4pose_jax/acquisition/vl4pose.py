"""VL4Pose (Shukla et al., BMVC 2022): annotate the poses the skeleton model finds least likely.

Human (heatmap task): `likelihood.score_heatmaps` of the last-stack heatmaps under the
auxiliary net's per-link bone-length Gaussians (`vl4pose_heatmap` head). Defaults as the original
AL code (reference §4.2): one peak per joint (`num_peaks=1`), `min_distance=8`,
`exclude_border=True`, the reference aggregation `mode='reference'` (with one peak all modes
equal sum_links log N(bone length; mu, e^s)); the other modes of `likelihood.score_heatmaps`
and more peaks are options. `min_distance` and an int `exclude_border` are cells of the paper's
64x64 heatmaps (`reference_size=64`), scaled to the model's heatmaps (8 is 2 cells on 16x16
maps, 4 on 32x32; `heatmaps.peak_spacing`); `reference_size=None` takes them as cells of the
actual maps. Hands (regression task): `likelihood.score_regression` of DeepPrior's
deterministic pose (or the MC mean with `mc_samples` > 0) under the `vl4pose_regression` head's
per-link offset Gaussians. The lowest log-likelihoods are selected; `scores` are the negated
log-likelihoods (higher = more informative), computed per batch on device.
"""
import numpy as np

from vl4pose_jax import heatmaps, likelihood
from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = ("heatmap", "regression")
REQUIRES_AUX = {"heatmap": "vl4pose_heatmap", "regression": "vl4pose_regression"}
SCORES_RECORDS = True   # a score per record alone: the test split can be scored too
REFERENCE_SIZE = heatmaps.REFERENCE_MAP_SIZE


def log_likelihoods(ctx: Context, indices, *, num_peaks: int = 1, min_distance: int = 8,
                    exclude_border: bool | int = True, mode: str = "reference",
                    reference_size: int | None = REFERENCE_SIZE, gather: bool = True,
                    with_joints: bool = False):
    """(record_indices, log-likelihood per record); `gather` as `common.stream`.
    `with_joints` (heatmap task): also the decoded joints (N, J, 2) in heatmap cells, from the
    same pass: (record_indices, log-likelihoods, joints)."""
    if ctx.task == "heatmap":
        def post(out):
            res = {"ll": likelihood.score_heatmaps(
                out["heatmaps_BxHxWxJ"], out["link_params_BxLx2"], ctx.skeleton,
                num_peaks=num_peaks, min_distance=min_distance, exclude_border=exclude_border,
                reference_size=reference_size, mode=mode)}
            if with_joints:
                res["joints"] = heatmaps.decode(out["heatmaps_BxHxWxJ"])[0]
            return res
        keys = ("heatmaps_BxHxWxJ", "link_params_BxLx2")
    else:
        def post(out):
            return {"ll": likelihood.score_regression(out["pose_BxJx3"], out["offsets_BxLx3"],
                                                      out["cov_factor_BxLx3x3"], ctx.skeleton)}
        keys = ("pose_BxJx3", "offsets_BxLx3", "cov_factor_BxLx3x3")
    post_key = ("vl4pose", ctx.skeleton, num_peaks, min_distance, exclude_border, reference_size,
                mode, with_joints)
    idx, out = common.stream_outputs(ctx, indices, keys, post=post, post_key=post_key,
                                     desc="vl4pose", gather=gather)
    if with_joints:
        return idx, out.get("ll"), out.get("joints")
    return idx, out["ll"]


def select(ctx: Context, *, num_peaks: int = 1, min_distance: int = 8,
           exclude_border: bool | int = True, mode: str = "reference",
           reference_size: int | None = REFERENCE_SIZE) -> Selection:
    """The `budget` lowest VL4Pose log-likelihoods (ties: smaller record index)."""
    if ctx.skeleton is None:
        raise ValueError("vl4pose needs ctx.skeleton")
    idx, ll = log_likelihoods(ctx, ctx.pool, num_peaks=num_peaks, min_distance=min_distance,
                              exclude_border=exclude_border, mode=mode,
                              reference_size=reference_size, gather=False)
    picks = common.top_pool(ll, idx, common.num_to_select(ctx), highest=False)
    return Selection(indices=picks, scores=-np.asarray(ll, np.float64), scored_indices=idx)


def rank_new(ctx: Context, **options):
    """Scoring new images (`rank.score`, heatmap task): (record_indices, scores, joints (N, J, 2)
    in heatmap cells) from one pass; scores are the negated log-likelihoods (higher = more
    unusual) and the ranking follows them alone (no selection order)."""
    idx, ll, cells = log_likelihoods(ctx, ctx.pool, with_joints=True, **options)
    return idx, -np.asarray(ll, np.float64), cells
