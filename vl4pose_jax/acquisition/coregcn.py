"""CoreGCN (Caramalau et al., CVPR 2021; the VL4Pose paper's ICVL table): train the sequential
GCN (`sequential_gcn`) to tell labelled from unlabelled records, then k-center greedy from the
labelled nodes on concat(GCN hidden features, pre-sigmoid score) (the authors' code since
2021-04-07). Options: `hidden`, `steps`, `lr`, `weight_decay`, `lambda_u`, `dropout`.
Scores: the distance to the labelled set before the first pick.
"""
import numpy as np

from vl4pose_jax.acquisition import common, sequential_gcn
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = sequential_gcn.TASKS
REQUIRES_AUX = None


def select(ctx: Context, **gcn_options) -> Selection:
    pool_idx, h_p, z_p, h_l, z_l = sequential_gcn.fit(ctx, **gcn_options)
    pool_feat = np.concatenate([h_p, z_p[:, None]], axis=1)
    lab_feat = np.concatenate([h_l, z_l[:, None]], axis=1)
    picks, dist = common.kcenter_greedy(pool_feat, lab_feat, common.num_to_select(ctx),
                                        key=ctx.derive_key("kcenter"))
    return Selection(indices=pool_idx[picks], scores=dist, scored_indices=pool_idx)
