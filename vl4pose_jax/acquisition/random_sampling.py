"""Random: uniform without replacement from the pool (VL4Pose reference §5.2, CKE `random`)."""
import jax
import numpy as np

from vl4pose_jax.acquisition.common import Context, Selection, num_to_select

TASKS = ("heatmap", "regression")
REQUIRES_AUX = None


def select(ctx: Context) -> Selection:
    """`min(budget, pool)` records of a `jax.random.permutation` of the pool (in that order)."""
    perm = np.asarray(jax.random.permutation(ctx.derive_key("random"), len(ctx.pool)))
    return Selection(indices=ctx.pool[perm[:num_to_select(ctx)]])
