"""Tests for vl4pose_jax.likelihood against independent float64 numpy/skimage implementations.

Brute force: every one of the prod_j n_j candidate configurations is enumerated. The scored model
is log p(Y) + log q_BN(Y) = sum_j log p_j(y_j) + sum_links log N(|y_c - y_p|; mu, e^{s_b}), with
p_j = softmax of the heatmap values at skimage's local maxima (a joint without maxima: its global
argmax with probability 1). "expected" = sum_Y prod_j p_j(y_j) * sum_links log N (the skeleton
network's expected log-likelihood, no log p term); "expected_total" = sum_Y prod_j p_j(y_j) * the
full total; "max" = max_Y of the full total.
"reference" = the original code's recursion (reference notes Sec. 4.2), written naively here.
"""
import itertools
import math

import jax
import numpy as np
import pytest
import scipy.special
import scipy.stats
from skimage.feature import peak_local_max

from vl4pose_jax import likelihood as lk
from vl4pose_jax import skeletons

# Root is joint 2; links listed out of tree order on purpose.
SMALL = skeletons.Skeleton(names=("a", "b", "root", "c", "d", "e"),
                           links=((4, 1), (2, 0), (3, 5), (0, 4), (2, 3)), name="small")
SIZE = 16
MIN_DISTANCE = 2


# ---------------------------------------------------------------------------------------------
# Independent numpy reference.

def np_bound(s):
    s = np.asarray(s, np.float64)
    return -10.0 + np.logaddexp(0.0, s + 10.0) - np.logaddexp(0.0, s - 10.0)


def np_log_normal(d, mu, s):
    sb = np_bound(s)
    return -0.5 * (np.log(2 * np.pi) + sb + (mu - d) ** 2 * np.exp(-sb))


def np_candidates(maps_HxWxJ, k, min_distance, exclude_border):
    """Per joint: (xy (n, 2) float64 (x, y), log p (n,)) via skimage and scipy."""
    out = []
    for j in range(maps_HxWxJ.shape[-1]):
        m = maps_HxWxJ[..., j]
        rc = peak_local_max(m, min_distance=min_distance, num_peaks=k,
                            exclude_border=exclude_border)
        if len(rc) == 0:
            rc = np.array([np.unravel_index(np.argmax(m), m.shape)])
        values = m[rc[:, 0], rc[:, 1]].astype(np.float64)
        out.append((rc[:, ::-1].astype(np.float64), np.log(scipy.special.softmax(values))))
    return out


def enumerate_configs(cands, params, skeleton, links_only=False):
    """All configurations (C, J), their totals (C,) and probabilities (C,); with `links_only`
    the totals are sum_links log N alone (no sum_j log p_j)."""
    configs = np.array(list(itertools.product(*[range(len(lp)) for _, lp in cands])))
    total = np.zeros(len(configs))
    logprob = np.zeros(len(configs))
    for j, (_, lp) in enumerate(cands):
        if not links_only:
            total += lp[configs[:, j]]
        logprob += lp[configs[:, j]]
    for k, (p, c) in enumerate(skeleton.links):
        d = np.linalg.norm(cands[p][0][configs[:, p]] - cands[c][0][configs[:, c]], axis=-1)
        total += np_log_normal(d, params[k, 0], params[k, 1])
    return configs, total, np.exp(logprob)


def naive_reference(cands, params, skeleton):
    """The reference's recursion, recomputing every subtree (O(K^depth))."""
    children = {j: [(k, c) for k, (p, c) in enumerate(skeleton.links) if p == j]
                for j in range(skeleton.num_joints)}

    def value(child, slot, parent_xy, link):
        xy, lp = cands[child]
        d = np.linalg.norm(parent_xy - xy[slot])
        v = np_log_normal(d, params[link, 0], params[link, 1]) + lp[slot]
        for link2, grandchild in children[child]:
            v += sum(value(grandchild, s2, xy[slot], link2)
                     for s2 in range(len(cands[grandchild][1])))
        return v

    root = skeleton.root
    xy, lp = cands[root]
    score = 0.0
    for h in range(len(lp)):
        score += lp[h]
        for link, child in children[root]:
            score += sum(value(child, s, xy[h], link) for s in range(len(cands[child][1])))
    return score


def random_case(rng, skeleton, batch=3, degenerate=True):
    """Noise maps (many untied maxima); image 0 gets an all-zero map and a single-bump map."""
    maps = rng.uniform(0.0, 3.0, (batch, SIZE, SIZE, skeleton.num_joints)).astype(np.float32)
    if degenerate:
        maps[0, ..., 1] = 0.0  # no maximum: falls back to the argmax (0, 0)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        maps[0, ..., 3] = 5 * np.exp(-((xx - 7.3) ** 2 + (yy - 8.6) ** 2) / 8.0)  # one maximum
    params = np.stack([rng.uniform(1.0, 10.0, (batch, skeleton.num_links)),
                       rng.uniform(-1.0, 3.0, (batch, skeleton.num_links))], -1)
    return maps, params.astype(np.float32)


def score(maps, params, skeleton, k, mode, **kw):
    kw.setdefault("min_distance", MIN_DISTANCE)
    return np.asarray(lk.score_heatmaps(maps, params, skeleton, num_peaks=k, mode=mode, **kw))


# ---------------------------------------------------------------------------------------------
# Candidates.

@pytest.mark.parametrize("k,min_distance,exclude_border", [(1, 2, True), (3, 2, False),
                                                           (5, 3, True), (4, 1, 2)])
def test_candidates_match_skimage_and_softmax(k, min_distance, exclude_border):
    rng = np.random.default_rng(k)
    maps, _ = random_case(rng, SMALL, batch=2)
    xy, valid, log_prob = jax.tree.map(np.asarray, lk.heatmap_candidates(
        maps, num_peaks=k, min_distance=min_distance, exclude_border=exclude_border))
    for b in range(2):
        cands = np_candidates(maps[b], k, min_distance, exclude_border)
        for j, (cxy, clp) in enumerate(cands):
            n = len(clp)
            assert valid[b, j].sum() == n and valid[b, j, :n].all()
            np.testing.assert_array_equal(xy[b, j, :n], cxy)  # both best first, no ties
            np.testing.assert_allclose(log_prob[b, j, :n], clp, rtol=1e-5, atol=1e-5)
            assert np.all(log_prob[b, j, n:] == 0)


def test_candidates_scale_min_distance_with_map_size():
    """VL4Pose's min_distance 8 (64x64 cells) with three bumps per joint: every bump is a
    candidate on 16x16 and 32x32 maps as on 64x64 ones; taken literally on a 16x16 map it
    leaves no interior and is refused."""
    rel = np.array([[0.25, 0.30], [0.70, 0.25], [0.45, 0.72]])
    for size in (16, 32, 64):
        xy = np.round(rel * (size - 1))
        yy, xx = np.mgrid[:size, :size]
        sigma = 1.75 * size / 16
        maps = np.max([a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
                       for a, (x, y) in zip((30.0, 29.0, 28.0), xy)], axis=0)
        maps = np.stack([maps, maps[::-1]], -1)[None].astype(np.float32)  # (1, S, S, 2)
        got_xy, valid, log_prob = jax.tree.map(np.asarray, lk.heatmap_candidates(
            maps, num_peaks=3, min_distance=8, reference_size=64))
        assert valid.all(), size
        np.testing.assert_array_equal(got_xy[0, 0], xy)
        np.testing.assert_array_equal(got_xy[0, 1], np.stack([xy[:, 0], size - 1 - xy[:, 1]], -1))
        np.testing.assert_allclose(log_prob[0, 0], np.log(scipy.special.softmax([30., 29., 28.])),
                                   rtol=1e-5)
    with pytest.raises(ValueError, match="min_distance=8"):
        lk.heatmap_candidates(maps[:, ::4, ::4], num_peaks=3, min_distance=8)


# ---------------------------------------------------------------------------------------------
# Exactness of the three modes and refinement.

@pytest.mark.parametrize("skeleton,k", [(SMALL, 1), (SMALL, 2), (SMALL, 3),
                                        (skeletons.lsp14, 2)])
def test_modes_match_enumeration_and_recursion(skeleton, k):
    rng = np.random.default_rng(10 + k + skeleton.num_joints)
    maps, params = random_case(rng, skeleton)
    got = {m: score(maps, params, skeleton, k, m) for m in lk.MODES}
    refined = np.asarray(lk.refine_pose(maps, params, skeleton, num_peaks=k,
                                        min_distance=MIN_DISTANCE))
    for b in range(len(maps)):
        cands = np_candidates(maps[b], k, MIN_DISTANCE, True)
        configs, total, prob = enumerate_configs(cands, params[b].astype(np.float64), skeleton)
        assert prob.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(got["expected_total"][b], np.sum(prob * total), rtol=1e-5,
                                   atol=1e-3)
        _, links, _ = enumerate_configs(cands, params[b].astype(np.float64), skeleton,
                                        links_only=True)
        np.testing.assert_allclose(got["expected"][b], np.sum(prob * links), rtol=1e-5,
                                   atol=1e-3)
        np.testing.assert_allclose(got["max"][b], total.max(), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(got["reference"][b], naive_reference(cands, params[b], skeleton),
                                   rtol=1e-5, atol=1e-3)
        # refine_pose: the chosen configuration attains the maximum, and is the argmax when unique.
        slots = [int(np.flatnonzero((cands[j][0] == refined[b, j]).all(-1))[0])
                 for j in range(skeleton.num_joints)]
        chosen = np.flatnonzero((configs == slots).all(-1))[0]
        assert total[chosen] == pytest.approx(total.max(), rel=1e-5, abs=1e-3)
        best, second = np.sort(total)[::-1][:2] if len(total) > 1 else (total[0], -np.inf)
        if best - second > 1e-2:
            np.testing.assert_array_equal(
                refined[b], np.array([cands[j][0][configs[total.argmax(), j]]
                                      for j in range(skeleton.num_joints)]))
    if k > 1:  # the modes really differ
        assert not np.allclose(got["expected"], got["max"])
        assert not np.allclose(got["expected"], got["expected_total"])
        assert not np.allclose(got["reference"], got["max"])


def test_single_peak_modes_agree_with_argmax_pose():
    rng = np.random.default_rng(3)
    skeleton = skeletons.lsp14
    batch, joints = 2, skeleton.num_joints
    true_xy = rng.uniform(4, SIZE - 5, (batch, joints, 2))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    maps = 30 * np.exp(-((xx[None, :, :, None] - true_xy[:, None, None, :, 0]) ** 2
                         + (yy[None, :, :, None] - true_xy[:, None, None, :, 1]) ** 2) / 6.0)
    maps = (maps + rng.uniform(0, 1, maps.shape)).astype(np.float32)
    _, params = random_case(rng, skeleton, batch, degenerate=False)
    argmax = np.stack(np.unravel_index(maps.reshape(batch, -1, joints).argmax(1), (SIZE, SIZE)),
                      -1)[..., ::-1].astype(np.float64)  # (B, J, 2) (x, y)
    d = np.linalg.norm(argmax[:, skeleton.link_child] - argmax[:, skeleton.link_parent], axis=-1)
    want = np_log_normal(d, params[..., 0], params[..., 1]).sum(-1)
    for mode in lk.MODES:
        np.testing.assert_allclose(score(maps, params, skeleton, 1, mode), want, rtol=1e-5)
    np.testing.assert_array_equal(
        lk.refine_pose(maps, params, skeleton, num_peaks=1, min_distance=MIN_DISTANCE), argmax)


def test_refinement_prefers_skeleton_consistent_peak():
    # Chain root -> mid -> tip on a 24x24 map; bones of length 6 with tight variance.
    chain = skeletons.Skeleton(("root", "mid", "tip"), ((0, 1), (1, 2)))
    yy, xx = np.mgrid[:24, :24]

    def bump(x, y, amp):
        return amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 3.0)

    maps = np.zeros((1, 24, 24, 3), np.float32)
    maps[0, ..., 0] = bump(6, 12, 30)
    maps[0, ..., 1] = bump(12, 12, 30) + bump(18, 5, 30.5)  # right place weaker, wrong one strong
    maps[0, ..., 2] = bump(18, 12, 30)
    params = np.array([[[6.0, -1.0], [6.0, -1.0]]], np.float32)
    naive = np.asarray(lk.refine_pose(maps, params, chain, num_peaks=1, min_distance=3))
    refined = np.asarray(lk.refine_pose(maps, params, chain, num_peaks=3, min_distance=3))
    np.testing.assert_array_equal(naive[0, 1], [18, 5])
    np.testing.assert_array_equal(refined[0], [[6, 12], [12, 12], [18, 12]])
    best = score(maps, params, chain, 3, "max", min_distance=3)
    assert best > score(maps, params, chain, 1, "max", min_distance=3)


# ---------------------------------------------------------------------------------------------
# Robustness, batching.

def test_finite_for_degenerate_and_extreme_inputs():
    skeleton = SMALL
    rng = np.random.default_rng(5)
    maps, _ = random_case(rng, skeleton, batch=3)
    maps[1] = 0.0  # all-zero image
    maps[2] = 7.0  # constant image
    params = np.array([[1e30, 1e30], [-1e30, -1e30], [0.0, 0.0], [3e19, -80.0], [5.0, 80.0]],
                      np.float32)[None].repeat(3, 0)
    for mode in lk.MODES:
        assert np.all(np.isfinite(score(maps, params, skeleton, 3, mode)))
    xy = np.asarray(lk.refine_pose(maps, params, skeleton, num_peaks=3, min_distance=2))
    assert np.all(xy[1] == 0)  # all-zero maps: the argmax fallback (0, 0)
    joints = rng.uniform(-1e20, 1e20, (3, skeleton.num_joints, 2)).astype(np.float32)
    vis = np.ones((3, skeleton.num_joints))
    for fn in (lk.heatmap_nll,):
        loss, grad = jax.value_and_grad(fn)(params, joints, vis, skeleton)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
    offsets = np.full((3, skeleton.num_links, 3), 1e25, np.float32)
    factor = np.tile(np.array([[0.0, 0, 0], [1e30, -5, 0], [-1e30, 1e30, 1e-38]], np.float32),
                     (3, skeleton.num_links, 1, 1))
    joints3 = np.zeros((3, skeleton.num_joints, 3), np.float32)
    loss, grads = jax.value_and_grad(lk.regression_nll, (0, 1))(offsets, factor, joints3, vis,
                                                               skeleton)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
    assert np.all(np.isfinite(lk.score_regression(joints3, offsets, factor, skeleton)))


def test_leading_axes_and_vmap():
    rng = np.random.default_rng(6)
    maps, params = random_case(rng, SMALL, batch=3)  # batched call reuses a compiled shape
    batched = score(maps, params, SMALL, 2, "max")
    vmapped = jax.vmap(lambda h, p: lk.score_heatmaps(h, p, SMALL, num_peaks=2, mode="max",
                                                      min_distance=MIN_DISTANCE))(maps, params)
    np.testing.assert_allclose(vmapped, batched, rtol=1e-6)
    grid = score(maps[:, None], params[:, None], SMALL, 2, "max")
    np.testing.assert_allclose(grid.reshape(-1), batched, rtol=1e-6)
    with pytest.raises(ValueError):
        score(maps, params, SMALL, 2, "mean")


# ---------------------------------------------------------------------------------------------
# Training losses.

def central_difference_check(fn, x, rng, eps=1e-3, directions=4):
    grad = np.asarray(jax.grad(fn)(x), np.float64)
    for _ in range(directions):
        v = rng.normal(size=x.shape).astype(np.float32)
        fd = (float(fn(x + eps * v)) - float(fn(x - eps * v))) / (2 * eps)
        assert fd == pytest.approx(float(np.sum(grad * v)), rel=2e-2, abs=2e-3)
    return grad


def test_heatmap_nll_value_gradient_and_minimum():
    rng = np.random.default_rng(7)
    skeleton = skeletons.lsp14
    joints = rng.uniform(0, 64, (4, 14, 2)).astype(np.float32)
    visible = rng.uniform(size=(4, 14)) > 0.2
    joints[~visible] = np.nan  # invisible joints may carry garbage
    params = np.stack([rng.uniform(5, 30, (4, 13)), rng.uniform(-1, 4, (4, 13))],
                      -1).astype(np.float32)
    d = np.linalg.norm(joints[:, skeleton.link_child] - joints[:, skeleton.link_parent], axis=-1)
    mask = visible[:, skeleton.link_child] & visible[:, skeleton.link_parent]
    sb = np_bound(params[..., 1])
    per_link = 0.5 * np.exp(-sb) * (params[..., 0] - d) ** 2 + 0.5 * sb
    want = per_link[mask].mean()
    loss_fn = lambda p: lk.heatmap_nll(p, joints, visible, skeleton)  # noqa: E731
    assert float(loss_fn(params)) == pytest.approx(want, rel=1e-5)
    grad = central_difference_check(loss_fn, params, rng)
    assert np.all(grad[~mask] == 0)
    # Minimised at the true bone lengths (for any s) and at s = log (mu - d)^2 (inside the bound).
    true = params.copy()
    true[..., 0] = np.where(mask, d, 10.0)
    g_true = np.asarray(jax.grad(loss_fn)(true))
    np.testing.assert_allclose(g_true[..., 0], 0.0, atol=1e-6)
    for delta in (-0.5, 0.5):
        assert float(loss_fn(true)) < float(loss_fn(true + np.array([delta, 0], np.float32)))
    resid = params.copy()
    resid[..., 1] = np.log(np.maximum((params[..., 0] - np.where(mask, d, 0)) ** 2, 1e-2))
    resid[..., 1] = np.clip(resid[..., 1], -4, 4)
    g_s = np.asarray(jax.grad(loss_fn)(resid))[..., 1]
    inside = mask & (np.abs(resid[..., 1]) < 4)
    assert np.abs(g_s[inside]).max() < 0.02 / mask.sum()


def test_regression_nll_and_score():
    rng = np.random.default_rng(8)
    skeleton = skeletons.icvl16
    batch, joints_n, links_n = 2, skeleton.num_joints, skeleton.num_links
    joints = rng.normal(0, 3, (batch, joints_n, 3)).astype(np.float32)
    visible = np.ones((batch, joints_n), bool)
    visible[1, 5] = False
    offsets = rng.normal(0, 1, (batch, links_n, 3)).astype(np.float32)
    factor = np.tril(rng.normal(0, 0.3, (batch, links_n, 3, 3)), -1)
    factor += np.eye(3) * rng.uniform(0.5, 2.0, (batch, links_n, 1, 3))
    factor += np.triu(np.full((3, 3), 99.0), 1)  # the upper triangle must be ignored
    factor = factor.astype(np.float32)
    lower = np.tril(factor.astype(np.float64))  # diagonal bounded as the module documents:
    diag = np.exp(0.5 * np_bound(2 * np.log(np.diagonal(lower, axis1=-2, axis2=-1))))
    lower[..., np.arange(3), np.arange(3)] = diag
    resid = joints[:, skeleton.link_child] - joints[:, skeleton.link_parent] - offsets
    logpdf = np.array([[scipy.stats.multivariate_normal(np.zeros(3), lower[b, k] @ lower[b, k].T)
                        .logpdf(resid[b, k]) for k in range(links_n)] for b in range(batch)])
    np.testing.assert_allclose(lk.score_regression(joints, offsets, factor, skeleton),
                               logpdf.sum(-1), rtol=1e-5)
    mask = visible[:, skeleton.link_child] & visible[:, skeleton.link_parent]
    want = -(logpdf + 1.5 * math.log(2 * math.pi))[mask].mean()
    loss_fn = lambda o: lk.regression_nll(o, factor, joints, visible, skeleton)  # noqa: E731
    assert float(loss_fn(offsets)) == pytest.approx(want, rel=1e-5)
    central_difference_check(loss_fn, offsets, rng)
    central_difference_check(lambda f: lk.regression_nll(offsets, f, joints, visible, skeleton),
                             factor, rng)
    # Minimised at the true offsets.
    true = (joints[:, skeleton.link_child] - joints[:, skeleton.link_parent]).astype(np.float32)
    np.testing.assert_allclose(jax.grad(loss_fn)(true), 0.0, atol=1e-5)
    for _ in range(3):
        assert float(loss_fn(true)) < float(loss_fn(true + rng.normal(0, 0.1, true.shape)
                                                    .astype(np.float32)))


def test_log_var_bound_is_smooth_monotone_and_bounded():
    s = np.array([-1e30, -1e4, -30, -10, -3, 0, 3, 10, 30, 1e4, 1e30], np.float32)
    sb = np.asarray(lk.bound_log_var(s))
    # (the naive float64 formula itself cancels to 0 at 1e30, which the module's form avoids)
    np.testing.assert_allclose(sb[1:-1], np_bound(s[1:-1]), atol=1e-5)
    assert np.all(np.diff(sb) >= 0) and sb[0] == lk.LOG_VAR_MIN and sb[-1] == lk.LOG_VAR_MAX
    grad = np.asarray(jax.vmap(jax.grad(lk.bound_log_var))(s))
    assert np.all(np.isfinite(grad)) and np.all(grad >= 0) and grad[5] == pytest.approx(1, abs=1e-4)
