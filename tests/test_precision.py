"""`--precision=bfloat16`: bfloat16 compute, float32 parameters and losses, and pool scores that
rank the pool like float32 ones."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from vl4pose_jax import heatmaps, likelihood, models, protocol, records, skeletons, train
from vl4pose_jax import workdir as wd

SKELETON = skeletons.lsp14
MICRO = dict(num_stacks=1, channels=16, depth=1)
INPUT, HEATMAP = 32, 8


def nets(dtype):
    model = models.StackedHourglass(num_joints=SKELETON.num_joints, dtype=dtype, **MICRO)
    aux = models.AuxNet(head="vl4pose_heatmap", num_links=SKELETON.num_links,
                        num_joints=SKELETON.num_joints, dtype=dtype)
    return model, aux


def human_batch(batch, seed):
    rng = np.random.default_rng(seed)
    joints = rng.uniform(1, HEATMAP - 2, (batch, SKELETON.num_joints, 2)).astype(np.float32)
    visible = np.ones((batch, SKELETON.num_joints), np.float32)
    targets, _ = heatmaps.gaussian_targets(joints, visible, HEATMAP, HEATMAP)
    return {"image": jnp.asarray(rng.random((batch, INPUT, INPUT, 3), np.float32)),
            "heatmaps": targets, "joints": jnp.asarray(joints), "visible": jnp.asarray(visible)}


@pytest.fixture(scope="module")
def trained():
    """A float32 micro hourglass + VL4Pose head trained 100 steps on a fixed batch."""
    model, aux = nets(jnp.float32)
    tx = optax.adam(3e-3)
    pose_variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, INPUT, INPUT, 3)),
                                                  train=False))(jax.random.key(0))
    state = train.init_heatmap_state(model, aux, jax.random.key(1), INPUT, tx, tx,
                                     pose_variables=pose_variables)
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=SKELETON)
    batch = human_batch(8, seed=0)
    for _ in range(100):
        state, _ = step(state, batch)
    return state, batch


def pool_scores(dtype, state, images):
    model, aux = nets(dtype)
    out = train.make_heatmap_predict(model, aux)(state, images)
    assert out["heatmaps_BxHxWxJ"].dtype == jnp.float32
    assert out["link_params_BxLx2"].dtype == jnp.float32
    return np.asarray(likelihood.score_heatmaps(
        out["heatmaps_BxHxWxJ"], out["link_params_BxLx2"], SKELETON, num_peaks=1,
        min_distance=1, exclude_border=False, mode="expected"))


def test_bfloat16_scores_rank_pool_like_float32(trained):
    state, batch = trained
    # A pool of 64 training images under Gaussian noise of amplitude U(0, 1): easy to hard, as a
    # real pool. (On near-duplicates of the training images alone this barely trained model's
    # heatmaps are flat, bf16 moves ~7 % of the argmax joints and Spearman is only ~0.94.)
    rng = np.random.default_rng(1)
    base = np.asarray(batch["image"])[rng.integers(0, 8, 64)]
    amp = rng.uniform(0, 1, (64, 1, 1, 1)).astype(np.float32)
    images = jnp.asarray(base + amp * rng.standard_normal(base.shape).astype(np.float32))
    s32 = pool_scores(jnp.float32, state, images)
    s16 = pool_scores(jnp.bfloat16, state, images)
    assert np.all(np.isfinite(s16)) and np.std(s32) > 0
    rho = scipy.stats.spearmanr(s32, s16).statistic
    print(f"Spearman float32 vs bfloat16 pool scores: {rho:.4f}")
    # 0.997 on a CPU without bfloat16 instructions; 0.985 on one with AVX512_BF16 (AMD EPYC),
    # where XLA runs the convolutions as native bfloat16 dot products.
    assert rho > 0.97, rho


def test_bfloat16_model_computes_in_bfloat16(trained):
    state, batch = trained
    model, aux = nets(jnp.bfloat16)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    out, inter = jax.jit(lambda v, x: model.apply(
        v, x, train=False, capture_intermediates=True, mutable=["intermediates"]))(
        variables, batch["image"][:2])
    dtypes = [x.dtype for x in jax.tree_util.tree_leaves(inter["intermediates"])]
    # Every layer's output is bfloat16; only the module's own outputs are cast back to float32.
    assert dtypes.count(jnp.bfloat16) > 30, dtypes
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(out))
    jaxpr = str(jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
        variables, batch["image"][:2]))
    assert "conv_general_dilated" in jaxpr and "bf16[2,16,16,4]" in jaxpr


def test_bfloat16_train_step_keeps_float32_params_and_loss(trained):
    state, batch = trained
    model, aux = nets(jnp.bfloat16)
    tx = optax.adam(3e-3)
    copy = jax.tree_util.tree_map(jnp.array, state)   # the step donates its state
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=SKELETON)
    new, logs = step(copy, batch)
    for leaf in jax.tree_util.tree_leaves((new.params, new.aux_params, new.batch_stats,
                                           new.opt_state, new.aux_opt_state)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32
    for key in ("pose_loss", "aux_loss"):
        assert logs[key].dtype == jnp.float32 and np.isfinite(float(logs[key]))


def test_precision_is_part_of_the_run_identity(tmp_path):
    assert models.StackedHourglass(num_joints=14).dtype == jnp.float32
    wd.check_config(protocol.Config(), tmp_path)
    wd.check_config(protocol.Config(precision="float32"), tmp_path)
    with pytest.raises(protocol.SimulationError, match="precision"):
        wd.check_config(protocol.Config(precision="bfloat16"), tmp_path)
    with pytest.raises(protocol.SimulationError, match="precision"):
        records.validate(protocol.Config(precision="float16"))
