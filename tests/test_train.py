"""Training steps: losses decrease, the auxiliary net never touches the pose network."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vl4pose_jax import heatmaps, likelihood, models, skeletons, train

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


def test_learning_loss_target_divides_by_visible_joints_hand_computed():
    """Reference §5.4: the regressed loss is the per-image heatmap MSE / (visible joints + 0.1)."""
    pred = np.zeros((2, 2, 4, 4, 6), np.float32)   # B=2, S=2 stacks, 4x4 maps, J=6
    pred[0] += 2.0                                  # MSE 4 against zero targets
    pred[1, :, :2] = 3.0                            # half the cells 3: MSE 4.5
    target = np.zeros((2, 4, 4, 6), np.float32)
    visible = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], np.float32)  # 2 and 5 joints
    got = np.asarray(train.learning_loss_target(pred, target, visible))
    np.testing.assert_allclose(got, [4.0 / 2.1, 4.5 / 5.1], rtol=1e-6)


def test_vl4pose_head_trains_on_the_integer_peaks_scoring_measures():
    """The bone lengths the heatmap head learns are the distances between the integer peaks
    `likelihood.score_heatmaps` finds on the same (target) heatmaps, in heatmap cells."""
    rng = np.random.default_rng(3)
    size, batch = 16, 3
    joints = rng.uniform(0.6, size - 1.6, (batch, SKELETON.num_joints, 2)).astype(np.float32)
    visible = np.ones((batch, SKELETON.num_joints), np.float32)
    visible[0, 3] = 0.0
    joints[1, 5] = (size + 3.0, 4.0)   # visible but off the map: no target, no position
    targets, _ = heatmaps.gaussian_targets(joints, visible, size, size)
    cells, has_cell = map(np.asarray, train.vl4pose_heatmap_targets(targets, visible))
    xy, _, _ = likelihood.heatmap_candidates(targets, num_peaks=1, min_distance=8,
                                             reference_size=64)
    peaks = np.asarray(xy)[..., 0, :].astype(np.float64)
    parent, child = np.array(SKELETON.links).T
    mask = has_cell[:, parent] & has_cell[:, child]
    expected_mask = visible > 0
    expected_mask[1, 5] = False
    np.testing.assert_array_equal(has_cell, expected_mask)
    d_train = np.linalg.norm(cells[:, child] - cells[:, parent], axis=-1)
    d_score = np.linalg.norm(peaks[:, child] - peaks[:, parent], axis=-1)
    np.testing.assert_allclose(d_train[mask], d_score[mask], rtol=1e-6)
    # ... and the head's loss is the NLL of exactly those distances (float64, by hand).
    params = np.stack([rng.uniform(2, 8, (batch, SKELETON.num_links)),
                       rng.uniform(-1, 2, (batch, SKELETON.num_links))], -1).astype(np.float32)
    head = models.AuxNet(head="vl4pose_heatmap", num_links=SKELETON.num_links)
    got = float(train.aux_loss(head, {"link_params_BxLx2": params}, skeleton=SKELETON,
                               joints=joints, visible=visible, target_heatmaps=targets))
    s = np.asarray(likelihood.bound_log_var(params[..., 1]), np.float64)
    nll = 0.5 * np.exp(-s) * (params[..., 0] - d_score) ** 2 + 0.5 * s
    assert got == pytest.approx(nll[mask].mean(), rel=1e-5)
    d_sub = np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1)
    assert abs(nll[mask].mean() - (0.5 * np.exp(-s) * (params[..., 0] - d_sub) ** 2
                                   + 0.5 * s)[mask].mean()) > 1e-3  # sub-cell would differ


@pytest.mark.parametrize("head", ["vl4pose_heatmap", "learning_loss"])
def test_heatmap_step_feeds_the_heads_their_targets(head, pose_variables):
    """In the train step the VL4Pose head sees the argmax cells of the target heatmaps and
    Learning Loss the MSE / (visible joints + 0.1) (checked against a manual forward pass)."""
    tx = optax.sgd(0.0)
    model, aux, state = init_state(head, pose_variables, tx)
    batch = human_batch(batch=4, seed=2)
    batch["visible"] = batch["visible"].at[0, :9].set(0.0)   # 5 visible joints in image 0
    outputs = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                          batch["image"], train=False)
    aux_out = aux.apply({"params": state.aux_params}, outputs)
    if head == "vl4pose_heatmap":
        cells, has_cell = train.vl4pose_heatmap_targets(batch["heatmaps"], batch["visible"])
        want = likelihood.heatmap_nll(aux_out["link_params_BxLx2"], cells, has_cell, SKELETON)
        wrong = likelihood.heatmap_nll(aux_out["link_params_BxLx2"], batch["joints"],
                                       batch["visible"], SKELETON)
    else:
        mse = train.heatmap_mse_per_sample(outputs["heatmaps"], batch["heatmaps"])
        count = np.sum(np.asarray(batch["visible"]) > 0, axis=-1)
        want = train.learning_loss(aux_out["loss_B"], mse / (count + 0.1))
        wrong = train.learning_loss(aux_out["loss_B"], mse)
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=SKELETON, train_pose=False)
    _, logs = step(state, batch)
    assert float(logs["aux_loss"]) == pytest.approx(float(want), rel=1e-4, abs=1e-6)
    assert abs(float(want) - float(wrong)) > 1e-4


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
