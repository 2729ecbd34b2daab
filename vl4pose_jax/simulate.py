"""The active-learning simulator: `run(config, workdir)` plays whole AL protocols (rounds of train
→ evaluate on the test split → score the unlabelled pool → select `budget` → label) for several
methods and seeds, with an Orbax `CheckpointManager` per (method, seed) saving the train state,
the labelled ids and the round results at the end of every round, so that rerunning on the same
workdir resumes exactly where a killed run stopped. Every random choice derives from
`config.seed` (initial labelled set, initialisation keys, grain data order, acquisition keys),
so a resumed run ends with exactly the labelled sets and metrics of an uninterrupted one on the
same machine. The records of the dataset's `train` split (initial labelled set, when it has one)
and of its `pool` split share one index space (train first); labelled sets are stored as ids
`split/id`. `validate(config)` does every cheap check (names, data prepared, budget) before any
heavy work; `experiments/al.py` is the command-line front end.

Training is data-parallel over every device of every process (`parallel.train_mesh`; the
global batch `batch_size` is split evenly, each process loading only its rows through grain's
`ShardByJaxProcess`); evaluation runs on each process's own copy of the state; pool scoring is
shared between processes (`acquisition.stream`). Only the primary process writes results and
plots; every process takes part in Orbax's checkpoints, whose data-iterator states are stored
per process. On one process with several devices the run is the single-device run up to float
reduction order (tests/test_parallel.py); with several processes the records of each training
batch differ (each process shuffles its own shard), so results depend on the process count.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import time
import zlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from vl4pose_jax import (acquisition, checkpoints, data, locking, metrics, models, parallel,
                         preemption, train)

# Test-sized network: compiles in seconds on a CPU.
MICRO = models.Preset(dict(num_stacks=1, channels=16, depth=1), input_size=32, heatmap_size=8)
HUMAN_PRESETS = {**models.PRESETS, "micro": MICRO}
# DeepPrior crop size per preset (the paper crops 128 x 128).
HAND_SIZES = {"paper": 128, "tiny": 128, "micro": 32}
RESULT_FILE = "results.jsonl"
_MID = 10**7   # mid-training checkpoint step = round * _MID + steps done in the round
CONFIG_FILE = "config.json"
# Fields that may change between a run and its resume (they do not change the results).
_VOLATILE = ("data_dir", "crash_at", "progress", "checkpoint_every")
# --precision: the models' compute dtype (parameters and losses stay float32).
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class SimulationError(Exception):
    """A problem with the configuration or the workdir, explained in one paragraph."""


class NonFiniteLossError(SimulationError):
    """Training produced a NaN or infinite loss (the last good checkpoint is kept)."""


class SimulatedCrash(Exception):
    """Raised by `crash_at` (tests only) to simulate a kill at a chosen point."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One AL experiment. `rounds` acquisitions of `budget` after the initial `init_size`
    labelled records, so `rounds + 1` trainings and evaluations. `epochs` for the first
    training, `cycle_epochs` for later ones; `retrain` 'finetune' (warm start, VL4Pose paper) or
    'scratch' (fresh initialisation every round, CKE paper). `pre_subset`: score only a random
    subset of the pool (int count or float fraction), None for the whole pool. `crash_at`
    (tests): 'round:R' raises `SimulatedCrash` right after round R's checkpoint of the first
    (method, seed), 'train:R:S' right after the mid-training checkpoint at step S of round R.
    `checkpoint_every`: epochs between mid-training checkpoints (0: only at round ends).
    `precision`: 'float32', or 'bfloat16' for bfloat16 compute with float32 parameters, optimiser
    state and losses (for GPU/TPU; XLA:CPU runs bfloat16 slowly). `num_workers`: grain worker
    processes decoding images (0: in the main process); grain splits the records among them, so
    the order of training batches, and hence the results, depend on the count."""
    dataset: str = "synthetic_human"
    methods: tuple = ("random",)
    seed: int = 0
    trials: int = 1
    init_size: int = 16
    budget: int = 4
    rounds: int = 2
    epochs: int = 1
    cycle_epochs: int = 1
    retrain: str = "finetune"
    preset: str = "tiny"
    data_config: str | None = None
    data_dir: str | None = None
    batch_size: int = 16
    lr: float | None = None
    pre_subset: Any = None
    method_options: dict = dataclasses.field(default_factory=dict)
    checkpoint_every: int = 10
    crash_at: str | None = None
    progress: bool = True
    precision: str = "float32"
    num_workers: int = 0

    @property
    def task(self) -> str:
        return "heatmap" if data.spec(self.dataset).kind == "human" else "regression"

    def identity(self) -> dict:
        """The fields that define the results (compared on resume)."""
        d = dataclasses.asdict(self)
        for k in _VOLATILE:
            d.pop(k)
        d["methods"] = list(d["methods"])
        return json.loads(json.dumps(d))


# ------------------------------------------------------------------------------------ data

class _Union:
    """The `train` split (if any) followed by the `pool` split, one record-index space."""

    def __init__(self, parts: Sequence[data.Source]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.spec = self.parts[0].spec

    kind = property(lambda self: self.spec.kind)
    skeleton = property(lambda self: self.spec.skeleton)
    intrinsics = property(lambda self: self.spec.intrinsics)
    name = property(lambda self: self.spec.name)

    def __len__(self):
        return int(self.offsets[-1])

    def __getitem__(self, index):
        index = int(index)
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        example = self.parts[part][index - int(self.offsets[part])]
        example["index"] = index
        return example

    def __repr__(self):
        return f"Union({self.parts!r})"


@dataclasses.dataclass
class Data:
    source: _Union          # train (if any) + pool
    test: data.Source
    ids: list               # 'split/id' per record of `source`
    ood_N: np.ndarray       # int per record of `source`
    pool_start: int         # first pool record
    image_size: int


def _read_field(source: data.Source, key: str) -> list:
    return [source._source[i][key] for i in range(len(source))]  # pylint: disable=protected-access


def load_data(config: Config) -> Data:
    sp = data.spec(config.dataset)
    kw = dict(data_dir=config.data_dir, config=config.data_config,
              build_if_missing=config.dataset.startswith("synthetic"))
    parts = [data.load(config.dataset, s, **kw) for s in ("train", "pool") if s in sp.splits]
    test = data.load(config.dataset, "test", **kw)
    ids = [f"{p.split}/{i}" for p in parts for i in p.ids()]
    ood = np.concatenate([np.asarray(_read_field(p, "ood"), np.int64).reshape(-1) for p in parts])
    size = (HUMAN_PRESETS[config.preset].input_size if sp.kind == "human"
            else HAND_SIZES[config.preset])
    return Data(_Union(parts), test, ids, ood, len(parts[0]) if len(parts) == 2 else 0, size)


def initial_labelled(config: Config, d: Data) -> np.ndarray:
    """The seed's initial labelled set: `init_size` random records of the train split (all of
    them if it is smaller), else of the pool. Same for every method."""
    rng = np.random.default_rng([config.seed, 7])
    if d.pool_start > 0:
        n = min(config.init_size, d.pool_start)
        return np.sort(rng.permutation(d.pool_start)[:n]).astype(np.int64)
    n_pool = len(d.source)
    return np.sort(rng.permutation(n_pool)[:config.init_size]).astype(np.int64)


# ---------------------------------------------------------------------------------- checks

def validate(config: Config) -> Data:
    """Every check that needs no training; returns the opened data. Raises SimulationError."""
    if config.dataset not in data.SPECS:
        raise SimulationError(f"unknown dataset {config.dataset!r}; known datasets: "
                              f"{', '.join(sorted(data.SPECS))}.")
    if not config.methods:
        raise SimulationError("no method given; known methods: " + ", ".join(acquisition.names()))
    task = config.task
    for m in config.methods:
        if m not in acquisition.names():
            raise SimulationError(f"unknown method {m!r}; known methods: "
                                  f"{', '.join(acquisition.names())}.")
        method = acquisition.get(m)
        if task not in method.tasks:
            raise SimulationError(
                f"method {m!r} supports the {'/'.join(method.tasks)} task(s), but "
                f"{config.dataset!r} is a {data.spec(config.dataset).kind}-pose dataset "
                f"({task} task); choose a method among: " + ", ".join(
                    n for n in acquisition.names() if task in acquisition.get(n).tasks) + ".")
        head = method.aux_head(task)
        if head is not None and head not in models.HEADS:
            raise SimulationError(f"method {m!r} needs an auxiliary head {head!r} that "
                                  f"models.AuxNet does not provide (heads: {models.HEADS}).")
    presets = HUMAN_PRESETS if task == "heatmap" else HAND_SIZES
    if config.preset not in presets:
        raise SimulationError(f"unknown preset {config.preset!r}; known: {sorted(presets)}.")
    if config.precision not in PRECISIONS:
        raise SimulationError(f"--precision must be one of {sorted(PRECISIONS)}, "
                              f"not {config.precision!r}.")
    if config.retrain not in ("scratch", "finetune"):
        raise SimulationError(f"--retrain must be 'scratch' or 'finetune', not {config.retrain!r}.")
    for name in ("budget", "init_size", "batch_size", "trials"):
        if getattr(config, name) < 1:
            raise SimulationError(f"--{name} must be at least 1, got {getattr(config, name)}.")
    if config.rounds < 0 or config.epochs < 0 or config.cycle_epochs < 0:
        raise SimulationError("--rounds, --epochs and --cycle_epochs must be >= 0.")
    check_flags(config)
    try:
        d = load_data(config)
    except data.DatasetNotPreparedError as err:
        raise SimulationError(str(err)) from None
    pool_size = len(d.source) - d.pool_start
    if d.pool_start == 0:
        pool_size -= min(config.init_size, len(d.source))
    if config.budget * config.rounds > pool_size:
        raise SimulationError(
            f"--budget={config.budget} x --rounds={config.rounds} = "
            f"{config.budget * config.rounds} records, but the unlabelled pool of "
            f"{config.dataset!r} has only {pool_size}"
            + (f" (its {len(d.source)} records less the --init_size={config.init_size} "
               "initial labelled ones, which this dataset draws from the same split); lower "
               "--init_size, --budget or --rounds." if d.pool_start == 0
               else "; lower --budget or --rounds."))
    return d


# ---------------------------------------------------------------------------------- models

def _hash(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def round_key(seed: int, rnd: int, purpose: str, method: str = "") -> jax.Array:
    key = jax.random.fold_in(jax.random.key(seed), rnd)
    key = jax.random.fold_in(key, _hash(purpose))
    return jax.random.fold_in(key, _hash(method)) if method else key


def grain_seed(seed: int, rnd: int) -> int:
    return int(np.random.SeedSequence([seed, rnd, 11]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclasses.dataclass(frozen=True)
class Nets:
    model: Any
    aux: Any
    init: Any       # key -> TrainState (jitted)
    step: Any       # (state, batch) -> (state, logs)
    predict: Any    # (state, inputs) -> dict


@functools.lru_cache(maxsize=None)
def _pose_init(model, input_shape: tuple, kwargs: tuple):
    """A jitted `key -> pose variables`, shared by every auxiliary head (XLA:CPU compiles
    initialisers slowly, so each model is compiled once)."""
    return jax.jit(lambda k: model.init(k, jnp.zeros(input_shape, jnp.float32), **dict(kwargs)))


@functools.lru_cache(maxsize=None)
def nets(task: str, dataset: str, preset: str, head: str | None, lr: float,
         deepprior: tuple = (None, False), precision: str = "float32") -> Nets:
    """Modules and jitted functions, cached so that methods, rounds and runs share compiles."""
    skeleton = data.spec(dataset).skeleton
    dtype = PRECISIONS[precision]
    tx = optax.adam(lr)
    if task == "heatmap":
        p = HUMAN_PRESETS[preset]
        model = models.StackedHourglass(num_joints=skeleton.num_joints, dtype=dtype, **p.kwargs)
        aux = None if head is None else models.AuxNet(
            head=head, num_links=skeleton.num_links, num_joints=skeleton.num_joints, dtype=dtype)
        pose_init = _pose_init(model, (1, p.input_size, p.input_size, 3), (("train", False),))
        init_aux = jax.jit(lambda k, v: train.init_heatmap_state(
            model, aux, k, p.input_size, tx, tx, pose_variables=v))
        init = lambda k: init_aux(k, pose_init(k))  # noqa: E731
        step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=skeleton)
        return Nets(model, aux, init, step, train.make_heatmap_predict(model, aux))
    dropout, aleatoric = deepprior
    model = models.DeepPrior(num_joints=skeleton.num_joints, dropout=dropout, aleatoric=aleatoric,
                             dtype=dtype)
    aux = None if head is None else models.AuxNet(
        head=head, num_links=skeleton.num_links, num_joints=skeleton.num_joints, pooling="vector",
        dtype=dtype)
    size = HAND_SIZES[preset]
    pose_init = _pose_init(model, (1, size, size, 1), (("mc", False),))
    init_aux = jax.jit(lambda k, v: train.init_regression_state(model, aux, k, size, tx, tx,
                                                                pose_variables=v))
    init = lambda k: init_aux(k, pose_init(k))  # noqa: E731
    step = train.make_regression_train_step(model, aux, tx, tx, skeleton=skeleton)

    @jax.jit
    def predict(state, depth):
        out = model.apply({"params": state.params}, depth, mc=False)
        return {"pose_BxJx3": out["pose_BxJx3"]}

    return Nets(model, aux, init, step, predict)


def nets_for(config: Config, method: str) -> Nets:
    task = config.task
    head = acquisition.get(method).aux_head(task)
    lr = config.lr if config.lr is not None else (
        train.HOURGLASS_LR if task == "heatmap" else train.DEEPPRIOR_LR)
    deepprior = (None, False)
    if task == "regression":
        deepprior = ("A" if method in ("mc_dropout", "cke") else None, method == "aleatoric")
    return nets(task, config.dataset, config.preset, head, float(lr), deepprior, config.precision)


# --------------------------------------------------------------------------- one round's work

_TRAIN_KEYS = {"heatmap": ("image", "heatmaps", "joints", "visible"),
               "regression": ("depth", "joints", "visible")}


def train_round(config: Config, d: Data, n: Nets, state, labelled_N, epochs: int, rnd: int,
                desc: str, *, start_step: int = 0, iterator_state: bytes | None = None,
                checkpoint=None):
    """`epochs` passes (drop-remainder batches) over the labelled set; returns the new state.
    Every `config.checkpoint_every` epochs, `checkpoint(state, steps_done, iterator_state)`;
    `start_step` / `iterator_state` resume from such a checkpoint. After a signal noted by
    `preemption`, the same checkpoint at the next step boundary, then `preemption.Interrupted`."""
    mesh = parallel.train_mesh()
    batch_size = global_batch_size(config.batch_size, len(labelled_N), mesh)
    steps_per_epoch = max(1, len(labelled_N) // batch_size)
    steps = epochs * steps_per_epoch
    if steps <= start_step:
        return state
    multi = jax.process_count() > 1
    loader = data.make_loader(d.source, indices=labelled_N,
                              batch_size=batch_size // jax.process_count(),
                              seed=grain_seed(config.seed, rnd), train=True,
                              image_size=d.image_size, num_workers=config.num_workers,
                              shard_options=_shard_by_process() if multi else None)
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


def _shard_by_process():
    import grain.python as gp  # pylint: disable=import-outside-toplevel
    return gp.ShardByJaxProcess(drop_remainder=False)


def _predict(n: Nets, state, inputs, key: str, mesh) -> np.ndarray:
    """`n.predict(state, inputs)[key]`, the batch split over this process's devices (`state`
    replicated on `mesh`); the batch is padded to a multiple of the device count."""
    count = inputs.shape[0]
    pad = -count % parallel.num_devices(mesh)
    if pad:
        inputs = np.concatenate([inputs, np.repeat(inputs[-1:], pad, 0)])
    out = n.predict(state, parallel.shard_batch({"x": inputs}, mesh)["x"])[key]
    return np.asarray(out)[:count]


def evaluate(config: Config, d: Data, n: Nets, state) -> dict:
    """Test-split metrics: {'metrics': {name: value}, 'per_joint': {name: [J values]}}. Every
    process evaluates the whole test split on its own devices."""
    sp = data.spec(config.dataset)
    mesh = parallel.data_mesh()
    state = parallel.replicate(state, mesh)
    loader = data.make_loader(d.test, batch_size=config.batch_size, train=False,
                              num_workers=config.num_workers,
                              image_size=d.image_size)
    preds, gts, vis, extra = [], [], [], []
    for batch in loader:
        if config.task == "heatmap":
            preds.append(_predict(n, state, batch["image"], "joints_BxJx2", mesh))
            extra.append(batch["normalizer"])
        else:
            out = _predict(n, state, batch["depth"], "pose_BxJx3", mesh)
            to_mm = functools.partial(data.normalised_uvd_to_xyz_mm,
                                      center_uvd_Bx3=batch["center_uvd"],
                                      cube_mm_B=batch["cube_mm"], intrinsics=sp.intrinsics)
            preds.append(np.asarray(to_mm(out)))
            batch = dict(batch, joints=np.asarray(to_mm(batch["joints"])))
        gts.append(batch["joints"])
        vis.append(batch["visible"])
    pred, gt, visible = (np.concatenate(x) for x in (preds, gts, vis))
    if config.task == "heatmap":
        thr, name = (0.5, "pckh@0.5") if sp.metric == "pckh" else (0.2, "pck@0.2")
        r = metrics.pck(pred, gt, visible, np.concatenate(extra), threshold=thr)
        mean, per_joint = 100 * float(r.mean), 100 * np.asarray(r.per_joint)
    else:
        name = "mean_error_mm"
        r = metrics.mean_joint_error(pred, gt, visible)
        mean, per_joint = float(r.mean), np.asarray(r.per_joint)
    return {"metrics": {name: round(mean, 6)},
            "per_joint": {name: [round(float(v), 6) for v in per_joint]}}


def acquire(config: Config, d: Data, n: Nets, state, method: str, labelled_N, rnd: int):
    """(selected record indices, OOD statistics) for one round."""
    is_labelled = np.zeros(len(d.source), bool)
    is_labelled[labelled_N] = True
    pool_N = np.flatnonzero(~is_labelled)
    pool_N = pool_N[pool_N >= d.pool_start]
    ctx = acquisition.Context(
        task=config.task, model=n.model, state=state, aux=n.aux,
        batches=acquisition.loader_batches(d.source, config.batch_size, image_size=d.image_size,
                                           num_workers=config.num_workers),
        labelled=labelled_N, pool=pool_N, budget=config.budget,
        key=round_key(config.seed, rnd, "acquire", method),
        skeleton=data.spec(config.dataset).skeleton, progress=config.progress)
    sel = acquisition.select(method, ctx, pre_subset=config.pre_subset,
                             **config.method_options.get(method, {}))
    stats = {"ood_selected_fraction": float(np.mean(d.ood_N[sel.indices] > 0))}
    if sel.scores is not None and sel.scored_indices is not None and d.ood_N.any():
        # A diagnostic: with several processes, ranked methods hold only their own scores.
        scored, scores = parallel.gather_rows(np.asarray(sel.scored_indices, np.int64),
                                              np.asarray(sel.scores, np.float64))
        scored, first = np.unique(scored, return_index=True)  # geometric methods: all alike
        is_ood = d.ood_N[scored] > 0
        if 0 < is_ood.sum() < len(is_ood):
            stats["ood_auroc"] = float(metrics.auroc(scores[first], is_ood))
    return sel, stats


# ------------------------------------------------------------------------------ checkpoints

def check_workdir(config: Config, workdir) -> None:
    """Write the config on first use; refuse a different one later."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CONFIG_FILE
    ident = config.identity()
    if path.exists():
        # Workdirs written before --precision / --num_workers existed: their defaults.
        old = {"precision": "float32", "num_workers": 0, **json.loads(path.read_text())}
        if old != ident:
            diff = {k: (old.get(k), ident.get(k)) for k in sorted(set(old) | set(ident))
                    if old.get(k) != ident.get(k)}
            raise SimulationError(
                f"{workdir} already holds a run with different settings "
                + ", ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
                + ". Rerun with the original flags to resume it, or choose another --workdir.")
    elif parallel.is_primary():
        _atomic_write(path, json.dumps(ident, indent=2, sort_keys=True))


def check_flags(config: Config) -> None:
    """The value checks of `validate` that need no data: learning rate, methods listed once,
    `pre_subset` a fraction in (0, 1] or a count of at least `budget`."""
    if config.lr is not None and not (isinstance(config.lr, (int, float)) and config.lr > 0
                                      and np.isfinite(config.lr)):
        raise SimulationError(f"--lr must be a positive number, got {config.lr!r}.")
    twice = sorted({m for m in config.methods if config.methods.count(m) > 1})
    if twice:
        raise SimulationError(f"--method lists {', '.join(map(repr, twice))} more than once; "
                              "give each method once.")
    pre = config.pre_subset
    if pre is None:
        return
    if isinstance(pre, bool) or not isinstance(pre, (int, float, np.integer, np.floating)):
        raise SimulationError(f"--pre_subset must be a number, got {pre!r}.")
    if isinstance(pre, (float, np.floating)):
        if not 0 < pre <= 1:
            raise SimulationError(
                f"--pre_subset={pre!r}: give a fraction of the pool in (0, 1] (e.g. 0.1) or a "
                f"whole count of records of at least --budget={config.budget} (e.g. 1000).")
    elif pre < config.budget:
        raise SimulationError(
            f"--pre_subset={pre} records is fewer than --budget={config.budget}: every scored "
            "record would be selected (random selection); give a count of at least the "
            "budget or a fraction in (0, 1].")


@contextlib.contextmanager
def workdir_lock(workdir):
    """Hold the run lock of `workdir` (`checkpoints.lock_workdir`), as SimulationError when it
    is taken or the workdir cannot be written."""
    try:
        lock = checkpoints.lock_workdir(workdir)
    except locking.LockedError as err:
        raise SimulationError(f"{err}. Two runs on one workdir would overwrite each other's "
                              "checkpoints: wait for it to finish (or stop it), or choose "
                              "another --workdir.") from None
    except locking.LockIOError as err:
        raise SimulationError(f"{err.strerror}: the workdir must be a folder on writable "
                              "storage; choose another --workdir.") from None
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def _restore(mngr, template, *, steps=None, log=print):
    """`checkpoints.restore_newest_intact` of a round (`steps` None) or mid-round manager."""
    try:
        return checkpoints.restore_newest_intact(mngr, template, steps=steps,
                                                 required=steps is None, log=log)
    except checkpoints.CheckpointError as err:
        raise SimulationError(str(err)) from None


def _replot(config: Config, d: Data, n: Nets, state, method: str, labelled_N, row: dict,
            on_round, log):
    """Call `on_round` again for the restored round `row` when `on_round.missing(row)` (a kill
    between the round's checkpoint and its plots): the selection is recomputed from the
    restored state (deterministic, so it equals `row['selected_ids']`)."""
    missing = getattr(on_round, "missing", None)
    need = bool(row["selected_ids"]) and missing is not None and bool(missing(row))
    if jax.process_count() > 1:   # acquisition is collective: all or none
        need = any(parallel.gather_bytes(b"1" if need else b""))
    if not need:
        return
    k = len(row["selected_ids"])
    sel, _ = acquire(config, d, n, state, method, labelled_N[:-k], row["round"])
    if [d.ids[i] for i in sel.indices] != row["selected_ids"]:
        log(f"warning: [{method} seed {config.seed}] round {row['round']}: the recomputed "
            "selection differs from the recorded one; its score plot is not regenerated")
        sel = None
    if on_round is not None:
        log(f"[{method} seed {config.seed}] regenerating the plots of round {row['round']}")
        on_round(row, {"selection": sel,
                       "examples": selected_examples(config, d, n, state, labelled_N[-k:])})


@dataclasses.dataclass
class Trained:
    """A trained state taken from a workdir: its `config`, the `nets` to apply it, the `state`
    and the round checkpoint's `meta` (round, labelled ids and indices, results)."""
    config: Config
    method: str
    nets: Nets
    state: Any
    meta: dict


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
    path = checkpoints.run_dir(workdir, method, seed) / "rounds"
    mngr = checkpoints.manager(path, create=False) if path.is_dir() else None
    step = None if mngr is None else mngr.latest_step()
    if step is None:
        raise SimulationError(f"{path} holds no finished round: train first (an AL run with "
                              "--rounds=0 trains on the labelled set alone).")
    n = nets_for(config, method)
    template = parallel.replicate(n.init(round_key(seed, 0, "init")), None)
    state, meta = checkpoints.restore(mngr, step, template)
    mngr.close()
    return Trained(config, method, n, state, meta)


def _atomic_write(path: pathlib.Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_results(workdir: pathlib.Path, rows_by_run: dict):
    if not parallel.is_primary():
        return
    lines = [json.dumps(row, sort_keys=True) for key in sorted(rows_by_run)
             for row in rows_by_run[key]]
    _atomic_write(workdir / RESULT_FILE, "".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------ driver

def selected_examples(config: Config, d: Data, n: Nets, state, indices_N, limit: int = 16):
    """Inputs and predicted 2-D joints of up to `limit` selected records, for galleries:
    {'image_NxSxSxC', 'joints_NxJx2' (input pixels, x y), 'links'}."""
    indices_N = np.asarray(indices_N, np.int64)[:limit]
    if len(indices_N) == 0:
        return None
    batch = next(iter(data.make_loader(d.source, batch_size=len(indices_N), train=False,
                                       indices=indices_N, image_size=d.image_size)))
    state = parallel.replicate(state, None)
    if config.task == "heatmap":
        cells = np.asarray(n.predict(state, batch["image"])["joints_BxJx2"])
        stride = d.image_size / HUMAN_PRESETS[config.preset].heatmap_size
        return {"image_NxSxSxC": batch["image"], "joints_NxJx2": (cells + 0.5) * stride - 0.5,
                "links": data.spec(config.dataset).skeleton.links}
    uvd = np.asarray(n.predict(state, batch["depth"])["pose_BxJx3"])
    return {"image_NxSxSxC": batch["depth"], "links": data.spec(config.dataset).skeleton.links,
            "joints_NxJx2": (uvd[..., :2] + 1.0) * 0.5 * d.image_size - 0.5}


def run(config: Config, workdir, *, data_: Data | None = None, log=print,
        on_round=None) -> list[dict]:
    """Run (or resume) every (method, seed) of `config` in `workdir`; returns the result rows
    (also in `workdir/results.jsonl`, one per finished round, ordered by method, seed, round).
    `on_round(row, extras)` (e.g. plots) is called after each round's checkpoint, with extras
    {'selection': `acquisition.Selection` or None, 'examples': `selected_examples` or None};
    if it has a `missing(row)` attribute that is true for the round a resume restores, that
    round's call is repeated (a kill between checkpoint and plots). The workdir is locked for
    the run (`checkpoints.lock_workdir`); a signal noted by `preemption` stops the run at the
    next checkpoint with `preemption.Interrupted`."""
    workdir = pathlib.Path(workdir)
    with workdir_lock(workdir):
        return _run(config, workdir, data_=data_, log=log, on_round=on_round)


def _run(config: Config, workdir: pathlib.Path, *, data_, log, on_round) -> list[dict]:
    d = data_ if data_ is not None else validate(config)
    check_workdir(config, workdir)
    if not parallel.is_primary():  # one process speaks and plots for all
        log, on_round = (lambda *a, **k: None), None
    rows_by_run: dict = {}
    for seed in range(config.seed, config.seed + config.trials):
        cfg = dataclasses.replace(config, seed=seed)
        for method in config.methods:
            key = (config.methods.index(method), seed)
            rows_by_run[key] = []
            _run_one(cfg, d, method, workdir, rows_by_run, key, log, on_round)
    return [row for k in sorted(rows_by_run) for row in rows_by_run[k]]


def _run_one(config: Config, d: Data, method: str, workdir: pathlib.Path, rows_by_run, run_key,
             log, on_round=None):
    n = nets_for(config, method)
    base = checkpoints.run_dir(workdir, method, config.seed)
    mngr, mid = checkpoints.manager(base / "rounds"), checkpoints.manager(base / "training")
    mesh = parallel.train_mesh()
    state = parallel.replicate(n.init(round_key(config.seed, 0, "init")), mesh)
    labelled_N = initial_labelled(config, d)
    start = 0
    rows = rows_by_run[run_key]
    last, restored, meta = _restore(mngr, state, log=log)
    if last is not None:
        state = restored
        labelled_N = np.asarray(meta["labelled_indices"], np.int64)
        if [d.ids[i] for i in labelled_N] != meta["labelled_ids"]:
            raise SimulationError(f"the labelled ids in {mngr.directory} do not match the "
                                  "dataset; was it rebuilt?")
        rows.extend(meta["results"])
        start = last + 1
        if start <= config.rounds:
            log(f"[{method} seed {config.seed}] resuming after round {last}")
        _replot(config, d, n, state, method, labelled_N, rows[-1], on_round, log)
    for rnd in range(start, config.rounds + 1):
        desc = f"{method} s{config.seed} r{rnd}"
        if rnd > 0 and config.retrain == "scratch":
            state = parallel.replicate(n.init(round_key(config.seed, rnd, "init")), mesh)
        epochs = config.epochs if rnd == 0 else config.cycle_epochs
        resume = {}
        mid_last, restored, mid_meta = _restore(
            mid, state, steps=[s for s in mid.all_steps() if s // _MID == rnd], log=log)
        if mid_last is not None:
            state = restored
            iterators = mid_meta.get("iterators") or [mid_meta["iterator"]]  # older: one
            if len(iterators) != jax.process_count():
                raise SimulationError(
                    f"{mid.directory} was written by {len(iterators)} process(es) mid-round; "
                    f"resume it with that many, not {jax.process_count()}.")
            resume = dict(start_step=mid_meta["step"],
                          iterator_state=iterators[jax.process_index()].encode())
            log(f"[{method} seed {config.seed}] resuming round {rnd} at step {mid_meta['step']}")

        def checkpoint(state, done, iterator_state, rnd=rnd):
            iterators = [s.decode() for s in parallel.gather_bytes(iterator_state)]
            checkpoints.save(mid, rnd * _MID + done, state, {"round": rnd, "step": done,
                                                  "iterators": iterators})
            if config.crash_at == f"train:{rnd}:{done}" and run_key[0] == 0:
                raise SimulatedCrash(f"simulated crash in round {rnd} at step {done}")

        t0 = time.perf_counter()
        state = train_round(config, d, n, state, labelled_N, epochs, rnd, desc,
                            checkpoint=checkpoint, **resume)
        seconds_train = time.perf_counter() - t0
        row = {"method": method, "seed": config.seed, "round": rnd,
               "num_labelled": int(len(labelled_N)), **evaluate(config, d, n, state),
               "selected_ids": [], "seconds_train": round(seconds_train, 3), "seconds_score": 0.0}
        sel, examples = None, None
        if rnd < config.rounds:
            t0 = time.perf_counter()
            sel, stats = acquire(config, d, n, state, method, labelled_N, rnd)
            row["seconds_score"] = round(time.perf_counter() - t0, 3)
            row["selected_ids"] = [d.ids[i] for i in sel.indices]
            row.update(stats)
            labelled_N = np.concatenate([labelled_N, sel.indices]).astype(np.int64)
            if on_round is not None:
                examples = selected_examples(config, d, n, state, sel.indices)
        rows.append(row)
        meta = {"round": rnd, "labelled_indices": labelled_N.tolist(),
                "labelled_ids": [d.ids[i] for i in labelled_N], "results": rows,
                "config": config.identity()}
        checkpoints.save(mngr, rnd, state, meta)
        _write_results(workdir, rows_by_run)
        name, value = next(iter(row["metrics"].items()))
        log(f"[{method} seed {config.seed}] round {rnd}: {row['num_labelled']} labelled, "
            f"{name} {value:.2f}, train {seconds_train:.1f}s, score {row['seconds_score']:.1f}s"
            + (f", OOD AUROC {row['ood_auroc']:.3f}" if "ood_auroc" in row else ""))
        if on_round is not None:
            on_round(row, {"selection": sel, "examples": examples})
        if config.crash_at == f"round:{rnd}" and run_key[0] == 0:
            raise SimulatedCrash(f"simulated crash after round {rnd}")
        signum = preemption.requested(collective=True)
        if signum:
            raise preemption.Interrupted(signum, f"round {rnd} of {method} seed {config.seed} "
                                         f"({mngr.directory})")
    mngr.close()
    mid.close()
    _write_results(workdir, rows_by_run)
