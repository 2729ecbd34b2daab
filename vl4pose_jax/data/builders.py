"""TFDS builders (no TensorFlow) for LSP, LSPET, MPII, ICVL and NYU, read from a manual directory.

Each builder is a `tfds.core.GeneratorBasedBuilder` writing `array_record` files whose features
are all `tfds.features.Tensor` (encoded images are scalar object tensors), so building and
reading need no TensorFlow. Build one with `build(name, manual_dir=..., data_dir=...)` (or the
`python -m vl4pose_jax.data.prepare` CLI); read it with `vl4pose_jax.data.load`.

Human examples: `id` (stable: "<image file>#<person>"), `image` (the original JPEG bytes),
`joints` (J, 2) float32 original image px in skeleton order, `visibility` (J,) int8 (1 visible,
0 occluded, -1 absent), `normalizer` () float32 px (LSP torso, or MPII head size = 0.6 x head
box diagonal), `height`/`width` int32, `ood` int32 (0). Hand examples: `id`, `depth` (16-bit
grey PNG bytes, mm, 0 = no reading; NYU's RGB packing is converted), `joints` (J, 3) float32
(u px, v px, d mm), `visibility` (J,) int8, `ood`.

Splits (every dataset has `pool` and `test`; `train` is a fixed initial labelled set):
  lsp   train = LSP 1-1000, pool = LSPET (10,000; ids "lspet/im00001.jpg#0"), test = LSP
        1001-2000
  lspet pool / test: a stable hash of the image name puts ~12 % of the images whose torso is
        labelled in `test` (the same image always lands in the same split, whatever subset of
        the images is present); everything else is `pool`.
  mpii  persons with all 16 joints annotated; test = Newell's validation images (valid.h5 or a
        name list) when present, else a `*val*.json` file, else a stable 30 % hash split by image.
  icvl  pool = Training/labels.txt, test = Testing/test_seq_{1,2}.txt
  nyu   pool = train/joint_data.mat, test = test/joint_data.mat or the 14-joint text labels.
A split with no example present is left out of the build (and reported).

Bad input: a missing manual directory or label file raises `FileNotFoundError` naming it and
where the dataset is downloaded. Labels whose image is missing are skipped and counted (a
partial download builds what is there). A corrupt or truncated image raises `CorruptImageError`
naming the file, unless `skip_corrupt=True`: then it is skipped and listed in
`corrupt_files.txt` beside the dataset. NaN/Inf or absurd coordinates (more than one image size
outside the image; hand depth <= 0 or > 5 m) are masked (visibility -1) and counted. Every
count goes to the log and to `build_report.json` beside the dataset. TFDS writes into an
`incomplete.*` folder and renames it only when the build has finished, so an interrupted build
never loads as complete (`load` then says which command to run); the next build deletes such
leftovers (builds of one dataset config take turns through a `locking.FolderLock`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from vl4pose_jax import locking, skeletons
from vl4pose_jax.data import formats

log = logging.getLogger(__name__)

VERSION = "1.0.0"
LSPET_TEST_FRACTION = 0.12
MPII_TEST_FRACTION = 0.3
MAX_HAND_DEPTH_MM = 5000.0


class CorruptImageError(OSError):
    """An image file that cannot be decoded; the message names the file."""


class DatasetNotPreparedError(FileNotFoundError):
    """A dataset that has not been built yet; the message names the command that builds it."""


# ----------------------------------------------------------------------------- shared helpers


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` (sha1), for splits that survive partial downloads."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64


def _find(root: pathlib.Path, candidates) -> pathlib.Path | None:
    for c in candidates:
        p = root / c
        if p.exists():
            return p
    return None


def _require_dir(path, what: str, instructions: str) -> pathlib.Path:
    if path is None:
        raise FileNotFoundError(f"{what}: no manual directory given.\n{instructions}")
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: manual directory {path} does not exist.\n{instructions}")
    return path


def _require_file(path, what: str, instructions: str) -> pathlib.Path:
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


def _image_size(path: pathlib.Path):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as err:  # pylint: disable=broad-except
        raise CorruptImageError(f"cannot read image {path}: {err}") from err


def _check_decodes(path: pathlib.Path, data: bytes):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.size
    except Exception as err:  # pylint: disable=broad-except
        raise CorruptImageError(f"corrupt or truncated image {path}: {err}") from err


@dataclasses.dataclass
class _Planned:
    id: str
    path: pathlib.Path
    joints: np.ndarray
    visibility: np.ndarray
    normalizer: float = float("nan")


# ----------------------------------------------------------------------------- base builder


class _Base(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common machinery: manual-dir checks, planning, corrupt handling, the build report."""

    VERSION = tfds.core.Version(VERSION)
    KIND = "human"  # or "hand"
    SKELETON = skeletons.lsp14
    DOWNLOAD = ""  # where to get the data and what the manual directory must hold

    def __init__(self, *, skip_corrupt: bool = False, manual_dir=None, **kwargs):
        self.skip_corrupt = skip_corrupt
        self.manual_dir = manual_dir
        self.report = dict(dataset=None, labels=0, missing_images=0, missing_examples=[],
                           masked_joints=0, dropped_no_joints=0, corrupt=[], splits={},
                           notes=[])
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

    # -- planning: label files -> per split list of _Planned (images present) -------------

    def _plan(self, manual: pathlib.Path) -> dict[str, list[_Planned]]:
        raise NotImplementedError

    def _present(self, planned: list[_Planned]) -> list[_Planned]:
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

    def _split_generators(self, dl_manager):
        manual = _require_dir(self.manual_dir or getattr(dl_manager, "_manual_dir", None),
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

    def _read(self, item: _Planned):
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

    def _example(self, item: _Planned, data: bytes, size):
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


# ----------------------------------------------------------------------------- LSP / LSPET

_LSP_DOWNLOAD = (
    "LSP: http://sam.johnson.io/research/lsp.html (lsp_dataset.zip: joints.mat, images/im0001.jpg "
    "... im2000.jpg).")
_LSPET_DOWNLOAD = (
    "LSPET: http://sam.johnson.io/research/lspet.html (lspet_dataset.zip: joints.mat, "
    "images/im00001.jpg ... im10000.jpg).")


def _lsp_folder(manual: pathlib.Path, names, what, instructions):
    if (manual / "joints.mat").is_file() and what == "lspet":
        return manual
    found = _find(manual, names)
    if found is None:
        raise FileNotFoundError(f"{what}: no {' or '.join(names)}/ folder with joints.mat under "
                                f"{manual}.\n{instructions}")
    return found


def _plan_lsp_images(folder: pathlib.Path, *, extended: bool, instructions: str, what: str):
    labels = formats.read_lsp_mat(_require_file(folder / "joints.mat", what, instructions))
    images = folder / "images" if (folder / "images").is_dir() else folder
    out = []
    for i in range(len(labels.joints)):
        name = formats.lsp_image_name(i, extended=extended)
        norm, _ = torso_normalizer(labels.joints[i], labels.visibility[i])
        out.append(_Planned(f"{name}#0", images / name, labels.joints[i], labels.visibility[i],
                            norm))
    return out


class Lspet(_Base, skip_registration=True):
    """LSP Extended (10,000 images) alone: a deterministic pool/test split."""

    name = "lspet"
    DOWNLOAD = (_LSPET_DOWNLOAD + " manual_dir = the extracted folder (holding joints.mat and "
                "images/), or a folder holding lspet/ or lspet_dataset/.")

    def _plan(self, manual):
        folder = _lsp_folder(manual, ("lspet", "lspet_dataset"), "lspet", self.DOWNLOAD)
        items = self._present(_plan_lsp_images(folder, extended=True, what="lspet",
                                               instructions=self.DOWNLOAD))
        pool, test = [], []
        for it in items:
            torso_known = np.isfinite(formats.torso_size(it.joints, it.visibility))
            if torso_known and stable_fraction(it.id) < LSPET_TEST_FRACTION:
                test.append(it)
            else:
                pool.append(it)
        return {"pool": pool, "test": test}


class Lsp(_Base, skip_registration=True):
    """The VL4Pose LSP protocol: LSP train (initial labelled), LSPET pool, LSP test."""

    name = "lsp"
    DOWNLOAD = (_LSP_DOWNLOAD + " " + _LSPET_DOWNLOAD + " manual_dir must hold both extracted "
                "folders: lsp/ (or lsp_dataset/) and lspet/ (or lspet_dataset/).")

    def _plan(self, manual):
        lsp = _lsp_folder(manual, ("lsp", "lsp_dataset"), "lsp", self.DOWNLOAD)
        lspet = _lsp_folder(manual, ("lspet", "lspet_dataset"), "lsp (LSPET part)", self.DOWNLOAD)
        lsp_items = _plan_lsp_images(lsp, extended=False, what="lsp", instructions=self.DOWNLOAD)
        if len(lsp_items) != 2000:
            self.report["notes"].append(f"LSP joints.mat has {len(lsp_items)} people, not 2000")
        half = len(lsp_items) // 2
        train = self._present(lsp_items[:half])
        test = self._present(lsp_items[half:])
        pool = self._present(_plan_lsp_images(lspet, extended=True, what="lsp (LSPET part)",
                                              instructions=self.DOWNLOAD))
        for it in pool:  # LSP and LSPET share file-name stems: keep ids distinct
            it.id = "lspet/" + it.id
        return {"train": train, "pool": pool, "test": test}


# ----------------------------------------------------------------------------- MPII


class Mpii(_Base, skip_registration=True):
    """MPII Human Pose, single persons with all 16 joints annotated (the VL4Pose protocol)."""

    name = "mpii"
    SKELETON = skeletons.mpii16
    DOWNLOAD = (
        "MPII: http://human-pose.mpi-inf.mpg.de (mpii_human_pose_v1.tar.gz: images/*.jpg). "
        "Annotations as JSON lists of people (image, joints 16x[x, y], joints_vis, center, scale; "
        "e.g. mmpose's mpii_train.json / mpii_val.json or HRNet's train.json / valid.json), in "
        "manual_dir or manual_dir/annot/. Optional: Newell's validation split valid.h5 "
        "(github.com/princeton-vl/pose-hg-train, data/mpii/annot/valid.h5) or "
        "Stacked_HG_ValidationImageNames.txt. Images in manual_dir/images/ or manual_dir/.")

    def _plan(self, manual):
        search = [manual, manual / "annot"]
        jsons = sorted(p for d in search if d.is_dir() for p in d.glob("*.json"))
        if not jsons:
            raise FileNotFoundError(f"mpii: no annotation *.json under {manual} or "
                                    f"{manual / 'annot'}.\n{self.DOWNLOAD}")
        images = manual / "images" if (manual / "images").is_dir() else manual
        newell_h5 = _find(manual, ("valid.h5", "annot/valid.h5"))
        newell_txt = _find(manual, ("Stacked_HG_ValidationImageNames.txt",
                                    "annot/Stacked_HG_ValidationImageNames.txt"))
        newell = formats.read_newell_valid(newell_h5) if newell_h5 else None
        val_names = None
        if newell is not None:
            val_names = set(newell.imgname)
            self.report["notes"].append(f"test = Newell validation images ({newell_h5.name})")
        elif newell_txt is not None:
            val_names = set(formats.read_name_list(newell_txt))
            self.report["notes"].append(f"test = Newell validation images ({newell_txt.name})")
        seen, people, val_json_images = set(), [], set()
        for path in jsons:
            is_val = "val" in path.stem.lower()
            for p in formats.read_mpii_json(path):
                key = (p.image, tuple(np.round(p.joints.reshape(-1), 1)))
                if is_val:
                    val_json_images.add(p.image)
                if key in seen:
                    continue
                seen.add(key)
                people.append(p)
        if val_names is None and val_json_images:
            val_names = val_json_images
            self.report["notes"].append("test = people of the *val*.json file(s)")
        if val_names is None:
            self.report["notes"].append(f"test = stable {MPII_TEST_FRACTION:.0%} hash split by image")
        # Newell's normaliser per (image, joints) for the validation people.
        newell_norm = {}
        if newell is not None:
            for name, j, n in zip(newell.imgname, newell.joints, newell.normalize):
                newell_norm.setdefault(name, []).append((j, float(n)))
        per_image: dict[str, int] = {}
        pool, test, incomplete = [], [], 0
        sources = dict(headbox=0, newell=0, estimate=0)
        for p in people:
            person = per_image.get(p.image, 0)
            per_image[p.image] = person + 1
            if (p.visibility < 0).any():
                incomplete += 1
                continue
            norm = p.headsize
            if np.isfinite(norm):
                sources["headbox"] += 1
            else:
                for j, n in newell_norm.get(p.image, ()):
                    if np.abs(j - p.joints).max() < 2.0:
                        norm = n
                        sources["newell"] += 1
                        break
                else:
                    norm = formats.mpii_headsize_estimate(p.joints)
                    sources["estimate"] += 1
            item = _Planned(f"{p.image}#{person}", images / p.image, p.joints, p.visibility, norm)
            in_test = (p.image in val_names) if val_names is not None else (
                stable_fraction(p.image) < MPII_TEST_FRACTION)
            (test if in_test else pool).append(item)
        self.report["notes"].append(f"{incomplete} people without all 16 joints left out")
        self.report["notes"].append(f"head size from: {sources}")
        return {"pool": self._present(pool), "test": self._present(test)}


# ----------------------------------------------------------------------------- hands


class Icvl(_Base, skip_registration=True):
    """ICVL hand depth (Tang et al. 2014): 16 joints, 320x240 depth PNGs in mm."""

    name = "icvl"
    KIND = "hand"
    SKELETON = skeletons.icvl16
    DOWNLOAD = (
        "ICVL: https://labicvl.github.io/hand.html (Training.tar.gz, Testing.tar.gz). manual_dir "
        "must hold Training/labels.txt with Training/Depth/<path>.png and Testing/test_seq_1.txt, "
        "Testing/test_seq_2.txt with Testing/Depth/<path>.png.")

    def _plan(self, manual):
        def load(folder, label_names):
            out = []
            for label_name in label_names:
                path = _require_file(manual / folder / label_name, "icvl", self.DOWNLOAD)
                labels = formats.read_icvl_labels(path)
                depth_root = manual / folder / "Depth"
                if not depth_root.is_dir():
                    depth_root = manual / folder
                for name, joints in zip(labels.names, labels.joints):
                    out.append(_Planned(f"{name}#0", depth_root / name, joints,
                                        np.ones(len(joints), np.int8)))
            return out
        return {"pool": self._present(load("Training", ["labels.txt"])),
                "test": self._present(load("Testing", ["test_seq_1.txt", "test_seq_2.txt"]))}


class Nyu(_Base, skip_registration=True):
    """NYU hand depth (Tompson et al. 2014): the 14 evaluation joints, frontal camera."""

    name = "nyu"
    KIND = "hand"
    SKELETON = skeletons.nyu14
    DOWNLOAD = (
        "NYU: https://jonathantompson.github.io/NYU_Hand_Pose_Dataset.htm (nyu_hand_dataset_v2.zip)."
        " manual_dir must hold train/joint_data.mat with train/depth_1_*.png, and test/ with "
        "either joint_data.mat or the 14-joint text labels nyu_test_groundtruth_label.txt "
        "(+ nyu_test_list.txt), with test/depth_1_*.png.")

    def _plan(self, manual):
        train = formats.read_nyu_joint_data(
            _require_file(manual / "train" / "joint_data.mat", "nyu", self.DOWNLOAD))
        test_mat = manual / "test" / "joint_data.mat"
        if test_mat.is_file():
            test = formats.read_nyu_joint_data(test_mat)
            test_root = manual / "test"
        else:
            txt = _find(manual, ("test/nyu_test_groundtruth_label.txt",
                                 "nyu_test_groundtruth_label.txt"))
            if txt is None:
                raise FileNotFoundError(f"nyu: neither {test_mat} nor "
                                        f"nyu_test_groundtruth_label.txt found.\n{self.DOWNLOAD}")
            lst = _find(txt.parent, ("nyu_test_list.txt",))
            test = formats.read_nyu_labels_txt(txt, lst)
            test_root = txt.parent

        def items(labels, root, split):
            out = []
            for name, joints in zip(labels.names, labels.joints):
                path = root / name
                if not path.is_file():
                    for alt in (root / pathlib.Path(name).name, manual / name):
                        if alt.is_file():
                            path = alt
                            break
                out.append(_Planned(f"{split}/{pathlib.Path(name).name}#0", path, joints,
                                    np.ones(len(joints), np.int8)))
            return out
        return {"pool": self._present(items(train, manual / "train", "train")),
                "test": self._present(items(test, test_root, "test"))}

    def _depth_png(self, data: bytes) -> bytes:
        return formats.encode_depth_png(formats.decode_depth_nyu(data))


# ----------------------------------------------------------------------------- registry

REAL_BUILDERS = {cls.name: cls for cls in (Lsp, Lspet, Mpii, Icvl, Nyu)}


def default_data_dir() -> str:
    """`$VL4POSE_DATA_DIR`, else TFDS's default (~/tensorflow_datasets)."""
    return os.environ.get("VL4POSE_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def builder_class(name: str):
    from vl4pose_jax.data import coco, synthetic_builders  # pylint: disable=import-outside-toplevel
    classes = dict(REAL_BUILDERS, **synthetic_builders.SYNTHETIC_BUILDERS, **coco.BUILDERS)
    try:
        return classes[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(classes)}") from None


def get_builder(name: str, *, data_dir=None, config=None, **kwargs):
    """The TFDS builder object for `name` (nothing is built or read)."""
    cls = builder_class(name)
    if config is not None:
        kwargs["config"] = config
    return cls(data_dir=os.fspath(data_dir or default_data_dir()), **kwargs)


def build(name: str, *, manual_dir=None, data_dir=None, config=None, skip_corrupt=False):
    """Build dataset `name` once (a no-op if it is already complete). Returns the builder.

    Writes `build_report.json` (counts of labels, missing images, masked joints, corrupt files,
    split sizes) and, when images were skipped, `corrupt_files.txt` beside the dataset.
    """
    builder = get_builder(name, data_dir=data_dir, config=config, skip_corrupt=skip_corrupt,
                          manual_dir=manual_dir)
    folder = pathlib.Path(builder.data_dir).parent
    # One build of a dataset config at a time (a second waits), so leftovers are from kills.
    with locking.FolderLock(folder, "build", blocking=True):
        remove_incomplete(folder)
        return _build_locked(name, builder, manual_dir)


def remove_incomplete(folder) -> list:
    """Delete the `incomplete.*` folders TFDS leaves in a dataset config's `folder` when a build
    is killed (call it holding the build lock); returns them, each logged as a warning."""
    import shutil  # pylint: disable=import-outside-toplevel
    gone = sorted(p for p in pathlib.Path(folder).glob("incomplete.*") if p.is_dir())
    for p in gone:
        log.warning("removing %s, left by an interrupted build", p)
        shutil.rmtree(p)
    return gone


def _build_locked(name, builder, manual_dir):
    if builder.is_prepared():
        log.info("%s is already built in %s", name, builder.data_dir)
        return builder
    if manual_dir is None and getattr(builder, "NEEDS_MANUAL_DIR", True):
        raise FileNotFoundError(f"{name}: --manual_dir is required.\n{builder.DOWNLOAD}")
    if manual_dir is not None:
        _require_dir(manual_dir, name, builder.DOWNLOAD)
    builder.download_and_prepare()
    report = dict(builder.report)
    report["built_splits"] = {k: v.num_examples for k, v in builder.info.splits.items()}
    out = pathlib.Path(builder.data_dir)
    (out / "build_report.json").write_text(json.dumps(report, indent=1, default=str))
    if report["corrupt"]:
        (out / "corrupt_files.txt").write_text("\n".join(report["corrupt"]) + "\n")
    log.info("%s built in %s: %s", name, out, json.dumps(
        {k: report[k] for k in ("labels", "missing_images", "masked_joints", "dropped_no_joints",
                                "built_splits")}))
    if report["corrupt"]:
        log.warning("%s: %d corrupt images skipped, listed in %s", name, len(report["corrupt"]),
                    out / "corrupt_files.txt")
    return builder


def prepare_command(name: str, data_dir=None, config=None) -> str:
    """The shell command that builds `name` (for error messages)."""
    cmd = f"python -m vl4pose_jax.data.prepare --dataset={name}"
    if name in REAL_BUILDERS or name.startswith("coco"):
        cmd += " --manual_dir=<folder with the downloaded files>"
    if config:
        cmd += f" --config={config}"
    if data_dir:
        cmd += f" --data_dir={data_dir}"
    return cmd
