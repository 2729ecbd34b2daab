"""Learning Loss (Yoo & Kweon, CVPR 2019) and LearningLoss++ (VL4Pose reference §5.4): the
highest loss predicted by the auxiliary net's `learning_loss` head.

Both training objectives (the margin ranking loss and LearningLoss++'s KL between softmaxed pair
losses) live in `train.learning_loss` / the aux training step; the choice is made there and
acquisition only scores with the trained head. Human: the head reads the hourglass features;
hands: DeepPrior's `embedding_BxD` (pooling 'vector').
"""
from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = ("heatmap", "regression")
REQUIRES_AUX = "learning_loss"
SCORES_RECORDS = True   # a score per record alone: the test split can be scored too


def select(ctx: Context) -> Selection:
    idx, out = common.stream_outputs(ctx, ctx.pool, ("loss_B",), desc="learning loss",
                                     gather=False)
    s = out["loss_B"]
    return Selection(indices=common.top_pool(s, idx, common.num_to_select(ctx)), scores=s,
                     scored_indices=idx)
