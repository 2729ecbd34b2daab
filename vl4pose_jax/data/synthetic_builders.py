"""TFDS builders for the built-in synthetic sets (`synthetic/`): no download, fully seeded.

`synthetic_human` and `synthetic_hand` have splits `train` (the initial labelled set, never
OOD), `pool` and `test` (each with a share `ood_fraction` of out-of-distribution examples,
flagged per example in `ood`, an index into `OOD_KINDS`). Sizes, OOD share, seed and the human
image size are a `SyntheticConfig`; built-in configs:

  default  1,000 / 5,000 / 1,000, 20 % OOD, 128 px people
  small    200 / 1,000 / 200, 20 % OOD (the CPU regime: the README's first command)
  tiny     16 / 32 / 16, 25 % OOD (tests)

Build with `builders.build("synthetic_human", config="tiny", data_dir=...)` or
`python -m vl4pose_jax.data.prepare --dataset=synthetic_human --config=tiny`. Split k of seed s
draws its examples with generator seed 3 s + k (train 0, pool 1, test 2), so the splits never
share an example. Records hold the same features as the real builders: people as lossless PNG
bytes (the stored pixels are exactly the generator's, so the same seed gives identical bytes),
hands as 16-bit depth PNGs (ICVL intrinsics, so synthetic hands go through the same crop as
ICVL). Stable ids: "<split>:<generator id>".
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds

from vl4pose_jax import skeletons
from vl4pose_jax.data import base, formats, synthetic
from vl4pose_jax.data.spec import OOD_KINDS

SPLITS = ("train", "pool", "test")


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    num_train: int = 1000
    num_pool: int = 5000
    num_test: int = 1000
    ood_fraction: float = 0.2
    seed: int = 0
    image_size: int = 128  # people only

    def sizes(self):
        return dict(train=self.num_train, pool=self.num_pool, test=self.num_test)


CONFIGS = (
    SyntheticConfig(name="default", description="1,000 / 5,000 / 1,000, 20 % OOD"),
    SyntheticConfig(name="small", description="200 / 1,000 / 200, 20 % OOD",
                    num_train=200, num_pool=1000, num_test=200),
    SyntheticConfig(name="tiny", description="16 / 32 / 16, 25 % OOD (tests)",
                    num_train=16, num_pool=32, num_test=16, ood_fraction=0.25),
)


def _png(rgb) -> bytes:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


class _SyntheticBase(base.Builder, skip_registration=True):
    BUILDER_CONFIGS = list(CONFIGS)
    # 1.1.0: one colour palette for every split (1.0.0 seeded it per split).
    VERSION = tfds.core.Version("1.1.0")
    NEEDS_MANUAL_DIR = False
    DOWNLOAD = "built-in generator: no download needed."

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        out = {}
        for k, split in enumerate(SPLITS):
            num = cfg.sizes()[split]
            self.report["splits"][split] = num
            if num > 0:
                frac = 0.0 if split == "train" else cfg.ood_fraction
                out[split] = self._generate_examples(split, 3 * cfg.seed + k, num, frac)
        self.report["notes"].append(f"config {cfg.name}: {cfg.sizes()}, ood {cfg.ood_fraction}, "
                                    f"seed {cfg.seed}")
        return out

    def _make(self, seed, num, frac):
        raise NotImplementedError

    def _generate_examples(self, split, seed, num, frac):  # pylint: disable=arguments-differ
        for ex in self._make(seed, num, frac):
            key = f"{split}:{ex['id']}"
            yield key, self._record(key, ex)


class SyntheticHuman(_SyntheticBase, skip_registration=True):
    """Synthetic people (RGB, lsp14) with rare-pose and appearance OOD examples."""

    name = "synthetic_human"
    KIND = "human"
    SKELETON = skeletons.lsp14

    def _make(self, seed, num, frac):
        return synthetic.human_examples(seed, num, image_size=self.builder_config.image_size,
                                        ood_fraction=frac)

    def _record(self, key, ex):
        size = self.builder_config.image_size
        joints, vis, masked = base.sanitize_human(ex["joints"], ex["visibility"], size, size)
        self.report["masked_joints"] += masked
        self.report["labels"] += 1
        norm, _ = base.torso_normalizer(joints, vis)
        return dict(id=key, image=_png(ex["image"]), joints=joints, visibility=vis,
                    normalizer=np.float32(norm), height=np.int32(size), width=np.int32(size),
                    ood=np.int32(OOD_KINDS.index(ex["ood_kind"])))


class SyntheticHand(_SyntheticBase, skip_registration=True):
    """Synthetic depth hands (icvl16, ICVL camera) with rare-pose and appearance OOD examples."""

    name = "synthetic_hand"
    KIND = "hand"
    SKELETON = skeletons.icvl16

    def _make(self, seed, num, frac):
        return synthetic.hand_examples(seed, num, ood_fraction=frac)

    def _record(self, key, ex):
        rows, cols = synthetic.HAND_IMAGE_SHAPE
        joints, vis, masked = base.sanitize_hand(ex["joints"], ex["visibility"], cols, rows)
        self.report["masked_joints"] += masked
        self.report["labels"] += 1
        return dict(id=key, depth=formats.encode_depth_png(ex["depth"]), joints=joints,
                    visibility=vis, ood=np.int32(OOD_KINDS.index(ex["ood_kind"])))

