"""CKE (Caramalau et al., WACV 2021, Algorithm 1): k-center greedy with epistemic widening.

Inputs: the MC-dropout mean pose y (3J, normalised UVD) and epistemic standard deviation sigma
(T = `num_samples` = 70 passes) of every pool and labelled record. Paper (`variant='paper'`,
default): for each candidate i the nearest labelled/selected centre j* is found with the lower
bounds, j* = argmin_j ||(y_i - eta sigma_i) - (y_j - eta sigma_j)||, and its distance to that
centre is measured with the upper bounds, ||(y_i + eta sigma_i) - (y_j* + eta sigma_j*)||; the
farthest candidate is added to the centres, `budget` times (eta = 0.3; sigma is the std, as the
reference uses in acquisition). `variant='reference'`: the original code, which only uses the
lower bound g = y - eta sign(y) sigma (each coordinate pushed towards 0) in plain k-center greedy
(reference notes §4). With eta = 0 both are exactly `coreset` on the MC-mean pose (same passes:
both use the context's 'mc' key). Scores: the greedy distance before the first pick.
"""
import numpy as np

from vl4pose_jax.acquisition import common
from vl4pose_jax.acquisition.common import Context, Selection

TASKS = ("regression",)
REQUIRES_AUX = None
DEEPPRIOR = "bayesian"   # Bayesian DeepPrior (MC dropout, aleatoric head), evaluated as the MC mean


def select(ctx: Context, *, eta: float = 0.3, num_samples: int = 70, chunk: int | None = None,
           variant: str = "paper") -> Selection:
    pool_idx, mu_p, sd_p = common.mc_pool_stats(ctx, ctx.pool, num_samples=num_samples, chunk=chunk)
    _, mu_l, sd_l = common.mc_pool_stats(ctx, ctx.labelled, num_samples=num_samples, chunk=chunk)
    d = mu_p.shape[1]
    mu_l, sd_l = mu_l.reshape(-1, d), sd_l.reshape(-1, d)
    if variant == "paper":
        lower = (mu_p - eta * sd_p, mu_l - eta * sd_l)
        upper = (mu_p + eta * sd_p, mu_l + eta * sd_l)
    elif variant == "reference":
        lower = (mu_p - eta * np.sign(mu_p) * sd_p, mu_l - eta * np.sign(mu_l) * sd_l)
        upper = (None, None)
    else:
        raise ValueError(f"variant must be 'paper' or 'reference', got {variant!r}")
    picks, dist = common.kcenter_greedy(lower[0], lower[1], common.num_to_select(ctx),
                                        key=ctx.derive_key("kcenter"), pool_upper=upper[0],
                                        centre_upper=upper[1])
    return Selection(indices=pool_idx[picks], scores=dist, scored_indices=pool_idx)
