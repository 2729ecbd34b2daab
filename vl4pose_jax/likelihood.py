"""VL4Pose likelihood: training NLLs, skeleton scores, pose refinement as jitted tree programmes.

The skeleton Bayesian network (VL4Pose, BMVC 2022, Eq. 1) gives every link (parent -> child) a
Gaussian: on the bone length for heatmap models (Eq. 5, `link_params_BxLx2` = [mean length mu,
log-variance s] in heatmap cells / cells^2) and on the child's offset from its parent for 3-D
regression (Eq. 4, `offsets_BxLx3` with a Cholesky factor of the covariance). `heatmap_nll` and
`regression_nll` are the training losses; `score_heatmaps` scores predicted heatmaps (higher = more
likely; active learning annotates the lowest) over each joint's local-maximum candidates with
peak probabilities p = softmax(heatmap values at the maxima) (Eq. 3); `refine_pose` returns the
best configuration (Eq. 6); `score_regression` scores DeepPrior's single pose (Sec. 3.1.1). Every
function is pure `jax.numpy`, jitted with the `Skeleton` and sizes static, accepts any leading
batch axes (so it also runs under `jax.vmap`), and returns finite values for finite inputs.
The "reference" and "max" modes and refinement are one `jax.lax.scan` over
`skeleton.links_bottom_up` (index arrays as scanned inputs, one K x K matrix per link; refinement
adds a reversed scan to backtrack): O(L K^2) per image, a traced programme whose size does not
grow with the number of joints; "expected" and "expected_total" are linear in the per-link
terms and need no pass.
Call `score_heatmaps` on fixed-size batches of a pool: memory is O(batch), not O(pool).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from vl4pose_jax import heatmaps as hm
from vl4pose_jax.skeletons import Skeleton

# Log-variances s (natural log of cells^2, or of your coordinate unit^2 for regression) are
# bounded smoothly to (LOG_VAR_MIN, LOG_VAR_MAX) by `bound_log_var`, the same in training and
# scoring, so exp(-s) <= e^10 ~ 2.2e4 can never overflow (the reference has no bound at all).
LOG_VAR_MIN = -10.0
LOG_VAR_MAX = 10.0
# Residuals (mean length - distance, and whitened offsets) are clipped to +-MAX_RESIDUAL (gradient
# 0 beyond) only so that squares stay finite in float32 for absurd inputs; never active in practice.
MAX_RESIDUAL = 1e12
LOG_2PI = math.log(2.0 * math.pi)
MODES = ("reference", "expected", "expected_total", "max")


# ----------------------------------------------------------------------------------------------
# Per-link Gaussians.

def bound_log_var(log_var):
    """Smoothly bounded log-variance s_b = lo + softplus(s - lo) - softplus(s - hi).

    With lo, hi = LOG_VAR_MIN, LOG_VAR_MAX = -10, 10: monotone, smooth, within (lo, hi), and
    practically the identity inside (|s_b - s| = |softplus(s - hi) - softplus(lo - s)| < 0.02 for
    |s| <= 6), so the network's raw output keeps the reference's meaning (log of the variance) in
    the working range. Written as two branches so that no large numbers cancel for huge |s|.
    """
    s = jnp.asarray(log_var, jnp.float32)
    lo, hi = LOG_VAR_MIN, LOG_VAR_MAX
    low_branch = lo + jax.nn.softplus(s - lo) - jax.nn.softplus(s - hi)
    high_branch = hi + jax.nn.softplus(lo - s) - jax.nn.softplus(hi - s)
    return jnp.where(s <= 0.5 * (lo + hi), low_branch, high_branch)


def _clip(x):
    return jnp.clip(x, -MAX_RESIDUAL, MAX_RESIDUAL)


def _safe_norm(v):
    """Euclidean norm over the last axis with a finite gradient at 0."""
    sq = jnp.sum(v * v, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def link_log_density(distance, mean, log_var):
    """log N(distance; mean, e^{s_b}) = -0.5 [log 2 pi + s_b + (mean - distance)^2 e^{-s_b}].

    Args broadcast; `distance` and `mean` in the same unit (heatmap cells), `log_var` raw network
    output (bounded with `bound_log_var`).
    """
    s = bound_log_var(log_var)
    r = _clip(jnp.asarray(mean, jnp.float32) - distance)
    return -0.5 * (LOG_2PI + s + r * r * jnp.exp(-s))


def _whiten(residual_xD, cov_factor_xDxD):
    """z = L^{-1} r by forward substitution, and sum(log diag L), for a lower-triangular L.

    Only the lower triangle of `cov_factor` is read. Its diagonal (positive by contract) is
    floored at 1e-30 and its log-variance 2 log L_ii bounded like `bound_log_var`, so
    L_ii is in (e^-5, e^5); off-diagonals and each z_i are clipped to +-MAX_RESIDUAL.
    The loop runs over the D <= 3 coordinates, not over joints.
    """
    dim = residual_xD.shape[-1]
    diag = jnp.diagonal(cov_factor_xDxD, axis1=-2, axis2=-1)
    log_diag = 0.5 * bound_log_var(2.0 * jnp.log(jnp.maximum(diag, 1e-30)))
    inv_diag = jnp.exp(-log_diag)
    lower = _clip(cov_factor_xDxD)
    r = _clip(residual_xD)
    z = []
    for i in range(dim):
        acc = r[..., i]
        for k in range(i):
            acc = acc - lower[..., i, k] * z[k]
        z.append(_clip(acc * inv_diag[..., i]))
    return jnp.stack(z, axis=-1), jnp.sum(log_diag, axis=-1)


def _link_mask(visible_BxJ, joints_BxJxD, skeleton):
    vis = (jnp.asarray(visible_BxJ) > 0) & jnp.all(jnp.isfinite(joints_BxJxD), axis=-1)
    joints = jnp.where(vis[..., None], joints_BxJxD, 0.0)
    mask = vis[..., skeleton.link_parent] & vis[..., skeleton.link_child]
    return joints, mask


def _masked_mean(values, mask):
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return total / jnp.maximum(jnp.sum(mask), 1).astype(values.dtype)


# ----------------------------------------------------------------------------------------------
# Training losses.

@functools.partial(jax.jit, static_argnames=("skeleton",))
def heatmap_nll(link_params_BxLx2, joints_BxJx2, visible_BxJ, skeleton: Skeleton):
    """Bone-length NLL of Eq. 5, the auxiliary net's training loss (a scalar).

    Per link k with d_k = ||joint[child] - joint[parent]||: 0.5 e^{-s_b} (mu - d)^2 + 0.5 s_b,
    with s_b = bound_log_var(s) (the reference's loss, less 0.5 log 2 pi, with s bounded),
    averaged over the links whose two joints are visible (the reference divides by all B*L).

    Args:
      link_params_BxLx2: (..., L, 2) [mean length mu in heatmap cells, log-variance s].
      joints_BxJx2: (..., J, 2) joint positions in heatmap cells: the integer argmax of the
        ground-truth heatmaps (`train.vl4pose_heatmap_targets`, as the reference), the grid of
        the peaks `score_heatmaps` measures. Non-finite = not visible.
      visible_BxJ: (..., J) mask; a link counts when both its joints are visible.
    """
    params = jnp.asarray(link_params_BxLx2, jnp.float32)
    joints, mask = _link_mask(visible_BxJ, jnp.asarray(joints_BxJx2, jnp.float32), skeleton)
    d = _safe_norm(joints[..., skeleton.link_child, :] - joints[..., skeleton.link_parent, :])
    s = bound_log_var(params[..., 1])
    r = _clip(params[..., 0] - d)
    return _masked_mean(0.5 * jnp.exp(-s) * r * r + 0.5 * s, mask)


@functools.partial(jax.jit, static_argnames=("skeleton",))
def regression_nll(offsets_BxLx3, cov_factor_BxLx3x3, joints_BxJx3, visible_BxJ,
                   skeleton: Skeleton):
    """Offset NLL of Eq. 4 (a scalar): child - (parent + offset) ~ N(0, L L^T) per link.

    Per link: 0.5 r^T (L L^T)^{-1} r + sum_i log L_ii (the Gaussian NLL less (D/2) log 2 pi),
    averaged over the links whose two joints are visible. `cov_factor` must be lower-triangular
    with a positive diagonal (only its lower triangle is read; the diagonal is bounded as in
    `_whiten`, so variances lie in (e^-10, e^10) of the coordinate unit^2: normalise coordinates
    so that typical residuals are O(1)-O(100)).
    """
    offsets = jnp.asarray(offsets_BxLx3, jnp.float32)
    joints, mask = _link_mask(visible_BxJ, jnp.asarray(joints_BxJx3, jnp.float32), skeleton)
    residual = (joints[..., skeleton.link_child, :] - joints[..., skeleton.link_parent, :]
                - offsets)
    z, log_det_half = _whiten(residual, jnp.asarray(cov_factor_BxLx3x3, jnp.float32))
    return _masked_mean(0.5 * jnp.sum(z * z, axis=-1) + log_det_half, mask)


@functools.partial(jax.jit, static_argnames=("skeleton",))
def score_regression(joints_BxJx3, offsets_BxLx3, cov_factor_BxLx3x3, skeleton: Skeleton):
    """Log-likelihood of one predicted pose (DeepPrior, Sec. 3.1.1), (...,); higher = likelier.

    sum over links of log N(child - (parent + offset); 0, L L^T), including -(D/2) log 2 pi.
    """
    joints = jnp.asarray(joints_BxJx3, jnp.float32)
    residual = (joints[..., skeleton.link_child, :] - joints[..., skeleton.link_parent, :]
                - jnp.asarray(offsets_BxLx3, jnp.float32))
    z, log_det_half = _whiten(residual, jnp.asarray(cov_factor_BxLx3x3, jnp.float32))
    dim = residual.shape[-1]
    per_link = -0.5 * dim * LOG_2PI - 0.5 * jnp.sum(z * z, axis=-1) - log_det_half
    return jnp.sum(per_link, axis=-1)


# ----------------------------------------------------------------------------------------------
# Candidates from heatmaps.

@functools.partial(jax.jit, static_argnames=("num_peaks", "min_distance", "exclude_border",
                                             "reference_size"))
def heatmap_candidates(heatmaps_BxHxWxJ, *, num_peaks: int, min_distance: int = 8,
                       exclude_border: bool | int = True, reference_size: int | None = None):
    """Each joint's candidate locations and their log peak probabilities.

    Candidates are `heatmaps.local_maxima` (skimage's `peak_local_max` semantics, best first);
    `min_distance` and `exclude_border` are cells of these maps, or of reference_size x
    reference_size maps scaled to these (`heatmaps.peak_spacing`; pass 64 for the paper's values
    on smaller maps). A border that leaves no interior raises ValueError.
    log_prob = log softmax of the raw heatmap values over the joint's valid peaks (no temperature,
    as the reference). A joint with no maximum at all gets its global argmax as its single valid
    candidate, with probability 1.

    Returns:
      xy_BxJxKx2: (..., J, K, 2) int32 (x, y) = (column, row) in heatmap cells.
      valid_BxJxK: (..., J, K) bool; at least one per joint.
      log_prob_BxJxK: (..., J, K) float32, 0 at invalid slots.
    """
    peaks = hm.local_maxima(heatmaps_BxHxWxJ, num_peaks, min_distance=min_distance,
                            exclude_border=exclude_border, reference_size=reference_size)
    first = jnp.arange(num_peaks) == 0
    none = ~jnp.any(peaks.valid, axis=-1, keepdims=True)  # (..., J, 1)
    fallback = none & first
    # The global argmax is costly on CPU and rarely needed: compute it only when some joint lacks
    # a maximum (under an outer vmap, lax.cond evaluates both branches; the result is the same).
    best_xy = jax.lax.cond(jnp.any(none), hm.argmax_xy,
                           lambda h: jnp.zeros(h.shape[:-3] + h.shape[-1:] + (2,), jnp.int32),
                           heatmaps_BxHxWxJ)
    xy = jnp.where(fallback[..., None], best_xy[..., None, :], peaks.xy)
    valid = peaks.valid | fallback
    values = jnp.where(peaks.valid, peaks.values, 0.0)
    top = jnp.max(jnp.where(valid, values, -jnp.inf), axis=-1, keepdims=True)
    shifted = jnp.where(valid, values - top, -jnp.inf)
    log_prob = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))
    return xy.astype(jnp.int32), valid, jnp.where(valid, log_prob, 0.0)


def _pairwise_log_density(xy_NxJxKx2, link_params_NxLx2, skeleton):
    """(N, L, K_parent, K_child) log N(distance between candidates; mu, e^{s_b}) per link."""
    xy = xy_NxJxKx2.astype(jnp.float32)
    xy_p = xy[:, skeleton.link_parent]  # (N, L, K, 2)
    xy_c = xy[:, skeleton.link_child]
    d = _safe_norm(xy_p[:, :, :, None, :] - xy_c[:, :, None, :, :])
    params = jnp.asarray(link_params_NxLx2, jnp.float32)
    return link_log_density(d, params[..., 0, None, None], params[..., 1, None, None])


# ----------------------------------------------------------------------------------------------
# The tree programme.

def _first_argmax(values_xK, top_x):
    """Index of the first entry equal to the max (jnp.argmax semantics, cheaper on CPU)."""
    size = values_xK.shape[-1]
    slots = jnp.arange(size, dtype=jnp.int32)
    return jnp.min(jnp.where(values_xK == top_x[..., None], slots, size), axis=-1)


def _upward(unary_NxJxK, valid_NxJxK, pair_NxLxKxK, skeleton, reduce):
    """Bottom-up pass, one scan step per link (deepest child first).

    Each joint c accumulates `incoming[c]`, the sum of its children's messages. At link (p, c):
    belief_c(b) = unary_c(b) + incoming_c(b); message m(a) = AGG_b [pair(a, b) + belief_c(b)]
    over c's valid candidates, added to incoming[p]. AGG is a sum ("sum": the reference's plain
    sum) or a max ("max", "argmax": max-product). Returns the root's aggregate and, for "argmax",
    the root's best slot and each link's argmax table (L, N, K_parent) in bottom-up order.
    """
    order = jnp.asarray(skeleton.links_bottom_up)
    link_parent = jnp.asarray(skeleton.link_parent)[order]
    link_child = jnp.asarray(skeleton.link_child)[order]
    pair_LxNxKxK = jnp.moveaxis(pair_NxLxKxK[:, order], 1, 0)

    def step(incoming, link):
        parent, child, pair = link
        valid_c = jnp.take(valid_NxJxK, child, axis=1)[:, None, :]  # (N, 1, K)
        belief_c = jnp.take(unary_NxJxK, child, axis=1) + jnp.take(incoming, child, axis=1)
        total = pair + belief_c[:, None, :]  # (N, K_parent, K_child)
        if reduce == "sum":
            message = jnp.sum(jnp.where(valid_c, total, 0.0), axis=-1)
            best = None
        else:
            masked = jnp.where(valid_c, total, -jnp.inf)
            message = jnp.max(masked, axis=-1)
            best = _first_argmax(masked, message) if reduce == "argmax" else None
        incoming = incoming.at[:, parent].add(message)
        return incoming, best

    incoming, best = jax.lax.scan(step, jnp.zeros_like(unary_NxJxK),
                                  (link_parent, link_child, pair_LxNxKxK))
    root = skeleton.root
    belief_root = unary_NxJxK[:, root] + incoming[:, root]
    valid_root = valid_NxJxK[:, root]
    if reduce == "sum":
        return jnp.sum(jnp.where(valid_root, belief_root, 0.0), axis=-1), None, None
    masked = jnp.where(valid_root, belief_root, -jnp.inf)
    top = jnp.max(masked, axis=-1)
    return top, (_first_argmax(masked, top) if reduce == "argmax" else None), best


def _downward(root_choice_N, best_LxNxK, skeleton, num_joints):
    """Backtrack the max-product tables top-down: a link sets its child's slot from its parent's."""
    order = jnp.asarray(skeleton.links_bottom_up)
    link_parent = jnp.asarray(skeleton.link_parent)[order]
    link_child = jnp.asarray(skeleton.link_child)[order]
    choice = jnp.zeros((root_choice_N.shape[0], num_joints), jnp.int32)
    choice = choice.at[:, skeleton.root].set(root_choice_N)

    def step(choice, link):
        parent, child, best = link
        parent_choice = jnp.take(choice, parent, axis=1)
        child_choice = jnp.take_along_axis(best, parent_choice[:, None], axis=1)[:, 0]
        return choice.at[:, child].set(child_choice), None

    choice, _ = jax.lax.scan(step, choice, (link_parent, link_child, best_LxNxK), reverse=True)
    return choice


def _flatten(x, trailing):
    lead = x.shape[:x.ndim - trailing]
    return x.reshape((-1,) + x.shape[x.ndim - trailing:]), lead


@functools.partial(jax.jit, static_argnames=("skeleton", "mode"))
def score_candidates(xy_BxJxKx2, valid_BxJxK, log_prob_BxJxK, link_params_BxLx2,
                     skeleton: Skeleton, *, mode: str):
    """Score candidate sets (see `score_heatmaps` for the modes); shape (...,).

    For research code with its own candidates: `xy` (x, y) in heatmap cells, `valid` at least one
    per joint, `log_prob` the log peak probabilities (normalised over each joint's valid slots).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    xy, lead = _flatten(jnp.asarray(xy_BxJxKx2), 3)
    valid, _ = _flatten(jnp.asarray(valid_BxJxK, bool), 2)
    unary, _ = _flatten(jnp.where(valid_BxJxK, jnp.asarray(log_prob_BxJxK, jnp.float32), 0.0), 2)
    params, _ = _flatten(jnp.asarray(link_params_BxLx2, jnp.float32), 2)
    pair = _pairwise_log_density(xy, params, skeleton)  # (N, L, K, K)
    if mode in ("expected", "expected_total"):
        # E[sum_links log N] with independent y_j ~ p_j: each link's term depends on two joints
        # only, so the expectation is a sum of K x K bilinear forms and needs no tree pass.
        prob = jnp.where(valid, jnp.exp(unary), 0.0)
        p_par = prob[:, skeleton.link_parent]  # (N, L, K)
        p_chi = prob[:, skeleton.link_child]
        score = jnp.einsum("nla,nlb,nlab->n", p_par, p_chi, pair)
        if mode == "expected_total":  # + E[sum_j log p_j(y_j)] = - sum_j H(p_j)
            score = score + jnp.sum(prob * unary, axis=(-2, -1))
    else:
        score, _, _ = _upward(unary, valid, pair, skeleton, "sum" if mode == "reference" else "max")
    return score.reshape(lead)


@functools.partial(jax.jit, static_argnames=("skeleton",))
def decode_candidates(xy_BxJxKx2, valid_BxJxK, log_prob_BxJxK, link_params_BxLx2,
                      skeleton: Skeleton):
    """The max-product configuration: chosen slot per joint (..., J) int32 and its score (...,)."""
    xy, lead = _flatten(jnp.asarray(xy_BxJxKx2), 3)
    valid, _ = _flatten(jnp.asarray(valid_BxJxK, bool), 2)
    unary, _ = _flatten(jnp.where(valid_BxJxK, jnp.asarray(log_prob_BxJxK, jnp.float32), 0.0), 2)
    params, _ = _flatten(jnp.asarray(link_params_BxLx2, jnp.float32), 2)
    pair = _pairwise_log_density(xy, params, skeleton)
    score, root_choice, best = _upward(unary, valid, pair, skeleton, "argmax")
    choice = _downward(root_choice, best, skeleton, skeleton.num_joints)
    return choice.reshape(lead + choice.shape[-1:]), score.reshape(lead)


# ----------------------------------------------------------------------------------------------
# Public scoring and refinement from heatmaps.

@functools.partial(jax.jit, static_argnames=("skeleton", "num_peaks", "min_distance",
                                             "exclude_border", "reference_size", "mode"))
def score_heatmaps(heatmaps_BxHxWxJ, link_params_BxLx2, skeleton: Skeleton, *, num_peaks: int,
                   min_distance: int = 8, exclude_border: bool | int = True,
                   reference_size: int | None = None, mode: str):
    """VL4Pose score of each image, shape (...,); higher = more likely (annotate the lowest).

    Candidates and log peak probabilities log p come from `heatmap_candidates`; every link's
    term is log N(distance between the candidates in heatmap cells; mu, e^{s_b}) (with the
    -0.5 log 2 pi, as the reference); the skeleton network's log-likelihood of a configuration
    Y = (y_j) is log q_BN(Y) = sum_links log N. With num_peaks=1 every log p is 0 and all modes
    equal log q_BN of the single (local-maximum) pose. Modes:
      "reference": the original code's aggregation (a plain sum, not an expectation): per node,
        the sum over its valid candidates of log N + log p + its children's sums; the root sums
        log p + its children's sums over its candidates (reference notes Sec. 4.2). Magnitudes
        grow with the number of candidates.
      "expected": the expected log-likelihood of the skeleton network when each joint's
        location is drawn independently from its peak distribution p_j (Eq. 3):
        E_{y_j ~ p_j}[log q_BN(Y)] = sum_links E[log N], with no term for p itself.
      "expected_total": the expectation of the quantity "max" maximises,
        E_{y_j ~ p_j}[sum_j log p_j(y_j) + log q_BN(Y)] = "expected" - sum_j H(p_j): it also
        ranks low the images whose peaks are ambiguous (sum_j H(p_j) is the multi-peak entropy
        of the softmaxed peak values).
      "max": the best configuration's value, max_Y [sum_j log p_j + log q_BN(Y)] (Eq. 6).
    """
    xy, valid, log_prob = heatmap_candidates(heatmaps_BxHxWxJ, num_peaks=num_peaks,
                                             min_distance=min_distance,
                                             exclude_border=exclude_border,
                                             reference_size=reference_size)
    return score_candidates(xy, valid, log_prob, link_params_BxLx2, skeleton, mode=mode)


@functools.partial(jax.jit, static_argnames=("skeleton", "num_peaks", "min_distance",
                                             "exclude_border", "reference_size"))
def refine_pose(heatmaps_BxHxWxJ, link_params_BxLx2, skeleton: Skeleton, *, num_peaks: int,
                min_distance: int = 8, exclude_border: bool | int = True,
                reference_size: int | None = None):
    """Joint positions of the "max" configuration (Eq. 6), (..., J, 2) int32 (x, y) heatmap cells.

    Equals the local-maximum (argmax-like) pose when num_peaks=1; with more peaks it may pick a
    weaker maximum that fits the skeleton better. The reference used the viz path's
    `exclude_border=False` for refinement.
    """
    xy, valid, log_prob = heatmap_candidates(heatmaps_BxHxWxJ, num_peaks=num_peaks,
                                             min_distance=min_distance,
                                             exclude_border=exclude_border,
                                             reference_size=reference_size)
    choice, _ = decode_candidates(xy, valid, log_prob, link_params_BxLx2, skeleton)
    return jnp.take_along_axis(xy, choice[..., None, None], axis=-2)[..., 0, :]
