"""The records an AL simulation sees: `load_data(config)` opens the dataset's `train` split (the
initial labelled set, when it has one) followed by its `pool` split as one record-index space
(`Data.source`, ids `split/id`, OOD kind per record), its `test` split and, when the training
reads a validation loss (`Config.needs_validation`), its `validation` split; `initial_labelled`
draws a seed's initial labelled set, `pre_subset_pool` a round's random candidates, and
`validate(config)` runs every check that needs no training (`protocol.check`, the data prepared,
the budget against the pool) and returns the opened data.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from vl4pose_jax import data, protocol
from vl4pose_jax.protocol import HAND_SIZES, HUMAN_PRESETS, Config, SimulationError


class Union:
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
    source: Union           # train (if any) + pool
    test: data.Source
    ids: list               # 'split/id' per record of `source`
    ood_N: np.ndarray       # int per record of `source`
    pool_start: int         # first pool record
    image_size: int
    validation: data.Source | None = None   # opened when `config.needs_validation`


def read_field(source: data.Source, key: str) -> list:
    """`key` of every record of `source`, read without decoding images."""
    return [source._source[i][key] for i in range(len(source))]  # pylint: disable=protected-access


def load_data(config: Config) -> Data:
    sp = data.spec(config.dataset)
    # generated datasets (synthetic, no manual download) build themselves on first use
    kw = dict(data_dir=config.data_dir, config=config.data_config, build_if_missing=True)
    parts = [data.load(config.dataset, s, **kw) for s in ("train", "pool") if s in sp.splits]
    test = data.load(config.dataset, "test", **kw)
    ids = [f"{p.split}/{i}" for p in parts for i in p.ids()]
    ood = np.concatenate([np.asarray(read_field(p, "ood"), np.int64).reshape(-1) for p in parts])
    size = (HUMAN_PRESETS[config.preset].input_size if sp.kind == "human"
            else HAND_SIZES[config.preset])
    validation = load_validation(config, kw) if config.needs_validation else None
    return Data(Union(parts), test, ids, ood, len(parts[0]) if len(parts) == 2 else 0, size,
                validation)


def load_validation(config: Config, kw: dict) -> data.Source:
    """The `validation` split, or a SimulationError saying which flags need it and what to do."""
    flags = [f for f, on in (("--lr_schedule=plateau", config.lr_schedule == "plateau"),
                             ("--select_best", config.select_best),
                             (f"--early_stopping={config.early_stopping}",
                              config.early_stopping > 0)) if on]
    try:
        if "validation" in data.spec(config.dataset).splits:
            return data.load(config.dataset, "validation", **kw)
        why = "its builder makes no 'validation' split (add one to the builder)"
    except KeyError:
        why = ("it was built before its builder made a 'validation' split: rebuild it with the "
               "current builder version (move the old build away, then "
               + data.prepare_command(config.dataset, data_dir=config.data_dir,
                                      config=config.data_config) + ")")
    raise SimulationError(
        f"{', '.join(flags)} read the pose loss on the validation split every epoch, but dataset "
        f"{config.dataset!r} has none: {why}; or train without a validation split: "
        "--lr_schedule=constant (or cosine) --noselect_best --early_stopping=0.")


def initial_labelled(config: Config, d: Data) -> np.ndarray:
    """The seed's initial labelled set: `init_size` random records of the train split (all of
    them if it is smaller), else of the pool. Same for every method."""
    rng = np.random.default_rng([config.seed, 7])
    if d.pool_start > 0:
        n = min(config.init_size, d.pool_start)
        return np.sort(rng.permutation(d.pool_start)[:n]).astype(np.int64)
    n_pool = len(d.source)
    return np.sort(rng.permutation(n_pool)[:config.init_size]).astype(np.int64)


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


def validate(config: Config) -> Data:
    """Every check that needs no training; returns the opened data. Raises SimulationError."""
    protocol.check(config)
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
