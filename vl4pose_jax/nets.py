"""Which networks an experiment trains, built and jitted once: `nets(...)` gives the pose model,
the optional auxiliary net and the jitted `init`, train `step`, `predict`, validation loss and
optimizer reset (a `Nets` bundle), cached by what they depend on (task, skeleton, preset,
auxiliary head, learning rate and whether it is scheduled, DeepPrior variant, precision), so
that methods, rounds and runs share compilations; `nets_for(config, method)` resolves what a
method declares (`acquisition.Method`: its auxiliary head, its DeepPrior variant) to that
bundle, and `multi_step` trains several auxiliary heads beside one hourglass (the shared round
0). A scheduled learning rate (`--lr_schedule` other than constant) makes the pose network's
Adam `optax.inject_hyperparams(optax.adam)`, whose `learning_rate` the training loop sets
(`set_pose_lr`); the auxiliary net's Adam stays at the fixed rate, as in the reference.

    n = nets.nets_for(config, "vl4pose")
    state = n.init(protocol.round_key(seed, 0, "init"))
    state, logs = n.step(state, batch)
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vl4pose_jax import acquisition, data, heatmaps, likelihood, models, train
from vl4pose_jax.protocol import HAND_SIZES, HUMAN_PRESETS, PRECISIONS, Config
from vl4pose_jax.skeletons import Skeleton

# Local maxima per joint considered by VL4Pose's pose refinement (Eq. 6) in evaluation.
REFINE_PEAKS = 5
# The DeepPrior variants of `acquisition.DEEPPRIORS`: (dropout site, aleatoric head).
_DEEPPRIOR = {"plain": (None, False), "aleatoric": (None, True), "bayesian": ("A", True)}


@dataclasses.dataclass(frozen=True)
class Nets:
    model: Any
    aux: Any
    init: Any       # key -> TrainState (jitted)
    step: Any       # (state, batch) -> (state, logs)
    predict: Any    # (state, inputs) -> dict; (state, inputs, batch_index) if `stochastic`
    eval_keys: tuple = ("joints_BxJx2",)   # predict's joint decodings evaluated on the test split
    stochastic: bool = False  # MC dropout: each test batch draws its own masks (`batch_index`)
    val_loss: Any = None      # (params, batch_stats, batch) -> pose loss per example (B,)
    fresh_optimizer: Any = None  # state -> state with new Adam states (pose and auxiliary)


@functools.lru_cache(maxsize=None)
def _pose_init(model, input_shape: tuple, kwargs: tuple):
    """A jitted `key -> pose variables`, shared by every auxiliary head (XLA:CPU compiles
    initialisers slowly, so each model is compiled once)."""
    return jax.jit(lambda k: model.init(k, jnp.zeros(input_shape, jnp.float32), **dict(kwargs)))


def _hourglass(skeleton: Skeleton, preset: str, precision: str):
    return models.StackedHourglass(num_joints=skeleton.num_joints, dtype=PRECISIONS[precision],
                                   **HUMAN_PRESETS[preset].kwargs)


def optimizers(lr: float, scheduled: bool) -> tuple:
    """(pose, auxiliary) Adam at `lr`; the pose one with an injected, settable learning rate
    when `scheduled`."""
    aux_tx = optax.adam(lr)
    return (optax.inject_hyperparams(optax.adam)(learning_rate=lr) if scheduled else aux_tx,
            aux_tx)


def set_pose_lr(state, lr: float):
    """`state` with the pose optimizer's injected learning rate set to `lr` (the array keeps
    the sharding of the one it replaces)."""
    opt = state.opt_state
    old = opt.hyperparams["learning_rate"]
    value = np.asarray(lr, old.dtype)
    new = jax.make_array_from_callback((), old.sharding, lambda _: value)
    return state.replace(opt_state=opt._replace(hyperparams={**opt.hyperparams,
                                                             "learning_rate": new}))


def _fresh_optimizer(tx, aux_tx):
    """A jitted `state -> state` whose pose and auxiliary Adam states are new."""
    return jax.jit(lambda state: state.replace(
        opt_state=tx.init(state.params),
        aux_opt_state=None if state.aux_params is None else aux_tx.init(state.aux_params)))


@functools.lru_cache(maxsize=None)
def nets(task: str, skeleton: Skeleton, preset: str, head: str | None, lr: float,
         deepprior: tuple = (None, False), precision: str = "float32",
         mc_samples: int = 70, scheduled: bool = False) -> Nets:
    """Modules and jitted functions for `task` ('heatmap': stacked hourglass; 'regression':
    DeepPrior with `deepprior` = (dropout site, aleatoric head)) on `skeleton`, with the
    auxiliary net of `head` (None: none) and Adam at `lr` (`optimizers`); cached."""
    dtype = PRECISIONS[precision]
    tx, aux_tx = optimizers(lr, scheduled)
    fresh = _fresh_optimizer(tx, aux_tx)
    if task == "heatmap":
        p = HUMAN_PRESETS[preset]
        model = _hourglass(skeleton, preset, precision)
        aux = None if head is None else models.AuxNet(
            head=head, num_links=skeleton.num_links, num_joints=skeleton.num_joints, dtype=dtype)
        pose_init = _pose_init(model, (1, p.input_size, p.input_size, 3), (("train", False),))
        init_aux = jax.jit(lambda k, v: train.init_heatmap_state(
            model, aux, k, p.input_size, tx, aux_tx, pose_variables=v))
        init = lambda k: init_aux(k, pose_init(k))  # noqa: E731
        step = train.make_heatmap_train_step(model, aux, tx, aux_tx, skeleton=skeleton)
        predict = train.make_heatmap_predict(model, aux)
        val_loss = train.make_heatmap_val_loss(model)
        if head != "vl4pose_heatmap":
            return Nets(model, aux, init, step, predict, val_loss=val_loss,
                        fresh_optimizer=fresh)

        @jax.jit
        def predict_refined(state, images):
            """Also the integer argmax pose and VL4Pose's refined pose (Eq. 6: the most likely
            configuration of up to REFINE_PEAKS local maxima per joint), both in cells."""
            out = predict(state, images)
            heat, links = out["heatmaps_BxHxWxJ"], out["link_params_BxLx2"]
            out["argmax_BxJx2"] = heatmaps.argmax_xy(heat)
            out["refined_BxJx2"] = likelihood.refine_pose(
                heat, links, skeleton, num_peaks=REFINE_PEAKS, exclude_border=False,
                reference_size=heatmaps.REFERENCE_MAP_SIZE)
            return out

        return Nets(model, aux, init, step, predict_refined,
                    ("joints_BxJx2", "argmax_BxJx2", "refined_BxJx2"), val_loss=val_loss,
                    fresh_optimizer=fresh)
    dropout, aleatoric = deepprior
    model = models.DeepPrior(num_joints=skeleton.num_joints, dropout=dropout, aleatoric=aleatoric,
                             dtype=dtype)
    aux = None if head is None else models.AuxNet(
        head=head, num_links=skeleton.num_links, num_joints=skeleton.num_joints, pooling="vector",
        dtype=dtype)
    size = HAND_SIZES[preset]
    pose_init = _pose_init(model, (1, size, size, 1), (("mc", False),))
    init_aux = jax.jit(lambda k, v: train.init_regression_state(model, aux, k, size, tx, aux_tx,
                                                                pose_variables=v))
    init = lambda k: init_aux(k, pose_init(k))  # noqa: E731
    step = train.make_regression_train_step(model, aux, tx, aux_tx, skeleton=skeleton)
    val_loss = train.make_regression_val_loss(model)

    if dropout is None:
        @jax.jit
        def predict(state, depth):
            return model.apply({"params": state.params}, depth, mc=False)
        return Nets(model, aux, init, step, predict, ("pose_BxJx3",), val_loss=val_loss,
                    fresh_optimizer=fresh)

    @jax.jit
    def predict_mc(state, depth, batch_index=0):
        """Bayesian DeepPrior: the mean of the MC-dropout passes (CKE paper); batch t draws its
        masks from fold_in(key(0), t), so no two test batches share them."""
        key = jax.random.fold_in(jax.random.key(0), batch_index)
        mc = models.mc_predict(model, {"params": state.params}, depth, key,
                               num_samples=mc_samples, chunk=10)
        return {"pose_BxJx3": mc["mean_BxJx3"]}

    return Nets(model, aux, init, step, predict_mc, ("pose_BxJx3",), stochastic=True,
                val_loss=val_loss, fresh_optimizer=fresh)


def learning_rate(config: Config) -> float:
    """`config.lr`, else the task's default (hourglass 3e-4, DeepPrior 1e-3)."""
    if config.lr is not None:
        return float(config.lr)
    return train.HOURGLASS_LR if config.task == "heatmap" else train.DEEPPRIOR_LR


def deepprior_of(config: Config, method: str) -> str:
    """The DeepPrior variant `method` trains in `config` (`acquisition.DEEPPRIORS`)."""
    declared = acquisition.get(method).deepprior
    if config.bayesian_deepprior or declared == "bayesian":
        # Bayesian DeepPrior (CKE paper): dropout after the convolutions, the aleatoric head
        # with the Eq. 2 loss, evaluated as the mean of the T MC passes of the method.
        return "bayesian"
    return declared


def nets_for(config: Config, method: str) -> Nets:
    """The networks `method` trains in `config`."""
    task = config.task
    head = acquisition.get(method).aux_head(task)
    skeleton = data.spec(config.dataset, data_dir=config.data_dir).skeleton
    deepprior, mc_samples = (None, False), 70
    if task == "regression":
        variant = deepprior_of(config, method)
        deepprior = _DEEPPRIOR[variant]
        if variant == "bayesian":
            mc_samples = int(config.options(method).get("num_samples", 70))
    return nets(task, skeleton, config.preset, head, learning_rate(config), deepprior,
                config.precision, mc_samples, is_scheduled(config))


def is_scheduled(config: Config) -> bool:
    """Whether `config`'s pose learning rate changes during training (`set_pose_lr`)."""
    return config.lr_schedule != "constant"


@functools.lru_cache(maxsize=None)
def multi_step(skeleton: Skeleton, preset: str, heads: tuple, lr: float, precision: str,
               scheduled_lr: bool = False):
    """One jitted train step of one hourglass and an auxiliary net per head of `heads`."""
    model = _hourglass(skeleton, preset, precision)
    auxs = {h: models.AuxNet(head=h, num_links=skeleton.num_links,
                             num_joints=skeleton.num_joints, dtype=PRECISIONS[precision])
            for h in heads}
    return train.make_heatmap_multi_step(model, auxs, *optimizers(lr, scheduled_lr),
                                         skeleton=skeleton)
