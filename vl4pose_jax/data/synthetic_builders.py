"""TFDS builders for the built-in synthetic sets (`synthetic/`): no download, fully seeded.

`synthetic_human` and `synthetic_hand` have splits `train` (the initial labelled set, never
OOD), `pool`, `test` and `validation` (each with a share `ood_fraction` of out-of-distribution
examples, flagged per example in `ood`, an index into `OOD_KINDS`). Sizes, OOD share, seed, the
human image size and how rare human poses are drawn are a `SyntheticConfig`; built-in configs
(train / pool / test / validation):

  default        1,000 / 5,000 / 1,000 / 1,000, 20 % OOD, 128 px people
  small          200 / 1,000 / 200 / 200, 20 % OOD (the CPU regime: the README's first command)
  tiny           16 / 32 / 16 / 16, 25 % OOD (tests)
  families       600 / 2,500 / 500 / 500, 40 % OOD, people only: rare poses from coherent
                 families with human joint angles (`synthetic.families`: handstands,
                 cartwheels, pikes, leg lifts); 100 rare-pose and 100 appearance people in
                 test and in validation, 500 rare poses in the pool, and a train split 3x the
                 CPU regime's 200 initial labelled, so that seeds draw different ones
  families_tiny  16 / 32 / 16 / 16, 50 % OOD, rare-pose families (tests)

Build with `builders.build("synthetic_human", config="tiny", data_dir=...)` or
`python -m vl4pose_jax.data.prepare --dataset=synthetic_human --config=tiny`. Split k of seed s
draws its examples with generator seed 3 s + k (train 0, pool 1, test 2) and the validation
split with its own, `VALIDATION_SEED` + s (`generator_seed`), so no two splits of any configs
share an example. Records hold the same features as the real builders: people as lossless PNG
bytes (the stored pixels are exactly the generator's, so the same seed gives identical bytes),
hands as 16-bit depth PNGs (ICVL intrinsics, so synthetic hands go through the same crop as
ICVL). Stable ids: "<split>:<generator id>". Version 1.2.0 added the validation split and the
families configs; train, pool and test of the other configs are those of 1.1.0. TFDS generates
only a builder's current version, so 1.1.0 cannot be built any more; a 1.1.0 build already on
disk still opens (`version="1.1.0"`).
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds

from vl4pose_jax import skeletons
from vl4pose_jax.data import base, formats, synthetic
from vl4pose_jax.data.spec import OOD_KINDS

SPLITS = ("train", "pool", "test", "validation")
MAX_SEED = 10**8  # config seeds are below this, so that no two splits share a generator seed
VALIDATION_SEED = 3 * MAX_SEED  # above every train / pool / test generator seed


def generator_seed(split: str, seed: int) -> int:
    """The generator seed of `split` of config seed `seed`: 3 seed + 0 / 1 / 2 for train / pool
    / test, `VALIDATION_SEED` + seed for validation; distinct over every split and seed."""
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"synthetic config seed must be in [0, {MAX_SEED}), got {seed}")
    if split == "validation":
        return VALIDATION_SEED + seed
    return 3 * seed + SPLITS.index(split)


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    num_train: int = 1000
    num_pool: int = 5000
    num_test: int = 1000
    num_validation: int = 1000
    ood_fraction: float = 0.2
    seed: int = 0
    image_size: int = 128  # people only
    rare_poses: str = "extreme"  # people only: `synthetic.people.RARE_POSE_MODES`

    def sizes(self):
        return dict(train=self.num_train, pool=self.num_pool, test=self.num_test,
                    validation=self.num_validation)


_V1_1 = ["1.1.0"]  # builds of the configs that existed then still open
CONFIGS = (
    SyntheticConfig(name="default", description="1,000 / 5,000 / 1,000 / 1,000, 20 % OOD",
                    supported_versions=_V1_1),
    SyntheticConfig(name="small", description="200 / 1,000 / 200 / 200, 20 % OOD",
                    num_train=200, num_pool=1000, num_test=200, num_validation=200,
                    supported_versions=_V1_1),
    SyntheticConfig(name="tiny", description="16 / 32 / 16 / 16, 25 % OOD (tests)",
                    num_train=16, num_pool=32, num_test=16, num_validation=16,
                    ood_fraction=0.25, supported_versions=_V1_1),
    SyntheticConfig(name="families", description="600 / 2,500 / 500 / 500, 40 % OOD, rare-pose "
                    "families (people only)", num_train=600, num_pool=2500, num_test=500,
                    num_validation=500, ood_fraction=0.4, rare_poses="families"),
    SyntheticConfig(name="families_tiny", description="16 / 32 / 16 / 16, 50 % OOD, rare-pose "
                    "families (people only; tests)", num_train=16, num_pool=32, num_test=16,
                    num_validation=16, ood_fraction=0.5, rare_poses="families"),
)


def _png(rgb) -> bytes:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


class _SyntheticBase(base.Builder, skip_registration=True):
    BUILDER_CONFIGS = list(CONFIGS)
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.1.0": "one colour palette for every split (1.0.0 seeded it per split)",
                     "1.2.0": "a validation split with its own generator seed (train, pool and "
                              "test unchanged); the families configs"}
    NEEDS_MANUAL_DIR = False
    DOWNLOAD = "built-in generator: no download needed."

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        out = {}
        for split in SPLITS:
            num = cfg.sizes()[split]
            self.report["splits"][split] = num
            if num > 0:
                frac = 0.0 if split == "train" else cfg.ood_fraction
                out[split] = self._generate_examples(split, generator_seed(split, cfg.seed), num,
                                                     frac)
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
        cfg = self.builder_config
        return synthetic.human_examples(seed, num, image_size=cfg.image_size, ood_fraction=frac,
                                        rare_poses=cfg.rare_poses)

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
    BUILDER_CONFIGS = [c for c in CONFIGS if c.rare_poses == "extreme"]  # families: people only
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

