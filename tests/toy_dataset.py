"""A toy dataset defined outside the package and added with one `register` call (tests).

    import toy_dataset
    name = toy_dataset.register_toy()                 # "toy_pose"; a no-op when registered
    data.build(name, data_dir=...)                    # generated: no download, ~1 s
    source = data.load(name, "pool", data_dir=...)    # or load(..., build_if_missing=True)

It is the example of adding a dataset: one builder class (`ToyPose`, a `base.Builder` that
generates its examples) and one registry line (`register_toy`). People are a five-joint star
(`SKELETON`, "toy5": a root and four limbs, left/right flip pairs) painted as capsules on a
smooth random background, 64 x 64 RGB PNGs, every joint visible and inside the image, PCK
normaliser = the longest limb (px), no OOD examples. Splits `SIZES`: train 16 (the initial
labelled set), pool 32, test 16, validation 8; split k draws from `np.random.default_rng([k])`,
so every build holds the same records.
"""
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from vl4pose_jax import data, skeletons
from vl4pose_jax.data import base
from vl4pose_jax.data.synthetic import raster

NAME = "toy_pose"
IMAGE_SIZE = 64
SIZES = {"train": 16, "pool": 32, "test": 16, "validation": 8}
SKELETON = skeletons.Skeleton(
    names=("root", "left_arm", "right_arm", "left_leg", "right_leg"),
    links=((0, 1), (0, 2), (0, 3), (0, 4)), flip_pairs=((1, 2), (3, 4)), name="toy5")
SPEC = data.DatasetSpec(NAME, "human", SKELETON, tuple(SIZES), metric="pck")
# Each limb's direction (degrees, image y down; "left" on the image's right) and colour.
_LIMBS = ((-30.0, (230, 60, 60)), (-150.0, (60, 200, 60)), (60.0, (60, 90, 230)),
          (120.0, (230, 200, 40)))


def _example(key: str, rng: np.random.Generator) -> dict:
    size = IMAGE_SIZE
    grid = rng.uniform(60.0, 200.0, (3, 4, 4))
    canvas = raster.Canvas(raster.upsample_grid(grid, size, size))
    joints = np.zeros((len(SKELETON.names), 2), np.float32)
    joints[0] = size / 2 + rng.uniform(-8.0, 8.0, 2)
    for j, (angle, colour) in enumerate(_LIMBS, start=1):
        a = np.radians(angle + rng.uniform(-20.0, 20.0))
        joints[j] = joints[0] + rng.uniform(12.0, 20.0) * np.array([np.cos(a), np.sin(a)])
        canvas.capsule(joints[0], joints[j], 2.5, colour)
    image = np.clip(canvas.image, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    limb = float(np.linalg.norm(joints[1:] - joints[0], axis=1).max())
    return dict(id=key, image=buf.getvalue(), joints=joints,
                visibility=np.ones(len(joints), np.int8), normalizer=np.float32(limb),
                height=np.int32(size), width=np.int32(size), ood=np.int32(0))


class ToyPose(base.Builder, skip_registration=True):
    """Toy people: a five-joint star on a smooth background (tests/toy_dataset.py)."""

    name = NAME
    VERSION = tfds.core.Version("1.0.0")
    SKELETON = SKELETON
    NEEDS_MANUAL_DIR = False
    DOWNLOAD = "toy generator of the tests (tests/toy_dataset.py): no download."

    def _split_generators(self, dl_manager):
        self.report["splits"] = dict(SIZES)
        return {split: self._generate_examples(split, k) for k, split in enumerate(SIZES)}

    def _generate_examples(self, split, seed):  # pylint: disable=arguments-differ
        rng = np.random.default_rng([seed])
        for i in range(SIZES[split]):
            key = f"{split}:{i:03d}"
            self.report["labels"] += 1
            yield key, _example(key, rng)


def register_toy() -> str:
    """Register the toy dataset (once per process; again is a no-op) and return its name."""
    data.register(NAME, SPEC, ToyPose)
    return NAME
