"""A COCO-keypoints dataset as TFDS: its `coco_meta.json`, its spec and its builder.

`prepare` (in `commands`) writes `coco_meta.json` (joints, tree, flip pairs, splits) beside the
dataset; `spec(name, data_dir)` reads the `DatasetSpec` from it (the skeleton is the user's, so
the spec is known only once the dataset is prepared), and `CocoKeypoints` builds the records:
the human features of `base.Builder` plus each person's `box` (x0, y0, x1, y1 px), with the PCK
normaliser 0.5 x the box's longer side. Both come from the joints that survive masking
(`base.sanitize_human`: NaN/Inf, or more than one image size outside the image) when the
annotation has no `bbox`, or when its `bbox` is absurd for the image (`person_box`; counted as
`absurd_boxes` in the build report, beside `masked_joints` and `skipped_annotations`).
Splits: `train`, `pool` and `test` from their files, and
`validation` carved from train.json (`base.Builder.carve_validation`: the images whose file name
hashes below 10 %, from 10 images on), so a merge never moves an image already labelled.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from vl4pose_jax import skeletons
from vl4pose_jax.data import base
from vl4pose_jax.data.coco.files import (FORMAT_HELP, field_error, inside, joints_box,
                                         read_coco)
from vl4pose_jax.data.spec import DatasetSpec

NAME = "coco_keypoints"
META_FILE = "coco_meta.json"
SPLIT_FILES = {"train": "train.json", "pool": "pool.json", "test": "test.json"}
SPLITS = ("train", "validation", "pool", "test")  # validation: carved from train.json
DOWNLOAD_HELP = (
    "your own data. manual_dir holds images/ and COCO keypoints files "
    "train.json (labelled), test.json (labelled, for evaluation) and optionally pool.json "
    "(labelled, for simulations); file_name relative to images/. " + FORMAT_HELP)
DOWNLOAD = f"{NAME}: {DOWNLOAD_HELP}"


def skeleton_from_meta(meta) -> skeletons.Skeleton:
    """The tree written by `prepare` as a `Skeleton`."""
    return skeletons.Skeleton(names=tuple(meta["names"]), links=tuple(map(tuple, meta["links"])),
                              flip_pairs=tuple(map(tuple, meta["flip_pairs"])),
                              name=meta.get("skeleton_name", NAME))


def meta_path(data_dir=None, name: str = NAME) -> pathlib.Path:
    """Where `prepare` writes dataset `name`'s joints, tree and splits in `data_dir`."""
    return pathlib.Path(data_dir or base.default_data_dir()) / name / META_FILE


def read_meta(data_dir=None, name: str = NAME):
    """The prepared dataset's `coco_meta.json` as a dict, or None before `prepare`."""
    path = meta_path(data_dir, name)
    return json.loads(path.read_text()) if path.is_file() else None


def absent_joints(data_dir=None, name: str = NAME) -> list:
    """Indices of the joints no train.json person labels (`coco_meta.json`'s
    `never_labelled`): exports write them as absent (COCO v = 0), not as guesses. [] for a
    dataset prepared before this was recorded, or not prepared."""
    meta = read_meta(data_dir, name) or {}
    names = meta.get("names") or []
    return [names.index(n) for n in meta.get("never_labelled") or [] if n in names]


_RESOLVED: dict = {}  # name -> the spec last read without a data_dir (`spec`)


def spec(name: str, data_dir=None) -> DatasetSpec:
    """The `DatasetSpec` of a prepared COCO dataset (read from `coco_meta.json` in `data_dir`,
    default: the last one loaded in this process, else the default data directory). Without a
    prepared dataset: a placeholder (human, no skeleton)."""
    if data_dir is None and name in _RESOLVED:
        return _RESOLVED[name]
    meta = read_meta(data_dir, name)
    if meta is None:
        return DatasetSpec(name, "human", None, ("train", "validation", "test"), metric="pck")
    sp = DatasetSpec(name, "human", skeleton_from_meta(meta), tuple(meta["splits"]), metric="pck")
    _RESOLVED[name] = sp
    return sp


@dataclasses.dataclass
class _CocoPlanned(base.Planned):
    box: np.ndarray = None  # (4,) x0, y0, x1, y1 px
    has_bbox: bool = True   # from the annotation's bbox (else from its joints)


class CocoKeypoints(base.Builder, skip_registration=True):
    """Your own COCO-keypoints data (module `vl4pose_jax.data.coco`)."""

    name = NAME
    DOWNLOAD = DOWNLOAD

    def __init__(self, **kwargs):
        meta = read_meta(kwargs.get("data_dir"), self.name)
        self.meta = meta
        self.SKELETON = (skeleton_from_meta(meta) if meta else  # pylint: disable=invalid-name
                         skeletons.Skeleton(names=("joint",), links=()))
        super().__init__(**kwargs)

    def _features(self):
        features = dict(super()._features())
        features["box"] = tfds.features.Tensor(shape=(4,), dtype=np.float32)
        return tfds.features.FeaturesDict(features)

    def _plan(self, manual):
        images = manual / "images"
        if not images.is_dir():
            raise FileNotFoundError(f"{self.name}: no images/ folder in {manual}.\n{DOWNLOAD}")
        out = {}
        for split, file in SPLIT_FILES.items():
            path = manual / file
            if not path.is_file():
                continue
            coco = read_coco(path)
            if coco.names != self.SKELETON.names:
                raise field_error(path, "categories[].keypoints", f"{list(coco.names)} differ from "
                                  f"train.json's {list(self.SKELETON.names)}")
            items = [_CocoPlanned(p.id, inside(images, p.file_name), p.joints, p.visibility,
                                  float("nan"), p.box, p.has_bbox) for p in coco.people]
            self.report.setdefault("skipped_annotations", {})[split] = dict(coco.skipped)
            self.report.setdefault("skipped_examples", {})[split] = dict(coco.skipped_examples)
            out[split] = self._present(items)
        # From train.json, the labelled set, also when a pool.json is present: the pool stands
        # for unlabelled data in simulations, and the split stays the same with or without it.
        out["train"], out["validation"] = self.carve_validation(out.get("train", []), "train")
        return out

    def _example(self, item, data, size):
        width, height = size
        joints, vis, masked = base.sanitize_human(item.joints, item.visibility, width, height)
        self.report["masked_joints"] += masked
        if not (vis >= 0).any():
            self.report["dropped_no_joints"] += 1
            return None
        box = person_box(item.box if item.has_bbox else None, joints, vis, width, height)
        if item.has_bbox and box is not item.box:
            self.report["absurd_boxes"] = self.report.get("absurd_boxes", 0) + 1
        return dict(id=item.id, image=data, joints=joints, visibility=vis,
                    normalizer=np.float32(pck_normalizer(box)), height=np.int32(height),
                    width=np.int32(width), ood=np.int32(0), box=np.asarray(box, np.float32))


BOX_MARGIN = 1.0   # a bbox more than this many image sizes larger than the image is absurd


def person_box(bbox, joints, vis, width, height) -> np.ndarray:
    """The person's (x0, y0, x1, y1): `bbox` (corners) when it is plausible for a `width` x
    `height` image, else (and without one) the box of the valid joints (`joints_box`, after
    `base.sanitize_human`). Implausible: wider or taller than (1 + BOX_MARGIN) image sizes,
    or wholly more than one image size outside the image (`sanitize_human`'s rule)."""
    if bbox is not None:
        x0, y0, x1, y1 = (float(t) for t in bbox)
        w, h = float(width), float(height)
        if (x1 - x0 <= (1 + BOX_MARGIN) * w and y1 - y0 <= (1 + BOX_MARGIN) * h
                and x1 >= -w and y1 >= -h and x0 <= 2 * w and y0 <= 2 * h):
            return bbox
    return joints_box(joints, vis)


def pck_normalizer(box) -> float:
    """PCK normaliser (px): 0.5 x the box's longer side (at least 0.5 px)."""
    return 0.5 * float(max(box[2] - box[0], box[3] - box[1], 1.0))


def is_coco(name: str) -> bool:
    """Whether `name` is the COCO-keypoints dataset (its spec comes from the prepared files)."""
    return name == NAME
