"""The one registry of datasets: each name's spec, builder and download help, and the spec lookup.

Adding a dataset is one builder file (a `base.Builder` subclass: `real_builders` reads files the
user downloaded, `synthetic_builders` generates its examples) and one `register` call, here for
a dataset that ships with the package or anywhere at run time:

    from vl4pose_jax import data, skeletons
    data.register("my_set", data.DatasetSpec("my_set", "human", skeletons.lsp14,
                                             ("train", "pool", "test"), metric="pck"), MyBuilder)

Then `data.build`, `data.load`, `data.spec` and `data.SPECS` know it, and, registered below,
so does `python -m vl4pose_jax.data.prepare` (its `--helpfull` prints the `download` text). A
spec may instead be a function `(name, data_dir) -> DatasetSpec`, for a dataset whose skeleton
comes from its prepared files (COCO sets: `coco.spec`). `spec` and `SPECS` are the lookup; the
spec type and the OOD kinds are in `spec.py`, the building in `builders`.
"""
from __future__ import annotations

import collections.abc
import dataclasses
from typing import Callable, Union

from vl4pose_jax import skeletons
from vl4pose_jax.data import coco, hands, real_builders, synthetic_builders
from vl4pose_jax.data.spec import DatasetSpec

SpecOrFactory = Union[DatasetSpec, Callable[[str, object], DatasetSpec]]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registered dataset. `builder` is a `base.Builder` subclass whose `name` is `name` (TFDS
    stores a dataset under its builder's name); `download` is its line in prepare's help."""
    name: str
    spec: SpecOrFactory
    builder: type
    download: str


_DATASETS: dict[str, Dataset] = {}


def register(name: str, spec: SpecOrFactory, builder: type, *, download: str | None = None
             ) -> Dataset:
    """Add dataset `name` (module doc). `download` defaults to the builder's `DOWNLOAD`.
    Registering the same dataset again does nothing; another one under a taken name, or a spec
    or builder named otherwise, is a ValueError."""
    if isinstance(spec, DatasetSpec) and spec.name != name:
        raise ValueError(f"dataset {name!r}: its spec is named {spec.name!r}")
    if getattr(builder, "name", None) != name:
        raise ValueError(f"dataset {name!r}: builder {builder.__name__} is named "
                         f"{getattr(builder, 'name', None)!r} (TFDS stores a dataset under its "
                         "builder's name)")
    entry = Dataset(name, spec, builder, builder.DOWNLOAD if download is None else download)
    if _DATASETS.setdefault(name, entry) != entry:
        raise ValueError(f"dataset {name!r} is already registered (builder "
                         f"{_DATASETS[name].builder.__name__})")
    return entry


def get(name: str) -> Dataset:
    """The registered dataset `name` (KeyError listing the known ones)."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(_DATASETS)}") from None


def names() -> list[str]:
    """Every registered dataset, in registration order."""
    return list(_DATASETS)


def spec(name: str, data_dir=None) -> DatasetSpec:
    """A dataset's spec. COCO-keypoints sets (`data.coco`) read theirs (the skeleton comes from
    the category) from the prepared dataset in `data_dir` (default: the last one loaded)."""
    entry = get(name)
    return entry.spec(name, data_dir) if callable(entry.spec) else entry.spec


class _Specs(collections.abc.Mapping):
    """`SPECS[name]` is `spec(name)`, over every registered dataset (a live view)."""

    def __getitem__(self, name):
        return spec(name)

    def __iter__(self):
        return iter(names())

    def __len__(self):
        return len(_DATASETS)

    def __repr__(self):
        return f"SPECS({names()})"


SPECS = _Specs()


def download_help() -> str:
    """One line per download text, naming the datasets that share it (prepare's --helpfull)."""
    by_text: dict[str, list[str]] = {}
    for entry in _DATASETS.values():
        by_text.setdefault(entry.download, []).append(entry.name)
    return "\n".join(f"  {', '.join(n)}: {text}" for text, n in by_text.items())


# ------------------------------------------------------------------- the built-in datasets

_GENERATED = ("built-in generators, no download (--config: default, small, tiny; people "
              "also families, families_tiny: learnable rare-pose families).")

register("lsp", DatasetSpec("lsp", "human", skeletons.lsp14,
                            ("train", "pool", "validation", "test"), metric="pck"),
         real_builders.Lsp)
register("lspet", DatasetSpec("lspet", "human", skeletons.lsp14, ("pool", "validation", "test"),
                              metric="pck"), real_builders.Lspet)
register("mpii", DatasetSpec("mpii", "human", skeletons.mpii16, ("pool", "validation", "test"),
                             metric="pckh"), real_builders.Mpii)
register("icvl", DatasetSpec("icvl", "hand", skeletons.icvl16, ("pool", "validation", "test"),
                             hands.INTRINSICS["icvl"], hands.CUBE_MM["icvl"], "mm"),
         real_builders.Icvl)
register("nyu", DatasetSpec("nyu", "hand", skeletons.nyu14, ("pool", "validation", "test"),
                            hands.INTRINSICS["nyu"], hands.CUBE_MM["nyu"], "mm"),
         real_builders.Nyu)
# Your own COCO keypoints data: joints and tree come from the prepared dataset (data.coco).
register(coco.NAME, coco.spec, coco.CocoKeypoints,
         download=coco.DOWNLOAD_HELP + " (see vl4pose_jax/data/coco/__init__.py)")
register("synthetic_human", DatasetSpec("synthetic_human", "human", skeletons.lsp14,
                                        synthetic_builders.SPLITS, metric="pck"),
         synthetic_builders.SyntheticHuman, download=_GENERATED)
register("synthetic_hand", DatasetSpec("synthetic_hand", "hand", skeletons.icvl16,
                                       synthetic_builders.SPLITS,
                                       hands.INTRINSICS["synthetic_hand"],
                                       hands.CUBE_MM["synthetic_hand"], "mm"),
         synthetic_builders.SyntheticHand, download=_GENERATED)
