"""Stacked hourglass (Newell et al. 2016), the 2-D human pose network of the VL4Pose reference.

Call it as a plain Flax module: `model = StackedHourglass(num_joints=14, **PRESETS['paper'].kwargs)`,
`variables = model.init(key, images_BxHxWx3, train=False)`, then
`out, updates = model.apply(variables, images, train=True, mutable=['batch_stats'])` for training
or `out = model.apply(variables, images, train=False)` for inference. `out` is a dict:
`heatmaps` (B x S x H/4 x W/4 x J, every stack's heatmaps for intermediate supervision),
`hourglass` (B x H/4 x W/4 x C, the last stack's hourglass output), `inner` (tuple of the last
stack's `low3` maps from the outermost level to the innermost, at 1/2, 1/4, ... of H/4), and
`penultimate` (B x C, spatial mean of the last stack's feature block). The last three feed `AuxNet`.
Blocks follow the reference (conv -> BN -> ReLU; pre-activation bottleneck residuals whose 1x1
skip exists only when the width changes), with Newell's long skip from each stack's input.
Weights are initialised as PyTorch does by default (`torch_conv`, `torch_dense`) and BatchNorm
uses PyTorch's momentum 0.1 (Flax momentum 0.9) and eps 1e-5, so training behaves like the reference.
`dtype` (default float32) is the compute dtype of every conv, dense and BatchNorm; parameters stay
float32 (`param_dtype`), and every output in the dict is cast back to float32 (bfloat16 mixed precision).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import flax.linen as nn

# PyTorch's default kaiming_uniform(a=sqrt(5)): weights U(+-1/sqrt(fan_in)).
_TORCH_KERNEL_INIT = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def _torch_bias_init(fan_in: int):
    """PyTorch's default bias init, U(+-1/sqrt(fan_in))."""
    bound = 1.0 / fan_in ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_conv(features: int, kernel: int | tuple[int, int], in_features: int, *,
               stride: int = 1, padding: int | str | None = None,
               name: str | None = None, dtype=jnp.float32) -> nn.Conv:
    """A conv with bias and PyTorch's default init; padding defaults to (k-1)//2 per side."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if (kh, kw) == (1, 1) and stride == 1 and padding in (None, 0, 'SAME', 'VALID'):
        # A 1x1 conv is a matmul over channels; XLA:CPU runs it ~1.8x faster as a dot.
        return torch_dense(features, in_features, name=name, dtype=dtype)
    if padding is None:
        padding = ((kh - 1) // 2, (kw - 1) // 2)
    return nn.Conv(features, (kh, kw), strides=stride, padding=padding,
                   kernel_init=_TORCH_KERNEL_INIT,
                   bias_init=_torch_bias_init(in_features * kh * kw), name=name,
                   dtype=dtype, param_dtype=jnp.float32)


def torch_dense(features: int, in_features: int, name: str | None = None,
                dtype=jnp.float32) -> nn.Dense:
    """A dense layer with PyTorch's default init (as `nn.Linear`)."""
    return nn.Dense(features, kernel_init=_TORCH_KERNEL_INIT,
                    bias_init=_torch_bias_init(in_features), name=name,
                    dtype=dtype, param_dtype=jnp.float32)


def _batch_norm(train: bool, dtype=jnp.float32) -> nn.BatchNorm:
    """BatchNorm with PyTorch's defaults (momentum 0.1 == Flax 0.9, eps 1e-5). Flax's running
    variance tracks the biased batch variance, PyTorch's the unbiased one (a factor N/(N-1),
    N = B*H*W, negligible here)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        dtype=dtype, param_dtype=jnp.float32)


def _max_pool2(x_BxHxWxC):
    return nn.max_pool(x_BxHxWxC, (2, 2), strides=(2, 2))


def _upsample2(x_BxHxWxC):
    """Nearest-neighbour x2 upsampling."""
    return jnp.repeat(jnp.repeat(x_BxHxWxC, 2, axis=1), 2, axis=2)


class ConvBlock(nn.Module):
    """The reference's `Conv`: conv (bias, padding (k-1)//2) -> optional BN -> optional ReLU."""
    features: int
    kernel: int = 1
    stride: int = 1
    bn: bool = False
    relu: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC, train: bool):
        x = torch_conv(self.features, self.kernel, x_BxHxWxC.shape[-1], stride=self.stride,
                       dtype=self.dtype)(x_BxHxWxC)
        if self.bn:
            x = _batch_norm(train, self.dtype)(x)
        return nn.relu(x) if self.relu else x


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(F/2)-BN-ReLU-3x3(F/2)-BN-ReLU-1x1(F), plus a skip
    that is a 1x1 conv when the input width differs from `features`, the identity otherwise."""
    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC, train: bool):
        half, dt = self.features // 2, self.dtype
        y = nn.relu(_batch_norm(train, dt)(x_BxHxWxC))
        y = torch_conv(half, 1, x_BxHxWxC.shape[-1], dtype=dt)(y)
        y = nn.relu(_batch_norm(train, dt)(y))
        y = torch_conv(half, 3, half, dtype=dt)(y)
        y = nn.relu(_batch_norm(train, dt)(y))
        y = torch_conv(self.features, 1, half, dtype=dt)(y)
        if x_BxHxWxC.shape[-1] == self.features:
            skip = x_BxHxWxC
        else:
            skip = torch_conv(self.features, 1, x_BxHxWxC.shape[-1], name='skip',
                              dtype=dt)(x_BxHxWxC)
        return y + skip


class Hourglass(nn.Module):
    """One hourglass of `depth` levels. Returns (output B x H x W x C, `low3` maps from this level
    down to the innermost, at H/2, H/4, ..., H/2**depth)."""
    depth: int
    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxHxWxC, train: bool):
        F, dt = self.features, self.dtype
        up1 = Residual(F, dtype=dt, name='up1')(x_BxHxWxC, train)
        low = Residual(F, dtype=dt, name='low1')(_max_pool2(x_BxHxWxC), train)
        if self.depth > 1:
            low, deeper = Hourglass(self.depth - 1, F, dtype=dt, name='low2')(low, train)
        else:
            low, deeper = Residual(F, dtype=dt, name='low2')(low, train), ()
        low3 = Residual(F, dtype=dt, name='low3')(low, train)
        return up1 + _upsample2(low3), (low3,) + deeper


class StackedHourglass(nn.Module):
    """Stacked hourglass; see the module docstring for the output dict.

    The stem is conv7x7/2 (C/4, BN, ReLU) -> Residual(C/2) -> maxpool 2 -> Residual(C/2) ->
    Residual(C): the reference's fixed widths 64 and 128 are C/4 and C/2 of its C=256, and that
    ratio is kept for other widths (the tiny preset's C=32 gives 8 and 16).
    Heatmaps are raw conv outputs (no activation), in cells of the H/4 x W/4 grid.
    `dtype`: compute dtype (see the module docstring); the outputs are always float32.
    """
    num_joints: int
    num_stacks: int = 2
    channels: int = 256
    depth: int = 4
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images_BxHxWx3, train: bool):
        C, dt = self.channels, self.dtype
        x = ConvBlock(C // 4, kernel=7, stride=2, bn=True, dtype=dt,
                      name='stem_conv')(images_BxHxWx3, train)
        x = Residual(C // 2, dtype=dt, name='stem_res1')(x, train)
        x = _max_pool2(x)
        x = Residual(C // 2, dtype=dt, name='stem_res2')(x, train)
        x = Residual(C, dtype=dt, name='stem_res3')(x, train)

        stack_heatmaps = []
        for s in range(self.num_stacks):
            hourglass_BxhxwxC, inner = Hourglass(self.depth, C, dtype=dt, name=f'hourglass_{s}')(x, train)
            feat = Residual(C, dtype=dt, name=f'features_res_{s}')(hourglass_BxhxwxC, train)
            feat = ConvBlock(C, bn=True, dtype=dt, name=f'features_conv_{s}')(feat, train)
            heatmaps_BxhxwxJ = ConvBlock(self.num_joints, relu=False, dtype=dt,
                                         name=f'heatmaps_{s}')(feat, train)
            stack_heatmaps.append(heatmaps_BxhxwxJ)
            if s < self.num_stacks - 1:
                x = (x + ConvBlock(C, relu=False, dtype=dt,
                                   name=f'merge_preds_{s}')(heatmaps_BxhxwxJ, train)
                     + ConvBlock(C, relu=False, dtype=dt, name=f'merge_features_{s}')(feat, train))

        f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
        return dict(heatmaps=f32(jnp.stack(stack_heatmaps, axis=1)),
                    hourglass=f32(hourglass_BxhxwxC),
                    inner=tuple(f32(m) for m in inner),
                    penultimate=f32(feat).mean(axis=(1, 2)))


class Preset(NamedTuple):
    """Module kwargs (besides `num_joints`) with the square input and heatmap sizes in pixels."""
    kwargs: dict
    input_size: int
    heatmap_size: int


PAPER = dict(num_stacks=2, channels=256, depth=4)
TINY = dict(num_stacks=2, channels=32, depth=2)
# Between the two: 32 x 32 heatmaps (half the paper's resolution), sized to train on a CPU.
SMALL = dict(num_stacks=1, channels=32, depth=3)
PRESETS = {
    'paper': Preset(PAPER, input_size=256, heatmap_size=64),
    'small': Preset(SMALL, input_size=128, heatmap_size=32),
    'tiny': Preset(TINY, input_size=64, heatmap_size=16),
}
