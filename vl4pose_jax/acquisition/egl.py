"""EGL++ (Shukla, VL4Pose reference §5.7): expected gradient length with the labelled
neighbours' predicted heatmaps as pseudo-targets.

For a pool image x_i with hourglass `penultimate` embedding u_i:
1. P(j|i) over the labelled images j, t-SNE style: P(j|i) ∝ exp(-||u_i - l_j||^2 / (2 sigma_i^2)),
   with sigma_i set by bisection (on log beta, beta = 1/(2 sigma^2), `iterations` steps to
   convergence) so that the perplexity exp(H(P_i)) with H in nats equals `perplexity` (20). One
   log base throughout: the reference computes H in nats but matches 2^H, an effective e^H
   perplexity of ~75 rather than 20; `mixed_bases=True` reproduces that (H = log2(perplexity)
   nats).
2. The top `k` (30) P(j|i) (not renormalised, as the reference) and their neighbours' predicted
   heatmaps, all stacks (the reference's default `og_heatmap: False`), as targets t_j.
3. g_ij = ||grad_theta l(x_i, t_j)||^2 with l = mean over stacks and cells of (f_theta(x_i) - t_j)^2,
   the network in inference mode (BatchNorm running statistics). Per-sample gradients are
   vectorised with `jax.vmap` over the k targets of one shared forward pass (`jax.vjp`; the
   gradient of each target's loss exactly, no hooks), `chunk` targets at a time to bound memory,
   images one at a time within a batch (`jax.lax.map`). The norm covers every trainable
   parameter; `batchnorm=False` leaves out the BatchNorm scales and biases as the reference.
   `squared=False` uses the norm instead of its square.
4. EGL(i) = sum_j P(j|i) g_ij; the highest are selected.
Memory: the labelled embeddings and predicted heatmaps (N_L x S x h x w x J floats, e.g. 0.46 MB
per labelled image for the paper hourglass) stay on device; the pool streams batch by batch.
"""
import math

import jax
import jax.numpy as jnp

from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection, variables

TASKS = ("heatmap",)
REQUIRES_AUX = None


def conditional_probabilities(d2_BxN, perplexity: float, *, mixed_bases: bool = False,
                              iterations: int = 64):
    """t-SNE conditional probabilities P(j|i) per row of squared distances, each row's
    bandwidth set so that exp(H(P_i)) = perplexity with H in nats (equivalently 2^H = perplexity
    with H in bits). `mixed_bases=True`: the reference's 2^(H in nats) = perplexity. A target
    above log(N) (perplexity > N) gives the uniform distribution."""
    d2 = jnp.asarray(d2_BxN, jnp.float32)
    n = d2.shape[-1]
    z = d2 - jnp.min(d2, axis=-1, keepdims=True)
    scale = jnp.mean(z, axis=-1, keepdims=True)
    z = z / jnp.where(scale > 0, scale, 1.0)
    target = math.log(perplexity) / (math.log(2.0) if mixed_bases else 1.0)
    target = jnp.minimum(target, jnp.log(n))

    def probs(log_beta):
        logits = -jnp.exp(log_beta) * z
        return jax.nn.softmax(logits, axis=-1), jax.nn.log_softmax(logits, axis=-1)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        p, logp = probs(mid)
        h = -jnp.sum(p * logp, axis=-1, keepdims=True)
        too_flat = h > target  # entropy decreases with beta: sharpen
        return jnp.where(too_flat, mid, lo), jnp.where(too_flat, hi, mid)

    lo = jnp.full(z.shape[:-1] + (1,), -40.0)
    hi = jnp.full(z.shape[:-1] + (1,), 40.0)
    lo, hi = jax.lax.fori_loop(0, iterations, body, (lo, hi))
    return probs(0.5 * (lo + hi))[0]


def _leaf_mask(params, batchnorm):
    def keep(path, _):
        return batchnorm or not any("BatchNorm" in str(getattr(p, "key", p)) for p in path)
    return jax.tree_util.tree_map_with_path(keep, params)


def grad_sq_norms(model, variables_, image_HxWxC, targets_KxSxHxWxJ, *, batchnorm: bool = True,
                  chunk: int | None = None, squared: bool = True):
    """(K,) ||grad_params mean((f(image) - target_k)^2)||^2 for each target, inference mode."""
    params = variables_["params"]
    rest = {k: v for k, v in variables_.items() if k != "params"}
    mask = _leaf_mask(params, batchnorm)

    def f(p):
        return model.apply({"params": p, **rest}, image_HxWxC[None], train=False)["heatmaps"][0]

    pred, vjp = jax.vjp(f, params)
    scale = 2.0 / pred.size

    def one(target):
        (g,) = vjp((scale * (pred - target)).astype(pred.dtype))
        leaves = [jnp.sum(jnp.square(x)) for x, m in zip(jax.tree.leaves(g), jax.tree.leaves(mask)) if m]
        total = sum(leaves)
        return total if squared else jnp.sqrt(total)

    if chunk is None:
        return jax.vmap(one)(targets_KxSxHxWxJ)
    return jax.lax.map(one, targets_KxSxHxWxJ, batch_size=chunk)


def select(ctx: Context, *, k: int = 30, perplexity: float = 20.0, batchnorm: bool = True,
           chunk: int | None = None, squared: bool = True, iterations: int = 64,
           mixed_bases: bool = False) -> Selection:
    if len(ctx.labelled) == 0:
        raise ValueError("EGL++ needs a labelled set")
    lab_idx, lab = common.stream_outputs(ctx, ctx.labelled, ("penultimate_BxC", "heatmaps_BxSxHxWxJ"),
                                         desc="EGL++ labelled")
    lab_emb = jnp.asarray(lab["penultimate_BxC"])
    lab_targets = jnp.asarray(lab["heatmaps_BxSxHxWxJ"])
    kk = int(min(k, len(lab_idx)))
    model = ctx.model

    def score_batch(state, images, key, extra):
        del key
        emb_l, targets_l = extra
        var = variables(state)
        u = model.apply(var, images, train=False)["penultimate"]
        d2 = (jnp.sum(u * u, -1)[:, None] + jnp.sum(emb_l * emb_l, -1)[None, :]
              - 2.0 * u @ emb_l.T)
        p = conditional_probabilities(jnp.maximum(d2, 0.0), perplexity, iterations=iterations,
                                      mixed_bases=mixed_bases)
        vals, nbr = jax.lax.top_k(p, kk)

        def per_image(args):
            image, nb = args
            return grad_sq_norms(model, var, image, targets_l[nb], batchnorm=batchnorm,
                                 chunk=chunk, squared=squared)

        g = jax.lax.map(per_image, (images, nbr))
        return {"egl": jnp.sum(vals * g, axis=-1)}

    cache_key = ("egl", model, kk, perplexity, batchnorm, chunk, squared, iterations, mixed_bases)
    fn = common.cached_jit(cache_key, lambda: score_batch)
    idx, out = common.stream(ctx, ctx.pool, fn, extra=(lab_emb, lab_targets), desc="EGL++",
                             gather=False)
    s = out["egl"]
    return Selection(indices=common.top_pool(s, idx, common.num_to_select(ctx)), scores=s,
                     scored_indices=idx)
