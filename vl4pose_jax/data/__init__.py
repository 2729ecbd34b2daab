"""Datasets: TFDS builders (no TensorFlow) for LSP, LSPET, MPII, ICVL, NYU and the built-in
synthetic human and hand sets, and the grain pipeline that crops, augments and batches them.

    from vl4pose_jax import data
    data.build("lspet", manual_dir=".../lspet_dataset", data_dir=...)   # once (or prepare.py)
    source = data.load("lspet", "pool", data_dir=...)                   # random access
    loader = data.make_loader(source, batch_size=16, seed=0, train=True, num_workers=2)

Modules: `formats` (label/image readers), `transforms`
(human crop/augment/heatmaps), `hands` (depth crop, normalised UVD <-> mm), `builders` (TFDS
builders, `build`), `synthetic` / `synthetic_builders` (the built-in sets), `loader` (`load`,
`make_loader`, the batch contract), `prepare` (the CLI), `coco` (your own COCO-keypoints
datasets and merging annotated files back).
"""
from vl4pose_jax.data.builders import (CorruptImageError, DatasetNotPreparedError, build,
                                       default_data_dir, get_builder, prepare_command)
from vl4pose_jax.data.hands import (INTRINSICS, normalised_uvd_to_xyz_mm,
                                    xyz_mm_to_normalised_uvd)
from vl4pose_jax.data.loader import SPECS, Source, load, make_loader, spec
from vl4pose_jax.data.spec import OOD_KINDS
