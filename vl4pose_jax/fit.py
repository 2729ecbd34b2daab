"""One round's training in a simulation: `fit(config, d, n, state, labelled_N, epochs, rnd, desc,
training=start_training(config))` runs `epochs` passes (drop-remainder batches, at least
`config.min_steps` steps) of the jitted train step `n.step` over the labelled records,
data-parallel over every device of every process, with the seeded, checkpointable grain loader
of round `rnd`, returns the trained state and writes the epochs into its `Training` record
(None for the training of old runs, `Config.legacy_training`, which this module runs exactly
as before). Every epoch then ends with the mean train pose loss
and, when the config reads one (`Config.needs_validation`), the validation pose loss
(`validation_loss`: every example of the `validation` split, inference mode); it drives the
learning rate of the pose network (`--lr_schedule=plateau`: PyTorch's ReduceLROnPlateau with
the VL4Pose reference's constants, a pure function `plateau_step` applied on the host once per
epoch; `cosine`: set on the host before every step), keeps a copy of the state best on
validation (`select_best`, which ends the round) and stops early. The learning rate is the
injected hyperparameter of the pose optimizer (`nets.set_pose_lr`; the auxiliary net's stays
fixed, as in the reference), rather than `optax.contrib.reduce_on_plateau`, whose state would
need the validation loss inside the jitted step and would scale the auxiliary updates too.
Every `config.checkpoint_every` epochs (and at the next step after SIGTERM / Ctrl-C) it calls
the mid-round `checkpoint(state, steps_done, iterator_state, training_meta, best)` hook, and
resumes exactly from such a checkpoint (`start_step`, `iterator_state`, `best`, and the record
`start_training(config, training_meta)`). A non-finite loss stops it with
`NonFiniteLossError`.
"""
from __future__ import annotations

import dataclasses
import math

import grain.python as gp
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from vl4pose_jax import data, parallel, preemption
from vl4pose_jax.nets import learning_rate, set_pose_lr
from vl4pose_jax.protocol import Config, NonFiniteLossError, SimulationError, grain_seed

_TRAIN_KEYS = {"heatmap": ("image", "heatmaps", "joints", "visible"),
               "regression": ("depth", "joints", "visible")}

# --lr_schedule=plateau: the VL4Pose reference's scheduler (main.py `define_hyperparams`,
# reference notes §6.3): ReduceLROnPlateau(factor=0.5, patience=5, cooldown=2, min_lr=3e-6)
# stepped once per epoch on the validation pose loss; the auxiliary net's group has min_lr =
# lr, so only the pose learning rate decreases. PyTorch's defaults for the rest: mode 'min',
# relative threshold 1e-4, and changes smaller than eps 1e-8 are ignored.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 5
PLATEAU_COOLDOWN = 2
PLATEAU_MIN_LR = 3e-6
PLATEAU_THRESHOLD = 1e-4
PLATEAU_EPS = 1e-8
# --lr_schedule=cosine: the learning rate decays over the round's steps to this fraction.
COSINE_FINAL = 0.01


@dataclasses.dataclass(frozen=True)
class Plateau:
    """ReduceLROnPlateau's state: the learning rate, the best loss so far (by the relative
    threshold; None before the first), the epochs since it improved and the cooldown epochs
    left."""
    lr: float
    best: float | None = None
    bad_epochs: int = 0
    cooldown: int = 0


def plateau_step(p: Plateau, loss: float) -> Plateau:
    """One epoch of PyTorch's `ReduceLROnPlateau.step(loss)` (mode 'min', threshold 'rel') with
    the reference's constants: after more than PLATEAU_PATIENCE epochs without a loss below
    best x (1 - PLATEAU_THRESHOLD) the rate is halved (not below PLATEAU_MIN_LR), then
    PLATEAU_COOLDOWN epochs count no bad epoch."""
    if p.best is None or loss < p.best * (1 - PLATEAU_THRESHOLD):
        best, bad = loss, 0
    else:
        best, bad = p.best, p.bad_epochs + 1
    cooldown, lr = p.cooldown, p.lr
    if cooldown > 0:
        cooldown, bad = cooldown - 1, 0
    if bad > PLATEAU_PATIENCE:
        reduced = max(lr * PLATEAU_FACTOR, PLATEAU_MIN_LR)
        lr = reduced if lr - reduced > PLATEAU_EPS else lr
        cooldown, bad = PLATEAU_COOLDOWN, 0
    return Plateau(lr, best, bad, cooldown)


def cosine_lr(base_lr: float, step: int, steps: int) -> float:
    """--lr_schedule=cosine: the learning rate of step `step` (0-based) of `steps`."""
    return base_lr * (COSINE_FINAL + (1 - COSINE_FINAL) * 0.5 * (1 + math.cos(
        math.pi * step / steps)))


@dataclasses.dataclass
class Training:
    """A round's training so far, on the host (its `meta()` resumes it exactly): per finished
    epoch [mean train pose loss, validation pose loss or None, pose learning rate of the
    epoch's last step] (`history_Ex3`); the pose learning rate now; the plateau state; the
    lowest validation loss and its epoch (1-based); the current epoch's train-loss sum and
    steps."""
    lr: float
    plateau: Plateau | None = None
    history_Ex3: list = dataclasses.field(default_factory=list)
    best_val: float | None = None
    best_epoch: int | None = None
    loss_sum: float = 0.0
    loss_steps: int = 0

    def meta(self) -> dict:
        return dataclasses.asdict(self)

    def end_epoch(self, val_loss: float | None) -> bool:
        """Close the epoch: its history entry, the best validation loss; whether it improved."""
        self.history_Ex3.append([self.loss_sum / max(self.loss_steps, 1), val_loss, self.lr])
        self.loss_sum, self.loss_steps = 0.0, 0
        improved = val_loss is not None and (self.best_val is None or val_loss < self.best_val)
        if improved:
            self.best_val, self.best_epoch = val_loss, len(self.history_Ex3)
        return improved

    def row(self) -> dict:
        """The result row's fields: epochs run, best epoch, final pose learning rate, best
        validation loss and the per-epoch history (6 significant digits)."""
        def short(v):
            return None if v is None else float(f"{v:.6g}")
        columns = zip(*self.history_Ex3) if self.history_Ex3 else ([], [], [])
        return {"epochs_run": len(self.history_Ex3), "best_epoch": self.best_epoch,
                "final_lr": short(self.history_Ex3[-1][2] if self.history_Ex3 else self.lr),
                "val_loss": short(self.best_val),
                "history": {name: [short(v) for v in col] for name, col in
                            zip(("train_loss", "val_loss", "lr"), columns)}}


def copy_state(state):
    """A state with its own buffers (train steps donate theirs)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)


def start_training(config: Config, meta: dict | None = None) -> Training | None:
    """The record of a round's training: new, or resumed from a mid-round checkpoint's `meta`
    (`Training.meta`); None for the training of old runs (`Config.legacy_training`)."""
    if config.legacy_training:
        return None
    if meta is not None:
        plateau = None if meta["plateau"] is None else Plateau(**meta["plateau"])
        return Training(**{**meta, "plateau": plateau})
    lr = learning_rate(config)
    return Training(lr, Plateau(lr) if config.lr_schedule == "plateau" else None)


def fit(config: Config, d, n, state, labelled_N, epochs: int, rnd: int, desc: str, *,
        training: Training | None = None, start_step: int = 0,
        iterator_state: bytes | None = None, best=None, checkpoint=None):
    """`epochs` passes (drop-remainder batches) over the labelled set `labelled_N` of the
    records `d.source` (a `records.Data`), and at least `config.min_steps` steps; returns the
    new state (with `select_best`, the best on validation) and records every epoch in
    `training` (`start_training`; one of its own when None). Every `config.checkpoint_every`
    epochs, `checkpoint(state, steps_done, iterator_state, training meta, best state)`;
    `start_step` / `iterator_state` / `best` (and `training`) resume from such a checkpoint.
    After a signal noted by `preemption`, the same checkpoint at the next step boundary, then
    `preemption.Interrupted`."""
    mesh = parallel.train_mesh()
    batch_size = global_batch_size(config.batch_size, len(labelled_N), mesh)
    steps_per_epoch = max(1, len(labelled_N) // batch_size)
    steps = max(epochs * steps_per_epoch, config.min_steps) if epochs > 0 else 0
    record = training if training is not None else start_training(config)
    if steps <= start_step:
        return state
    multi = jax.process_count() > 1
    loader = data.make_loader(d.source, indices=labelled_N,
                              batch_size=batch_size // jax.process_count(),
                              seed=grain_seed(config.seed, rnd), train=True,
                              image_size=d.image_size, num_workers=config.num_workers,
                              shard_options=gp.ShardByJaxProcess(drop_remainder=False)
                              if multi else None)
    it = iter(loader)
    if iterator_state is not None:
        it.set_state(iterator_state)
    state = parallel.replicate(state, mesh)
    if best is not None:
        best = parallel.replicate(best, mesh)
    if record is not None and config.lr_schedule != "constant" and start_step == 0:
        state = set_pose_lr(state, record.lr)   # the schedule starts again every round
    every = config.checkpoint_every * steps_per_epoch
    keys = _TRAIN_KEYS[config.task]
    pending = None  # the last step's losses, read after the next step is dispatched

    def check(logs, step):
        loss = {k: float(parallel.host_local(v)) for k, v in logs.items()}
        if not all(np.isfinite(v) for v in loss.values()):
            raise NonFiniteLossError(
                f"{desc}: non-finite loss {loss} at step {step}; training stopped. The last "
                "good checkpoint is kept; try a lower --lr.")
        if record is not None:
            record.loss_sum += loss["pose_loss"]
            record.loss_steps += 1
        bar.update()
        bar.set_postfix({k: f"{v:.3g}" for k, v in loss.items()}, refresh=False)

    def flush():
        nonlocal pending
        if pending is not None:
            check(*pending)
            pending = None

    def save(done):
        flush()
        checkpoint(state, done, it.get_state(), None if record is None else record.meta(), best)

    with tqdm(total=steps, initial=start_step, desc=desc, unit="step", leave=False,
              disable=None if config.progress else True) as bar:
        for done in range(start_step + 1, steps + 1):
            if record is not None and config.lr_schedule == "cosine":
                record.lr = cosine_lr(learning_rate(config), done - 1, steps)
                state = set_pose_lr(state, record.lr)
            batch = next(it)  # decoded while the device runs the previous step
            state, logs = n.step(state, parallel.shard_batch({k: batch[k] for k in keys}, mesh))
            flush()
            pending = (logs, done)
            if record is not None and (done % steps_per_epoch == 0 or done == steps):
                flush()
                state, best, stop = _end_epoch(config, d, n, state, record, best)
                if stop:
                    break
            saved = checkpoint is not None and every > 0 and done % every == 0 and done < steps
            if saved:
                save(done)
            signum = checkpoint is not None and done < steps and preemption.requested(multi)
            if signum:   # SIGTERM / Ctrl-C: save where we are (unless just saved) and stop
                if not saved:
                    save(done)
                raise preemption.Interrupted(signum, f"{desc} at step {done} of {steps}")
        flush()
    if config.select_best and best is not None:
        state = best
    return state


def _end_epoch(config: Config, d, n, state, record: Training, best):
    """The end of an epoch: validation loss, history, best state, plateau step; (state, best,
    whether to stop early)."""
    val_loss = validation_loss(config, d, n, state) if config.needs_validation else None
    if record.end_epoch(val_loss) and config.select_best:
        best = copy_state(state)
    if record.plateau is not None:
        record.plateau = plateau_step(record.plateau, val_loss)
        if record.plateau.lr != record.lr:
            record.lr = record.plateau.lr
            state = set_pose_lr(state, record.lr)
    stop = (config.early_stopping > 0 and record.best_epoch is not None
            and len(record.history_Ex3) - record.best_epoch >= config.early_stopping)
    return state, best, stop


def validation_loss(config: Config, d, n, state) -> float:
    """The mean pose loss (`n.val_loss`: heatmap MSE, or DeepPrior's pose loss) over every
    example of the validation split `d.validation`, in inference mode without augmentation,
    on this process's devices (with several processes, the primary's value for all)."""
    mesh = parallel.data_mesh()
    params, batch_stats = parallel.replicate((state.params, state.batch_stats), mesh)
    loader = data.make_loader(d.validation, batch_size=config.batch_size, train=False,
                              num_workers=config.num_workers, image_size=d.image_size)
    keys = _TRAIN_KEYS[config.task]
    total, count = 0.0, 0
    for batch in loader:
        rows = len(batch[keys[0]])
        pad = -rows % parallel.num_devices(mesh)   # every device gets as many rows
        padded = {k: np.concatenate([batch[k], np.repeat(batch[k][-1:], pad, 0)])
                  for k in keys}
        loss_B = np.asarray(n.val_loss(params, batch_stats, parallel.shard_batch(padded, mesh)))
        total += float(np.sum(loss_B[:rows], dtype=np.float64))
        count += rows
    mean = total / count
    if jax.process_count() > 1:   # one value for every process's schedule and stop
        mean = float(parallel.gather_bytes(repr(mean).encode())[0].decode())
    return mean


def global_batch_size(batch_size: int, num_labelled: int, mesh) -> int:
    """The training batch: `batch_size` (or the labelled set, if smaller) rounded down to a
    multiple of the device count, so every device gets the same share."""
    devices = parallel.num_devices(mesh)
    size = min(batch_size, num_labelled) // devices * devices
    if size == 0:
        raise SimulationError(f"a training batch of {min(batch_size, num_labelled)} cannot be "
                              f"split over {devices} devices; raise --batch_size or --init_size "
                              f"to at least {devices}.")
    return size
