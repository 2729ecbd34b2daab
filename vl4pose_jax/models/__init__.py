"""Flax models: the stacked hourglass (2-D human pose), the auxiliary network (VL4Pose, Learning
Loss, aleatoric heads) and DeepPrior / Bayesian DeepPrior (3-D hand pose, MC dropout).

`StackedHourglass(num_joints, **PRESETS['paper'].kwargs)` builds the paper's network
(`PRESETS[name].input_size` / `.heatmap_size` give its square input and heatmap sizes in pixels);
`AuxNet(head, ...)` reads its feature dict; `DeepPrior(num_joints, dropout=...)` with `mc_predict`
gives MC-dropout means and variances. `count_params(variables)` counts the trainable parameters
of `init`'s output or of its `jax.eval_shape` (so large models need never be built).
"""
import math

import jax

from vl4pose_jax.models.auxnet import HEADS, POOLINGS, AuxNet
from vl4pose_jax.models.deepprior import DROPOUT_SITES, DeepPrior, mc_predict
from vl4pose_jax.models.hourglass import PAPER, PRESETS, TINY, Preset, StackedHourglass


def count_params(variables_or_shapes) -> int:
    """Number of scalars in the `params` collection (arrays or `jax.ShapeDtypeStruct`s)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables_or_shapes['params']))


__all__ = ['AuxNet', 'DeepPrior', 'StackedHourglass', 'mc_predict', 'count_params',
           'PAPER', 'TINY', 'PRESETS', 'Preset', 'HEADS', 'POOLINGS', 'DROPOUT_SITES']
