"""DeepPrior and Bayesian DeepPrior (MC dropout): the 3-D hand pose regressor of Caramalau et al.

Call it as `model = DeepPrior(num_joints=21, dropout='A', aleatoric=True)`,
`variables = model.init(key, depth_BxHxWx1)`, then `model.apply(variables, depth_BxHxWx1)` for a
deterministic pass or `model.apply(variables, depth, mc=True, rngs={'dropout': key})` for a
stochastic one. The input is a 128 x 128 normalised depth crop (values in [-1, 1]); the output dict
holds `pose_BxJx3` (normalised UVD, joint-major), `log_var_BxJx3` (aleatoric log-variance per
coordinate, only with `aleatoric=True`) and `embedding_BxD` (fc2's ReLU output, D = `dense`, for
core-set and auxiliary-net use). The trunk follows the reference exactly: three 5x5 VALID convs
of 12 filters, each conv -> (dropout) -> maxpool 2x2 (after conv1 and conv2 only) -> LeakyReLU(0.05),
then Dense 1024 ReLU -> Dense 1024 ReLU -> Dense(3J); Glorot-uniform kernels and zero biases as in
Keras. Dropout (variants 'A', 'B', 'C', see `DROPOUT_SITES`) is active iff `mc=True`. The reference
keeps dropout on in training as well, so train the Bayesian variants with `mc=True`.
`dtype` (default float32) is the compute dtype of every conv and dense; parameters stay float32
and every output is cast back to float32 (bfloat16 mixed precision).
`mc_predict` runs T stochastic passes of a batch at once and returns their mean and variances.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import flax.linen as nn

# Where each variant applies dropout: conv outputs before pool/activation, dense after ReLU.
DROPOUT_SITES = {
    None: (),
    'A': ('conv1', 'conv2', 'conv3'),
    'B': ('conv3', 'fc1'),
    'C': ('conv1', 'conv2', 'conv3', 'fc1', 'fc2'),
}
_GLOROT = nn.initializers.glorot_uniform()


class DeepPrior(nn.Module):
    """DeepPrior regressor with optional MC dropout and aleatoric head; see the module docstring."""
    num_joints: int
    dropout: str | None = None
    rate: float = 0.3
    aleatoric: bool = False
    features: int = 12
    dense: int = 1024
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, depth_BxHxWx1, *, mc: bool = False):
        if self.dropout not in DROPOUT_SITES:
            raise ValueError(f"unknown dropout variant {self.dropout!r}; expected None, 'A', 'B' or 'C'")
        sites = DROPOUT_SITES[self.dropout]

        def maybe_dropout(x, site):
            if site not in sites:
                return x
            return nn.Dropout(self.rate, deterministic=not mc, name=f'dropout_{site}')(x)

        B = depth_BxHxWx1.shape[0]
        x = depth_BxHxWx1
        for i in (1, 2, 3):
            x = nn.Conv(self.features, (5, 5), padding='VALID', kernel_init=_GLOROT, name=f'conv{i}',
                        dtype=self.dtype, param_dtype=jnp.float32)(x)
            x = maybe_dropout(x, f'conv{i}')
            if i < 3:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = nn.leaky_relu(x, negative_slope=0.05)
        x = x.reshape(B, -1)
        dense = functools.partial(nn.Dense, kernel_init=_GLOROT, dtype=self.dtype,
                                  param_dtype=jnp.float32)
        x = maybe_dropout(nn.relu(dense(self.dense, name='fc1')(x)), 'fc1')
        embedding_BxD = nn.relu(dense(self.dense, name='fc2')(x))
        x = maybe_dropout(embedding_BxD, 'fc2')

        J = self.num_joints
        f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
        out = {'pose_BxJx3': f32(dense(3 * J, name='pose')(x).reshape(B, J, 3)),
               'embedding_BxD': f32(embedding_BxD)}
        if self.aleatoric:
            out['log_var_BxJx3'] = f32(dense(3 * J, name='log_var')(x).reshape(B, J, 3))
        return out


@functools.partial(jax.jit, static_argnames=('model', 'num_samples', 'chunk'))
def mc_predict(model: DeepPrior, variables, depth_BxHxWx1, key, num_samples: int = 70,
               chunk: int | None = None):
    """MC-dropout prediction: `num_samples` stochastic passes, one per key of
    `jax.random.split(key, num_samples)`, all vmapped (or, with `chunk`, `chunk` at a time via
    `jax.lax.map` to bound memory; the result does not depend on `chunk`).

    Returns `mean_BxJx3` (mean pose over passes), `epistemic_var_BxJx3` (variance of the pose over
    passes, ddof 0), `aleatoric_var_BxJx3` (mean over passes of exp(log_var); zeros without an
    aleatoric head) and `embedding_BxD` (mean embedding over passes).
    """
    def one_pass(k):
        out = model.apply(variables, depth_BxHxWx1, mc=True, rngs={'dropout': k})
        log_var = out.get('log_var_BxJx3')
        aleatoric_var = jnp.zeros_like(out['pose_BxJx3']) if log_var is None else jnp.exp(log_var)
        return out['pose_BxJx3'], aleatoric_var, out['embedding_BxD']

    keys_T = jax.random.split(key, num_samples)
    if chunk is None:
        poses_TxBxJx3, aleatoric_TxBxJx3, embeddings_TxBxD = jax.vmap(one_pass)(keys_T)
    else:
        poses_TxBxJx3, aleatoric_TxBxJx3, embeddings_TxBxD = jax.lax.map(one_pass, keys_T, batch_size=chunk)
    return {'mean_BxJx3': poses_TxBxJx3.mean(axis=0),
            'epistemic_var_BxJx3': poses_TxBxJx3.var(axis=0),
            'aleatoric_var_BxJx3': aleatoric_TxBxJx3.mean(axis=0),
            'embedding_BxD': embeddings_TxBxD.mean(axis=0)}
