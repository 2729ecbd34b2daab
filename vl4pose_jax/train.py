"""Training: train state, losses and jitted train/eval steps for the pose networks.

Two tasks share one `TrainState` (a pytree of arrays only, so Orbax can checkpoint it):
  * heatmaps: the stacked hourglass, MSE against Gaussian targets on every stack
    (intermediate supervision), Adam 3e-4 as in the VL4Pose paper;
  * regression: (Bayesian) DeepPrior on normalised UVD, MSE or the aleatoric loss of the CKE
    paper's Eq. 2, Adam 1e-3 as in that paper.
An optional auxiliary net (`models.AuxNet`) trains jointly on detached features with its own
optimizer state and learning rate; its heads are VL4Pose (likelihood NLLs), Learning Loss
(margin ranking of Yoo & Kweon, or LearningLoss++'s KL between softmaxed pair losses) and
aleatoric (per-joint log-variance). As the reference, the VL4Pose heatmap head learns bone
lengths between the argmax cells of the target heatmaps (the integer peaks scoring measures),
and Learning Loss regresses the heatmap MSE divided by (visible joints + 0.1). With
`train_pose=False` only the auxiliary net learns: the pose network runs in inference mode, so
its parameters and BatchNorm statistics stay exactly as they were. The validation losses
(`make_heatmap_val_loss`, `make_regression_val_loss`) are the pose losses per example, in
inference mode.

Typical use:
    tx, aux_tx = optax.adam(3e-4), optax.adam(3e-4)
    state = init_heatmap_state(model, aux, key, input_size, tx, aux_tx)
    train_step = make_heatmap_train_step(model, aux, tx, aux_tx, skeleton=skeletons.lsp14)
    state, logs = train_step(state, batch)   # jitted, state donated
"""
from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from vl4pose_jax import heatmaps as heatmaps_lib
from vl4pose_jax import likelihood

HOURGLASS_LR = 3e-4
DEEPPRIOR_LR = 1e-3


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; optimizers and modules live outside."""
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array              # key for dropout; split every step
    aux_params: Any = None
    aux_opt_state: Any = None


def _new_state(variables, tx, aux_params, aux_tx, rng):
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params), rng=rng,
        aux_params=aux_params,
        aux_opt_state=None if aux_params is None else aux_tx.init(aux_params))


def init_heatmap_state(model, aux_model, key, input_size: int, tx, aux_tx=None, *,
                       pose_variables=None) -> TrainState:
    """Initialise the hourglass (and the auxiliary net on its features) from `key`.

    `pose_variables` ({'params', 'batch_stats'}) starts from an existing pose network instead,
    e.g. to train a new auxiliary net on a trained model; only the auxiliary net is then drawn.
    """
    return _init(lambda k, x: model.init(k, x, train=False),
                 lambda v, x: model.apply(v, x, train=False), aux_model, key,
                 (1, input_size, input_size, 3), tx, aux_tx, pose_variables)


def init_regression_state(model, aux_model, key, input_size: int, tx, aux_tx=None, *,
                          pose_variables=None) -> TrainState:
    """Initialise DeepPrior (and the auxiliary net on its embedding) from `key`."""
    return _init(lambda k, x: model.init(k, x, mc=False),
                 lambda v, x: model.apply(v, x, mc=False)["embedding_BxD"], aux_model, key,
                 (1, input_size, input_size, 1), tx, aux_tx, pose_variables)


def _init(init_pose, features_of, aux_model, key, input_shape, tx, aux_tx, pose_variables):
    @jax.jit
    def init(key, pose_variables):
        pose_key, aux_key, rng = jax.random.split(key, 3)
        inputs = jnp.zeros(input_shape, jnp.float32)
        if pose_variables is None:
            pose_variables = init_pose(pose_key, inputs)
        aux_params = None
        if aux_model is not None:
            aux_params = aux_model.init(aux_key, features_of(pose_variables, inputs))["params"]
        return _new_state(pose_variables, tx, aux_params, aux_tx, rng)

    return init(key, pose_variables)


# ----------------------------------------------------------------------------------- losses

def heatmap_mse_per_sample(pred_BxSxHxWxJ, target_BxHxWxJ):
    """Per-image MSE over all stacks, cells and joints (absent joints have zero targets). (B,)"""
    diff = pred_BxSxHxWxJ - target_BxHxWxJ[:, None]
    return jnp.mean(diff.astype(jnp.float32) ** 2, axis=(1, 2, 3, 4))


LEARNING_LOSS_JOINT_OFFSET = 0.1


def learning_loss_target(pred_BxSxHxWxJ, target_BxHxWxJ, visible_BxJ):
    """The per-image loss Learning Loss regresses, (B,): the heatmap MSE of
    `heatmap_mse_per_sample` divided by (number of visible joints + 0.1), as the reference
    (reference notes §5.4), so that images are not ranked by how many joints are annotated."""
    num_visible_B = jnp.sum(jnp.asarray(visible_BxJ) > 0, axis=-1).astype(jnp.float32)
    return (heatmap_mse_per_sample(pred_BxSxHxWxJ, target_BxHxWxJ)
            / (num_visible_B + LEARNING_LOSS_JOINT_OFFSET))


def vl4pose_heatmap_targets(target_BxHxWxJ, visible_BxJ):
    """Joint positions the VL4Pose heatmap head learns bone lengths from, as the reference
    (§4.1): the integer argmax cell (x, y) of each ground-truth heatmap, in heatmap cells, the
    units and integer grid of the peaks `likelihood.score_heatmaps` measures at scoring time.

    Returns:
      joints_BxJx2: (B, J, 2) float32 argmax cells.
      visible_BxJ: (B, J) bool, visible and with a target on the map (its maximum > 0; a
        visible joint off the map has an all-zero target and no position).
    """
    target = jnp.asarray(target_BxHxWxJ, jnp.float32)
    has_target = jnp.max(target, axis=(-3, -2)) > 0
    joints = heatmaps_lib.argmax_xy(target).astype(jnp.float32)
    return joints, (jnp.asarray(visible_BxJ) > 0) & has_target


def learning_loss(pred_loss_B, true_loss_B, *, objective: str = "kl", margin: float = 1.0):
    """Learning Loss objectives on pairs (i, i + B/2) of a batch (B even; a last odd one is unused).

    `"margin"`: Yoo & Kweon's ranking loss, mean of max(0, -sign(l_i - l_j)(e_i - e_j) + margin).
    `"kl"`: LearningLoss++, KL(p || softmax(e_i, e_j)) with p = (l_i, l_j) / (l_i + l_j), averaged
    over pairs. The true losses are treated as constants.
    """
    half = pred_loss_B.shape[0] // 2
    e_i, e_j = pred_loss_B[:half], pred_loss_B[half:2 * half]
    true = jax.lax.stop_gradient(true_loss_B)
    l_i, l_j = true[:half], true[half:2 * half]
    if objective == "margin":
        return jnp.mean(jnp.maximum(0.0, -jnp.sign(l_i - l_j) * (e_i - e_j) + margin))
    if objective == "kl":
        total = jnp.maximum(l_i + l_j, 1e-12)
        p = jnp.stack([l_i / total, l_j / total], axis=-1)
        log_q = jax.nn.log_softmax(jnp.stack([e_i, e_j], axis=-1), axis=-1)
        return jnp.mean(jnp.sum(jnp.where(p > 0, p * (jnp.log(jnp.maximum(p, 1e-12)) - log_q),
                                          0.0), axis=-1))
    raise ValueError(f"unknown learning-loss objective {objective!r}; use 'kl' or 'margin'")


def gaussian_nll_masked(residual_sq, log_var, mask):
    """Mean over the mask of 0.5 e^{-s} r + 0.5 s with s bounded as in `likelihood`."""
    s = likelihood.bound_log_var(log_var)
    loss = 0.5 * jnp.exp(-s) * residual_sq + 0.5 * s
    mask = mask.astype(loss.dtype)
    return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def deepprior_loss(outputs, joints_BxJx3, visible_BxJ, *, aleatoric_norm: str = "l2",
                   mse_weight: float = 0.0):
    """DeepPrior loss on normalised UVD.

    Without an aleatoric head: the MSE. With one: the CKE paper's Eq. 2,
    0.5 e^{-s} |y - y_hat|^p + 0.5 s per coordinate, p = 2 (`"l2"`, the paper, default) or p = 1
    (`"l1"`, the reference code), plus `mse_weight` x MSE (the reference code uses 1.0).
    """
    pose = outputs["pose_BxJx3"]
    mask = jnp.broadcast_to(visible_BxJ[..., None] > 0, pose.shape)
    diff = pose - joints_BxJx3
    mse = jnp.sum(jnp.where(mask, diff**2, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
    if "log_var_BxJx3" not in outputs:
        return mse
    if aleatoric_norm not in ("l1", "l2"):
        raise ValueError(f"unknown aleatoric_norm {aleatoric_norm!r}; use 'l2' or 'l1'")
    residual = diff**2 if aleatoric_norm == "l2" else jnp.abs(diff)
    return gaussian_nll_masked(residual, outputs["log_var_BxJx3"], mask) + mse_weight * mse


def aux_loss(aux_model, aux_outputs, *, skeleton, joints, visible, pred_joints=None,
             true_loss_B=None, target_heatmaps=None, ll_objective="kl", ll_margin=1.0):
    """The auxiliary net's loss for its head (see `models.AuxNet`).

    The `vl4pose_heatmap` head needs `target_heatmaps` (B×H×W×J ground truth): it learns the
    bone lengths between their argmax cells (`vl4pose_heatmap_targets`), not between the
    sub-cell `joints`. `true_loss_B` is the per-image loss the `learning_loss` head ranks.
    """
    head = aux_model.head
    if head == "vl4pose_heatmap":
        if target_heatmaps is None:
            raise ValueError("the vl4pose_heatmap head trains on the argmax cells of the target "
                             "heatmaps: pass target_heatmaps")
        cells, has_cell = vl4pose_heatmap_targets(target_heatmaps, visible)
        return likelihood.heatmap_nll(aux_outputs["link_params_BxLx2"], cells, has_cell,
                                      skeleton)
    if head == "vl4pose_regression":
        return likelihood.regression_nll(aux_outputs["offsets_BxLx3"],
                                         aux_outputs["cov_factor_BxLx3x3"], joints, visible,
                                         skeleton)
    if head == "learning_loss":
        return learning_loss(aux_outputs["loss_B"], true_loss_B, objective=ll_objective,
                             margin=ll_margin)
    if head == "aleatoric":
        residual_sq = jnp.sum((jax.lax.stop_gradient(pred_joints) - joints) ** 2, axis=-1)
        return gaussian_nll_masked(residual_sq, aux_outputs["log_var_BxJ"], visible > 0)
    raise ValueError(f"unknown auxiliary head {head!r}")


# ------------------------------------------------------------------------------ train steps

def _apply_updates(tx, grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _heatmap_losses(model, aux_models, params, aux_params, state, batch, *, skeleton,
                    train_pose, ll_objective, ll_margin):
    """(total loss, (batch_stats, logs)) of the hourglass and the auxiliary nets
    `aux_models` ({name: AuxNet}, parameters `aux_params` {name: params}) on its detached
    features; logs `aux_loss` (one net) or `aux_loss/<name>`."""
    variables = {"params": params, "batch_stats": state.batch_stats}
    if train_pose:
        outputs, updated = model.apply(variables, batch["image"], train=True,
                                       mutable=["batch_stats"])
        batch_stats = updated["batch_stats"]
    else:
        outputs, batch_stats = model.apply(variables, batch["image"], train=False), \
            state.batch_stats
    pose_loss = jnp.mean(heatmap_mse_per_sample(outputs["heatmaps"], batch["heatmaps"]))
    logs = {"pose_loss": pose_loss}
    total = pose_loss if train_pose else 0.0
    if aux_models:
        pred_joints, _ = heatmaps_lib.decode(outputs["heatmaps"][:, -1])
        true_loss_B = learning_loss_target(outputs["heatmaps"], batch["heatmaps"],
                                           batch["visible"])
    for name, aux_model in aux_models.items():
        aux_outputs = aux_model.apply({"params": aux_params[name]}, outputs)
        loss = aux_loss(
            aux_model, aux_outputs, skeleton=skeleton, joints=batch["joints"],
            visible=batch["visible"], pred_joints=pred_joints, true_loss_B=true_loss_B,
            target_heatmaps=batch["heatmaps"], ll_objective=ll_objective,
            ll_margin=ll_margin)
        logs["aux_loss" if len(aux_models) == 1 else f"aux_loss/{name}"] = loss
        total = total + loss
    return total, (batch_stats, logs)


def make_heatmap_train_step(model, aux_model, tx, aux_tx=None, *, skeleton,
                            train_pose: bool = True, ll_objective: str = "kl",
                            ll_margin: float = 1.0):
    """A jitted `step(state, batch) -> (state, logs)` for the hourglass (+ auxiliary net).

    `batch` keys: `image` B×S×S×3, `heatmaps` B×h×w×J, `joints` B×J×2 (heatmap cells),
    `visible` B×J. The state argument is donated.
    """
    aux_models = {} if aux_model is None else {"aux": aux_model}

    def loss_fn(params, aux_params, state, batch):
        return _heatmap_losses(model, aux_models, params, {"aux": aux_params}, state, batch,
                               skeleton=skeleton, train_pose=train_pose,
                               ll_objective=ll_objective, ll_margin=ll_margin)

    return _make_step(loss_fn, tx, aux_tx, train_pose, aux_model is not None)


def make_heatmap_multi_step(model, aux_models: dict, tx, aux_tx=None, *, skeleton,
                            ll_objective: str = "kl", ll_margin: float = 1.0):
    """`make_heatmap_train_step` with several auxiliary nets ({name: AuxNet}) trained at once
    on the same hourglass: the state's `aux_params` / `aux_opt_state` are dicts by name. Each
    auxiliary net sees only detached features and Adam is elementwise, so the hourglass and
    every net follow the trajectories of the single-net steps (bit for bit on XLA:CPU, tested):
    one training serves the first round of several acquisition methods."""

    def loss_fn(params, aux_params, state, batch):
        return _heatmap_losses(model, aux_models, params, aux_params, state, batch,
                               skeleton=skeleton, train_pose=True, ll_objective=ll_objective,
                               ll_margin=ll_margin)

    return _make_step(loss_fn, tx, aux_tx, True, bool(aux_models), per_name=True)


def make_regression_train_step(model, aux_model, tx, aux_tx=None, *, skeleton,
                               train_pose: bool = True, mc_dropout: bool | None = None,
                               aleatoric_norm: str = "l2", mse_weight: float = 0.0,
                               ll_objective: str = "kl", ll_margin: float = 1.0):
    """A jitted `step(state, batch) -> (state, logs)` for DeepPrior (+ auxiliary net).

    `batch` keys: `depth` B×S×S×1, `joints` B×J×3 normalised UVD, `visible` B×J. Dropout is on
    during training for the Bayesian variants (as in the reference), i.e. when the model has a
    dropout variant, unless `mc_dropout` says otherwise.
    """
    use_dropout = bool(model.dropout) if mc_dropout is None else mc_dropout

    def loss_fn(params, aux_params, state, batch):
        dropout_key = jax.random.fold_in(state.rng, state.step)
        outputs = model.apply({"params": params}, batch["depth"],
                              mc=use_dropout and train_pose, rngs={"dropout": dropout_key})
        pose_loss = deepprior_loss(outputs, batch["joints"], batch["visible"],
                                   aleatoric_norm=aleatoric_norm, mse_weight=mse_weight)
        logs = {"pose_loss": pose_loss}
        total = pose_loss if train_pose else 0.0
        if aux_model is not None:
            aux_outputs = aux_model.apply({"params": aux_params}, outputs["embedding_BxD"])
            sq_err_B = jnp.mean((jax.lax.stop_gradient(outputs["pose_BxJx3"])
                                 - batch["joints"]) ** 2, axis=(1, 2))
            logs["aux_loss"] = aux_loss(
                aux_model, aux_outputs, skeleton=skeleton, joints=batch["joints"],
                visible=batch["visible"], pred_joints=outputs["pose_BxJx3"],
                true_loss_B=sq_err_B, ll_objective=ll_objective, ll_margin=ll_margin)
            total = total + logs["aux_loss"]
        return total, (state.batch_stats, logs)

    return _make_step(loss_fn, tx, aux_tx, train_pose, aux_model is not None)


def _make_step(loss_fn, tx, aux_tx, train_pose, has_aux, per_name: bool = False):
    """The jitted step; `per_name`: `aux_params` is a dict of nets, each with its own
    optimizer state (as if trained alone)."""
    grad_fn = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)

    def apply_aux(grads, opt_state, params):
        if not per_name:
            return _apply_updates(aux_tx, grads, opt_state, params)
        new = {k: _apply_updates(aux_tx, grads[k], opt_state[k], params[k]) for k in params}
        return {k: v[0] for k, v in new.items()}, {k: v[1] for k, v in new.items()}

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step(state, batch):
        (grads, aux_grads), (batch_stats, logs) = grad_fn(
            state.params, state.aux_params, state, batch)
        params, opt_state = state.params, state.opt_state
        if train_pose:
            params, opt_state = _apply_updates(tx, grads, opt_state, params)
        aux_params, aux_opt_state = state.aux_params, state.aux_opt_state
        if has_aux:
            aux_params, aux_opt_state = apply_aux(aux_grads, aux_opt_state, aux_params)
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state, aux_params=aux_params,
                                  aux_opt_state=aux_opt_state)
        return new_state, logs

    return step


# ------------------------------------------------------------------------------ validation

def make_heatmap_val_loss(model):
    """A jitted `loss_B(params, batch_stats, batch)`: the hourglass's pose loss per image (the
    heatmap MSE over every stack, `heatmap_mse_per_sample`) in inference mode; `batch` keys
    `image` B×S×S×3, `heatmaps` B×h×w×J."""

    @jax.jit
    def loss_B(params, batch_stats, batch):
        outputs = model.apply({"params": params, "batch_stats": batch_stats}, batch["image"],
                              train=False)
        return heatmap_mse_per_sample(outputs["heatmaps"], batch["heatmaps"])

    return loss_B


def make_regression_val_loss(model, *, aleatoric_norm: str = "l2", mse_weight: float = 0.0):
    """A jitted `loss_B(params, batch_stats, batch)`: DeepPrior's pose loss (`deepprior_loss`)
    of each example alone, without dropout; `batch` keys `depth`, `joints`, `visible`."""

    def one(outputs, joints_Jx3, visible_J):
        return deepprior_loss(jax.tree.map(lambda a: a[None], outputs), joints_Jx3[None],
                              visible_J[None], aleatoric_norm=aleatoric_norm,
                              mse_weight=mse_weight)

    @jax.jit
    def loss_B(params, batch_stats, batch):  # pylint: disable=unused-argument
        outputs = model.apply({"params": params}, batch["depth"], mc=False)
        pose = {k: v for k, v in outputs.items() if k in ("pose_BxJx3", "log_var_BxJx3")}
        return jax.vmap(one)(pose, batch["joints"], batch["visible"])

    return loss_B


# ------------------------------------------------------------------------------- inference

def make_heatmap_predict(model, aux_model=None):
    """A jitted `predict(state, images_BxSxSx3) -> dict` in inference mode.

    Keys: `heatmaps_BxHxWxJ` (last stack), `joints_BxJx2` (decoded, heatmap cells),
    `confidence_BxJ`, `penultimate_BxC`, and the auxiliary net's outputs if any.
    """

    @jax.jit
    def predict(state, images):
        outputs = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                              images, train=False)
        last = outputs["heatmaps"][:, -1]
        joints, confidence = heatmaps_lib.decode(last)
        result = {"heatmaps_BxHxWxJ": last, "joints_BxJx2": joints,
                  "confidence_BxJ": confidence, "penultimate_BxC": outputs["penultimate"]}
        if aux_model is not None:
            result.update(aux_model.apply({"params": state.aux_params}, outputs))
        return result

    return predict
