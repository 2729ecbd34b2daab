"""MC-dropout epistemic uncertainty (the CKE paper's "uncertainty" baseline, reference `unc`):
the highest sum over all 3J coordinates of the standard deviation of DeepPrior's pose over
T (`num_samples`, 70) MC-dropout passes, vmapped `chunk` passes at a time (bounds memory).
"""
import numpy as np

from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = ("regression",)
REQUIRES_AUX = None
SCORES_RECORDS = True   # a score per record alone: the test split can be scored too
DEEPPRIOR = "bayesian"   # Bayesian DeepPrior (MC dropout, aleatoric head), evaluated as the MC mean


def select(ctx: Context, *, num_samples: int = 70, chunk: int | None = None) -> Selection:
    if num_samples < 2:
        raise ValueError("mc_dropout needs num_samples >= 2")
    idx, _, std = common.mc_pool_stats(ctx, ctx.pool, num_samples=num_samples, chunk=chunk,
                                         gather=False)
    s = np.sum(std, axis=-1) if len(idx) else np.zeros((0,))
    return Selection(indices=common.top_pool(s, idx, common.num_to_select(ctx)), scores=s,
                     scored_indices=idx)
