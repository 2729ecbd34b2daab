"""Aleatoric uncertainty (Kendall & Gal style; VL4Pose reference §5.5): the highest mean
predicted log-variance.

Human (heatmap task): the auxiliary net's `aleatoric` head, `log_var_BxJ`, averaged over joints
(as the reference). Hands (regression task): Bayesian DeepPrior's own aleatoric head
(`aleatoric=True`), `log_var_BxJx3` averaged over joints and coordinates, from a deterministic
pass (or the mean over `mc_samples` MC-dropout passes, as the CKE reference stores it).
"""
import jax
import jax.numpy as jnp

from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection, variables

TASKS = ("heatmap", "regression")
REQUIRES_AUX = {"heatmap": "aleatoric", "regression": None}
SCORES_RECORDS = True   # a score per record alone: the test split can be scored too
DEEPPRIOR = "aleatoric"   # hands: DeepPrior with its own log-variance head


def scores(ctx: Context, indices, *, mc_samples: int = 0, gather: bool = True):
    """(record_indices, mean log-variance per record); `gather` as `common.stream`."""
    if ctx.task == "heatmap":
        idx, out = common.stream_outputs(
            ctx, indices, ("log_var_BxJ",),
            post=lambda o: {"s": jnp.mean(o["log_var_BxJ"], axis=-1)}, post_key="aleatoric",
            desc="aleatoric", gather=gather)
        return idx, out["s"]
    if not ctx.model.aleatoric:
        raise ValueError("aleatoric on hands needs DeepPrior(aleatoric=True)")
    if not mc_samples:
        idx, out = common.stream_outputs(
            ctx, indices, ("log_var_BxJx3",),
            post=lambda o: {"s": jnp.mean(o["log_var_BxJx3"], axis=(-2, -1))},
            post_key="aleatoric", desc="aleatoric", gather=gather)
        return idx, out["s"]
    model = ctx.model

    def build():
        def fn(state, depth, key, extra):
            del extra
            def one(k):
                out = model.apply(variables(state), depth, mc=True, rngs={"dropout": k})
                return jnp.mean(out["log_var_BxJx3"], axis=(-2, -1))
            return {"s": jnp.mean(jax.vmap(one)(jax.random.split(key, mc_samples)), axis=0)}
        return fn

    fn = common.cached_jit(("aleatoric_mc", model, int(mc_samples)), build)

    idx, out = common.stream(ctx, indices, fn, key=ctx.derive_key("mc"), desc="aleatoric",
                             gather=gather)
    return idx, out["s"]


def select(ctx: Context, *, mc_samples: int = 0) -> Selection:
    idx, s = scores(ctx, ctx.pool, mc_samples=mc_samples, gather=False)
    return Selection(indices=common.top_pool(s, idx, common.num_to_select(ctx)), scores=s,
                     scored_indices=idx)
