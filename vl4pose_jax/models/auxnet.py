"""Auxiliary network: a small head on frozen pose-network features for VL4Pose and the AL baselines.

Call it as `aux = AuxNet(head='vl4pose_heatmap', num_links=skeleton.num_links)`,
`aux_vars = aux.init(key, features)`, `out = aux.apply(aux_vars, features)`. `features` is the
`StackedHourglass` output dict (pooling 'conv': the `hourglass` map fused with the `inner` maps,
as in the reference; 'avg': `penultimate`), or a B x D vector such as DeepPrior's
`embedding_BxD` (pooling 'vector': Dense(256)+ReLU first). Every input goes through
`jax.lax.stop_gradient`, so a loss on the aux outputs can never change the pose network. The
features then pass an MLP (`fc`, ReLU after each layer) and a linear output layer, split per head:
  * 'vl4pose_heatmap': `link_params_BxLx2`, [..., 0] mean bone length in heatmap cells,
    [..., 1] its raw log-variance s (unbounded; the likelihood module bounds it);
  * 'vl4pose_regression': `offsets_BxLx3` mean parent->child offset and `cov_factor_BxLx3x3`, the
    lower-triangular Cholesky factor L of its covariance (Sigma = L L^T), diagonal
    softplus(raw) + 1e-4 > 0;
  * 'learning_loss': `loss_B`, the predicted loss;
  * 'aleatoric': `log_var_BxJ`, per-joint log-variance.
Weights use PyTorch's default init, as the reference (see `hourglass.torch_conv`).
`dtype` (default float32) is the compute dtype of every layer; parameters stay float32 and every
output is cast back to float32 (bfloat16 mixed precision).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from vl4pose_jax.models.hourglass import torch_conv, torch_dense

HEADS = ('vl4pose_heatmap', 'vl4pose_regression', 'learning_loss', 'aleatoric')
POOLINGS = ('conv', 'avg', 'vector')
_TRIL_ROWS, _TRIL_COLS = np.tril_indices(3, -1)  # (1,0), (2,0), (2,1)
_DIAG = np.arange(3)


class ConvFusion(nn.Module):
    """Reference multi-scale fusion: x = hourglass map; per inner map, x = ReLU(conv 2x2/2 (x)) +
    inner map; then a VALID conv spanning the remaining map, ReLU. Returns B x C."""
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hourglass_BxhxwxC, inner):
        C, dt = hourglass_BxhxwxC.shape[-1], self.dtype
        x = hourglass_BxhxwxC.astype(dt)
        for inner_map in inner:
            x = (nn.relu(torch_conv(C, 2, C, stride=2, padding='VALID', dtype=dt)(x))
                 + inner_map.astype(dt))
        x = torch_conv(C, x.shape[1:3], C, padding='VALID', dtype=dt)(x)
        return nn.relu(x.reshape(x.shape[0], C))


class AuxNet(nn.Module):
    """Auxiliary head; see the module docstring for inputs and outputs."""
    head: str
    num_links: int = 0
    num_joints: int = 0
    pooling: str = 'conv'
    fc: Sequence[int] = (128, 64, 32, 16)
    dtype: jnp.dtype = jnp.float32

    def _out_width(self) -> int:
        if self.head in ('vl4pose_heatmap', 'vl4pose_regression') and self.num_links <= 0:
            raise ValueError(f"head {self.head!r} needs num_links > 0")
        if self.head == 'aleatoric' and self.num_joints <= 0:
            raise ValueError("head 'aleatoric' needs num_joints > 0")
        widths = {'vl4pose_heatmap': 2 * self.num_links, 'vl4pose_regression': 9 * self.num_links,
                  'learning_loss': 1, 'aleatoric': self.num_joints}
        if self.head not in widths:
            raise ValueError(f"unknown head {self.head!r}; expected one of {HEADS}")
        return widths[self.head]

    @nn.compact
    def __call__(self, features):
        out_width, dt = self._out_width(), self.dtype
        features = jax.lax.stop_gradient(features)
        if self.pooling == 'conv':
            x = ConvFusion(dtype=dt, name='fusion')(features['hourglass'], features['inner'])
        elif self.pooling == 'avg':
            x = features['penultimate']
        elif self.pooling == 'vector':
            x = nn.relu(torch_dense(256, features.shape[-1], name='embed', dtype=dt)(features))
        else:
            raise ValueError(f"unknown pooling {self.pooling!r}; expected one of {POOLINGS}")

        for i, width in enumerate(self.fc):
            x = nn.relu(torch_dense(width, x.shape[-1], name=f'fc_{i}', dtype=dt)(x))
        raw = torch_dense(out_width, x.shape[-1], name='out', dtype=dt)(x)
        return self._split(raw.astype(jnp.float32))

    def _split(self, raw_BxO):
        B = raw_BxO.shape[0]
        if self.head == 'vl4pose_heatmap':
            return {'link_params_BxLx2': raw_BxO.reshape(B, self.num_links, 2)}
        if self.head == 'vl4pose_regression':
            raw_BxLx9 = raw_BxO.reshape(B, self.num_links, 9)
            diag_BxLx3 = nn.softplus(raw_BxLx9[..., 3:6]) + 1e-4
            cov_factor = jnp.zeros((B, self.num_links, 3, 3), raw_BxO.dtype)
            cov_factor = cov_factor.at[..., _DIAG, _DIAG].set(diag_BxLx3)
            cov_factor = cov_factor.at[..., _TRIL_ROWS, _TRIL_COLS].set(raw_BxLx9[..., 6:9])
            return {'offsets_BxLx3': raw_BxLx9[..., :3], 'cov_factor_BxLx3x3': cov_factor}
        if self.head == 'learning_loss':
            return {'loss_B': raw_BxO[:, 0]}
        return {'log_var_BxJ': raw_BxO}
