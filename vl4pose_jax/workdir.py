"""The one owner of a workdir's layout and files:

    WORKDIR/config.json                      the run's `Config.identity()` (checked on resume)
    WORKDIR/data.json                        where its data was (`record_data`): dataset, data
                                             directory, preset, skeleton (not part of identity)
    WORKDIR/results.jsonl                    one row per finished round (primary process)
    WORKDIR/.run.lock                        the run lock (`lock`, held by the primary)
    WORKDIR/checkpoints/<method>/seed_<s>/rounds     end of every round: state + meta
    WORKDIR/checkpoints/<method>/seed_<s>/training   mid-round: state (+ best state) +
                                                     data-iterator states + training record
    WORKDIR/checkpoints/round0_shared*/seed_<s>/training   a shared round 0, mid-training

Orbax managers keep the two newest steps; a state (`train.TrainState`, typed PRNG keys stored as
raw key data) is saved with a JSON `meta` beside it. `load_trained(workdir)` is the one way to
take a trained model out of a workdir (the scorer, diagnostics, notebooks); `MidRound` is the
one mid-round save/restore of a training. Reliability: `lock` takes the run lock (joined by
every process of a multi-process run through the primary); `restore_newest_intact` skips
unreadable steps (moved to `<run dir>/unreadable/`) with a warning, or says what to delete;
`save` turns storage failures (disk full, read-only) into one `OSError` naming the folder.

    mngr = workdir.manager(workdir.run_dir(path, "vl4pose", 0) / "rounds")
    workdir.save(mngr, step, state, {"round": 0})
    state, meta = workdir.restore(mngr, mngr.latest_step(), template_state)
    trained = workdir.load_trained(path)          # .config, .nets, .state, .meta
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import pathlib
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from vl4pose_jax import data, locking, parallel
from vl4pose_jax.nets import Nets, nets_for
from vl4pose_jax.protocol import Config, SimulatedCrash, SimulationError, round_key
from vl4pose_jax.train import TrainState

CONFIG_FILE = "config.json"
RESULT_FILE = "results.jsonl"
DATA_FILE = "data.json"
MID = 10**7   # mid-training checkpoint step = round * MID + steps done in the round


def run_dir(workdir, method: str, seed: int) -> pathlib.Path:
    """The checkpoint folder of one (method, seed) of a workdir."""
    return pathlib.Path(workdir) / "checkpoints" / method / f"seed_{seed}"


def _is_state(x) -> bool:
    return isinstance(x, TrainState)


def _to_saveable(tree):
    """`tree` (a state, or a dict of states) with raw key data for the typed PRNG keys."""
    return jax.tree.map(lambda s: s.replace(rng=jax.random.key_data(s.rng)), tree,
                        is_leaf=_is_state)


def _from_saved(tree):
    return jax.tree.map(lambda s: s.replace(rng=jax.random.wrap_key_data(s.rng)), tree,
                        is_leaf=_is_state)


def manager(path: pathlib.Path, create: bool = True):
    """A synchronous Orbax `CheckpointManager` over `path` keeping the two newest steps."""
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


@contextlib.contextmanager
def lock(workdir):
    """Hold the run lock of `workdir` (`lock_workdir`), as SimulationError when it is taken or
    the workdir cannot be written."""
    try:
        held = lock_workdir(workdir)
    except locking.LockedError as err:
        raise SimulationError(f"{err}. Two runs on one workdir would overwrite each other's "
                              "checkpoints: wait for it to finish (or stop it), or choose "
                              "another --workdir.") from None
    except locking.LockIOError as err:
        raise SimulationError(f"{err.strerror}: the workdir must be a folder on writable "
                              "storage; choose another --workdir.") from None
    try:
        yield held
    finally:
        if held is not None:
            held.release()


def restore_or_explain(mngr, template, *, steps=None, log=print):
    """`restore_newest_intact` of a round (`steps` None: required) or mid-round manager, its
    `CheckpointError` as SimulationError."""
    try:
        return restore_newest_intact(mngr, template, steps=steps, required=steps is None, log=log)
    except CheckpointError as err:
        raise SimulationError(str(err)) from None


# ------------------------------------------------------------------------- config, results

def check_config(config: Config, workdir) -> None:
    """Write the config on first use; refuse a different one later."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CONFIG_FILE
    ident = config.identity()
    if path.exists():
        # Workdirs written before --precision / --num_workers / --init_from / --min_steps /
        # --bayesian_deepprior / --lr_schedule, --optimizer_state, --select_best,
        # --early_stopping: the behaviour they had.
        old = {"precision": "float32", "num_workers": 0, "init_from": None, "min_steps": 0,
               "bayesian_deepprior": False, "lr_schedule": "constant",
               "optimizer_state": "carried", "select_best": False, "early_stopping": 0,
               **json.loads(path.read_text())}
        if old != ident:
            diff = {k: (old.get(k), ident.get(k)) for k in sorted(set(old) | set(ident))
                    if old.get(k) != ident.get(k)}
            raise SimulationError(
                f"{workdir} already holds a run with different settings "
                + ", ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
                + ". Rerun with the original flags to resume it, or choose another --workdir.")
    elif parallel.is_primary():
        atomic_write(path, json.dumps(ident, indent=2, sort_keys=True))


def load_config(workdir) -> Config:
    """The `Config` a workdir was run with (its `config.json`)."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise SimulationError(f"{workdir} holds no {CONFIG_FILE}: not a workdir of "
                              "`python -m experiments.al` (or the run never started).")
    try:
        fields = json.loads(path.read_text())
        fields["methods"] = tuple(fields["methods"])
        return Config(**fields)
    except (ValueError, KeyError, TypeError) as err:
        raise SimulationError(f"{path} is not a readable run configuration ({err}).") from None


def record_data(workdir, config: Config) -> None:
    """Write `WORKDIR/data.json`: the dataset, its data directory (absolute; `config.json`
    leaves it out, as a dataset may move between resumes), the preset and the skeleton
    (joint names and tree links), so that a scorer or a fine-tuning run (`--init_from`) finds
    the data without flags (`recorded_data`). Rewritten at every launch; primary only."""
    if not parallel.is_primary():
        return
    data_dir = os.path.abspath(os.path.expanduser(config.data_dir or data.default_data_dir()))
    record = {"dataset": config.dataset, "data_dir": data_dir, "preset": config.preset,
              "skeleton": skeleton_record(config.dataset, data_dir)}
    atomic_write(pathlib.Path(workdir) / DATA_FILE, json.dumps(record, indent=2))


def skeleton_record(dataset: str, data_dir) -> dict | None:
    """{'names', 'links'} of `dataset`'s skeleton as prepared in `data_dir` (None: a COCO
    dataset not prepared there), as `record_data` writes it."""
    skeleton = data.spec(dataset, data_dir=data_dir).skeleton
    if skeleton is None:
        return None
    return {"names": list(skeleton.names), "links": [list(t) for t in skeleton.links]}


def recorded_data(workdir) -> dict | None:
    """`WORKDIR/data.json` (`record_data`) as a dict, or None (a workdir from before it, or not
    written by `experiments.al`)."""
    path = pathlib.Path(workdir) / DATA_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def atomic_write(path: pathlib.Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(workdir, rows_by_run: dict):
    """`results.jsonl`: the rows of every run (keyed for order), written by the primary."""
    if not parallel.is_primary():
        return
    lines = [json.dumps(row, sort_keys=True) for key in sorted(rows_by_run)
             for row in rows_by_run[key]]
    atomic_write(pathlib.Path(workdir) / RESULT_FILE, "".join(line + "\n" for line in lines))


def finished_round0(workdir, method: str, seed: int) -> bool:
    """Whether (method, seed) has a finished round, read off the folders (Orbax renames a
    step's folder into place when it is complete; no manager: creating one is collective)."""
    rounds = run_dir(workdir, method, seed) / "rounds"
    return rounds.is_dir() and any(p.name.isdigit() for p in rounds.iterdir())


# ------------------------------------------------------------------------------ mid-round

class MidRound:
    """The mid-round checkpoints of one training folder (`<run dir>/training`): step
    `round * MID + steps done`, with every process's data-iterator state and the training
    record (`fit.Training.meta`) in the meta; `with_best` (`--select_best`): the state best on
    validation so far is saved beside the state ({'state', 'best'}; the state itself stands in
    before the first validation). `resume(state, rnd)` gives the state and the `fit` arguments
    to continue round `rnd` (or `state` and {}; 'training' is the record's meta, for
    `fit.start_training`), `saver(rnd)` the `checkpoint` hook of `fit`."""

    def __init__(self, folder: pathlib.Path, label: str, log=print, crash_at: str | None = None,
                 with_best: bool = False):
        self.mngr = manager(pathlib.Path(folder) / "training")
        self.label, self.log, self.crash_at = label, log, crash_at
        self.with_best = with_best

    def resume(self, state, rnd: int) -> tuple:
        steps = [s for s in self.mngr.all_steps() if s // MID == rnd]
        template = {"state": state, "best": state} if self.with_best else state
        last, restored, meta = restore_or_explain(self.mngr, template, steps=steps, log=self.log)
        if last is None:
            return state, {}
        best = None
        if self.with_best:
            training = meta.get("training") or {}
            restored, best = restored["state"], (restored["best"] if training.get("best_epoch")
                                                 else None)
        iterators = meta.get("iterators") or [meta["iterator"]]   # older: one
        if len(iterators) != jax.process_count():
            raise SimulationError(
                f"{self.mngr.directory} was written by {len(iterators)} process(es) mid-round; "
                f"resume it with that many, not {jax.process_count()}.")
        self.log(f"{self.label} resuming round {rnd} at step {meta['step']}")
        return restored, dict(start_step=meta["step"],
                              iterator_state=iterators[jax.process_index()].encode(),
                              training=meta.get("training"), best=best)

    def saver(self, rnd: int):
        def checkpoint(state, done, iterator_state, training=None, best=None):
            iterators = [s.decode() for s in parallel.gather_bytes(iterator_state)]
            item = {"state": state, "best": state if best is None else best} \
                if self.with_best else state
            save(self.mngr, rnd * MID + done, item,
                 {"round": rnd, "step": done, "iterators": iterators, "training": training})
            if self.crash_at == f"train:{rnd}:{done}":
                raise SimulatedCrash(f"simulated crash in round {rnd} at step {done}")
        return checkpoint

    def close(self):
        self.mngr.close()


# ------------------------------------------------------------------------ trained models

@dataclasses.dataclass
class Trained:
    """A trained state taken from a workdir: its `config`, the `nets` to apply it, the `state`
    and the round checkpoint's `meta` (round, labelled ids and indices, results)."""
    config: Config
    method: str
    nets: Nets
    state: Any
    meta: dict


def load_trained(workdir, method: str | None = None, seed: int | None = None,
                 data_dir: str | None = None) -> Trained:
    """The newest round's trained state of (`method`, `seed`) in `workdir` (defaults: the run's
    only method, its first seed). The one function that takes a trained model out of a workdir,
    for the simulator's consumers (the scorer, notebooks)."""
    config = load_config(workdir)
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir)
    if method is None:
        if len(config.methods) != 1:
            raise SimulationError(f"{workdir} holds the methods {', '.join(config.methods)}; "
                                  "choose one with --method.")
        method = config.methods[0]
    if method not in config.methods:
        raise SimulationError(f"{workdir} holds no run of method {method!r}; it has: "
                              f"{', '.join(config.methods)}.")
    seed = config.seed if seed is None else seed
    if not config.seed <= seed < config.seed + config.trials:
        raise SimulationError(f"{workdir} holds seeds {config.seed}.."
                              f"{config.seed + config.trials - 1}, not {seed}.")
    config = dataclasses.replace(config, seed=seed)
    if data.spec(config.dataset, data_dir=config.data_dir).skeleton is None:  # COCO sets
        raise SimulationError(f"dataset {config.dataset!r} of {workdir} is not prepared in "
                              f"{config.data_dir or data.default_data_dir()}; pass the data "
                              "directory it was built in (--data_dir).")
    path = run_dir(workdir, method, seed) / "rounds"
    mngr = manager(path, create=False) if path.is_dir() else None
    step = None if mngr is None else mngr.latest_step()
    if step is None:
        raise SimulationError(f"{path} holds no finished round: train first (an AL run with "
                              "--rounds=0 trains on the labelled set alone).")
    n = nets_for(config, method)
    template = parallel.replicate(n.init(round_key(seed, 0, "init")), None)
    state, meta = restore(mngr, step, template)
    mngr.close()
    return Trained(config, method, n, state, meta)
