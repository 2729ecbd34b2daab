"""Acquisition functions: selection contract, k-center greedy vs a float64 brute force, CKE(eta=0)
= Core-Set, hand-computed multi-peak entropy and aleatoric scores, VL4Pose ranking, EGL++
per-sample gradients, every registered method end to end on a micro model and pool, and
data-parallel scoring over 4 forced host devices (in a subprocess)."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vl4pose_jax import acquisition, heatmaps, likelihood, models, skeletons, train
from vl4pose_jax.acquisition import common, egl, multipeak_entropy

HUMAN = skeletons.lsp14
HAND = skeletons.icvl16
INPUT = 32
BATCH = 4
N_RECORDS = 14
LABELLED = np.array([1, 5, 9, 12])
POOL = np.setdiff1d(np.arange(N_RECORDS), LABELLED)
BUDGET = 3


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def human():
    model = models.StackedHourglass(num_joints=HUMAN.num_joints, num_stacks=1, channels=16,
                                    depth=1)
    rng = np.random.default_rng(0)
    images = rng.random((N_RECORDS, INPUT, INPUT, 3), np.float32)
    base = train.init_heatmap_state(model, None, jax.random.key(0), INPUT, optax.adam(1e-3))
    features = model.apply({"params": base.params, "batch_stats": base.batch_stats},
                           jnp.zeros((1, INPUT, INPUT, 3)), train=False)
    auxes, states = {None: None}, {None: base}
    for head in ("vl4pose_heatmap", "aleatoric", "learning_loss"):
        auxes[head] = models.AuxNet(head=head, num_links=HUMAN.num_links,
                                    num_joints=HUMAN.num_joints, pooling="avg", fc=(16,))
        states[head] = base.replace(aux_params=auxes[head].init(jax.random.key(1), features)["params"])
    return model, auxes, states, acquisition.array_batches({"image": images}, BATCH)


@pytest.fixture(scope="module")
def hand():
    model = models.DeepPrior(num_joints=HAND.num_joints, dropout="C", aleatoric=True, dense=32)
    rng = np.random.default_rng(1)
    depth = rng.uniform(-1, 1, (N_RECORDS, INPUT, INPUT, 1)).astype(np.float32)
    auxes = {None: None}
    for head in ("vl4pose_regression", "learning_loss"):
        auxes[head] = models.AuxNet(head=head, num_links=HAND.num_links, pooling="vector",
                                    fc=(16,))
    tx = optax.adam(1e-3)
    states = {head: train.init_regression_state(model, aux, jax.random.key(0), INPUT, tx, tx)
              for head, aux in auxes.items()}
    return model, auxes, states, acquisition.array_batches({"depth": depth}, BATCH)


def make_ctx(setup, task, head=None, *, key=0, budget=BUDGET, pool=POOL, labelled=LABELLED):
    model, auxes, states, batches = setup
    return acquisition.Context(
        task=task, model=model, aux=auxes[head], state=states[head], batches=batches,
        labelled=labelled, pool=pool, budget=budget, key=jax.random.key(key),
        skeleton=HUMAN if task == "heatmap" else HAND, progress=False)


def check_selection(sel, ctx):
    n = min(ctx.budget, len(ctx.pool))
    assert sel.indices.dtype == np.int64 and sel.indices.shape == (n,)
    assert len(np.unique(sel.indices)) == n
    assert np.all(np.isin(sel.indices, ctx.pool))
    assert not np.any(np.isin(sel.indices, ctx.labelled))
    if sel.scores is not None:
        assert len(sel.scores) == len(sel.scored_indices)
        assert np.all(np.isin(sel.scored_indices, ctx.pool))


# ----------------------------------------------------------------------- k-center greedy

def kcenter_brute_force(pool, centres, budget, first=None, pool_ub=None, centres_ub=None):
    """float64 numpy: full distance matrices, the textbook loop (CKE rule with upper bounds)."""
    pool, centres = pool.astype(np.float64), centres.astype(np.float64)
    pool_ub = pool if pool_ub is None else pool_ub.astype(np.float64)
    centres_ub = centres if centres_ub is None else centres_ub.astype(np.float64)
    n = len(pool)
    if len(centres):
        d = np.linalg.norm(pool[:, None] - centres[None], axis=-1)
        j = np.argmin(d, axis=1)
        min_lb = d[np.arange(n), j]
        dist = np.linalg.norm(pool_ub - centres_ub[j], axis=-1)
    else:
        min_lb = dist = np.full(n, np.inf)
    picks, taken = [], np.zeros(n, bool)
    for t in range(budget):
        b = first if (t == 0 and first is not None) else int(np.argmax(np.where(taken, -np.inf, dist)))
        picks.append(b)
        taken[b] = True
        d_lb = np.linalg.norm(pool - pool[b], axis=-1)
        d_ub = np.linalg.norm(pool_ub - pool_ub[b], axis=-1)
        better = d_lb < min_lb
        min_lb = np.where(better, d_lb, min_lb)
        dist = np.where(better, d_ub, dist)
    return np.array(picks)


@pytest.mark.parametrize("n,m,d,budget,block", [(300, 7, 5, 40, 1 << 22), (257, 33, 16, 50, 300),
                                                (50, 3, 4, 50, 1 << 22)])
def test_kcenter_greedy_matches_float64_brute_force(n, m, d, budget, block):
    rng = np.random.default_rng(n)
    pool = rng.normal(size=(n, d)).astype(np.float32)
    centres = rng.normal(size=(m, d)).astype(np.float32)
    picks, dist = acquisition.kcenter_greedy(pool, centres, budget, block_elements=block)
    np.testing.assert_array_equal(picks, kcenter_brute_force(pool, centres, budget))
    ref = np.linalg.norm(pool[:, None].astype(np.float64) - centres[None], axis=-1).min(1)
    np.testing.assert_allclose(dist, ref, rtol=1e-5)


def test_kcenter_greedy_without_centres_and_cke_rule():
    rng = np.random.default_rng(3)
    pool = rng.normal(size=(120, 6)).astype(np.float32)
    key = jax.random.key(4)
    picks, _ = acquisition.kcenter_greedy(pool, np.zeros((0, 6), np.float32), 20, key=key)
    first = int(jax.random.randint(key, (), 0, 120))
    np.testing.assert_array_equal(picks, kcenter_brute_force(pool, np.zeros((0, 6)), 20, first))
    # CKE's Algorithm 1: nearest centre by lower bounds, distance by upper bounds.
    centres = rng.normal(size=(9, 6)).astype(np.float32)
    sd_p, sd_c = rng.random((120, 6)).astype(np.float32), rng.random((9, 6)).astype(np.float32)
    args = (pool - 0.3 * sd_p, centres - 0.3 * sd_c, pool + 0.3 * sd_p, centres + 0.3 * sd_c)
    picks, _ = acquisition.kcenter_greedy(args[0], args[1], 25, pool_upper=args[2],
                                          centre_upper=args[3], block_elements=200)
    np.testing.assert_array_equal(picks, kcenter_brute_force(args[0], args[1], 25, None,
                                                             args[2], args[3]))


def test_top_budget_ties_by_index_and_nan_last():
    scores = np.array([1.0, 3.0, np.nan, 3.0, 2.0])
    idx = np.array([10, 4, 2, 3, 7])
    np.testing.assert_array_equal(common.top_budget(scores, idx, 4), [3, 4, 7, 10])
    np.testing.assert_array_equal(common.top_budget(scores, idx, 5, highest=False), [10, 7, 3, 4, 2])


# ------------------------------------------------------------------- hand-computed scores

def test_multipeak_entropy_hand_computed():
    maps = np.zeros((1, 16, 16, 3), np.float32)
    maps[0, 4, 4, 0], maps[0, 11, 11, 0] = 30.0, 10.0   # joint 0: peaks 30 and 10
    maps[0, 7, 7, 1] = 25.0                              # joint 1: one peak -> H = 0
    maps[0, 3, 3, 2] = maps[0, 12, 3, 2] = maps[0, 3, 12, 2] = 5.0  # joint 2: three equal
    kw = dict(num_peaks=5, min_distance=2, exclude_border=False)
    h = float(multipeak_entropy.entropy(maps, **kw)[0])
    h0 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert h == pytest.approx(h0 + math.log(3), rel=1e-5)
    hm_mean = float(multipeak_entropy.entropy(maps, reduce="mean", **kw)[0])
    assert hm_mean == pytest.approx((h0 + math.log(3)) / 3, rel=1e-5)
    hs = float(multipeak_entropy.entropy(maps, normalise="softmax", **kw)[0])
    q = 1.0 / (1.0 + math.exp(-20.0))  # softmax([30, 10]) is nearly one-hot
    assert hs == pytest.approx(-(q * math.log(q) + (1 - q) * math.log(1 - q)) + math.log(3), rel=1e-4)


class _EchoHourglass(nn.Module):
    """Heatmaps = the input itself (one stack); penultimate = per-joint mean."""
    @nn.compact
    def __call__(self, images, train):
        del train
        return {"heatmaps": images[:, None], "penultimate": images.mean(axis=(1, 2)),
                "hourglass": images, "inner": ()}


class _EchoAleatoric(nn.Module):
    head: str = "aleatoric"

    @nn.compact
    def __call__(self, features):
        return {"log_var_BxJ": features["penultimate"]}


def test_aleatoric_scores_hand_computed():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(10, 4)).astype(np.float32)          # per-image, per-joint log-var
    images = np.broadcast_to(values[:, None, None, :], (10, 8, 8, 4)).copy()
    state = train.TrainState(step=jnp.zeros(()), params={}, batch_stats={}, opt_state=(),
                             rng=jax.random.key(0), aux_params={})
    ctx = acquisition.Context(task="heatmap", model=_EchoHourglass(), aux=_EchoAleatoric(),
                              state=state, batches=acquisition.array_batches({"image": images}, 3),
                              labelled=[0, 1], pool=np.arange(2, 10), budget=3,
                              key=jax.random.key(0), progress=False)
    sel = acquisition.select("aleatoric", ctx)
    expected = values.mean(axis=1)
    np.testing.assert_array_equal(sel.scored_indices, np.arange(2, 10))
    np.testing.assert_allclose(sel.scores, expected[2:], rtol=1e-5)
    np.testing.assert_array_equal(sel.indices, 2 + np.argsort(-expected[2:], kind="stable")[:3])


# Three bumps per joint at the same relative positions on maps of every size (issue 11).
BUMPS_REL = np.array([[[0.25, 0.30], [0.70, 0.25], [0.45, 0.72]],
                      [[0.30, 0.70], [0.72, 0.65], [0.50, 0.28]],
                      [[0.20, 0.50], [0.55, 0.45], [0.80, 0.78]]])


def bump_maps(size, amplitudes):
    """(2, size, size, 3) maps, image b: joint j has Gaussian bumps (sigma 1.75 x size/16) of
    heights `amplitudes[b, j]` at integer cells (their peak values) BUMPS_REL x (size - 1); also
    returns those cells (2, 3, 3, 2) as (x, y)."""
    amplitudes = np.asarray(amplitudes, np.float32)
    maps = np.zeros((2, size, size, 3), np.float32)
    cells = np.zeros((2, 3, 3, 2))
    for b in range(2):
        for j in range(3):
            xy = np.round(np.roll(BUMPS_REL[j], b, axis=0) * (size - 1))
            cells[b, j] = xy
            one, _ = heatmaps.gaussian_targets(xy, np.ones(3), size, size,
                                               sigma=heatmaps.DEFAULT_SIGMA * size / 16)
            maps[b, ..., j] = np.max(np.asarray(one) / heatmaps.DEFAULT_PEAK
                                     * amplitudes[b, j], axis=-1)
    return maps, cells


def echo_ctx(maps, aux=None, skeleton=None, budget=1):
    state = train.TrainState(step=jnp.zeros(()), params={}, batch_stats={}, opt_state=(),
                             rng=jax.random.key(0), aux_params={})
    return acquisition.Context(task="heatmap", model=_EchoHourglass(), aux=aux, state=state,
                               batches=acquisition.array_batches({"image": maps}, 2),
                               labelled=[], pool=np.arange(len(maps)), budget=budget,
                               key=jax.random.key(0), skeleton=skeleton, progress=False)


def test_multipeak_entropy_scales_with_heatmap_size():
    """min_distance 5 / border 5 are 64x64 cells: on 16x16 and 32x32 maps the three bumps of
    every joint are found and the entropy equals the 64x64 value (it was ~0 on 16x16 maps)."""
    amplitudes = np.broadcast_to(np.array([30.0, 20.0, 12.0]), (2, 3, 3))
    p = np.array([30.0, 20.0, 12.0]) / 62.0
    h_expected = 3 * -np.sum(p * np.log(p))   # three joints, three peaks each
    for size in (16, 32, 64):
        maps, _ = bump_maps(size, amplitudes)
        sel = acquisition.select("multipeak_entropy", echo_ctx(maps))
        np.testing.assert_allclose(sel.scores, [h_expected] * 2, rtol=1e-4, err_msg=str(size))


class _EchoLinks(nn.Module):
    """The VL4Pose head: fixed link Gaussians (mean 6 x size/16 cells, log-variance 1)."""
    head: str = "vl4pose_heatmap"

    @nn.compact
    def __call__(self, features):
        batch, size = features["hourglass"].shape[:2]
        params = jnp.array([[6.0 * size / 16, 1.0], [4.0 * size / 16, 1.5]])
        return {"link_params_BxLx2": jnp.broadcast_to(params, (batch, 2, 2))}


def test_vl4pose_multi_peak_finds_interior_peaks_on_small_maps():
    """num_peaks=3 with the default min_distance 8 (64x64 cells) on 16x16 and 32x32 maps: the
    candidates are the three bumps of every joint, and the 'expected' score equals a float64
    enumeration over them (E over independent draws y_j ~ softmax(peak values) of
    sum_links log N(|y_c - y_p|; mu, e^s))."""
    chain = skeletons.Skeleton(names=("a", "b", "c"), links=((0, 1), (1, 2)), name="chain3")
    amplitudes = np.array([[[30.0, 29.5, 29.0], [30.0, 29.0, 28.5], [29.8, 29.6, 29.0]],
                           [[30.0, 28.0, 27.0], [29.0, 30.0, 29.5], [30.0, 29.9, 29.8]]])
    for size in (16, 32):
        maps, cells = bump_maps(size, amplitudes)
        sel = acquisition.select("vl4pose", echo_ctx(maps, _EchoLinks(), chain), num_peaks=3,
                                 mode="expected")
        mu = np.array([6.0, 4.0]) * size / 16
        s = np.asarray(likelihood.bound_log_var(np.array([1.0, 1.5], np.float32)), np.float64)
        expected = []
        for b in range(2):
            v = amplitudes[b].astype(np.float64)
            p = np.exp(v - v.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            total = 0.0
            for y in np.ndindex(3, 3, 3):
                ll = 0.0
                for k, (a, c) in enumerate(chain.links):
                    d = np.linalg.norm(cells[b, a, y[a]] - cells[b, c, y[c]])
                    ll += -0.5 * (np.log(2 * np.pi) + s[k] + (mu[k] - d) ** 2 * np.exp(-s[k]))
                total += p[0, y[0]] * p[1, y[1]] * p[2, y[2]] * ll
            expected.append(total)
        np.testing.assert_allclose(-sel.scores, expected, rtol=1e-4, err_msg=str(size))


def test_vl4pose_selects_lowest_likelihood(human):
    ctx = make_ctx(human, "heatmap", "vl4pose_heatmap", budget=4)
    sel = acquisition.select("vl4pose", ctx)
    model, auxes, states, batches = human
    images = np.concatenate([b["image"] for b in batches(POOL)])
    out = train.make_heatmap_predict(model, auxes["vl4pose_heatmap"])(states["vl4pose_heatmap"], images)
    ll = np.asarray(likelihood.score_heatmaps(out["heatmaps_BxHxWxJ"], out["link_params_BxLx2"],
                                              HUMAN, num_peaks=1, mode="reference",
                                              reference_size=64))
    np.testing.assert_allclose(-sel.scores, ll, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(sel.indices, POOL[np.argsort(ll, kind="stable")[:4]])


# ---------------------------------------------------------------------------- EGL++ gradients

def test_egl_per_sample_gradients_equal_one_at_a_time(human):
    model, _, states, _ = human
    state = states[None]
    var = {"params": state.params, "batch_stats": state.batch_stats}
    rng = np.random.default_rng(6)
    image = jnp.asarray(rng.random((INPUT, INPUT, 3), np.float32))
    targets = jnp.asarray(rng.normal(size=(3, 1, 8, 8, HUMAN.num_joints)).astype(np.float32))

    def loss(params, t):
        pred = model.apply({"params": params, "batch_stats": state.batch_stats}, image[None],
                           train=False)["heatmaps"][0]
        return jnp.mean((pred - t) ** 2)

    grad = jax.jit(jax.grad(loss))
    for batchnorm in (True, False):
        fast = np.asarray(jax.jit(lambda v, x, t: egl.grad_sq_norms(
            model, v, x, t, batchnorm=batchnorm, chunk=2))(var, image, targets))
        for k in range(3):
            g = grad(state.params, targets[k])
            flat = jax.tree_util.tree_flatten_with_path(g)[0]
            ref = sum(float(jnp.sum(x ** 2)) for path, x in flat
                      if batchnorm or not any("BatchNorm" in str(p) for p in path))
            assert fast[k] == pytest.approx(ref, rel=1e-4)


def test_egl_perplexity_one_log_base():
    rng = np.random.default_rng(7)
    d2 = rng.random((5, 200)).astype(np.float32) * 10
    for mixed, target in ((False, math.log(20.0)), (True, math.log2(20.0))):
        p = np.asarray(egl.conditional_probabilities(d2, 20.0, mixed_bases=mixed), np.float64)
        h = -np.sum(p * np.log(np.maximum(p, 1e-30)), axis=1)
        np.testing.assert_allclose(h, target, atol=1e-3)
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------- CKE and Core-Set

def test_cke_with_eta_zero_equals_coreset(hand):
    ctx = make_ctx(hand, "regression", budget=5)
    core = acquisition.select("coreset", ctx, mc_samples=4)
    for variant in ("paper", "reference"):
        cke = acquisition.select("cke", ctx, eta=0.0, num_samples=4, variant=variant)
        np.testing.assert_array_equal(cke.indices, core.indices)
    widened = acquisition.select("cke", ctx, num_samples=4)
    check_selection(widened, ctx)


# ---------------------------------------------------------------------- every method, e2e

HUMAN_HEADS = {"vl4pose": "vl4pose_heatmap", "aleatoric": "aleatoric",
               "learning_loss": "learning_loss"}
HAND_HEADS = {"vl4pose": "vl4pose_regression", "learning_loss": "learning_loss"}
FAST_OPTIONS = {"mc_dropout": dict(num_samples=4, chunk=2), "cke": dict(num_samples=4),
                "egl": dict(k=3, chunk=2), "coregcn": dict(steps=20), "uncertaingcn": dict(steps=20),
                "coreset": {}}


@pytest.mark.parametrize("name", acquisition.names())
def test_every_method_end_to_end(name, human, hand):
    method = acquisition.get(name)
    ran = False
    for task, setup, heads in (("heatmap", human, HUMAN_HEADS), ("regression", hand, HAND_HEADS)):
        if task not in method.tasks:
            continue
        assert method.aux_head(task) == heads.get(name)
        opts = dict(FAST_OPTIONS.get(name, {}))
        if name == "coreset" and task == "regression":
            opts["mc_samples"] = 4
        ctx = make_ctx(setup, task, heads.get(name))
        first = acquisition.select(name, ctx, **opts)
        check_selection(first, ctx)
        again = acquisition.select(name, ctx, **opts)
        np.testing.assert_array_equal(first.indices, again.indices)
        ran = True
    assert ran


def test_budget_beyond_pool_and_pre_subset(human):
    ctx = make_ctx(human, "heatmap", budget=50)
    sel = acquisition.select("coreset", ctx)
    assert sorted(sel.indices) == list(POOL)
    ctx = make_ctx(human, "heatmap", budget=2)
    sub = acquisition.select("coreset", ctx, pre_subset=0.5)
    check_selection(sub, ctx)
    assert len(sub.scored_indices) == round(0.5 * len(POOL))
    again = acquisition.select("coreset", ctx, pre_subset=0.5)
    np.testing.assert_array_equal(sub.scored_indices, again.scored_indices)
    np.testing.assert_array_equal(sub.indices, again.indices)
    rnd = acquisition.select("random", ctx, pre_subset=4)
    assert np.all(np.isin(rnd.indices, common.random_subset(ctx, 4)))


def test_registry_and_validation(human):
    assert {"random", "coreset", "learning_loss", "egl", "aleatoric", "multipeak_entropy",
            "vl4pose", "mc_dropout", "cke", "coregcn", "uncertaingcn"} <= set(acquisition.names())
    ctx = make_ctx(human, "heatmap")
    with pytest.raises(ValueError):
        acquisition.select("vl4pose", ctx)              # no aux head
    with pytest.raises(ValueError):
        acquisition.select("mc_dropout", ctx)           # regression only
    with pytest.raises(ValueError):
        acquisition.select("random", make_ctx(human, "heatmap", pool=np.array([1, 2, 3])))
    with pytest.raises(KeyError):
        acquisition.get("nope")


_MULTI_DEVICE_SCRIPT = r"""
import flax.linen as nn, jax, jax.numpy as jnp, numpy as np
from vl4pose_jax import acquisition, train
assert len(jax.devices()) == 4
class Echo(nn.Module):
    @nn.compact
    def __call__(self, images, train):
        return {"heatmaps": images[:, None], "penultimate": images.mean(axis=(1, 2))}
class Aux(nn.Module):
    head: str = "aleatoric"
    @nn.compact
    def __call__(self, f):
        return {"log_var_BxJ": f["penultimate"]}
values = np.random.default_rng(5).normal(size=(10, 4)).astype(np.float32)
images = np.broadcast_to(values[:, None, None, :], (10, 8, 8, 4)).copy()
state = train.TrainState(step=jnp.zeros(()), params={}, batch_stats={}, opt_state=(),
                         rng=jax.random.key(0), aux_params={})
ctx = acquisition.Context(task="heatmap", model=Echo(), aux=Aux(), state=state,
                          batches=acquisition.array_batches({"image": images}, 3),
                          labelled=[0, 1], pool=np.arange(2, 10), budget=3,
                          key=jax.random.key(0), progress=False)
sel = acquisition.select("aleatoric", ctx)
np.testing.assert_allclose(sel.scores, values.mean(1)[2:], rtol=1e-5)
np.testing.assert_array_equal(sel.indices, 2 + np.argsort(-values.mean(1)[2:], kind="stable")[:3])
print("OK")
"""


def test_scoring_is_data_parallel_over_four_host_devices():
    """Batches of 3 padded to 4 and sharded over a 4-device Mesh give the single-device result."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _MULTI_DEVICE_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
