"""One round's training in a simulation: `fit(config, d, n, state, labelled_N, epochs, rnd,
desc)` runs `epochs` passes (drop-remainder batches, at least `config.min_steps` steps) of the
jitted train step `n.step` over the labelled records, data-parallel over every device of every
process, with the seeded, checkpointable grain loader of round `rnd`; every
`config.checkpoint_every` epochs (and at the next step after SIGTERM / Ctrl-C) it calls the
mid-round `checkpoint(state, steps_done, iterator_state)` hook, and resumes from such a
checkpoint (`start_step`, `iterator_state`). A non-finite loss stops it with
`NonFiniteLossError`.
"""
from __future__ import annotations

import grain.python as gp
import jax
import numpy as np
from tqdm import tqdm

from vl4pose_jax import data, parallel, preemption
from vl4pose_jax.protocol import Config, NonFiniteLossError, SimulationError, grain_seed

_TRAIN_KEYS = {"heatmap": ("image", "heatmaps", "joints", "visible"),
               "regression": ("depth", "joints", "visible")}


def fit(config: Config, d, n, state, labelled_N, epochs: int, rnd: int, desc: str, *,
        start_step: int = 0, iterator_state: bytes | None = None, checkpoint=None):
    """`epochs` passes (drop-remainder batches) over the labelled set `labelled_N` of the
    records `d.source` (a `records.Data`), and at least `config.min_steps` steps; returns the
    new state. Every `config.checkpoint_every` epochs, `checkpoint(state, steps_done,
    iterator_state)`; `start_step` / `iterator_state` resume from such a checkpoint. After a
    signal noted by `preemption`, the same checkpoint at the next step boundary, then
    `preemption.Interrupted`."""
    mesh = parallel.train_mesh()
    batch_size = global_batch_size(config.batch_size, len(labelled_N), mesh)
    steps_per_epoch = max(1, len(labelled_N) // batch_size)
    steps = max(epochs * steps_per_epoch, config.min_steps) if epochs > 0 else 0
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
    every = config.checkpoint_every * steps_per_epoch
    keys = _TRAIN_KEYS[config.task]
    pending = None  # the last step's losses, read after the next step is dispatched

    def check(logs, step):
        loss = {k: float(parallel.host_local(v)) for k, v in logs.items()}
        if not all(np.isfinite(v) for v in loss.values()):
            raise NonFiniteLossError(
                f"{desc}: non-finite loss {loss} at step {step}; training stopped. The last "
                "good checkpoint is kept; try a lower --lr.")
        bar.update()
        bar.set_postfix({k: f"{v:.3g}" for k, v in loss.items()}, refresh=False)

    with tqdm(total=steps, initial=start_step, desc=desc, unit="step", leave=False,
              disable=None if config.progress else True) as bar:
        for done in range(start_step + 1, steps + 1):
            batch = next(it)  # decoded while the device runs the previous step
            state, logs = n.step(state, parallel.shard_batch({k: batch[k] for k in keys}, mesh))
            if pending is not None:
                check(*pending)
            pending = (logs, done)
            if checkpoint is not None and every > 0 and done % every == 0 and done < steps:
                check(*pending)
                pending = None
                checkpoint(state, done, it.get_state())
            signum = checkpoint is not None and done < steps and preemption.requested(multi)
            if signum:   # SIGTERM / Ctrl-C: save where we are (unless just saved) and stop
                if pending is not None:
                    check(*pending)
                    pending = None
                    checkpoint(state, done, it.get_state())
                raise preemption.Interrupted(signum, f"{desc} at step {done} of {steps}")
        if pending is not None:
            check(*pending)
    return state


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
