"""What an active-learning experiment is: `Config` (one experiment: dataset, methods, seeds,
budget, rounds, training schedule, network size), the papers' protocols whose values fill the
fields a user leaves unset (`PROTOCOLS`, `make_config`), every check that needs no data
(`check`), the network sizes (`HUMAN_PRESETS`, `HAND_SIZES`, `PRECISIONS`) and the derivation of
every random key from the seed (`round_key`, `grain_seed`).

    config = protocol.make_config("synthetic_human", ("vl4pose", "random"), seed=0, trials=5)
    protocol.check(config)        # SimulationError with one paragraph on a bad setting

A dataset without a protocol of its own (e.g. one registered by a user) takes the protocol of
its kind: the LSP/MPII one for human poses, the ICVL/NYU one for hands.
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vl4pose_jax import acquisition, data, models

# Test-sized network: compiles in seconds on a CPU.
MICRO = models.Preset(dict(num_stacks=1, channels=16, depth=1), input_size=32, heatmap_size=8)
HUMAN_PRESETS = {**models.PRESETS, "micro": MICRO}
# DeepPrior crop size per preset (the paper crops 128 x 128). 'small' (64 px) is the CPU study
# size: a training step costs ~6x less on XLA:CPU (benchmarks/models.py --parts=deepprior_train).
HAND_SIZES = {"paper": 128, "small": 64, "tiny": 128, "micro": 32}
# --precision: the models' compute dtype (parameters and losses stay float32).
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Fields that may change between a run and its resume (they do not change the results).
VOLATILE = ("data_dir", "crash_at", "progress", "checkpoint_every", "share_round0")


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
    subset of the pool (int count or float fraction), None for the whole pool.
    `method_options`: {method: {option: value}} passed to the method's `select`. `crash_at`
    (tests): 'round:R' raises `SimulatedCrash` right after round R's checkpoint of the first
    (method, seed), 'train:R:S' right after the mid-training checkpoint at step S of round R.
    `checkpoint_every`: epochs between mid-training checkpoints (0: only at round ends).
    `precision`: 'float32', or 'bfloat16' for bfloat16 compute with float32 parameters, optimiser
    state and losses (for GPU/TPU; XLA:CPU runs bfloat16 slowly). `num_workers`: grain worker
    processes decoding images (0: in the main process); grain splits the records among them, so
    the order of training batches, and hence the results, depend on the count. `init_from`: a
    workdir whose newest trained state (`workdir.load_trained`) starts round 0 instead of a fresh
    initialisation (fine-tuning after labels were merged into the dataset); with 'finetune'
    that round 0 trains `cycle_epochs`, the warm-started schedule, not `epochs`.
    `bayesian_deepprior`: every regression method trains Bayesian DeepPrior (evaluated as the
    MC mean), not only those that declare it, so that e.g. random selection is a fair baseline
    for them. A round's training (`fit`): `lr_schedule` 'constant', 'plateau' (the VL4Pose
    reference's ReduceLROnPlateau on the validation pose loss, restarted every round) or
    'cosine' (to 0.01 x over the round's steps), of the pose network's learning rate only;
    `optimizer_state` 'carried' (Adam's moments go on into the next round) or 'fresh' (re-
    initialised for every warm-started training, as the reference; a from-scratch round has a
    new one anyway); `select_best`: the state of the epoch with the lowest validation pose
    loss ends the round (evaluated, scored, checkpointed, fine-tuned next); `early_stopping`:
    stop after that many epochs without a lower validation pose loss (0: never). The defaults
    are the behaviour before these fields existed."""
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
    lr_schedule: str = "constant"
    optimizer_state: str = "carried"
    select_best: bool = False
    early_stopping: int = 0

    @property
    def task(self) -> str:
        return "heatmap" if data.spec(self.dataset).kind == "human" else "regression"

    @property
    def needs_validation(self) -> bool:
        """Whether training reads the validation pose loss every epoch."""
        return self.lr_schedule == "plateau" or self.select_best or self.early_stopping > 0

    @property
    def legacy_training(self) -> bool:
        """Training as before `lr_schedule` and its siblings existed: the rows then record
        no training history (results of old runs stay as they were)."""
        return (self.lr_schedule == "constant" and self.optimizer_state == "carried"
                and not self.needs_validation)

    def identity(self) -> dict:
        """The fields that define the results (compared on resume)."""
        d = dataclasses.asdict(self)
        for k in VOLATILE:
            d.pop(k)
        d["methods"] = list(d["methods"])
        return json.loads(json.dumps(d))

    def options(self, method: str) -> dict:
        """The options of `method` (`method_options`), for its `select`."""
        return dict(self.method_options.get(method, {}))


# ------------------------------------------------------------------------------- protocols

# Paper protocols: unset flags default to these (per dataset, or per --protocol).
# VL4Pose reference (main.py `define_hyperparams`, `Train`; reference notes §6.3): 150 epochs for
# the base model, 100 per cycle warm-started from the best checkpoint with a new Adam (3e-4,
# the hourglass default of `nets.learning_rate`) and ReduceLROnPlateau on the validation pose
# loss; the checkpoint best on validation is evaluated and fine-tuned next.
_HUMAN = dict(init_size=1000, budget=1000, rounds=5, epochs=150, cycle_epochs=100,
              retrain="finetune", preset="paper", batch_size=16, pre_subset=None,
              lr_schedule="plateau", optimizer_state="fresh", select_best=True)
# VL4Pose paper, hands: 100 initial, +100 per cycle to 1,000, VL4Pose on a random pre-subset.
# 100 images at batch 64 are one step per epoch: 60 steps leave DeepPrior unconverged
# (synthetic hands: 14.7 mm in-distribution after 60 steps, 11.5 after 600), so every round
# trains at least the 900 steps of the CKE protocol's 1,000-image stage (60 epochs x 15).
# al_bhpe keeps the weights best on the test set; we select on the validation split.
_HAND = dict(init_size=100, budget=100, rounds=9, epochs=60, retrain="scratch", preset="paper",
             batch_size=64, pre_subset=0.1, min_steps=900, select_best=True)
PROTOCOLS = {
    "lsp": _HUMAN, "lspet": _HUMAN, "mpii": _HUMAN,
    "icvl": _HAND, "nyu": _HAND,
    # Bayesian DeepPrior + CKE (WACV 2021): 1,000 initial, +1,000 per stage from a 10 % subset,
    # retrained from scratch for 60 epochs, batch 64.
    "cke": dict(init_size=1000, budget=1000, rounds=9, epochs=60, retrain="scratch",
                preset="paper", batch_size=64, pre_subset=0.1),
    # Built-in synthetic people, the CPU regime (issue 27), in the reference's way of training
    # a cycle: config 'families' (600 train from which each seed draws 200 initial, 2,500 pool
    # of which 500 learnable rare poses and 500 appearance shifts, 500 validation, 500 test),
    # the 'small' hourglass (128 px input, 32 x 32 heatmaps) at Adam 3e-3, 60 epochs (780
    # steps) for round 0 (PCK@0.2 ~72 % in distribution), then 12 epochs per cycle, warm-started
    # from the previous round's best state with a fresh Adam, ReduceLROnPlateau on the
    # validation loss and the best-on-validation state kept. About 9 minutes for two methods
    # on 2 CPU cores. Chosen from random's curve and the learnability check alone (studies/
    # README.md, "synthetic people, cycle training").
    "synthetic_human": dict(init_size=200, budget=100, rounds=3, epochs=60, cycle_epochs=12,
                            retrain="finetune", preset="small", batch_size=16, pre_subset=None,
                            data_config="families", lr=3e-3, lr_schedule="plateau",
                            optimizer_state="fresh", select_best=True),
    # The regime of the studies before issue 27 (config 'small': 200 initial, 1,000 pool,
    # 200 test; 5 epochs per cycle at a constant 3e-3 with Adam's state carried over, the last
    # step evaluated): `--protocol=synthetic_human_v1` reruns them.
    "synthetic_human_v1": dict(init_size=200, budget=100, rounds=3, epochs=60, cycle_epochs=5,
                               retrain="finetune", preset="small", batch_size=16,
                               pre_subset=None, data_config="small", lr=3e-3),
    # Your own COCO keypoints data (data.coco): every train.json person labelled, no acquisition
    # (rank new images with experiments.score); --rounds simulates on pool.json.
    "coco_keypoints": dict(init_size=10**9, budget=100, rounds=0, epochs=100, cycle_epochs=50,
                           retrain="finetune", preset="paper", batch_size=16, pre_subset=None),
    # The same on a CPU in minutes (`--protocol=coco_cpu`): the 'small' hourglass (128 px
    # input, 32 x 32 heatmaps; a train step ~21 ms/image on 2 busy cores, benchmarks/models.py
    # --preset=small --parts=hourglass) trained as synthetic_human (Adam 3e-3, plateau, best
    # on validation), 40 epochs for the first training, 12 per fine-tuning (--init_from).
    # Measured on 300 LSPET images as COCO (272 train, 28 validation, 40 test), 2 cores shared
    # with another job: 4 min 16 s for the whole command (198 s of training), PCK@0.2 14.3 %.
    "coco_cpu": dict(init_size=10**9, budget=100, rounds=0, epochs=40, cycle_epochs=12,
                     retrain="finetune", preset="small", batch_size=16, pre_subset=None,
                     lr=3e-3, lr_schedule="plateau", optimizer_state="fresh", select_best=True),
    # Hands: every from-scratch round trains 30 epochs and at least 450 steps (the 500-image
    # round's 30 epochs at batch 32), so rounds differ only in their labels.
    "synthetic_hand": dict(init_size=200, budget=100, rounds=3, epochs=30, retrain="scratch",
                           preset="tiny", batch_size=32, pre_subset=None, data_config="small",
                           min_steps=450),
}
# The fields a protocol sets (a flag left unset takes the protocol's value).
PROTOCOL_FIELDS = ("init_size", "budget", "rounds", "epochs", "cycle_epochs", "retrain", "preset",
                   "batch_size", "pre_subset", "data_config", "lr", "min_steps", "lr_schedule",
                   "optimizer_state", "select_best", "early_stopping")
LR_SCHEDULES = ("constant", "plateau", "cosine")
OPTIMIZER_STATES = ("carried", "fresh")
_BY_KIND = {"human": _HUMAN, "hand": _HAND}


def protocol_of(dataset: str, protocol: str | None = None) -> dict:
    """The protocol named `protocol`, else the dataset's own, else its kind's."""
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise SimulationError(f"unknown protocol {protocol!r}; known: "
                                  + ", ".join(PROTOCOLS) + ".")
        return dict(PROTOCOLS[protocol])
    if dataset in PROTOCOLS:
        return dict(PROTOCOLS[dataset])
    return dict(_BY_KIND[data.spec(dataset).kind])


def parse_pre_subset(value, budget: int):
    """--pre_subset: None, a fraction in (0, 1] (float) or a whole count >= budget (int)."""
    if value is None:
        return None
    if not value > 0:
        raise SimulationError(
            f"--pre_subset={value:g}: give a fraction of the pool in (0, 1] or a whole count of "
            f"records of at least --budget={budget}.")
    if value <= 1:
        return float(value)
    if value != int(value):
        raise SimulationError(
            f"--pre_subset={value:g} is neither a fraction in (0, 1] nor a whole count of "
            f"records; give e.g. 0.1 or {max(budget, int(value))}.")
    return int(value)


def make_config(dataset: str, methods, *, protocol: str | None = None, **fields) -> Config:
    """A `Config` of `methods` on `dataset`: the protocol's values (`protocol_of`) for every
    protocol field of `fields` that is None or absent, the other `fields` as given."""
    if dataset not in data.SPECS:
        raise SimulationError(f"unknown dataset {dataset!r}; known datasets: "
                              + ", ".join(sorted(data.SPECS)) + ".")
    values = protocol_of(dataset, protocol)
    for name in PROTOCOL_FIELDS:
        if fields.get(name) is not None:
            values[name] = fields[name]
    if values["retrain"] == "scratch" and fields.get("cycle_epochs") is not None:
        raise SimulationError(
            f"--cycle_epochs={fields['cycle_epochs']} has no effect with --retrain=scratch: every "
            "from-scratch round trains --epochs, so that rounds differ only in their labels.")
    values["pre_subset"] = parse_pre_subset(values.get("pre_subset"), values["budget"])
    rest = {k: v for k, v in fields.items() if k not in PROTOCOL_FIELDS}
    return Config(dataset=dataset, methods=tuple(methods), **rest, **values)


def parse_method_options(entries, methods) -> dict:
    """--method_options: entries 'method:key=value,key=value' (values parsed as JSON where they
    can be, e.g. 5, 0.3, true, else kept as text) -> {method: {key: value}}, every method among
    `methods` and every key an option of that method's `select`."""
    out: dict = {}
    for entry in entries or ():
        method, sep, rest = entry.partition(":")
        method = method.strip()
        if not sep or not rest.strip():
            raise SimulationError(f"--method_options={entry!r}: write METHOD:KEY=VALUE[,KEY=VALUE]"
                                  ", e.g. vl4pose:num_peaks=5,mode=expected.")
        if method not in methods:
            raise SimulationError(f"--method_options={entry!r} names {method!r}, which is not in "
                                  f"--method ({', '.join(methods)}).")
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise SimulationError(f"--method_options={entry!r}: {item!r} is not KEY=VALUE.")
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip()
            out.setdefault(method, {})[key.strip()] = value
    return out


def check(config: Config) -> None:
    """Every check of `config` that needs no data (names, presets, flags); SimulationError."""
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
    for m, options in config.method_options.items():
        if m not in config.methods:
            continue   # options of a method this run does not use
        try:
            acquisition.check_options(m, options)
        except ValueError as err:
            raise SimulationError(f"--method_options: {err}.") from None
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
    if min(config.rounds, config.epochs, config.cycle_epochs, config.min_steps,
           config.early_stopping) < 0:
        raise SimulationError("--rounds, --epochs, --cycle_epochs, --min_steps and "
                              "--early_stopping must be >= 0.")
    if config.lr_schedule not in LR_SCHEDULES:
        raise SimulationError(f"--lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not "
                              f"{config.lr_schedule!r}.")
    if config.optimizer_state not in OPTIMIZER_STATES:
        raise SimulationError(f"--optimizer_state must be one of {', '.join(OPTIMIZER_STATES)}, "
                              f"not {config.optimizer_state!r}.")
    check_flags(config)


def check_flags(config: Config) -> None:
    """The value checks of `check` on single flags: learning rate, methods listed once,
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


# ------------------------------------------------------------------------------------ seeds

def _hash(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def round_key(seed: int, rnd: int, purpose: str, method: str = "") -> jax.Array:
    """The key of `purpose` ('init', 'acquire', ...) in round `rnd` of `seed` (and `method`)."""
    key = jax.random.fold_in(jax.random.key(seed), rnd)
    key = jax.random.fold_in(key, _hash(purpose))
    return jax.random.fold_in(key, _hash(method)) if method else key


def grain_seed(seed: int, rnd: int) -> int:
    """The seed of round `rnd`'s training data order."""
    return int(np.random.SeedSequence([seed, rnd, 11]).generate_state(1)[0] & 0x7FFFFFFF)
