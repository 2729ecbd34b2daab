"""Reading built datasets: random-access sources and seeded, checkpointable grain loaders.

    source = data.load("lspet", "pool", data_dir=...)          # random access, len(source)
    loader = data.make_loader(source, batch_size=16, seed=0, train=True, num_workers=2)
    it = iter(loader); batch = next(it)                        # dict of numpy arrays
    state = it.get_state()                                     # bytes; save beside the model
    it = iter(loader); it.set_state(state)                     # resumes the exact data order
(With Orbax: `grain.python.PyGrainCheckpointSave(it)` / `PyGrainCheckpointRestore(it)` as the
args of a `CheckpointManager` item.) The loader must be rebuilt with the same source, indices,
seed and options before `set_state`.

`load` returns a `Source`: `source[i]` is the stored example plus `index` = i (the record index
in the split, stable for a given build); `source.ids()` lists the stable ids, and
`source.indices_of(ids)` maps ids back to indices, so labelled sets can be stored as ids.
`make_loader(source, indices=...)` reads only those records (an AL labelled set or the pool
remainder) while `index` stays the record index in the full split.

Batch contract (numpy; B = batch size). Human: `image` (B, S, S, 3) float32 in [0, 1];
`heatmaps` (B, S/4, S/4, J) float32 (peak 30, sigma 1.75 cells); `joints` (B, J, 2) float32
(x, y) heatmap cells, x_cell = (x_px + 0.5) / 4 - 0.5 (cell centres at integers; 0 where not
visible); `visible` (B, J) float32 (labelled, occluded included, and inside the crop);
`normalizer` (B,) float32 PCK normaliser in cells (torso for LSP/LSPET/synthetic, head size
0.6 x head-box diagonal for MPII); `ood` (B,) int32 (index into OOD_KINDS, 0 for real data);
`id` (B,) str; `index` (B,) int64. Hand: `depth` (B, 128, 128, 1) float32 in [-1, 1]; `joints`
(B, J, 3) normalised UVD; `visible` (B, J); `center_uvd` (B, 3); `cube_mm` (B,); `ood`, `id`,
`index`; convert with `hands.normalised_uvd_to_xyz_mm(..., source.intrinsics)`.
Training transforms draw from grain's per-record RNG (seeded by `seed` and the record's position
in the sampler), so a record's crop and augmentation do not depend on `num_workers`; with
workers, grain forms each batch inside one worker, so the grouping of records into batches is
fixed by (`seed`, `num_workers`): resume with the same `num_workers`.
"""
from __future__ import annotations

import pathlib
import zlib
from typing import Sequence

import grain.python as gp
import numpy as np
from absl import flags

from vl4pose_jax.data import builders, hands, registry, transforms
from vl4pose_jax.data.spec import DatasetSpec

class Source:
    """Random access over one split of a built dataset; picklable (for grain workers)."""

    def __init__(self, tfds_source, spec_: DatasetSpec, split: str):
        self._source = tfds_source
        self.spec = spec_
        self.split = split

    name = property(lambda self: self.spec.name)
    kind = property(lambda self: self.spec.kind)
    skeleton = property(lambda self: self.spec.skeleton)
    intrinsics = property(lambda self: self.spec.intrinsics)

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        example = dict(self._source[int(index)])
        example["index"] = int(index)
        return example

    def __repr__(self):
        return f"Source({self.name!r}, split={self.split!r}, {len(self)} examples)"

    def ids(self) -> list[str]:
        """Stable ids of every record, in record order (reads the whole split once)."""
        ids = []
        for i in range(len(self)):
            v = self._source[i]["id"]
            ids.append(v.decode() if isinstance(v, bytes) else str(v))
        return ids

    def indices_of(self, ids: Sequence[str]) -> np.ndarray:
        """Record indices of `ids` (KeyError naming the first unknown id)."""
        lookup = {k: i for i, k in enumerate(self.ids())}
        try:
            return np.asarray([lookup[k] for k in ids], np.int64)
        except KeyError as err:
            raise KeyError(f"id {err.args[0]!r} is not in {self!r}") from None


class _Subset:
    """Records `indices` of a source (keeps each record's own `index`). Its repr is stable
    (grain compares the data source's repr when an iterator state is restored)."""

    def __init__(self, source, indices):
        self._source = source
        self._indices = np.asarray(indices, np.int64)

    def __len__(self):
        return len(self._indices)

    def __getitem__(self, i):
        return self._source[int(self._indices[int(i)])]

    def __repr__(self):
        digest = zlib.crc32(self._indices.tobytes())
        return f"Subset({self._source!r}, {len(self._indices)} records, crc32 {digest:08x})"


def load(name: str, split: str, *, data_dir=None, config=None,
         build_if_missing: bool = False) -> Source:
    """Open one split of a built dataset. Raises `DatasetNotPreparedError` (naming the command
    that builds it) when it has not been built into `data_dir` (default: `$VL4POSE_DATA_DIR`,
    else ~/tensorflow_datasets) by this version of its builder (a build from before the
    `validation` split is named, never read). `build_if_missing=True` builds a set that needs
    no download (the synthetic ones) on first use instead."""
    sp = registry.spec(name, data_dir=data_dir)
    builder = builders.get_builder(name, data_dir=data_dir, config=config)
    if not builder.is_prepared() and build_if_missing and not builder.NEEDS_MANUAL_DIR:
        builder = builders.build(name, data_dir=data_dir, config=config)
    if not builder.is_prepared():
        raise builders.DatasetNotPreparedError(
            builders.not_prepared_message(name, builder, data_dir=data_dir, config=config))
    available = list(builder.info.splits.keys())
    if split not in available:
        raise KeyError(f"{name!r} has no split {split!r} in this build (built: {available}; "
                       "a split with no example present is left out, see "
                       f"{pathlib.Path(builder.data_dir) / 'build_report.json'})")
    return Source(builder.as_data_source(split), sp, split)


class _HumanOp:
    def __init__(self, train, **kwargs):
        self.train, self.kwargs = train, kwargs

    def __call__(self, example, rng=None):
        return transforms.human_transform(example, rng, train=self.train, **self.kwargs)


class _HandOp:
    def __init__(self, train, **kwargs):
        self.train, self.kwargs = train, kwargs

    def __call__(self, example, rng=None):
        return hands.hand_transform(example, rng, train=self.train, **self.kwargs)


class _RandomOp(gp.RandomMapTransform):
    """A per-record transform drawing from grain's per-record, seeded numpy Generator."""

    def __init__(self, fn):
        self.fn = fn

    def random_map(self, element, rng):
        return self.fn(element, rng)


class _MapOp(gp.MapTransform):
    def __init__(self, fn):
        self.fn = fn

    def map(self, element):
        return self.fn(element)


def _ensure_absl_flags_parsed():
    """grain's worker processes read absl flags; outside an absl `app.run` (pytest, notebooks)
    nothing parsed them, so accept their defaults (a no-op when they are already parsed)."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_loader(source: Source, *, batch_size: int, seed: int = 0, train: bool,
                num_workers: int = 0, image_size: int | None = None,
                num_epochs: int | None = None, shuffle: bool | None = None,
                drop_remainder: bool | None = None, indices=None, worker_buffer_size: int = 2,
                shard_options=None, **transform_kwargs):
    """A grain DataLoader of batches (module doc) over `source` (or its `indices`).

    Defaults follow `train`: training shuffles, repeats forever, augments (people: flip,
    rotation, zoom, shift; hands: crop-centre and cube jitter, see `hands.hand_transform`) and
    drops the last partial batch; otherwise one pass in record order, no augmentation, the partial batch kept.
    `image_size` is the human crop size S (default 256) or the hand crop (default 128).
    `shard_options` (e.g. `grain.python.ShardByJaxProcess()`) splits records over hosts.
    """
    if num_workers > 0:
        _ensure_absl_flags_parsed()
    shuffle = train if shuffle is None else shuffle
    drop_remainder = train if drop_remainder is None else drop_remainder
    if num_epochs is None and not train:
        num_epochs = 1
    data = source if indices is None else _Subset(source, indices)
    if len(data) == 0:
        raise ValueError(f"no records to load from {source!r}")
    if source.kind == "human":
        fn = _HumanOp(train, image_size=image_size or 256, skeleton=source.skeleton,
                      **transform_kwargs)
    else:
        fn = _HandOp(train, intrinsics=source.spec.intrinsics, cube_mm=source.spec.cube_mm,
                     size=image_size or hands.CROP_SIZE, **transform_kwargs)
    sampler = gp.IndexSampler(num_records=len(data), shard_options=shard_options or gp.NoSharding(),
                              shuffle=shuffle, num_epochs=num_epochs, seed=int(seed))
    return gp.DataLoader(data_source=data, sampler=sampler,
                         operations=[_RandomOp(fn) if train else _MapOp(fn),
                                     gp.Batch(batch_size, drop_remainder=drop_remainder)],
                         worker_count=num_workers, worker_buffer_size=worker_buffer_size)
