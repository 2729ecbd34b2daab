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

A fair instrument: round 0 is trained once for all methods of a seed that train the same network
(`shared_round0`, equal to separate runs), the optional random pre-subset is one per (seed, round)
for every method (`pre_subset_pool`), and every round records per-OOD-kind accuracy, OOD AUROC and
selection shares, the test-split Spearman between score and error (`score_test_split`) and
VL4Pose's refinement (`evaluate`). `load_trained(workdir)` takes a trained model out of a workdir
(the scorer, `experiments.score`, uses it).

Training is data-parallel over every device of every process (`parallel.train_mesh`; the
global batch `batch_size` is split evenly, each process loading only its rows through grain's
`ShardByJaxProcess`); evaluation runs on each process's own copy of the state; pool scoring is
shared between processes (`acquisition.stream`). Only the primary process writes results and
plots; every process takes part in Orbax's checkpoints, whose data-iterator states are stored
per process. A run repeats exactly on the same device count; on another device count it is the
same run up to float reduction order, which Adam amplifies over epochs (tests/test_parallel.py,
tests/test_distributed.py); with several processes the records of each training batch differ
(each process shuffles its own shard), so results depend on the process count.
"""
from __future__ import annotations

import collections
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

from vl4pose_jax import (acquisition, checkpoints, data, heatmaps, likelihood, locking, metrics,
                         models, parallel, preemption, train)

# Test-sized network: compiles in seconds on a CPU.
MICRO = models.Preset(dict(num_stacks=1, channels=16, depth=1), input_size=32, heatmap_size=8)
HUMAN_PRESETS = {**models.PRESETS, "micro": MICRO}
# DeepPrior crop size per preset (the paper crops 128 x 128). 'small' (64 px) is the CPU study
# size: a training step costs ~6x less on XLA:CPU (benchmarks/models.py --parts=deepprior_train).
HAND_SIZES = {"paper": 128, "small": 64, "tiny": 128, "micro": 32}
RESULT_FILE = "results.jsonl"
_MID = 10**7   # mid-training checkpoint step = round * _MID + steps done in the round
CONFIG_FILE = "config.json"
# Fields that may change between a run and its resume (they do not change the results).
_VOLATILE = ("data_dir", "crash_at", "progress", "checkpoint_every", "share_round0")
# --precision: the models' compute dtype (parameters and losses stay float32).
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Hand methods that use Bayesian DeepPrior (MC dropout; evaluated as the mean of T passes).
BAYESIAN = ("mc_dropout", "cke")
# Local maxima per joint considered by VL4Pose's pose refinement (Eq. 6) in evaluation.
REFINE_PEAKS = 5


class SimulationError(Exception):
    """A problem with the configuration or the workdir, explained in one paragraph."""


class NonFiniteLossError(SimulationError):
    """Training produced a NaN or infinite loss (the last good checkpoint is kept)."""


class SimulatedCrash(Exception):
    """Raised by `crash_at` (tests only) to simulate a kill at a chosen point."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One AL experiment. `rounds` acquisitions of `budget` after the initial `init_size`
    labelled records, so `rounds + 1` trainings and evaluations. `retrain` 'finetune' (warm
    start, VL4Pose paper: `epochs` for the first training, `cycle_epochs` for later ones) or
    'scratch' (fresh initialisation every round, CKE paper: every round trains `epochs`, so
    that rounds differ only in their labelled sets; `cycle_epochs` is unused). `min_steps`: every
    training runs at least this many optimizer steps (small labelled sets at a large batch,
    e.g. 100 hands at batch 64, give one step per epoch). `share_round0`: train the first
    round once for the methods of a seed that train the same network (`shared_round0`; the results
    are those of separate runs, bit for bit on XLA:CPU, tested). `pre_subset`: score only a random
    subset of the pool (int count or float fraction), None for the whole pool. `crash_at`
    (tests): 'round:R' raises `SimulatedCrash` right after round R's checkpoint of the first
    (method, seed), 'train:R:S' right after the mid-training checkpoint at step S of round R.
    `checkpoint_every`: epochs between mid-training checkpoints (0: only at round ends).
    `precision`: 'float32', or 'bfloat16' for bfloat16 compute with float32 parameters, optimiser
    state and losses (for GPU/TPU; XLA:CPU runs bfloat16 slowly). `num_workers`: grain worker
    processes decoding images (0: in the main process); grain splits the records among them, so
    the order of training batches, and hence the results, depend on the count. `init_from`: a
    workdir whose newest trained state (`load_trained`) starts round 0 instead of a fresh
    initialisation (fine-tuning after labels were merged into the dataset).
    `bayesian_deepprior`: every regression method trains Bayesian DeepPrior (evaluated as the
    MC mean), not only `BAYESIAN`'s, so that e.g. random selection is a fair baseline for them."""
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
    min_steps: int = 0
    share_round0: bool = True
    lr: float | None = None
    pre_subset: Any = None
    method_options: dict = dataclasses.field(default_factory=dict)
    checkpoint_every: int = 10
    crash_at: str | None = None
    progress: bool = True
    precision: str = "float32"
    num_workers: int = 0
    init_from: str | None = None
    bayesian_deepprior: bool = False

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
    if config.bayesian_deepprior and task != "regression":
        raise SimulationError(f"--bayesian_deepprior applies to hand datasets (DeepPrior), not "
                              f"to {config.dataset!r}.")
    if config.retrain not in ("scratch", "finetune"):
        raise SimulationError(f"--retrain must be 'scratch' or 'finetune', not {config.retrain!r}.")
    for name in ("budget", "init_size", "batch_size", "trials"):
        if getattr(config, name) < 1:
            raise SimulationError(f"--{name} must be at least 1, got {getattr(config, name)}.")
    if min(config.rounds, config.epochs, config.cycle_epochs, config.min_steps) < 0:
        raise SimulationError("--rounds, --epochs, --cycle_epochs and --min_steps must be >= 0.")
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
    predict: Any    # (state, inputs) -> dict; (state, inputs, batch_index) if `stochastic`
    eval_keys: tuple = ("joints_BxJx2",)   # predict's joint decodings evaluated on the test split
    stochastic: bool = False  # MC dropout: each test batch draws its own masks (`batch_index`)


@functools.lru_cache(maxsize=None)
def _pose_init(model, input_shape: tuple, kwargs: tuple):
    """A jitted `key -> pose variables`, shared by every auxiliary head (XLA:CPU compiles
    initialisers slowly, so each model is compiled once)."""
    return jax.jit(lambda k: model.init(k, jnp.zeros(input_shape, jnp.float32), **dict(kwargs)))


@functools.lru_cache(maxsize=None)
def nets(task: str, dataset: str, preset: str, head: str | None, lr: float,
         deepprior: tuple = (None, False), precision: str = "float32",
         mc_samples: int = 70) -> Nets:
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
        predict = train.make_heatmap_predict(model, aux)
        if head != "vl4pose_heatmap":
            return Nets(model, aux, init, step, predict)

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
                    ("joints_BxJx2", "argmax_BxJx2", "refined_BxJx2"))
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

    if dropout is None:
        @jax.jit
        def predict(state, depth):
            return model.apply({"params": state.params}, depth, mc=False)
        return Nets(model, aux, init, step, predict, ("pose_BxJx3",))

    @jax.jit
    def predict_mc(state, depth, batch_index=0):
        """Bayesian DeepPrior: the mean of the MC-dropout passes (CKE paper); batch t draws its
        masks from fold_in(key(0), t), so no two test batches share them."""
        key = jax.random.fold_in(jax.random.key(0), batch_index)
        mc = models.mc_predict(model, {"params": state.params}, depth, key,
                               num_samples=mc_samples, chunk=10)
        return {"pose_BxJx3": mc["mean_BxJx3"]}

    return Nets(model, aux, init, step, predict_mc, ("pose_BxJx3",), stochastic=True)


def nets_for(config: Config, method: str) -> Nets:
    task = config.task
    head = acquisition.get(method).aux_head(task)
    lr = config.lr if config.lr is not None else (
        train.HOURGLASS_LR if task == "heatmap" else train.DEEPPRIOR_LR)
    deepprior, mc_samples = (None, False), 70
    if task == "regression" and (method in BAYESIAN or config.bayesian_deepprior):
        # Bayesian DeepPrior (CKE paper): dropout after the convolutions, the aleatoric head
        # with the Eq. 2 loss, evaluated as the mean of the T MC passes of the method.
        deepprior = ("A", True)
        mc_samples = int(config.method_options.get(method, {}).get("num_samples", 70))
    elif task == "regression":
        deepprior = (None, method == "aleatoric")
    return nets(task, config.dataset, config.preset, head, float(lr), deepprior, config.precision,
                mc_samples)


# --------------------------------------------------------------------------- one round's work

_TRAIN_KEYS = {"heatmap": ("image", "heatmaps", "joints", "visible"),
               "regression": ("depth", "joints", "visible")}


def train_round(config: Config, d: Data, n: Nets, state, labelled_N, epochs: int, rnd: int,
                desc: str, *, start_step: int = 0, iterator_state: bytes | None = None,
                checkpoint=None):
    """`epochs` passes (drop-remainder batches) over the labelled set, and at least
    `config.min_steps` steps; returns the new state.
    Every `config.checkpoint_every` epochs, `checkpoint(state, steps_done, iterator_state)`;
    `start_step` / `iterator_state` resume from such a checkpoint. After a signal noted by
    `preemption`, the same checkpoint at the next step boundary, then `preemption.Interrupted`."""
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


def _predict(n: Nets, state, inputs, mesh, batch_index: int = 0) -> dict:
    """The joint decodings of `n.predict(state, inputs)` ({key: array} for `n.eval_keys`), the
    batch split over this process's devices (`state` replicated on `mesh`); the batch is padded
    to a multiple of the device count. `batch_index` seeds a stochastic predict's draws."""
    count = inputs.shape[0]
    pad = -count % parallel.num_devices(mesh)
    if pad:
        inputs = np.concatenate([inputs, np.repeat(inputs[-1:], pad, 0)])
    inputs = parallel.shard_batch({"x": inputs}, mesh)["x"]
    out = n.predict(state, inputs, batch_index) if n.stochastic else n.predict(state, inputs)
    return {k: np.asarray(out[k])[:count] for k in n.eval_keys}


@dataclasses.dataclass
class TestPredictions:
    """Predictions on the test split, aligned per image: `pred`, `gt` (B, J, D), `visible`
    (B, J), `normalizer` (B,) (heatmap task; None otherwise), `ood` (B,) kind codes,
    `index` (B,) test record indices, and `extra` {name: (B, J, D)} further decodings."""
    pred: np.ndarray
    gt: np.ndarray
    visible: np.ndarray
    normalizer: np.ndarray | None
    ood: np.ndarray
    index: np.ndarray
    extra: dict


def predict_test(config: Config, d: Data, n: Nets, state) -> TestPredictions:
    """Predict the whole test split (every process on its own devices): heatmap joints in
    heatmap cells, hand joints in mm; `extra` holds `n.predict`'s other joint decodings
    (e.g. VL4Pose's refined pose, key `refined_BxJx2`)."""
    sp = data.spec(config.dataset)
    mesh = parallel.data_mesh()
    state = parallel.replicate(state, mesh)
    loader = data.make_loader(d.test, batch_size=config.batch_size, train=False,
                              num_workers=config.num_workers, image_size=d.image_size)
    parts = collections.defaultdict(list)
    for t, batch in enumerate(loader):
        if config.task == "heatmap":
            out = _predict(n, state, batch["image"], mesh)
            parts["pred"].append(out.pop("joints_BxJx2"))
            parts["normalizer"].append(batch["normalizer"])
            for k, v in out.items():
                parts["extra:" + k].append(v)
        else:
            out = _predict(n, state, batch["depth"], mesh, t)
            to_mm = functools.partial(data.normalised_uvd_to_xyz_mm,
                                      center_uvd_Bx3=batch["center_uvd"],
                                      cube_mm_B=batch["cube_mm"], intrinsics=sp.intrinsics)
            parts["pred"].append(np.asarray(to_mm(out["pose_BxJx3"])))
            batch = dict(batch, joints=np.asarray(to_mm(batch["joints"])))
        parts["gt"].append(batch["joints"])
        parts["visible"].append(batch["visible"])
        parts["ood"].append(batch["ood"])
        parts["index"].append(batch["index"])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return TestPredictions(cat["pred"], cat["gt"], cat["visible"], cat.get("normalizer"),
                           cat["ood"], cat["index"],
                           {k[6:]: v for k, v in cat.items() if k.startswith("extra:")})


def metric_name(config: Config) -> str:
    if config.task != "heatmap":
        return "mean_error_mm"
    return "pckh@0.5" if data.spec(config.dataset).metric == "pckh" else "pck@0.2"


def pck_threshold(config: Config) -> float:
    """The headline PCK threshold (fraction of the normaliser): PCKh@0.5 or PCK@0.2."""
    return 0.5 if metric_name(config).startswith("pckh") else 0.2


def spearman(a, b) -> float | None:
    """Spearman correlation rounded to 6 digits; None where undefined (fewer than 3 values or a
    constant side, e.g. every image at 0 PCK), so that records compare equal on resume."""
    from scipy import stats as st  # pylint: disable=import-outside-toplevel
    a, b = np.asarray(a), np.asarray(b)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return round(float(st.spearmanr(a, b).statistic), 6)


def per_image_pck(config: Config, p: TestPredictions) -> np.ndarray:
    """Per-image PCK (%, the headline threshold) over the image's valid joints (NaN when none,
    or when the image has no usable normaliser), heatmap task only."""
    dist = np.asarray(metrics.normalized_distances(p.pred, p.gt, p.normalizer))
    valid = (np.asarray(p.visible) > 0) & np.isfinite(dist)
    with np.errstate(invalid="ignore"):
        return 100 * (valid & (dist <= pck_threshold(config))).sum(-1) / valid.sum(-1)


def _accuracy(config: Config, p: TestPredictions, pred=None, rows=None):
    """(mean, per-joint, per-image error) of `pred` (default `p.pred`) on the `rows` mask.
    Per-image error: the mean normalised joint distance (heatmap task) or mm (hands) over the
    image's valid joints (NaN when none)."""
    pred = p.pred if pred is None else pred
    rows = np.ones(len(p.pred), bool) if rows is None else rows
    gt, vis = p.gt[rows], p.visible[rows]
    if config.task == "heatmap":
        thr = pck_threshold(config)
        r = metrics.pck(pred[rows], gt, vis, p.normalizer[rows], threshold=thr)
        dist = np.asarray(metrics.normalized_distances(pred[rows], gt, p.normalizer[rows]))
        mean, per_joint = 100 * float(r.mean), 100 * np.asarray(r.per_joint)
    else:
        r = metrics.mean_joint_error(pred[rows], gt, vis)
        dist = np.linalg.norm(pred[rows] - gt, axis=-1)
        mean, per_joint = float(r.mean), np.asarray(r.per_joint)
    valid = np.asarray(vis) > 0
    with np.errstate(invalid="ignore"):
        per_image = np.where(valid, dist, 0).sum(-1) / valid.sum(-1)
    return mean, per_joint, per_image


def evaluate(config: Config, d: Data, n: Nets, state, p: TestPredictions | None = None) -> dict:
    """Test-split metrics: {'metrics': {name: value}, 'per_joint': {name: [J values]}}, plus,
    when the test split has OOD examples, 'metrics_by_kind' {kind: {name: value}} (kinds:
    'in_distribution' and each OOD kind present), and, when `n.predict` gives VL4Pose's
    refined pose, 'refine' {'argmax': value, 'refined': value}: the metric of the integer
    argmax pose and of the refined pose (Eq. 6; both in whole heatmap cells, so the difference
    is refinement's alone; the headline metric uses the sub-cell decoding)."""
    p = predict_test(config, d, n, state) if p is None else p
    name = metric_name(config)
    mean, per_joint, _ = _accuracy(config, p)
    out = {"metrics": {name: round(mean, 6)},
           "per_joint": {name: [round(float(v), 6) for v in per_joint]}}
    if p.ood.any():
        kinds = {"in_distribution": p.ood == 0}
        kinds.update({k: p.ood == code for code, k in enumerate(data.OOD_KINDS)
                      if code > 0 and (p.ood == code).any()})
        out["metrics_by_kind"] = {k: {name: round(_accuracy(config, p, rows=m)[0], 6)}
                                  for k, m in kinds.items()}
    if "refined_BxJx2" in p.extra:   # both integer cells: refinement's own effect
        out["refine"] = {k: round(_accuracy(config, p, pred=p.extra[f"{k}_BxJx2"])[0], 6)
                         for k in ("argmax", "refined")}
    return out


def pre_subset_pool(config: Config, d: Data, pool_N: np.ndarray, rnd: int) -> np.ndarray:
    """The round's candidates: the whole pool, or with `config.pre_subset` a random subset of
    it (a count, or a fraction of the pool; at least the budget). One random priority per
    record is drawn per (seed, round), independent of the method, and the candidates are the
    unlabelled records of highest priority: methods of one seed and round score the same
    records wherever their labelled sets agree (paired comparisons)."""
    if config.pre_subset is None:
        return pool_N
    n = len(pool_N)
    size = config.pre_subset
    count = int(round(size * n)) if isinstance(size, float) else int(size)
    count = min(n, max(count, min(config.budget, n)))
    priority = np.random.default_rng([config.seed, rnd, 13]).random(len(d.source))
    return np.sort(pool_N[np.argsort(-priority[pool_N], kind="stable")[:count]])


def _by_kind(values_N: np.ndarray, ood_N: np.ndarray, fn) -> dict:
    """{kind: fn(values of in-distribution records, values of that kind)} for every OOD kind
    present, plus 'pooled' (every OOD kind together)."""
    out = {}
    ind = values_N[ood_N == 0]
    for code, kind in enumerate(data.OOD_KINDS):
        if code > 0 and (ood_N == code).any():
            out[kind] = fn(ind, values_N[ood_N == code])
    if len(out) > 1:
        out["pooled"] = fn(ind, values_N[ood_N > 0])
    return out


def _auroc(negatives, positives) -> float:
    if not len(negatives) or not len(positives):
        return float("nan")
    scores = np.concatenate([negatives, positives])
    labels = np.concatenate([np.zeros(len(negatives), bool), np.ones(len(positives), bool)])
    return round(float(metrics.auroc(scores, labels)), 6)


def _context(config: Config, d: Data, n: Nets, state, method: str, source, labelled_N, pool_N,
             rnd: int, budget: int):
    return acquisition.Context(
        task=config.task, model=n.model, state=state, aux=n.aux,
        batches=acquisition.loader_batches(source, config.batch_size, image_size=d.image_size,
                                           num_workers=config.num_workers),
        labelled=labelled_N, pool=pool_N, budget=budget,
        key=round_key(config.seed, rnd, "acquire", method),
        skeleton=data.spec(config.dataset).skeleton, progress=config.progress)


def acquire(config: Config, d: Data, n: Nets, state, method: str, labelled_N, rnd: int):
    """(selection, statistics) for one round. Statistics: `num_scored` (candidates), the
    share of the selection of each OOD kind (`ood_selected_fraction`, `ood_selected_by_kind`)
    and, for methods that score records, the AUROC of the scores separating each OOD kind of
    the candidates from the in-distribution ones (`ood_auroc`, pooled, and
    `ood_auroc_by_kind`)."""
    is_labelled = np.zeros(len(d.source), bool)
    is_labelled[labelled_N] = True
    pool_N = np.flatnonzero(~is_labelled)
    pool_N = pre_subset_pool(config, d, pool_N[pool_N >= d.pool_start], rnd)
    ctx = _context(config, d, n, state, method, d.source, labelled_N, pool_N, rnd, config.budget)
    sel = acquisition.select(method, ctx, **config.method_options.get(method, {}))
    ood_sel = d.ood_N[sel.indices]
    stats = {"num_scored": int(len(pool_N)),
             "ood_selected_fraction": float(np.mean(ood_sel > 0))}
    if d.ood_N.any():
        stats["ood_selected_by_kind"] = {
            kind: round(float(np.mean(ood_sel == code)), 6)
            for code, kind in enumerate(data.OOD_KINDS) if code > 0}
    if sel.scores is not None and sel.scored_indices is not None and d.ood_N.any():
        # A diagnostic: with several processes, ranked methods hold only their own scores.
        scored, scores = parallel.gather_rows(np.asarray(sel.scored_indices, np.int64),
                                              np.asarray(sel.scores, np.float64))
        scored, first = np.unique(scored, return_index=True)  # geometric methods: all alike
        by_kind = _by_kind(scores[first], d.ood_N[scored], _auroc)
        if by_kind:
            stats["ood_auroc_by_kind"] = by_kind
            stats["ood_auroc"] = by_kind.get("pooled", next(iter(by_kind.values())))
    return sel, stats


# Methods whose scores are a function of the record alone (no labelled set, no pool
# geometry): they can also score the test split, where the diagnostics compare scores with
# the per-image error.
RECORD_SCORERS = ("vl4pose", "aleatoric", "learning_loss", "multipeak_entropy", "mc_dropout")


def test_scores(config: Config, d: Data, n: Nets, state, method: str, p: TestPredictions,
                rnd: int) -> np.ndarray:
    """`method`'s acquisition score of each test image of `p` (in the order of `p.index`),
    the whole test split scored as a pool by the model `state` of round `rnd`."""
    test_N = np.arange(len(d.test))
    ctx = _context(config, d, n, state, method, d.test, np.zeros(0, np.int64), test_N, rnd, 1)
    sel = acquisition.select(method, ctx, **config.method_options.get(method, {}))
    scored, scores = parallel.gather_rows(np.asarray(sel.scored_indices, np.int64),
                                          np.asarray(sel.scores, np.float64))
    score_of = dict(zip(scored.tolist(), scores.tolist()))
    return np.asarray([score_of[int(i)] for i in p.index])


def score_test_split(config: Config, d: Data, n: Nets, state, method: str,
                           p: TestPredictions, rnd: int) -> dict:
    """For a method in `RECORD_SCORERS`: its scores on the test split against the per-image
    error (`test_spearman`: Spearman correlation, positive when high scores go with large
    errors, i.e. the score predicts failure), for heatmap tasks against the per-image PCK
    (`test_spearman_pck`: negative when the score predicts failure) and against the OOD kinds
    (`test_auroc_by_kind`). Empty for other methods."""
    if method not in RECORD_SCORERS or len(p.index) < 3:
        return {}
    scores_B = test_scores(config, d, n, state, method, p, rnd)
    error_B = _accuracy(config, p)[2]
    ok = np.isfinite(error_B) & np.isfinite(scores_B)
    out = {"test_spearman": spearman(scores_B[ok], error_B[ok])}
    if config.task == "heatmap":
        pck_B = per_image_pck(config, p)
        ok = np.isfinite(pck_B) & np.isfinite(scores_B)
        out["test_spearman_pck"] = spearman(scores_B[ok], pck_B[ok])
    by_kind = _by_kind(scores_B, p.ood, _auroc)
    if by_kind:
        out["test_auroc_by_kind"] = by_kind
    return out


# ------------------------------------------------------------------------------ checkpoints

def check_workdir(config: Config, workdir) -> None:
    """Write the config on first use; refuse a different one later."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CONFIG_FILE
    ident = config.identity()
    if path.exists():
        # Workdirs written before --precision / --num_workers / --init_from / --min_steps /
        # --bayesian_deepprior.
        old = {"precision": "float32", "num_workers": 0, "init_from": None, "min_steps": 0,
               "bayesian_deepprior": False, **json.loads(path.read_text())}
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
    if data.spec(config.dataset, data_dir=config.data_dir).skeleton is None:  # COCO sets
        raise SimulationError(f"dataset {config.dataset!r} of {workdir} is not prepared in "
                              f"{config.data_dir or data.default_data_dir()}; pass the data "
                              "directory it was built in (--data_dir).")
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
    """Inputs, predicted and true 2-D joints of up to `limit` selected records, for galleries:
    {'image_NxSxSxC', 'joints_NxJx2', 'gt_NxJx2' (input pixels, x y; NaN where not labelled),
    'ood_N' (OOD kind names), 'links'}."""
    indices_N = np.asarray(indices_N, np.int64)[:limit]
    if len(indices_N) == 0:
        return None
    batch = next(iter(data.make_loader(d.source, batch_size=len(indices_N), train=False,
                                       indices=indices_N, image_size=d.image_size)))
    state = parallel.replicate(state, None)
    if config.task == "heatmap":
        stride = d.image_size / HUMAN_PRESETS[config.preset].heatmap_size
        to_px = lambda cells: (np.asarray(cells) + 0.5) * stride - 0.5  # noqa: E731
        image, pred = batch["image"], n.predict(state, batch["image"])["joints_BxJx2"]
    else:
        to_px = lambda uvd: (np.asarray(uvd)[..., :2] + 1.0) * 0.5 * d.image_size - 0.5  # noqa
        image, pred = batch["depth"], n.predict(state, batch["depth"])["pose_BxJx3"]
    truth = np.where(np.asarray(batch["visible"])[..., None] > 0, to_px(batch["joints"]), np.nan)
    return {"image_NxSxSxC": image, "joints_NxJx2": to_px(pred), "gt_NxJx2": truth,
            "ood_N": [data.OOD_KINDS[int(k)] for k in d.ood_N[indices_N]],
            "links": data.spec(config.dataset).skeleton.links}


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
        shared = shared_round0(cfg, d, workdir, log)
        for method in config.methods:
            key = (config.methods.index(method), seed)
            rows_by_run[key] = []
            _run_one(cfg, d, method, workdir, rows_by_run, key, log, on_round,
                     round0=shared.pop(method, None))
    return [row for k in sorted(rows_by_run) for row in rows_by_run[k]]


@functools.lru_cache(maxsize=None)
def _multi_step(dataset: str, preset: str, heads: tuple, lr: float, precision: str):
    skeleton = data.spec(dataset).skeleton
    dtype = PRECISIONS[precision]
    model = models.StackedHourglass(num_joints=skeleton.num_joints, dtype=dtype,
                                    **HUMAN_PRESETS[preset].kwargs)
    auxs = {h: models.AuxNet(head=h, num_links=skeleton.num_links,
                             num_joints=skeleton.num_joints, dtype=dtype) for h in heads}
    tx = optax.adam(lr)
    return train.make_heatmap_multi_step(model, auxs, tx, tx, skeleton=skeleton)


def _listdir(path: pathlib.Path) -> list:
    return list(path.iterdir()) if path.is_dir() else []


def _copy(state):
    """A state with its own buffers (train steps donate theirs)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)


def shared_round0(config: Config, d: Data, workdir: pathlib.Path, log=print) -> dict:
    """The first round's training, done once for the methods of `config.seed` that have not
    finished round 0 and would train the same network: {method: (trained state, seconds)}.
    Heatmap methods: every one (same initial set, key and data order; auxiliary nets see
    detached features, and `train.make_heatmap_multi_step` trains every method's auxiliary net
    beside the hourglass, so each method gets the state its own training would give).
    Regression methods: each group of two or more with the same network and no auxiliary net
    (e.g. random, coreset, coregcn and uncertaingcn on DeepPrior; mc_dropout and cke on
    Bayesian DeepPrior). Empty without such a group, with `init_from` or without
    `share_round0`. Mid-training checkpoints go to `checkpoints/round0_shared/seed_<seed>/`
    (heatmap) or `checkpoints/round0_shared_<first method of the group>/seed_<seed>/`."""
    if config.init_from or not config.share_round0 or config.epochs == 0:
        return {}
    # Finished rounds, read off the folders (Orbax renames a step's folder into place when it
    # is complete); no CheckpointManager here: creating one is collective across processes.
    todo = [m for m in config.methods
            if not any(p.name.isdigit() for p in _listdir(
                checkpoints.run_dir(workdir, m, config.seed) / "rounds"))]
    by_method = {m: nets_for(config, m) for m in todo}
    key = round_key(config.seed, 0, "init")
    out = {}
    if config.task == "heatmap":
        if len(todo) < 2:
            return {}
        inits = {m: n.init(key) for m, n in by_method.items()}
        heads = {n.aux.head: m for m, n in by_method.items() if n.aux is not None}
        state = inits[todo[0]].replace(
            aux_params={h: inits[m].aux_params for h, m in heads.items()},
            aux_opt_state={h: inits[m].aux_opt_state for h, m in heads.items()})
        lr = config.lr if config.lr is not None else train.HOURGLASS_LR
        shared = dataclasses.replace(by_method[todo[0]], step=_multi_step(
            config.dataset, config.preset, tuple(sorted(heads)), float(lr), config.precision))
        state, seconds = _train_round0(config, d, workdir, "round0_shared", todo, shared, state,
                                       log)
        for m, n in by_method.items():
            head = None if n.aux is None else n.aux.head
            out[m] = (_copy(state.replace(
                aux_params=None if head is None else state.aux_params[head],
                aux_opt_state=None if head is None else state.aux_opt_state[head])), seconds)
        return out
    groups: dict = {}  # `nets` is cached: methods with equal networks share one Nets object
    for m, n in by_method.items():
        if n.aux is None:
            groups.setdefault(id(n), []).append(m)
    for group in (g for g in groups.values() if len(g) >= 2):
        n = by_method[group[0]]
        state, seconds = _train_round0(config, d, workdir, f"round0_shared_{group[0]}", group,
                                       n, n.init(key), log)
        out.update({m: (_copy(state), seconds) for m in group})
    return out


def _train_round0(config: Config, d: Data, workdir: pathlib.Path, name: str, methods: list,
                  n: Nets, state, log) -> tuple:
    """Round 0 of `config.seed` trained once for `methods`, resumable from its mid-training
    checkpoints in `checkpoints/<name>/seed_<seed>/training`: (state, seconds)."""
    mesh = parallel.train_mesh()
    state = parallel.replicate(state, mesh)
    mid = checkpoints.manager(checkpoints.run_dir(workdir, name, config.seed) / "training")
    resume = {}
    last, restored, meta = _restore(mid, state, steps=mid.all_steps(), log=log)
    if last is not None:
        state = restored
        resume = dict(start_step=meta["step"],
                      iterator_state=meta["iterators"][jax.process_index()].encode())
        log(f"[seed {config.seed}] resuming the shared round 0 at step {meta['step']}")

    def checkpoint(state, done, iterator_state):
        iterators = [s.decode() for s in parallel.gather_bytes(iterator_state)]
        checkpoints.save(mid, done, state, {"round": 0, "step": done, "iterators": iterators})
        if config.crash_at == f"train:0:{done}":
            raise SimulatedCrash(f"simulated crash in round 0 at step {done}")

    log(f"[seed {config.seed}] round 0 trained once for {', '.join(methods)}")
    t0 = time.perf_counter()
    state = train_round(config, d, n, state, initial_labelled(config, d), config.epochs, 0,
                        f"s{config.seed} r0 shared", checkpoint=checkpoint, **resume)
    seconds = round(time.perf_counter() - t0, 3)
    mid.close()
    return state, seconds


def _run_one(config: Config, d: Data, method: str, workdir: pathlib.Path, rows_by_run, run_key,
             log, on_round=None, round0=None):
    """Rounds of one (method, seed); `round0`: (state, seconds) of a shared first training."""
    n = nets_for(config, method)
    base = checkpoints.run_dir(workdir, method, config.seed)
    mngr, mid = checkpoints.manager(base / "rounds"), checkpoints.manager(base / "training")
    mesh = parallel.train_mesh()
    state = parallel.replicate(n.init(round_key(config.seed, 0, "init")), mesh)
    if config.init_from and mngr.latest_step() is None:  # fine-tune a previous run's weights
        prev = load_trained(config.init_from, method=method, seed=None,
                            data_dir=config.data_dir)
        state = parallel.replicate(prev.state, mesh)
        log(f"[{method} seed {config.seed}] starting from {config.init_from} (round "
            f"{prev.meta.get('round')})")
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
        epochs = config.epochs if rnd == 0 or config.retrain == "scratch" else config.cycle_epochs
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
        if rnd == 0 and round0 is not None:
            state, seconds_train = parallel.replicate(round0[0], mesh), round0[1]
        else:
            state = train_round(config, d, n, state, labelled_N, epochs, rnd, desc,
                                checkpoint=checkpoint, **resume)
            seconds_train = time.perf_counter() - t0
        predictions = predict_test(config, d, n, state)
        row = {"method": method, "seed": config.seed, "round": rnd,
               "num_labelled": int(len(labelled_N)),
               **evaluate(config, d, n, state, predictions),
               **score_test_split(config, d, n, state, method, predictions, rnd),
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
            + (f", {row['num_scored']} scored" if "num_scored" in row else "")
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
