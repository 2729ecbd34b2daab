"""The base of every dataset builder: a TFDS builder without TensorFlow, and its shared checks.

`Builder` is a `tfds.core.GeneratorBasedBuilder` writing `array_record` files whose features are
all `tfds.features.Tensor` (encoded images are scalar object tensors), so building and reading
need no TensorFlow. It checks the manual directory, keeps the labels whose image is present
(counting the rest), masks NaN/Inf or absurd coordinates (`sanitize_human`, `sanitize_hand`:
more than one image size outside the image; hand depth <= 0 or > 5 m), raises
`CorruptImageError` on an undecodable image (or skips and lists it with `skip_corrupt=True`)
and fills `report`, which `builders.build` writes to `build_report.json`. `carve_validation`
moves the images of a training-side split whose name hashes below `VALIDATION_FRACTION` into a
`validation` split (the rule in its docstring), so a record's split depends on its id alone.

Human examples: `id` (stable: "<image file>#<person>"), `image` (the original JPEG bytes),
`joints` (J, 2) float32 original image px in skeleton order, `visibility` (J,) int8 (1 visible,
0 occluded, -1 absent), `normalizer` () float32 px (LSP torso, or MPII head size = 0.6 x head
box diagonal), `height`/`width` int32, `ood` int32 (0). Hand examples: `id`, `depth` (16-bit
grey PNG bytes, mm, 0 = no reading; NYU's RGB packing is converted), `joints` (J, 3) float32
(u px, v px, d mm), `visibility` (J,) int8, `ood`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from vl4pose_jax import skeletons
from vl4pose_jax.data import formats

log = logging.getLogger(__name__)

# The version of every builder that reads downloaded files (generated ones pin their own).
VERSION = "2.0.0"
RELEASE_NOTES = {
    "1.0.0": "train / pool / test splits",
    "2.0.0": "adds a `validation` split carved from the training side, whose records left pool "
             "or train",
}
MAX_HAND_DEPTH_MM = 5000.0
VALIDATION_FRACTION = 0.10  # share of a training-side split's images moved into `validation`
MIN_VALIDATION_SIDE = 10    # a side with fewer images keeps them all (no validation split)


class CorruptImageError(OSError):
    """An image file that cannot be decoded; the message names the file."""


# ----------------------------------------------------------------------------- shared helpers


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` (sha1), for splits that survive partial downloads."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64


def image_key(example_id: str) -> str:
    """The image part of a stable id ("<image>#<person>" -> "<image>")."""
    return example_id.rsplit("#", 1)[0]


def in_validation(key: str, fraction: float = VALIDATION_FRACTION) -> bool:
    """Whether the image `key` belongs to the validation split: sha1 of "validation/" + key (a
    hash independent of the one that draws test splits) below `fraction`."""
    return stable_fraction("validation/" + key) < fraction


def find_first(root: pathlib.Path, candidates) -> pathlib.Path | None:
    """The first of `root / candidate` that exists, else None."""
    for c in candidates:
        p = root / c
        if p.exists():
            return p
    return None


def require_dir(path, what: str, instructions: str) -> pathlib.Path:
    """`path` as a Path, or FileNotFoundError naming `what` and where to download it."""
    if path is None:
        raise FileNotFoundError(f"{what}: no manual directory given.\n{instructions}")
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: manual directory {path} does not exist.\n{instructions}")
    return path


def require_file(path, what: str, instructions: str) -> pathlib.Path:
    """`path` (a label file) as a Path, or FileNotFoundError naming it and the download."""
    if path is None or not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"{what}: label file {path} not found.\n{instructions}")
    return pathlib.Path(path)


def sanitize_human(joints_Jx2, visibility_J, width: int, height: int):
    """Mask (visibility -1) labelled joints with NaN/Inf or absurd coordinates (more than one
    image size outside the image). Returns joints (masked coords zeroed), visibility, n_masked."""
    joints = np.array(joints_Jx2, np.float32)
    vis = np.array(visibility_J, np.int8)
    finite = np.all(np.isfinite(joints), axis=-1)
    limit = np.array([width, height], np.float32)
    with np.errstate(invalid="ignore"):
        absurd = np.any((joints < -limit) | (joints > 2 * limit), axis=-1)
    bad = (vis >= 0) & (~finite | absurd)
    vis[bad] = -1
    joints[vis < 0] = 0.0
    return joints, vis, int(bad.sum())


def sanitize_hand(joints_Jx3, visibility_J, width: int, height: int):
    """Hand twin of `sanitize_human`: also masks depth <= 0 or > 5 m."""
    joints = np.array(joints_Jx3, np.float32)
    vis = np.array(visibility_J, np.int8)
    finite = np.all(np.isfinite(joints), axis=-1)
    limit = np.array([width, height], np.float32)
    with np.errstate(invalid="ignore"):
        absurd = np.any((joints[:, :2] < -limit) | (joints[:, :2] > 2 * limit), axis=-1)
        absurd |= (joints[:, 2] <= 0) | (joints[:, 2] > MAX_HAND_DEPTH_MM)
    bad = (vis >= 0) & (~finite | absurd)
    vis[bad] = -1
    joints[vis < 0] = 0.0
    return joints, vis, int(bad.sum())


def torso_normalizer(joints_Jx2, visibility_J) -> tuple[float, str]:
    """LSP PCK normaliser (px) and how it was obtained.

    'torso' = max(|lsho - rhip|, |rsho - lhip|) over labelled pairs (the definition). Where no
    diagonal is labelled (17 % of LSPET) it is estimated: 1.08 x the longer same-side
    shoulder-hip distance ('side'), else 2.7 x head-neck ('head'), else 0.5 x the longer side
    of the labelled joints' box ('box'); the factors are the medians on LSP's 2,000 people.
    """
    torso = formats.torso_size(joints_Jx2, visibility_J)
    if np.isfinite(torso) and torso > 0:
        return torso, "torso"
    j, v, sk = np.asarray(joints_Jx2, np.float64), np.asarray(visibility_J), skeletons.lsp14

    def dist(a, b):
        i, k = sk.index(a), sk.index(b)
        return float(np.linalg.norm(j[i] - j[k])) if v[i] >= 0 and v[k] >= 0 else np.nan

    sides = [d for d in (dist("lsho", "lhip"), dist("rsho", "rhip")) if np.isfinite(d)]
    side = max(sides) if sides else 0.0
    if side > 0:
        return 1.08 * side, "side"
    head = dist("head", "neck")
    if np.isfinite(head) and head > 0:
        return 2.7 * head, "head"
    pts = j[v >= 0]
    extent = float((pts.max(0) - pts.min(0)).max()) if len(pts) else 0.0
    return 0.5 * max(extent, 1.0), "box"


def _check_decodes(path: pathlib.Path, data: bytes):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return formats.oriented_size(im)   # as shown upright (EXIF orientation)
    except Exception as err:  # pylint: disable=broad-except
        raise CorruptImageError(f"corrupt or truncated image {path}: {err}") from err


@dataclasses.dataclass
class Planned:
    """One labelled person (or hand) to build: its stable id, image file and labels."""
    id: str
    path: pathlib.Path
    joints: np.ndarray
    visibility: np.ndarray
    normalizer: float = float("nan")


# ----------------------------------------------------------------------------- base builder


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common machinery: manual-dir checks, planning, corrupt handling, the build report.

    A dataset read from files subclasses it with `name`, `KIND`, `SKELETON`, `DOWNLOAD` and
    `_plan` (label files -> per split `Planned` items); a generated one (no download) sets
    `NEEDS_MANUAL_DIR = False` and overrides `_split_generators` (see `synthetic_builders`).
    """

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = RELEASE_NOTES
    KIND = "human"  # or "hand"
    SKELETON = skeletons.lsp14
    DOWNLOAD = ""  # where to get the data and what the manual directory must hold
    NEEDS_MANUAL_DIR = True  # False: built from nothing (`load(build_if_missing=True)` builds it)
    VALIDATION_FRACTION = VALIDATION_FRACTION  # `carve_validation`'s share of the side's images

    def __init__(self, *, skip_corrupt: bool = False, manual_dir=None, **kwargs):
        self.skip_corrupt = skip_corrupt
        self.manual_dir = manual_dir
        self.report = dict(dataset=None, labels=0, missing_images=0, missing_examples=[],
                           masked_joints=0, dropped_no_joints=0, corrupt=[], splits={},
                           validation=None, notes=[])
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self.report["dataset"] = self.name

    @classmethod
    def manual_instructions(cls) -> str:
        return cls.DOWNLOAD

    def _features(self):
        j = self.SKELETON.num_joints
        obj = np.object_
        if self.KIND == "human":
            return tfds.features.FeaturesDict({
                "id": tfds.features.Tensor(shape=(), dtype=obj),
                "image": tfds.features.Tensor(shape=(), dtype=obj),
                "joints": tfds.features.Tensor(shape=(j, 2), dtype=np.float32),
                "visibility": tfds.features.Tensor(shape=(j,), dtype=np.int8),
                "normalizer": tfds.features.Tensor(shape=(), dtype=np.float32),
                "height": tfds.features.Tensor(shape=(), dtype=np.int32),
                "width": tfds.features.Tensor(shape=(), dtype=np.int32),
                "ood": tfds.features.Tensor(shape=(), dtype=np.int32),
            })
        return tfds.features.FeaturesDict({
            "id": tfds.features.Tensor(shape=(), dtype=obj),
            "depth": tfds.features.Tensor(shape=(), dtype=obj),
            "joints": tfds.features.Tensor(shape=(j, 3), dtype=np.float32),
            "visibility": tfds.features.Tensor(shape=(j,), dtype=np.int8),
            "ood": tfds.features.Tensor(shape=(), dtype=np.int32),
        })

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                     features=self._features(), disable_shuffling=True)

    # -- planning: label files -> per split list of Planned (images present) -------------

    def _plan(self, manual: pathlib.Path) -> dict[str, list[Planned]]:
        raise NotImplementedError

    def _present(self, planned: list[Planned]) -> list[Planned]:
        present = []
        for p in planned:
            self.report["labels"] += 1
            if p.path.is_file():
                present.append(p)
            else:
                self.report["missing_images"] += 1
                if len(self.report["missing_examples"]) < 20:
                    self.report["missing_examples"].append(str(p.path))
        return present

    def carve_validation(self, items: list[Planned], side: str, eligible=None,
                         condition: str = ""):
        """Split `items` (the `side` split, e.g. "pool") into (kept, validation).

        An item goes to validation when its image (`image_key`) passes `in_validation` with the
        builder's `VALIDATION_FRACTION` and, if given, `eligible(item)` holds (`condition` says
        what it checks, for the report); the people of an image go together unless `eligible`
        tells them apart. The rule reads the id alone, so an image lands in the same split in
        every build, whatever else is present (a partial download, labels merged later): it
        never moves between the side and validation once the side holds `MIN_VALIDATION_SIDE`
        images (a smaller side keeps them all). The rule and the size go to
        `report["validation"]`, with a note when the split is empty.
        """
        images = {image_key(it.id) for it in items}
        carve = len(images) >= MIN_VALIDATION_SIDE
        kept, validation = [], []
        for it in items:
            chosen = (carve and in_validation(image_key(it.id), self.VALIDATION_FRACTION)
                      and (eligible is None or eligible(it)))
            (validation if chosen else kept).append(it)
        self.report["validation"] = dict(
            source=side, fraction=self.VALIDATION_FRACTION, side_images=len(images),
            images=len({image_key(it.id) for it in validation}), people=len(validation),
            rule=f"images of {side!r} with sha1('validation/' + image) < "
                 f"{self.VALIDATION_FRACTION:g}" + (f", {condition}" if condition else ""))
        if not carve:
            self.report["notes"].append(
                f"no validation split: {side!r} has {len(images)} images, fewer than "
                f"{MIN_VALIDATION_SIDE}")
        elif not validation:
            self.report["notes"].append(
                f"no validation split: none of the {len(images)} images of {side!r} hashes "
                "into it")
        return kept, validation

    def _split_generators(self, dl_manager):
        manual = require_dir(self.manual_dir or getattr(dl_manager, "_manual_dir", None),
                              self.name, self.DOWNLOAD)
        plan = self._plan(manual)
        out = {}
        for split, items in plan.items():
            self.report["splits"][split] = len(items)
            if items:
                out[split] = self._generate_examples(items)
            else:
                self.report["notes"].append(f"split {split!r} has no example present: left out")
        if self.report["missing_images"]:
            log.warning("%s: %d of %d labels have no image (e.g. %s): building the rest",
                        self.name, self.report["missing_images"], self.report["labels"],
                        self.report["missing_examples"][:3])
        if not out:
            raise FileNotFoundError(
                f"{self.name}: none of the {self.report['labels']} labelled images were found "
                f"under {manual} (e.g. {self.report['missing_examples'][:2]}).\n{self.DOWNLOAD}")
        return out

    def _read(self, item: Planned):
        data = item.path.read_bytes()
        try:
            size = _check_decodes(item.path, data)
        except CorruptImageError:
            if not self.skip_corrupt:
                raise
            self.report["corrupt"].append(str(item.path))
            log.warning("%s: skipping corrupt image %s", self.name, item.path)
            return None, None
        return data, size

    def _generate_examples(self, items):
        yielded = 0
        for item in items:
            data, size = self._read(item)
            if data is None:
                continue
            example = self._example(item, data, size)
            if example is None:
                continue
            yielded += 1
            yield item.id, example
        if not yielded:
            raise CorruptImageError(f"{self.name}: every image of a split is corrupt "
                                    f"(see {self.report['corrupt'][:3]})")

    def _example(self, item: Planned, data: bytes, size):
        width, height = size
        if self.KIND == "human":
            joints, vis, masked = sanitize_human(item.joints, item.visibility, width, height)
        else:
            joints, vis, masked = sanitize_hand(item.joints, item.visibility, width, height)
        self.report["masked_joints"] += masked
        if not (vis >= 0).any():
            self.report["dropped_no_joints"] += 1
            return None
        if self.KIND == "human":
            norm = item.normalizer
            if masked or not np.isfinite(norm):
                norm, _ = torso_normalizer(joints, vis)
            return dict(id=item.id, image=data, joints=joints, visibility=vis,
                        normalizer=np.float32(norm), height=np.int32(height),
                        width=np.int32(width), ood=np.int32(0))
        return dict(id=item.id, depth=self._depth_png(data), joints=joints, visibility=vis,
                    ood=np.int32(0))

    def _depth_png(self, data: bytes) -> bytes:
        return data



def default_data_dir() -> str:
    """`$VL4POSE_DATA_DIR`, else TFDS's default (~/tensorflow_datasets)."""
    return os.environ.get("VL4POSE_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
