"""Tests for vl4pose_jax.models: shapes (tiny configs), paper parameter counts (shapes only, the
big models are never run), PyTorch-style init, BatchNorm modes, aux-net gradient isolation and
MC dropout.

XLA on CPU compiles random-number code slowly (the tiny hourglass's `init` alone takes 10-15 s
of compilation), so the runtime tests fill variables from numpy (`_numpy_variables`) and check
the real initialisers on single layers.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from vl4pose_jax.models import (PRESETS, AuxNet, DeepPrior, StackedHourglass, count_params,
                                mc_predict)
from vl4pose_jax.models.auxnet import ConvFusion
from vl4pose_jax.models.hourglass import Residual, torch_conv, torch_dense

J = 14
LINKS = 13
TINY = PRESETS['tiny']


def _uniform(shape, seed, low=-1.0, high=1.0):
    """Test inputs from numpy (jax.random would compile RNG code, slow on CPU)."""
    return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape), jnp.float32)


def _normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _relu(x):
    return np.maximum(x, 0)


def _numpy_variables(module, *args, seed=0, **kwargs):
    """Variables shaped as `module.init(key, *args, **kwargs)`, filled without jax RNG: kernels
    U(+-1/sqrt(fan_in)), biases U(+-0.5), BatchNorm scale and running var 1, running mean 0."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ('scale', 'var'):
            return jnp.ones(leaf.shape, leaf.dtype)
        if name == 'mean':
            return jnp.zeros(leaf.shape, leaf.dtype)
        bound = 1 / math.sqrt(math.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 0.5
        return jnp.asarray(rng.uniform(-bound, bound, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.cache
def _paper_hourglass_shapes(num_joints):
    """Param shapes and output shapes of the paper hourglass, via eval_shape only."""
    model = StackedHourglass(num_joints, **PRESETS['paper'].kwargs)
    size = PRESETS['paper'].input_size
    images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), images)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    return variables, out


@pytest.mark.parametrize('num_joints, expected', [(14, 6_568_860), (16, 6_570_400)])
def test_hourglass_paper_param_count_and_shapes(num_joints, expected):
    variables, out = _paper_hourglass_shapes(num_joints)
    assert count_params(variables) == expected
    assert out['heatmaps'].shape == (1, 2, 64, 64, num_joints)
    assert out['hourglass'].shape == (1, 64, 64, 256)
    assert [m.shape[1] for m in out['inner']] == [32, 16, 8, 4]
    assert out['penultimate'].shape == (1, 256)


@pytest.mark.parametrize('kwargs, expected', [
    (dict(head='learning_loss'), 2_142_209),
    (dict(head='aleatoric', num_joints=14), 2_142_430),
    (dict(head='aleatoric', num_joints=16), 2_142_464),
    (dict(head='vl4pose_heatmap', num_links=13), 2_142_634),
    (dict(head='vl4pose_heatmap', num_links=15), 2_142_702),
])
def test_auxnet_paper_param_counts(kwargs, expected):
    _, features = _paper_hourglass_shapes(J)
    fusion = jax.eval_shape(
        lambda f: ConvFusion().init(jax.random.PRNGKey(0), f['hourglass'], f['inner']), features)
    assert count_params(fusion) == 2_098_432
    aux = jax.eval_shape(lambda f: AuxNet(**kwargs).init(jax.random.PRNGKey(0), f), features)
    assert count_params(aux) == expected


@pytest.mark.parametrize('aleatoric, expected', [(False, 8_802_735), (True, 8_867_310)])
def test_deepprior_param_count(aleatoric, expected):
    model = DeepPrior(21, dropout='A' if aleatoric else None, aleatoric=aleatoric)
    depth = jax.ShapeDtypeStruct((1, 128, 128, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), depth)
    assert count_params(variables) == expected
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, depth)
    assert out['pose_BxJx3'].shape == (1, 21, 3)
    if aleatoric:
        assert out['log_var_BxJx3'].shape == (1, 21, 3)
    else:
        assert 'log_var_BxJx3' not in out
    assert out['embedding_BxD'].shape == (1, 1024)


# ---- tiny hourglass, run for real -------------------------------------------------------------

_RECORDED = ('stem_res3', 'merge_preds_0', 'merge_features_0', 'hourglass_1', 'features_conv_1')


@pytest.fixture(scope='module')
def tiny_hourglass():
    """Tiny hourglass variables, eval outputs, the batch stats an eval pass leaves behind, and the
    (input, output) of the top-level blocks named in `_RECORDED` (via a Flax method interceptor)."""
    model = StackedHourglass(J, **TINY.kwargs)
    images = _uniform((2, TINY.input_size, TINY.input_size, 3), seed=1, low=0)
    variables = _numpy_variables(model, images, train=False)

    def eval_pass(variables, images):
        recorded = {}

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == '__call__' and context.module.name in _RECORDED:
                recorded[context.module.name] = (args[0], out)
            return out

        with nn.intercept_methods(record):
            out, state = model.apply(variables, images, train=False, mutable=['batch_stats'])
        return out, state['batch_stats'], recorded

    out, stats, recorded = jax.jit(eval_pass)(variables, images)
    return dict(model=model, variables=variables, images=images, out=out, stats_after_eval=stats,
                recorded=recorded)


@pytest.fixture(scope='module')
def train_step(tiny_hourglass):
    """One train-mode pass of hourglass + aux nets (conv and avg pooling on the hourglass, vector
    pooling on a DeepPrior embedding), with gradients of a loss on the aux outputs only."""
    model, variables, images = (tiny_hourglass[k] for k in ('model', 'variables', 'images'))
    features = tiny_hourglass['out']
    deepprior = DeepPrior(J, dense=16)
    depth = _uniform((2, 32, 32, 1), seed=3)
    dp_params = _numpy_variables(deepprior, depth, seed=1)['params']
    auxes = (AuxNet('vl4pose_heatmap', num_links=LINKS),
             AuxNet('aleatoric', num_joints=J, pooling='avg'),
             AuxNet('learning_loss', pooling='vector'))
    aux_inputs = (features, features, jnp.ones((2, 16)))
    aux_params = tuple(_numpy_variables(a, f, seed=2 + i)['params']
                       for i, (a, f) in enumerate(zip(auxes, aux_inputs)))

    def loss(hg_params, dp_params, aux_params):
        feats, updates = model.apply({'params': hg_params, 'batch_stats': variables['batch_stats']},
                                     images, train=True, mutable=['batch_stats'])
        embedding = deepprior.apply({'params': dp_params}, depth)['embedding_BxD']
        total = 0.0
        for aux, params, f in zip(auxes, aux_params, (feats, feats, embedding)):
            outputs = aux.apply({'params': params}, f)
            total += sum(jnp.sum(jnp.sin(v)) for v in jax.tree.leaves(outputs))
        return total, (feats, updates['batch_stats'])

    grads, (feats, batch_stats) = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(
        variables['params'], dp_params, aux_params)
    return grads, feats, batch_stats


def test_hourglass_tiny_shapes(tiny_hourglass):
    out = tiny_hourglass['out']
    h, C = TINY.heatmap_size, TINY.kwargs['channels']
    assert out['heatmaps'].shape == (2, TINY.kwargs['num_stacks'], h, h, J)
    assert out['hourglass'].shape == (2, h, h, C)
    assert [m.shape for m in out['inner']] == [(2, h // 2, h // 2, C), (2, h // 4, h // 4, C)]
    assert out['penultimate'].shape == (2, C)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(out))


def test_hourglass_newell_wiring_and_exported_features(tiny_hourglass):
    """Stack 2's input = stack 1's input + merge_preds + merge_features (Newell's long skip); the
    exported maps are the last hourglass's outputs; penultimate = mean of the last feature block."""
    rec, out = tiny_hourglass['recorded'], tiny_hourglass['out']
    stack_input = rec['stem_res3'][1]
    expected = stack_input + rec['merge_preds_0'][1] + rec['merge_features_0'][1]
    np.testing.assert_allclose(rec['hourglass_1'][0], expected, rtol=1e-6, atol=1e-6)
    hourglass_out, inner = rec['hourglass_1'][1]
    np.testing.assert_array_equal(out['hourglass'], hourglass_out)
    jax.tree.map(np.testing.assert_array_equal, out['inner'], inner)
    np.testing.assert_allclose(out['penultimate'], rec['features_conv_1'][1].mean(axis=(1, 2)),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('layer, x, fan_in', [
    (torch_conv(256, 7, 3, stride=2), jnp.ones((1, 8, 8, 3)), 7 * 7 * 3),
    (torch_dense(256, 128), jnp.ones((1, 128)), 128),
])
def test_torch_default_init(layer, x, fan_in):
    """Kernels and biases U(+-1/sqrt(fan_in)), as PyTorch's defaults (Flax's lecun_normal kernels
    and zero biases are not)."""
    params = layer.init(jax.random.PRNGKey(0), x)['params']
    bound = 1 / np.sqrt(fan_in)
    for w in (np.asarray(params['kernel']), np.asarray(params['bias'])):
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.95 * bound
        assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound / np.sqrt(3)


def test_batchnorm_train_updates_eval_freezes(tiny_hourglass, train_step):
    variables, out_eval = tiny_hourglass['variables'], tiny_hourglass['out']
    stats_after_eval = tiny_hourglass['stats_after_eval']
    _, out_train, stats_after_train = train_step
    same = jax.tree.map(np.array_equal, variables['batch_stats'], stats_after_eval)
    assert all(jax.tree.leaves(same))
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), variables['batch_stats'],
                           stats_after_train)
    assert all(jax.tree.leaves(changed))
    assert not np.allclose(out_train['heatmaps'], out_eval['heatmaps'])


def test_batchnorm_momentum_matches_pytorch():
    """Residual starts with BN on its input: new running mean = 0.9 * 0 + 0.1 * batch mean."""
    x = _normal((4, 8, 8, 6), seed=0) + jnp.arange(6.0)
    block = Residual(6)
    variables = _numpy_variables(block, x, train=False)
    _, updates = jax.jit(lambda v: block.apply(v, x, train=True, mutable=['batch_stats']))(variables)
    stats = updates['batch_stats']['BatchNorm_0']
    np.testing.assert_allclose(stats['mean'], 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * x.var(axis=(0, 1, 2)), rtol=1e-5)


def test_aux_gradients_never_reach_pose_networks(train_step):
    """Exactly zero gradient for every hourglass and DeepPrior parameter, non-zero for every aux
    tensor."""
    (g_hourglass, g_deepprior, g_aux), _, _ = train_step
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves((g_hourglass, g_deepprior)))
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(g_aux))


# ---- auxiliary net ------------------------------------------------------------------------------

def _np_conv_valid(x_BxHxWxC, kernel_KxKxCxO, bias_O, stride):
    """Float64 numpy VALID conv."""
    k = kernel_KxKxCxO.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x_BxHxWxC, (k, k), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # B x H' x W' x C x K x K
    return np.einsum('bhwcij,ijco->bhwo', windows, kernel_KxKxCxO) + bias_O


def test_conv_fusion_matches_numpy_reference():
    """x = ReLU(conv2x2/2(x)) + inner map, per inner map; then a conv over what is left, ReLU."""
    hourglass = _normal((2, 8, 8, 3), seed=0)
    inner = (_normal((2, 4, 4, 3), seed=1),
             _normal((2, 2, 2, 3), seed=2))
    fusion = ConvFusion()
    variables = _numpy_variables(fusion, hourglass, inner)
    got = jax.jit(fusion.apply)(variables, hourglass, inner)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
    x = np.asarray(hourglass, np.float64)
    for i, inner_map in enumerate(inner):
        x = _relu(_np_conv_valid(x, p[f'Conv_{i}']['kernel'], p[f'Conv_{i}']['bias'], 2)) + inner_map
    assert p['Conv_2']['kernel'].shape == (2, 2, 3, 3)
    expected = _relu(_np_conv_valid(x, p['Conv_2']['kernel'], p['Conv_2']['bias'], 1)).reshape(2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_auxnet_head_shapes(tiny_hourglass):
    features = tiny_hourglass['out']
    expected = {
        ('vl4pose_heatmap', 'conv'): {'link_params_BxLx2': (2, LINKS, 2)},
        ('learning_loss', 'avg'): {'loss_B': (2,)},
        ('aleatoric', 'conv'): {'log_var_BxJ': (2, J)},
        ('vl4pose_regression', 'avg'): {'offsets_BxLx3': (2, LINKS, 3),
                                        'cov_factor_BxLx3x3': (2, LINKS, 3, 3)},
    }
    for (head, pooling), shapes in expected.items():
        aux = AuxNet(head, num_links=LINKS, num_joints=J, pooling=pooling)
        out, _ = jax.eval_shape(lambda f: aux.init_with_output(jax.random.PRNGKey(0), f), features)
        assert {k: v.shape for k, v in out.items()} == shapes


def test_auxnet_regression_cov_factor_is_cholesky():
    aux = AuxNet('vl4pose_regression', num_links=LINKS, pooling='vector')
    embedding_BxD = _normal((3, 40), seed=0)
    variables = _numpy_variables(aux, embedding_BxD)
    assert variables['params']['embed']['kernel'].shape == (40, 256)
    out = jax.jit(aux.apply)(variables, embedding_BxD)
    assert out['offsets_BxLx3'].shape == (3, LINKS, 3)
    L = np.asarray(out['cov_factor_BxLx3x3'], np.float64)
    assert L.shape == (3, LINKS, 3, 3)
    assert np.all(np.triu(L, 1) == 0)
    assert np.all(np.diagonal(L, axis1=-2, axis2=-1) > 0)
    rows, cols = np.tril_indices(3, -1)
    assert np.all(L[..., rows, cols] != 0)
    sigma = L @ np.swapaxes(L, -1, -2)
    np.testing.assert_allclose(np.linalg.cholesky(sigma), L, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize('kwargs', [dict(head='vl4pose_heatmap'), dict(head='aleatoric'),
                                    dict(head='nope'), dict(head='learning_loss', pooling='max')])
def test_auxnet_rejects_bad_config(kwargs):
    with pytest.raises(ValueError):
        jax.eval_shape(lambda x: AuxNet(**kwargs).init(jax.random.PRNGKey(0), x), jnp.ones((1, 4)))


# ---- DeepPrior and MC dropout -------------------------------------------------------------------

def test_deepprior_matches_numpy_reference():
    """Deterministic pass = the reference trunk in float64: conv5x5 -> maxpool -> LeakyReLU(0.05)
    twice, conv5x5 -> LeakyReLU, flatten (H, W, C order), Dense ReLU x2, Dense(3J)."""
    model = DeepPrior(3, aleatoric=True, dense=8)
    depth = _uniform((2, 32, 32, 1), seed=1)
    variables = _numpy_variables(model, depth)
    out = jax.jit(model.apply)(variables, depth)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])

    def leaky(x):
        return np.where(x > 0, x, 0.05 * x)

    def pool(x):
        B, H, W, C = x.shape
        return x.reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))

    x = np.asarray(depth, np.float64)
    for i in (1, 2, 3):
        x = _np_conv_valid(x, p[f'conv{i}']['kernel'], p[f'conv{i}']['bias'], 1)
        x = leaky(pool(x) if i < 3 else x)
    x = _relu(x.reshape(2, -1) @ p['fc1']['kernel'] + p['fc1']['bias'])
    embedding = _relu(x @ p['fc2']['kernel'] + p['fc2']['bias'])
    pose = embedding @ p['pose']['kernel'] + p['pose']['bias']
    log_var = embedding @ p['log_var']['kernel'] + p['log_var']['bias']
    np.testing.assert_allclose(out['embedding_BxD'], embedding, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out['pose_BxJx3'], pose.reshape(2, 3, 3), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out['log_var_BxJx3'], log_var.reshape(2, 3, 3), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('variant', ['A', 'B', 'C'])
def test_deepprior_dropout_sites(variant):
    """With rate 1 every dropout site outputs zeros (no RNG needed), so the outputs reduce to
    bias-only formulas that tell the variants apart: A zeroes the conv trunk, B conv3 and fc1,
    C the convs, fc1 and fc2. Without mc the dropout is off."""
    model = DeepPrior(2, dropout=variant, rate=1.0, dense=8)
    depth = _uniform((1, 32, 32, 1), seed=1)
    variables = _numpy_variables(model, depth)
    p = jax.tree.map(np.asarray, variables['params'])
    out = jax.jit(functools.partial(model.apply, mc=True))(variables, depth)
    fc1 = _relu(p['fc1']['bias'])
    if variant == 'A':
        embedding = _relu(fc1 @ p['fc2']['kernel'] + p['fc2']['bias'])
    else:
        embedding = _relu(p['fc2']['bias'])
    pose = p['pose']['bias'] if variant == 'C' else embedding @ p['pose']['kernel'] + p['pose']['bias']
    np.testing.assert_allclose(out['embedding_BxD'][0], embedding, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out['pose_BxJx3'].reshape(-1), pose, rtol=1e-5, atol=1e-6)

    deterministic = jax.jit(model.apply)(variables, depth)
    assert not np.allclose(deterministic['embedding_BxD'], out['embedding_BxD'])


@pytest.fixture(scope='module')
def bayesian_deepprior():
    """Variant B (dropout on conv3 and fc1) with the aleatoric head, on 32x32 crops, and a jitted
    stochastic pass `apply(key, mc)`."""
    model = DeepPrior(4, dropout='B', aleatoric=True, dense=32)
    depth = _uniform((3, 32, 32, 1), seed=1)
    variables = _numpy_variables(model, depth)
    apply = jax.jit(lambda k, mc: model.apply(variables, depth, mc=mc, rngs={'dropout': k}),
                    static_argnums=1)
    return model, variables, depth, apply


def test_deepprior_dropout_only_with_mc(bayesian_deepprior):
    model, variables, depth, apply = bayesian_deepprior
    a, b = apply(jax.random.PRNGKey(1), False), apply(jax.random.PRNGKey(2), False)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    c, d = apply(jax.random.PRNGKey(1), True), apply(jax.random.PRNGKey(2), True)
    assert not np.allclose(c['pose_BxJx3'], d['pose_BxJx3'])
    assert not np.allclose(a['pose_BxJx3'], c['pose_BxJx3'])
    assert a['pose_BxJx3'].shape == a['log_var_BxJx3'].shape == (3, 4, 3)
    assert a['embedding_BxD'].shape == (3, 32)

    baseline = DeepPrior(4, dense=32)
    base_vars = {'params': {k: v for k, v in variables['params'].items() if k != 'log_var'}}
    base = jax.jit(functools.partial(baseline.apply, mc=True))(base_vars, depth)
    np.testing.assert_allclose(base['pose_BxJx3'], a['pose_BxJx3'], rtol=1e-5, atol=1e-7)


def test_mc_predict_matches_manual_passes(bayesian_deepprior):
    """mc_predict equals T manual passes with the same split keys (float64 mean and variance);
    same key -> same result, other key -> other; chunking changes nothing."""
    model, variables, depth, apply = bayesian_deepprior
    T, key = 8, jax.random.PRNGKey(7)
    result = mc_predict(model, variables, depth, key, num_samples=T)

    passes = [apply(k, True) for k in jax.random.split(key, T)]
    poses = np.stack([np.asarray(p['pose_BxJx3'], np.float64) for p in passes])
    np.testing.assert_allclose(result['mean_BxJx3'], poses.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result['epistemic_var_BxJx3'], poses.var(0), rtol=1e-4, atol=1e-9)
    assert np.all(poses.var(0) > 0)
    aleatoric = np.mean([np.exp(np.asarray(p['log_var_BxJx3'], np.float64)) for p in passes], 0)
    np.testing.assert_allclose(result['aleatoric_var_BxJx3'], aleatoric, rtol=1e-5)
    embedding = np.mean([np.asarray(p['embedding_BxD'], np.float64) for p in passes], 0)
    np.testing.assert_allclose(result['embedding_BxD'], embedding, rtol=1e-5, atol=1e-6)

    same = mc_predict(model, variables, depth, key, num_samples=T)
    jax.tree.map(np.testing.assert_array_equal, result, same)
    other = mc_predict(model, variables, depth, jax.random.PRNGKey(8), num_samples=T)
    assert not np.allclose(result['epistemic_var_BxJx3'], other['epistemic_var_BxJx3'])

    chunked = mc_predict(model, variables, depth, key, num_samples=T, chunk=4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), result, chunked)


def test_mc_predict_deterministic_baseline():
    """Without dropout every pass is the same: zero epistemic variance; no aleatoric head: zeros."""
    model = DeepPrior(2, dense=8)
    depth = jnp.zeros((1, 32, 32, 1)).at[:, 8:20, 10:24].set(0.5)
    variables = _numpy_variables(model, depth)
    result = mc_predict(model, variables, depth, jax.random.PRNGKey(1), num_samples=3, chunk=2)
    np.testing.assert_array_equal(result['aleatoric_var_BxJx3'], np.zeros((1, 2, 3)))
    np.testing.assert_allclose(result['epistemic_var_BxJx3'], np.zeros((1, 2, 3)), atol=1e-12)
    expected = jax.jit(model.apply)(variables, depth)['pose_BxJx3']
    np.testing.assert_allclose(result['mean_BxJx3'], expected, rtol=1e-5, atol=1e-7)
