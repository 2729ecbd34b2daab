"""Datasets: TFDS builders (no TensorFlow) for LSP, LSPET, MPII, ICVL, NYU, your own COCO
keypoints and the built-in synthetic human and hand sets, and the grain pipeline that crops,
augments and batches them.

    from vl4pose_jax import data
    data.build("lspet", manual_dir=".../lspet_dataset", data_dir=...)   # once (or prepare.py)
    source = data.load("lspet", "pool", data_dir=...)                   # random access
    loader = data.make_loader(source, batch_size=16, seed=0, train=True, num_workers=2)
    data.register("my_set", data.DatasetSpec(...), MyBuilder)           # a dataset of your own

Modules: `spec` (`DatasetSpec`, `OOD_KINDS`: a leaf), `registry` (the one registry of datasets:
`register`, `spec`, `SPECS`), `base` (the builder base class and its checks), `real_builders`
(LSP, LSPET, MPII, ICVL, NYU), `synthetic` / `synthetic_builders` (the built-in sets), `coco`
(your own COCO-keypoints datasets; `coco.commands`: prepare and merge annotated files back),
`builders` (`build`, `get_builder`), `formats` (label/image readers), `transforms` (human
crop/augment/heatmaps), `hands` (depth crop, normalised UVD <-> mm), `loader` (`load`,
`make_loader`, the batch contract), `prepare` (the command line). Import names from the spec
module as `from vl4pose_jax.data.spec import DatasetSpec`: `data.spec` is the lookup function.
"""
from vl4pose_jax.data.base import CorruptImageError, default_data_dir
from vl4pose_jax.data.builders import DatasetNotPreparedError, build, get_builder, prepare_command
from vl4pose_jax.data.hands import (INTRINSICS, normalised_uvd_to_xyz_mm,
                                    xyz_mm_to_normalised_uvd)
from vl4pose_jax.data.loader import Source, load, make_loader
from vl4pose_jax.data.registry import SPECS, register, spec
from vl4pose_jax.data.spec import OOD_KINDS, DatasetSpec
