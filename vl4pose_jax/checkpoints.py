"""Checkpoint I/O of a workdir, shared by the AL simulator and the scorer: Orbax managers (one
per (method, seed) and kind, `rounds` at the end of every round and `training` mid-round),
saving and restoring a `train.TrainState` (typed PRNG keys stored as raw key data) with a JSON
`meta` beside it, and the layout `WORKDIR/checkpoints/<method>/seed_<seed>/<kind>`.

    mngr = checkpoints.manager(checkpoints.run_dir(workdir, "vl4pose", 0) / "rounds")
    checkpoints.save(mngr, step, state, {"round": 0})
    state, meta = checkpoints.restore(mngr, mngr.latest_step(), template_state)

`simulate.load_trained(workdir)` builds the template from the workdir's config and restores
the newest round: the one way to get a trained model out of a workdir.
"""
from __future__ import annotations

import pathlib

import jax


def run_dir(workdir, method: str, seed: int) -> pathlib.Path:
    """The checkpoint folder of one (method, seed) of a workdir."""
    return pathlib.Path(workdir) / "checkpoints" / method / f"seed_{seed}"


def _to_saveable(state):
    return state.replace(rng=jax.random.key_data(state.rng))


def _from_saved(state):
    return state.replace(rng=jax.random.wrap_key_data(state.rng))


def manager(path: pathlib.Path, create: bool = True):
    """A synchronous Orbax `CheckpointManager` over `path` keeping the two newest steps."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    return ocp.CheckpointManager(pathlib.Path(path).absolute(),
                                 options=ocp.CheckpointManagerOptions(
                                     max_to_keep=2, create=create,
                                     enable_async_checkpointing=False))


def save(mngr, step: int, state, meta: dict):
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_to_saveable(state)),
                                            meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()


def restore(mngr, step: int, template):
    """(state, meta) of `step`; `template` is a state of the same structure (its values are
    unused, its shardings are kept)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(template))
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                     meta=ocp.args.JsonRestore()))
    return _from_saved(out["state"]), out["meta"]
