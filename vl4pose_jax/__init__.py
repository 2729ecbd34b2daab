"""vl4pose_jax: active learning for pose estimation in JAX/Flax.

Modules: `skeletons` (joint trees), `heatmaps` (targets, decoding, local maxima), `metrics`
(PCK, PCKh, AUC, mm error), `models` (stacked hourglass, auxiliary net, DeepPrior), `train`
(train state, losses, jitted steps).
"""
__version__ = "0.1.0"
