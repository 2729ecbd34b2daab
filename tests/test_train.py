"""Training steps: losses decrease, the auxiliary net never touches the pose network."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vl4pose_jax import heatmaps, models, skeletons, train

SKELETON = skeletons.lsp14
# Smaller than the "tiny" preset so that every test compiles in seconds.
MICRO = dict(num_stacks=2, channels=16, depth=1)
INPUT, HEATMAP = 32, 8


def human_batch(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    size, hm = INPUT, HEATMAP
    joints = rng.uniform(1, hm - 2, (batch, SKELETON.num_joints, 2)).astype(np.float32)
    visible = (rng.random((batch, SKELETON.num_joints)) > 0.1).astype(np.float32)
    targets, _ = heatmaps.gaussian_targets(joints, visible, hm, hm)
    return {"image": jnp.asarray(rng.random((batch, size, size, 3), np.float32)),
            "heatmaps": targets, "joints": jnp.asarray(joints), "visible": jnp.asarray(visible)}


def tiny_hourglass(head):
    model = models.StackedHourglass(num_joints=SKELETON.num_joints, **MICRO)
    aux = None if head is None else models.AuxNet(
        head=head, num_links=SKELETON.num_links, num_joints=SKELETON.num_joints)
    return model, aux


@pytest.fixture(scope="module")
def pose_variables():
    """One initialised pose network shared by the tests (XLA:CPU compiles initialisers slowly)."""
    model, _ = tiny_hourglass(None)
    return jax.jit(lambda k: model.init(k, jnp.zeros((1, INPUT, INPUT, 3)), train=False))(
        jax.random.key(0))


def init_state(head, pose_variables, tx):
    model, aux = tiny_hourglass(head)
    state = train.init_heatmap_state(model, aux, jax.random.key(0), INPUT, tx, tx,
                                     pose_variables=pose_variables)
    return model, aux, state


def copy_tree(tree):
    return jax.tree_util.tree_map(lambda x: np.array(x), tree)


@pytest.mark.parametrize("head", ["vl4pose_heatmap", "learning_loss", "aleatoric"])
def test_aux_only_training_leaves_pose_network_untouched(head, pose_variables):
    tx = optax.adam(1e-3)
    model, aux, state = init_state(head, pose_variables, tx)
    before_params, before_stats = copy_tree(state.params), copy_tree(state.batch_stats)
    before_aux = copy_tree(state.aux_params)
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=SKELETON, train_pose=False)
    batch = human_batch()
    for _ in range(3):
        state, logs = step(state, batch)
    assert np.isfinite(float(logs["aux_loss"]))
    jax.tree_util.tree_map(np.testing.assert_array_equal, before_params, copy_tree(state.params))
    jax.tree_util.tree_map(np.testing.assert_array_equal, before_stats,
                           copy_tree(state.batch_stats))
    changed = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: bool(np.any(a != b)), before_aux, copy_tree(state.aux_params)))
    assert any(changed)


def test_joint_training_pose_gradient_ignores_aux_loss(pose_variables):
    """The pose update is the same with or without the auxiliary net (exactly)."""
    batch = human_batch()
    tx = optax.adam(1e-3)
    results = []
    for head in (None, "vl4pose_heatmap"):
        model, aux, state = init_state(head, pose_variables, tx)
        step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=SKELETON)
        state, _ = step(state, batch)
        results.append((copy_tree(state.params), copy_tree(state.batch_stats)))
    jax.tree_util.tree_map(np.testing.assert_array_equal, results[0], results[1])
    changed = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: bool(np.any(a != b)), copy_tree(pose_variables["params"]), results[0][0]))
    assert all(changed)


def test_heatmap_loss_decreases_on_fixed_batch(pose_variables):
    tx = optax.adam(3e-3)
    model, aux, state = init_state("vl4pose_heatmap", pose_variables, tx)
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=SKELETON)
    batch = human_batch(batch=4, seed=3)
    losses = []
    for _ in range(100):
        state, logs = step(state, batch)
        losses.append((float(logs["pose_loss"]), float(logs["aux_loss"])))
    pose, aux_losses = np.array(losses).T
    assert pose[-5:].mean() < 0.7 * pose[:3].mean()
    assert aux_losses[-5:].mean() < 0.5 * aux_losses[:3].mean()
    predict = train.make_heatmap_predict(model, aux)
    out = predict(state, batch["image"])
    assert out["heatmaps_BxHxWxJ"].shape == (4, HEATMAP, HEATMAP, 14)
    assert out["link_params_BxLx2"].shape == (4, SKELETON.num_links, 2)


@pytest.mark.parametrize("dropout, aleatoric, head", [
    (None, False, "learning_loss"), ("B", True, "vl4pose_regression")])
def test_deepprior_loss_decreases_on_fixed_batch(dropout, aleatoric, head):
    skeleton = skeletons.icvl16
    model = models.DeepPrior(num_joints=16, dropout=dropout, aleatoric=aleatoric, dense=64)
    aux = None if head is None else models.AuxNet(head=head, num_links=15, num_joints=16,
                                                  pooling="vector")
    tx = optax.adam(1e-3)
    state = train.init_regression_state(model, aux, jax.random.key(0), 128, tx, tx)
    rng = np.random.default_rng(0)
    batch = {"depth": jnp.asarray(rng.uniform(-1, 1, (8, 128, 128, 1)), jnp.float32),
             "joints": jnp.asarray(rng.uniform(-0.5, 0.5, (8, 16, 3)), jnp.float32),
             "visible": jnp.ones((8, 16), jnp.float32)}
    step = train.make_regression_train_step(model, aux, tx, tx, skeleton=skeleton)
    losses = []
    for _ in range(25):
        state, logs = step(state, batch)
        losses.append(float(logs["pose_loss"]))
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.05 * abs(np.mean(losses[:3]))


def test_learning_loss_objectives_hand_computed():
    pred = jnp.array([1.0, 0.0, 0.5, 0.5])   # pairs (1.0, 0.5) and (0.0, 0.5)
    true = jnp.array([2.0, 1.0, 1.0, 3.0])   # l_i > l_j in pair 0, l_i < l_j in pair 1
    # margin: pair 0: max(0, -(1)(0.5) + 1) = 0.5; pair 1: max(0, -(-1)(-0.5) + 1) = 0.5
    assert float(train.learning_loss(pred, true, objective="margin")) == pytest.approx(0.5)
    p0, p1 = np.array([2 / 3, 1 / 3]), np.array([0.25, 0.75])
    q0 = np.exp([1.0, 0.5]) / np.exp([1.0, 0.5]).sum()
    q1 = np.exp([0.0, 0.5]) / np.exp([0.0, 0.5]).sum()
    kl = (np.sum(p0 * np.log(p0 / q0)) + np.sum(p1 * np.log(p1 / q1))) / 2
    assert float(train.learning_loss(pred, true, objective="kl")) == pytest.approx(kl, rel=1e-5)


def test_deepprior_aleatoric_loss_matches_eq2():
    rng = np.random.default_rng(0)
    pose, target = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 3, 3))
    log_var = rng.normal(size=(2, 3, 3)) * 0.5
    out = {"pose_BxJx3": jnp.asarray(pose), "log_var_BxJx3": jnp.asarray(log_var)}
    visible = np.ones((2, 3))
    expected = np.mean(0.5 * np.exp(-log_var) * (pose - target) ** 2 + 0.5 * log_var)
    got = train.deepprior_loss(out, jnp.asarray(target), jnp.asarray(visible))
    assert float(got) == pytest.approx(expected, rel=1e-4)
    l1 = np.mean(0.5 * np.exp(-log_var) * np.abs(pose - target) + 0.5 * log_var)
    l1 += np.mean((pose - target) ** 2)
    got = train.deepprior_loss(out, jnp.asarray(target), jnp.asarray(visible),
                               aleatoric_norm="l1", mse_weight=1.0)
    assert float(got) == pytest.approx(l1, rel=1e-4)
