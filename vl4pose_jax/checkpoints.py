"""Checkpoint I/O of a workdir, shared by the AL simulator and the scorer: Orbax managers (one
per (method, seed) and kind, `rounds` at the end of every round and `training` mid-round),
saving and restoring a `train.TrainState` (typed PRNG keys stored as raw key data) with a JSON
`meta` beside it, and the layout `WORKDIR/checkpoints/<method>/seed_<seed>/<kind>`.

    mngr = checkpoints.manager(checkpoints.run_dir(workdir, "vl4pose", 0) / "rounds")
    checkpoints.save(mngr, step, state, {"round": 0})
    state, meta = checkpoints.restore(mngr, mngr.latest_step(), template_state)

`simulate.load_trained(workdir)` builds the template from the workdir's config and restores
the newest round: the one way to get a trained model out of a workdir.

Reliability: `lock_workdir` takes the run lock (`locking.FolderLock`, joined by every process of
a multi-process run through the primary); `restore_newest_intact` skips unreadable steps (moved
to `<run dir>/unreadable/`) with a warning, or says what to delete; `save` turns storage
failures (disk full, read-only) into one `OSError` naming the folder.
"""
from __future__ import annotations

import errno
import logging
import os
import pathlib
import shutil

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


# TensorStore reports storage failures as ValueError with a status code: their errno.
_STORAGE_ERRORS = {"RESOURCE_EXHAUSTED": errno.ENOSPC, "No space left": errno.ENOSPC,
                   "Read-only file system": errno.EROFS, "PERMISSION_DENIED": errno.EACCES,
                   "Disk quota exceeded": errno.EDQUOT}


def save(mngr, step: int, state, meta: dict):
    """Save `step`; a storage failure (disk full, read-only, no permission) is an `OSError`
    naming the checkpoint folder, raised before writing when the disk lacks the state's size
    (Orbax keeps an unfinished step in a tmp folder that the next manager cleans up, so earlier
    steps stay intact)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    for name in ("absl", "asyncio"):   # Orbax's threads log each failure with a traceback
        if not any(isinstance(f, _StorageErrorFilter) for f in logging.getLogger(name).filters):
            logging.getLogger(name).addFilter(_StorageErrorFilter())
    saveable = _to_saveable(state)
    need = sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(saveable)) + (1 << 20)
    folder = pathlib.Path(mngr.directory)
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    if free < need:   # fail before Orbax starts its writer threads
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} before saving step {step} "
                      f"({free:,} bytes free, about {need:,} needed)", str(folder))
    try:
        mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(saveable), meta=ocp.args.JsonSave(meta)))
        mngr.wait_until_finished()
    except OSError:
        raise
    except Exception as err:  # pylint: disable=broad-except
        code = next((c for key, c in _STORAGE_ERRORS.items() if key in str(err)), None)
        if code is None:
            raise
        raise OSError(code, f"{os.strerror(code)} while saving step {step}",
                      str(mngr.directory)) from None


class _StorageErrorFilter(logging.Filter):
    """Drops the log records of Orbax's threads and tasks about a storage failure (`save`
    raises it as one OSError); every other record passes."""

    def filter(self, record):
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        return not (("orbax" in record.pathname or "orbax" in text or record.name == "asyncio")
                    and any(key in text for key in _STORAGE_ERRORS))


def restore(mngr, step: int, template):
    """(state, meta) of `step`; `template` is a state of the same structure (its values are
    unused, its shardings are kept)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(template))
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                     meta=ocp.args.JsonRestore()))
    return _from_saved(out["state"]), out["meta"]


# ------------------------------------------------------------------ reliability: lock, fallback

class CheckpointError(Exception):
    """A workdir that cannot be used as it is, explained in one paragraph (what to delete)."""


def lock_workdir(workdir):
    """The run lock of `workdir` (`locking.FolderLock`, already acquired; `.release()` it), or
    None on a non-primary process. The primary process of a run takes it for all of the run's
    processes and tells them whether it succeeded, so every process of one run joins it and a
    second launch (another primary) is refused with `locking.LockedError` naming the holder.
    `locking.LockIOError` when the workdir is a file or cannot be written."""
    from vl4pose_jax import locking, parallel  # pylint: disable=import-outside-toplevel
    lock, failure = None, None
    if parallel.is_primary():
        try:
            lock = locking.FolderLock(workdir, "run").acquire()
        except (locking.LockedError, locking.LockIOError) as err:
            failure = err
    if jax.process_count() > 1:   # the primary's outcome, on every process
        word = parallel.gather_bytes(b"" if not parallel.is_primary() else
                                     (str(failure) if failure else "").encode())[0].decode()
        if word and failure is None:
            failure = locking.LockedError(word)
    if failure is not None:
        raise failure
    return lock


def _quarantine(mngr, step: int) -> pathlib.Path:
    """Move an unreadable step out of the manager's folder (kept for inspection)."""
    from vl4pose_jax import parallel  # pylint: disable=import-outside-toplevel
    directory = pathlib.Path(mngr.directory)
    target = directory.parent / "unreadable" / f"{directory.name}_{step}"
    if parallel.is_primary():
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix, candidate = 0, target
        while candidate.exists():
            suffix += 1
            candidate = target.with_name(f"{target.name}.{suffix}")
        os.replace(directory / str(step), candidate)
        target = candidate
    return target


def restore_newest_intact(mngr, template, *, steps=None, required: bool = True, log=print):
    """(step, state, meta) of the newest of `steps` (default: all of `mngr`'s) that restores.
    An unreadable step (a truncated array file, missing metadata) is skipped with a warning
    through `log` naming it, and moved to `<run dir>/unreadable/` once an older step has
    restored (or, with `required=False`, when none does: mid-round checkpoints, whose round can
    start again). With none readable and `required`, `CheckpointError` says what to delete;
    (None, None, None) when there is nothing to restore."""
    from vl4pose_jax import parallel  # pylint: disable=import-outside-toplevel
    steps = sorted(mngr.all_steps() if steps is None else steps, reverse=True)
    bad = []
    found = (None, None, None)
    for step in steps:
        try:
            state, meta = restore(mngr, step, template)
        except Exception as err:  # pylint: disable=broad-except
            first_line = (str(err).splitlines() or [""])[0][:200]
            bad.append((step, f"{type(err).__name__}: {first_line}"))
            continue
        found = (step, state, meta)
        break
    if not bad:
        return found
    directory = pathlib.Path(mngr.directory)
    if found[0] is None and required:
        raise CheckpointError(
            f"no checkpoint in {directory} can be read: "
            + "; ".join(f"step {s} ({why})" for s, why in bad)
            + f". Delete {directory} to run its rounds again from the start (or restore the "
            "folder from a backup), then rerun the same command.")
    moved = [_quarantine(mngr, s) for s, _ in bad]
    if jax.process_count() > 1:
        parallel.gather_bytes(b"")   # every process waits for the primary's move
    mngr.reload()
    log("warning: skipped unreadable checkpoint(s) "
        + "; ".join(f"{directory / str(s)} ({why}), moved to {m}"
                    for (s, why), m in zip(bad, moved))
        + (f"; resuming from step {found[0]}" if found[0] is not None
           else "; starting this part again from its beginning"))
    return found
