"""UncertainGCN (Caramalau et al., CVPR 2021): train the sequential GCN (`sequential_gcn`) to
tell labelled from unlabelled records and select the unlabelled records whose confidence
s = sigmoid(score) is closest to `margin` (0.1, the authors' s_margin), i.e. the smallest
|s - margin|. Scores: -|s - margin| (higher = selected first). Other options as `coregcn`.
"""
import numpy as np

from vl4pose_jax.acquisition import common, sequential_gcn
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = sequential_gcn.TASKS
REQUIRES_AUX = None


def select(ctx: Context, *, margin: float = 0.1, **gcn_options) -> Selection:
    pool_idx, _, z_p, _, _ = sequential_gcn.fit(ctx, **gcn_options)
    s = 1.0 / (1.0 + np.exp(-z_p.astype(np.float64)))
    score = -np.abs(s - margin)
    return Selection(indices=common.top_budget(score, pool_idx, common.num_to_select(ctx)),
                     scores=score, scored_indices=pool_idx)
