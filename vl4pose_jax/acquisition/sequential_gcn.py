"""Shared by `coregcn` and `uncertaingcn` (Caramalau, Bhattarai & Kim, "Sequential GraphConvolutional
Network for Active Learning", CVPR 2021; settings from the authors' code as summarised in
`bayesian-deepprior-reference-code.md` §4).

Nodes: every labelled and candidate record, features F = L2-normalised pose-network features
(hourglass `penultimate` for people, DeepPrior's fc2 `embedding_BxD` for hands). Adjacency
A = colnorm(F F^T - I) + I (each column of F F^T - I divided by its sum). A is never formed:
A x = F (F^T (x / c)) - x / c + x with column sums c_j = F_j . sum_i F_i - 1, so memory is
O(N d) (the authors' code builds the dense N x N matrix, hence its 10k-image subsets).
GCN: gc1 (-> `hidden` 128) + ReLU + dropout (0.3, training only), gc3 (-> 1) + sigmoid, each
layer A (X W) + b with W, b ~ U(+-1/sqrt(out)). Trained full-batch for `steps` (200) Adam steps
(lr 1e-3, L2 weight decay 5e-4 added to the gradient as torch's Adam) on
-mean log s(labelled) - `lambda_u` (1.2) * mean log(1 - s(unlabelled)) (log-sigmoid form,
numerically stable). Outputs in inference mode: the hidden features, the pre-sigmoid score, s.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context

TASKS = ("heatmap", "regression")


def node_features(ctx: Context):
    """(pool_record_indices, pool features, labelled features), L2-normalised rows."""
    name = "penultimate_BxC" if ctx.task == "heatmap" else "embedding_BxD"
    pool_idx, pool = common.stream_outputs(ctx, ctx.pool, (name,), desc="GCN features")
    _, lab = common.stream_outputs(ctx, ctx.labelled, (name,), desc="GCN features")
    pool = pool[name]
    lab = lab[name] if lab else np.zeros((0, pool.shape[1]), np.float32)

    def l2(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return pool_idx, l2(pool.astype(np.float32)), l2(lab.astype(np.float32))


def _adjacency_apply(F):
    colsum = F @ jnp.sum(F, axis=0) - 1.0
    inv = 1.0 / jnp.where(jnp.abs(colsum) > 1e-12, colsum, 1e-12)

    def apply(x):
        xs = x * inv[:, None]
        return F @ (F.T @ xs) - xs + x

    return apply


def _init(key, d, hidden):
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def u(k, shape, out):
        s = 1.0 / np.sqrt(out)
        return jax.random.uniform(k, shape, jnp.float32, -s, s)

    return {"w1": u(k1, (d, hidden), hidden), "b1": u(k2, (hidden,), hidden),
            "w3": u(k3, (hidden, 1), 1), "b3": u(k4, (1,), 1)}


def _forward(params, F, adj, key=None, rate=0.3):
    h = jax.nn.relu(adj(F @ params["w1"]) + params["b1"])
    x = h
    if key is not None and rate > 0:
        keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
        x = jnp.where(keep, h / (1.0 - rate), 0.0)
    logit = (adj(x @ params["w3"]) + params["b3"])[:, 0]
    return h, logit


@functools.partial(jax.jit, static_argnames=("hidden", "steps"))
def train_gcn(F, is_labelled, key, *, hidden=128, steps=200, lr=1e-3, weight_decay=5e-4,
              lambda_u=1.2, dropout=0.3):
    """Train the GCN on nodes F (N, d) to tell labelled from unlabelled; returns
    (hidden features (N, hidden), pre-sigmoid logits (N,)) in inference mode."""
    adj = _adjacency_apply(F)
    init_key, drop_key = jax.random.split(key)
    params = _init(init_key, F.shape[1], hidden)
    tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))
    lab = is_labelled.astype(jnp.float32)
    n_lab = jnp.maximum(jnp.sum(lab), 1.0)
    n_unl = jnp.maximum(jnp.sum(1.0 - lab), 1.0)

    def loss(p, k):
        _, logit = _forward(p, F, adj, k, dropout)
        l_lab = -jnp.sum(lab * jax.nn.log_sigmoid(logit)) / n_lab
        l_unl = -jnp.sum((1.0 - lab) * jax.nn.log_sigmoid(-logit)) / n_unl
        return l_lab + lambda_u * l_unl

    def step(carry, t):
        p, opt = carry
        g = jax.grad(loss)(p, jax.random.fold_in(drop_key, t))
        updates, opt = tx.update(g, opt, p)
        return (optax.apply_updates(p, updates), opt), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    return _forward(params, F, adj)


def fit(ctx: Context, **gcn_options):
    """Stream features, train the GCN; returns (pool_idx, pool hidden, pool logits, labelled
    hidden, labelled logits). Node order: pool first, then labelled."""
    pool_idx, pool, lab = node_features(ctx)
    F = jnp.asarray(np.concatenate([pool, lab]))
    is_lab = jnp.asarray(np.r_[np.zeros(len(pool), bool), np.ones(len(lab), bool)])
    h, logit = train_gcn(F, is_lab, ctx.derive_key("gcn"), **gcn_options)
    h, logit = np.asarray(h), np.asarray(logit)
    n = len(pool)
    return pool_idx, h[:n], logit[:n], h[n:], logit[n:]
