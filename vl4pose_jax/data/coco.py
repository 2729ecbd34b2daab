r"""COCO-keypoints datasets: your own labelled images as a TFDS dataset, and labels merged back.

    python -m vl4pose_jax.data.prepare --dataset=coco_keypoints --manual_dir=DIR \
        [--root=JOINT] [--links=a-b,b-c,...] [--data_dir=...]
    python -m vl4pose_jax.data.coco merge --manual_dir=DIR --annotations=ANNOTATED.json \
        --images=FOLDER [--data_dir=...]

`DIR` holds `images/` and COCO keypoints files `train.json` (the labelled set), `test.json`
(a labelled test set that measures progress) and optionally `pool.json` (labelled, for
simulations: `python -m experiments.al --dataset=coco_keypoints --rounds=R ...`). Every
`file_name` is relative to `DIR/images/`; an absolute one, or one with a `..` component, is
refused (a shared annotation file must not make the tool read or write elsewhere).

Decisions:
  * Joints: the category's `keypoints`, in file order. The one category with `keypoints` is
    used (several: the first, unless `--category` names another).
  * The VL4Pose Bayesian network needs a tree. When the category's 1-based `skeleton` is a
    tree over all joints it is used, rooted at `--root` (default: the tree's centre, the joint
    with the smallest greatest distance to the others, lowest index on ties). Otherwise the
    breadth-first spanning tree of the skeleton from the root, links taken in file order (a
    joint hangs off the first joint that reaches it; the dropped links are reported); joints
    the skeleton does not reach hang off the root. `--links=a-b,...` (joint names) replaces
    the skeleton. What was done is written to `coco_meta.json` beside the dataset and printed.
  * Left/right pairs for flip augmentation come from the names: `left_X`/`right_X`,
    `X_left`/`X_right`, `lX`/`rX` (case-insensitive, both present).
  * Visibility: COCO v = 0 (not labelled) -> -1 (absent), v = 1 (labelled, occluded) -> 0,
    v = 2 (visible) -> 1, the project's convention; written back the same way. Coordinates are
    taken as the project's pixel coordinates (pixel centres at integers), unchanged.
  * People: every non-crowd annotation with at least one labelled keypoint; several per image.
    Its crop is taken from `bbox` (x, y, w, h), or from the labelled keypoints' box when absent:
    a square of 1.75 (training: 1.5-2.0) x the box's longer side (`transforms.human_transform`).
    The PCK normaliser is 0.5 x the box's longer side (pck@0.2 = 10 % of the person's size).
  * Ids: `<file_name>#<k>`, k = the person's position among its image's annotations sorted by
    annotation id. Merging appends new images with new image and annotation ids (max + 1), and
    never touches an image already labelled, so every id of the dataset stays stable.

Several COCO datasets side by side: give each its own `--data_dir` (the skeleton is read from
the `--data_dir` a dataset is loaded from).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import time
from collections import deque

import numpy as np

from vl4pose_jax import skeletons
from vl4pose_jax.data import builders

log = logging.getLogger(__name__)

NAME = "coco_keypoints"
META_FILE = "coco_meta.json"
SPLIT_FILES = {"train": "train.json", "pool": "pool.json", "test": "test.json"}
FORMAT_HELP = (
    "A COCO keypoints file is a JSON object with `images` (id, file_name, width, height), "
    "`annotations` (id, image_id, category_id, keypoints [x1, y1, v1, ...], optional bbox "
    "[x, y, w, h]) and `categories` with one entry holding `keypoints` (joint names) and an "
    "optional 1-based `skeleton` ([[a, b], ...]).")
DOWNLOAD = (
    "coco_keypoints: your own data. manual_dir holds images/ and COCO keypoints files "
    "train.json (labelled), test.json (labelled, for evaluation) and optionally pool.json "
    "(labelled, for simulations); file_name relative to images/. " + FORMAT_HELP)


class CocoError(ValueError):
    """A COCO file or folder that cannot be used; the message names the file and the field."""


# ----------------------------------------------------------------------------- reading files

@dataclasses.dataclass
class Person:
    file_name: str
    k: int                # position among the image's annotations (sorted by annotation id)
    joints: np.ndarray    # (J, 2) float32 px
    visibility: np.ndarray  # (J,) int8, project convention
    box: np.ndarray       # (4,) float32 x0, y0, x1, y1 px
    annotation_id: int
    image_id: int

    @property
    def id(self) -> str:
        return f"{self.file_name}#{self.k}"


@dataclasses.dataclass
class CocoFile:
    path: pathlib.Path
    raw: dict
    category: dict
    names: tuple
    skeleton_pairs: list   # 0-based (a, b) from the category's skeleton
    images: dict           # image id -> image dict
    people: list           # Person
    skipped: dict


def _err(path, field, what) -> CocoError:
    return CocoError(f"{path}: field `{field}`: {what}. {FORMAT_HELP}")


def check_file_name(file_name, path, field="images[].file_name") -> str:
    """`file_name` as a safe relative POSIX path, or CocoError (absolute, `..`, empty)."""
    if not isinstance(file_name, str) or not file_name.strip():
        raise _err(path, field, f"{file_name!r} is not a file name")
    name = file_name.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if (name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts or not parts):
        raise CocoError(
            f"{path}: field `{field}`: {file_name!r} points outside the dataset folder (absolute "
            "or with a `..` component); file names must be relative to the images folder. The "
            "file is refused so that a shared annotation file cannot make the tool read or write "
            "elsewhere.")
    return "/".join(parts)


def inside(root: pathlib.Path, relative: str) -> pathlib.Path:
    """`root / relative`, refusing a result outside `root` (symbolic links included)."""
    root = pathlib.Path(root)
    path = root / relative
    if not str(path.resolve()).startswith(str(root.resolve()) + os.sep):
        raise CocoError(f"{path} resolves outside {root}: refused")
    return path


def keypoint_category(raw, path, category=None) -> dict:
    cats = raw.get("categories")
    if not isinstance(cats, list) or not cats:
        raise _err(path, "categories", "missing or empty")
    kp = [c for c in cats if isinstance(c, dict) and isinstance(c.get("keypoints"), list)
          and c["keypoints"]]
    if category is not None:
        kp = [c for c in kp if c.get("name") == category or str(c.get("id")) == str(category)]
    if not kp:
        raise _err(path, "categories[].keypoints", "no category with a non-empty `keypoints` "
                   "list" + (f" named {category!r}" if category is not None else ""))
    return kp[0]


def _skeleton_pairs(cat, names, path) -> list:
    pairs = []
    for i, link in enumerate(cat.get("skeleton") or []):
        if not isinstance(link, (list, tuple)) or len(link) != 2:
            raise _err(path, f"categories[].skeleton[{i}]", f"{link!r} is not a pair")
        ends = []
        for end in link:
            if isinstance(end, str):
                if end not in names:
                    raise _err(path, f"categories[].skeleton[{i}]",
                               f"names unknown joint {end!r} (keypoints: {list(names)})")
                ends.append(names.index(end))
            elif isinstance(end, (int, float)) and float(end).is_integer():
                if not 1 <= int(end) <= len(names):
                    raise _err(path, f"categories[].skeleton[{i}]",
                               f"names unknown joint {int(end)} (1-based; the category has "
                               f"{len(names)} keypoints)")
                ends.append(int(end) - 1)
            else:
                raise _err(path, f"categories[].skeleton[{i}]", f"{end!r} is not a joint")
        if ends[0] != ends[1]:
            pairs.append(tuple(ends))
    return pairs


def read_coco(path, *, category=None, require_annotations=True) -> CocoFile:
    """Parse and check one COCO keypoints file (CocoError naming the file and the field)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CocoError(f"{path}: file not found. {FORMAT_HELP}")
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CocoError(f"{path}: not valid JSON ({err}). {FORMAT_HELP}") from None
    if not isinstance(raw, dict):
        raise _err(path, "(top level)", f"a {type(raw).__name__}, not a JSON object")
    for field in ("images", "annotations"):
        if not isinstance(raw.get(field), list):
            raise _err(path, field, "missing or not a list")
    cat = keypoint_category(raw, path, category)
    names = tuple(str(n) for n in cat["keypoints"])
    if len(set(names)) != len(names):
        raise _err(path, "categories[].keypoints", f"repeated joint names in {list(names)}")
    pairs = _skeleton_pairs(cat, names, path)
    images, seen_names = {}, set()
    for i, im in enumerate(raw["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise _err(path, f"images[{i}]", "needs `id` and `file_name`")
        name = check_file_name(im["file_name"], path, f"images[{i}].file_name")
        if name in seen_names:
            raise _err(path, f"images[{i}].file_name", f"{name!r} appears twice")
        if im["id"] in images:
            raise _err(path, f"images[{i}].id", f"id {im['id']!r} appears twice")
        seen_names.add(name)
        images[im["id"]] = dict(im, file_name=name)
    num = len(names)
    by_image: dict = {}
    for i, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise _err(path, f"annotations[{i}]", "needs `image_id`")
        if ann["image_id"] not in images:
            raise _err(path, f"annotations[{i}].image_id", f"{ann['image_id']!r} is not an image id")
        if "category_id" in ann and ann["category_id"] != cat.get("id", ann["category_id"]):
            continue  # another category (e.g. a box-only one)
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 3 * num:
            raise _err(path, f"annotations[{i}].keypoints",
                       f"has {len(kps) if isinstance(kps, list) else 'no'} values, but the "
                       f"category has {num} keypoints ({3 * num} values: x, y, v each)")
        by_image.setdefault(ann["image_id"], []).append((i, ann))
    people, skipped = [], dict(crowd=0, no_keypoints=0)
    for image_id, anns in by_image.items():
        anns.sort(key=lambda t: (t[1].get("id", t[0]), t[0]))
        for k, (i, ann) in enumerate(anns):
            if ann.get("iscrowd"):
                skipped["crowd"] += 1
                continue
            try:
                kp = np.asarray(ann["keypoints"], np.float64).reshape(num, 3)
            except (TypeError, ValueError):
                raise _err(path, f"annotations[{i}].keypoints", "values must be numbers") from None
            v = kp[:, 2]
            if not np.all(np.isin(v, (0, 1, 2))):
                raise _err(path, f"annotations[{i}].keypoints", "visibility flags must be 0, 1 "
                           "or 2")
            vis = np.where(v == 2, 1, np.where(v == 1, 0, -1)).astype(np.int8)
            if not (vis >= 0).any():
                skipped["no_keypoints"] += 1
                continue
            box = bbox_corners(ann.get("bbox"), kp[:, :2], vis, path, f"annotations[{i}].bbox")
            people.append(Person(images[image_id]["file_name"], k, kp[:, :2].astype(np.float32),
                                 vis, box, ann.get("id", i), image_id))
    if require_annotations and not people:
        raise _err(path, "annotations", "no annotation with a labelled keypoint")
    return CocoFile(path, raw, cat, names, pairs, images, people, skipped)


def read_coco_boxes(path) -> dict:
    """{file_name: [(x0, y0, x1, y1), ...]} from a COCO file of person boxes (`bbox` per
    annotation; keypoints not needed), people in annotation-id order."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CocoError(f"{path}: file not found")
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CocoError(f"{path}: not valid JSON ({err}). {FORMAT_HELP}") from None
    if not isinstance(raw, dict):
        raise _err(path, "(top level)", "not a JSON object")
    for field in ("images", "annotations"):
        if not isinstance(raw.get(field), list):
            raise _err(path, field, "missing or not a list")
    names = {}
    for i, im in enumerate(raw["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise _err(path, f"images[{i}]", "needs `id` and `file_name`")
        names[im["id"]] = check_file_name(im["file_name"], path, f"images[{i}].file_name")
    out: dict = {}
    anns = sorted(enumerate(raw["annotations"]),
                  key=lambda t: (t[1].get("id", t[0]) if isinstance(t[1], dict) else t[0], t[0]))
    for i, ann in anns:
        if not isinstance(ann, dict) or ann.get("image_id") not in names:
            raise _err(path, f"annotations[{i}].image_id", "missing or not an image id")
        bbox = ann.get("bbox")
        try:
            x, y, w, h = (float(t) for t in bbox)
        except (TypeError, ValueError):
            raise _err(path, f"annotations[{i}].bbox", f"{bbox!r} is not [x, y, w, h]") from None
        if not (w > 0 and h > 0 and np.all(np.isfinite([x, y, w, h]))):
            raise _err(path, f"annotations[{i}].bbox", f"{bbox!r} has no area")
        out.setdefault(names[ann["image_id"]], []).append((x, y, x + w, y + h))
    return out


def bbox_corners(bbox, joints, vis, path="", field="bbox") -> np.ndarray:
    """(x0, y0, x1, y1) from a COCO [x, y, w, h] box, else the labelled keypoints' box."""
    if bbox is not None:
        try:
            x, y, w, h = (float(t) for t in bbox)
        except (TypeError, ValueError):
            raise _err(path, field, f"{bbox!r} is not [x, y, w, h]") from None
        if w > 0 and h > 0 and np.all(np.isfinite([x, y, w, h])):
            return np.array([x, y, x + w, y + h], np.float32)
    pts = np.asarray(joints, np.float64)[np.asarray(vis) >= 0]
    return np.array([*pts.min(0), *pts.max(0)], np.float32)


# ----------------------------------------------------------------------------- the tree

def tree_links(names, pairs, *, root=None, links=None):
    """(links as (parent, child) index pairs, root index, how: str, dropped pairs) — see the
    module doc for the rule."""
    num = len(names)
    if links is not None:
        pairs, source = [], "--links"
        for item in links:
            ends = re.split(r"[-:]", item.strip()) if isinstance(item, str) else list(item)
            if len(ends) != 2 or any(e not in names for e in ends):
                raise CocoError(f"--links: {item!r} must be two joint names joined by '-' "
                                f"(joints: {list(names)})")
            pairs.append((names.index(ends[0]), names.index(ends[1])))
    else:
        source = "the category's skeleton"
    adj = [[] for _ in range(num)]
    for a, b in pairs:
        adj[a].append(b)
        adj[b].append(a)

    def bfs(start):
        dist = [-1] * num
        dist[start] = 0
        order = [start]
        for j in order:
            for c in adj[j]:
                if dist[c] < 0:
                    dist[c] = dist[j] + 1
                    order.append(c)
        return dist

    if root is not None:
        if root not in names:
            raise CocoError(f"--root: {root!r} is not a joint (joints: {list(names)})")
        r = names.index(root)
    else:  # the centre of the largest connected piece
        best = None
        for j in range(num):
            d = bfs(j)
            reach = sum(x >= 0 for x in d)
            key = (-reach, max(d), j)
            if best is None or key < best[0]:
                best = (key, j)
        r = best[1]
    parent = [-2] * num
    parent[r] = -1
    queue, out = deque([r]), []
    used = set()
    while queue:
        j = queue.popleft()
        for idx, (a, b) in enumerate(pairs):
            if j not in (a, b):
                continue
            c = b if a == j else a
            if parent[c] == -2:
                parent[c] = j
                out.append((j, c))
                used.add(idx)
                queue.append(c)
    unreached = [j for j in range(num) if parent[j] == -2]
    for j in unreached:
        out.append((r, j))
    dropped = [pairs[i] for i in range(len(pairs)) if i not in used]
    is_tree = not dropped and not unreached and len(pairs) == num - 1
    if is_tree:
        how = f"{source} (a tree), rooted at {names[r]!r}"
    else:
        how = (f"breadth-first spanning tree of {source} from {names[r]!r}"
               + (f"; links dropped: {[(names[a], names[b]) for a, b in dropped]}" if dropped else "")
               + (f"; joints not reached, hung off the root: {[names[j] for j in unreached]}"
                  if unreached else ""))
    return out, r, how, dropped


def flip_pairs(names) -> list:
    """Left/right joint pairs from the names (module doc)."""
    low = [n.lower() for n in names]
    idx = {n: i for i, n in enumerate(low)}
    pairs = set()
    for i, n in enumerate(low):
        for a, b in (("left", "right"),):
            if a in n:
                other = n.replace(a, b)
                if other in idx:
                    pairs.add(tuple(sorted((i, idx[other]))))
        if len(n) > 1 and n[0] == "l" and ("r" + n[1:]) in idx and "left" not in n:
            pairs.add(tuple(sorted((i, idx["r" + n[1:]]))))
        for sa, sb in (("_l", "_r"), (".l", ".r")):
            if n.endswith(sa) and n[:-len(sa)] + sb in idx:
                pairs.add(tuple(sorted((i, idx[n[:-len(sa)] + sb]))))
    return sorted(pairs)


def skeleton_from_meta(meta) -> skeletons.Skeleton:
    return skeletons.Skeleton(names=tuple(meta["names"]), links=tuple(map(tuple, meta["links"])),
                              flip_pairs=tuple(map(tuple, meta["flip_pairs"])),
                              name=meta.get("skeleton_name", NAME))


# ----------------------------------------------------------------------------- metadata / spec

def meta_path(data_dir=None, name: str = NAME) -> pathlib.Path:
    return pathlib.Path(data_dir or builders.default_data_dir()) / name / META_FILE


def read_meta(data_dir=None, name: str = NAME):
    path = meta_path(data_dir, name)
    return json.loads(path.read_text()) if path.is_file() else None


_RESOLVED: dict = {}


def spec(name: str, data_dir=None):
    """The `DatasetSpec` of a prepared COCO dataset (read from `coco_meta.json` in `data_dir`,
    default: the last one loaded in this process, else the default data directory). Without a
    prepared dataset: a placeholder (human, no skeleton)."""
    from vl4pose_jax.data.loader import DatasetSpec  # pylint: disable=import-outside-toplevel
    if data_dir is None and name in _RESOLVED:
        return _RESOLVED[name]
    meta = read_meta(data_dir, name)
    if meta is None:
        return DatasetSpec(name, "human", None, ("train", "test"), metric="pck")
    sp = DatasetSpec(name, "human", skeleton_from_meta(meta), tuple(meta["splits"]), metric="pck")
    previous = _RESOLVED.get(name)
    _RESOLVED[name] = sp
    if previous is not None and previous.skeleton != sp.skeleton:
        # Another dataset of this name (another data_dir) in the same process: the simulator's
        # networks are cached by dataset name, so drop them.
        simulate = sys.modules.get("vl4pose_jax.simulate")
        if simulate is not None:
            simulate.nets.cache_clear()
    return sp


# ----------------------------------------------------------------------------- the builder

@dataclasses.dataclass
class _CocoPlanned(builders._Planned):  # pylint: disable=protected-access
    box: np.ndarray = None


class CocoKeypoints(builders._Base, skip_registration=True):  # pylint: disable=protected-access
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
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
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
                raise _err(path, "categories[].keypoints", f"{list(coco.names)} differ from "
                           f"train.json's {list(self.SKELETON.names)}")
            items = []
            for p in coco.people:
                box = p.box
                norm = 0.5 * float(max(box[2] - box[0], box[3] - box[1], 1.0))
                items.append(_CocoPlanned(p.id, inside(images, p.file_name), p.joints,
                                          p.visibility, norm, box))
            out[split] = self._present(items)
        return out

    def _example(self, item, data, size):
        width, height = size
        joints, vis, masked = builders.sanitize_human(item.joints, item.visibility, width, height)
        self.report["masked_joints"] += masked
        if not (vis >= 0).any():
            self.report["dropped_no_joints"] += 1
            return None
        return dict(id=item.id, image=data, joints=joints, visibility=vis,
                    normalizer=np.float32(item.normalizer), height=np.int32(height),
                    width=np.int32(width), ood=np.int32(0), box=np.asarray(item.box, np.float32))


BUILDERS = {NAME: CocoKeypoints}


def is_coco(name: str) -> bool:
    return name in BUILDERS


def prepare(manual_dir, *, data_dir=None, root=None, links=None, category=None,
            skip_corrupt=False, overwrite=False, name: str = NAME, log_fn=print):
    """Read the category from `manual_dir/train.json`, write `coco_meta.json` (joints, tree,
    splits) and build the dataset. `overwrite` rebuilds a built one (after a merge)."""
    manual = pathlib.Path(manual_dir)
    if not manual.is_dir():
        raise FileNotFoundError(f"{name}: manual directory {manual} does not exist.\n{DOWNLOAD}")
    train = manual / "train.json"
    if not train.is_file():
        raise CocoError(f"{train}: not found; {name} needs the labelled set train.json (and "
                        f"test.json). {DOWNLOAD}")
    if not (manual / "test.json").is_file():
        raise CocoError(f"{manual / 'test.json'}: not found; {name} needs a labelled test.json "
                        "to measure progress (a few dozen images will do).")
    coco = read_coco(train, category=category, require_annotations=True)
    for split, file in SPLIT_FILES.items():  # check every file before writing anything
        if split != "train" and (manual / file).is_file():
            other = read_coco(manual / file, category=category)
            if other.names != coco.names:
                raise _err(manual / file, "categories[].keypoints", f"{list(other.names)} "
                           f"differ from train.json's {list(coco.names)}")
    old = read_meta(data_dir, name)
    if (old and old["names"] == list(coco.names) and root is None and links is None
            and old.get("category", {}).get("skeleton") == coco.category.get("skeleton")):
        # A rebuild (after a merge) keeps the tree exactly: link k stays link k, so a model
        # fine-tuned from the previous weights reads its auxiliary outputs the same way.
        tree, flips, how = old["links"], old["flip_pairs"], old["tree"]
    else:
        tree, _, how, _ = tree_links(coco.names, coco.skeleton_pairs, root=root, links=links)
        flips = flip_pairs(coco.names)
    skeleton = skeletons.Skeleton(coco.names, tuple(map(tuple, tree)), tuple(map(tuple, flips)),
                                  name=name)
    meta = dict(names=list(coco.names), links=[list(t) for t in skeleton.links],
                flip_pairs=[list(t) for t in skeleton.flip_pairs], tree=how,
                category={k: coco.category[k] for k in ("id", "name", "supercategory",
                                                        "keypoints", "skeleton")
                          if k in coco.category},
                flips_named=[[coco.names[a], coco.names[b]] for a, b in skeleton.flip_pairs],
                splits=[s for s, f in SPLIT_FILES.items() if (manual / f).is_file()],
                manual_dir=str(manual.resolve()))
    path = meta_path(data_dir, name)
    builder = builders.get_builder(name, data_dir=data_dir)
    if builder.is_prepared():
        if not overwrite:
            if old and (old["names"], old["links"]) != (meta["names"], meta["links"]):
                raise CocoError(f"{path.parent} holds a {name} dataset with other joints or tree; "
                                "rerun with --overwrite to replace it")
            log_fn(f"{name} is already built in {builder.data_dir} (--overwrite rebuilds it)")
            return builder
        shutil.rmtree(builder.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)
    log_fn(f"{name}: {len(coco.names)} joints; tree: {how}; flip pairs: {meta['flips_named']}")
    builder = builders.build(name, manual_dir=manual, data_dir=data_dir,
                             skip_corrupt=skip_corrupt)
    meta["splits"] = [s for s in SPLIT_FILES if s in builder.info.splits]
    path.write_text(json.dumps(meta, indent=1))
    spec(name, data_dir)  # this process now means this dataset by `name`
    return builder


# ----------------------------------------------------------------------------- merging labels

def merge(manual_dir, annotations, *, images=None, data_dir=None, rebuild=True,
          name: str = NAME, log_fn=print) -> dict:
    """Add the images of an annotated COCO file (any tool that writes COCO keypoints) to the
    labelled set `manual_dir/train.json`, copying the image files into `manual_dir/images/`,
    then rebuild the dataset. Images already in train/test/pool are left as they are
    (reported), so nothing labelled is lost or duplicated; new images and annotations get new
    ids (max + 1). `images`: the folder the annotated file's `file_name`s are relative to
    (default: the file's own folder; the `images_root` that `experiments.score` records in the
    file's `info` is only quoted in the error, never followed, so a shared file cannot make the
    tool read elsewhere). Returns counts. Everything is checked before anything is written."""
    manual = pathlib.Path(manual_dir)
    train_path = manual / "train.json"
    train = read_coco(train_path)
    new = read_coco(annotations, require_annotations=True)
    if new.names != train.names:
        raise _err(new.path, "categories[].keypoints", f"{list(new.names)} differ from the "
                   f"dataset's {list(train.names)} ({train_path})")
    recorded = (new.raw.get("info") or {}).get("images_root")
    images = pathlib.Path(images) if images is not None else new.path.parent
    known = set(train.images[i]["file_name"] for i in train.images)
    for split in ("test", "pool"):
        if (manual / SPLIT_FILES[split]).is_file():
            other = read_coco(manual / SPLIT_FILES[split], require_annotations=False)
            known |= {im["file_name"] for im in other.images.values()}
    labelled_ids = {p.image_id for p in new.people}
    add, skipped = [], []
    for image_id, im in new.images.items():
        if image_id not in labelled_ids:
            continue
        if im["file_name"] in known:
            skipped.append(im["file_name"])
            continue
        src = inside(images, im["file_name"])
        if not src.is_file():
            raise CocoError(f"{new.path}: field `images[].file_name`: image {src} not found; "
                            "give the folder the file names are relative to with --images"
                            + (f" (the file says it was exported from {recorded}; a path "
                               "written in a shared file is never used without you)"
                               if recorded else ""))
        dst = inside(manual / "images", im["file_name"])
        if dst.exists() and dst.read_bytes() != src.read_bytes():
            raise CocoError(f"{dst} exists and differs from {src}: rename the new image "
                            f"({new.path}: images[].file_name {im['file_name']!r})")
        add.append((image_id, im, src, dst))
    raw = train.raw
    next_image = max([int(i) for i in train.images if isinstance(i, int)] + [0]) + 1
    next_ann = max([int(a.get("id", 0)) for a in raw["annotations"]] + [0]) + 1
    cat_id = train.category.get("id", 1)
    added_people = 0
    for image_id, im, src, dst in add:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            shutil.copyfile(src, dst)
        entry = {k: v for k, v in im.items() if k in ("width", "height", "file_name")}
        entry["id"] = next_image
        raw["images"].append(entry)
        for p in sorted((p for p in new.people if p.image_id == image_id), key=lambda p: p.k):
            v = np.where(p.visibility == 1, 2, np.where(p.visibility == 0, 1, 0))
            kps = []
            for (x, y), vv in zip(p.joints.tolist(), v.tolist()):
                kps += [float(x), float(y), int(vv)] if vv else [0.0, 0.0, 0]
            x0, y0, x1, y1 = (float(t) for t in p.box)
            raw["annotations"].append(dict(
                id=next_ann, image_id=next_image, category_id=cat_id, keypoints=kps,
                num_keypoints=int((v > 0).sum()), bbox=[x0, y0, x1 - x0, y1 - y0],
                area=(x1 - x0) * (y1 - y0), iscrowd=0))
            next_ann += 1
            added_people += 1
        next_image += 1
    if add:
        backup = train_path.with_name(f"train.{time.strftime('%Y%m%d-%H%M%S')}.json")
        shutil.copyfile(train_path, backup)
        tmp = train_path.with_name("train.json.tmp")
        tmp.write_text(json.dumps(raw))
        os.replace(tmp, train_path)
    result = dict(added_images=len(add), added_people=added_people,
                  already_labelled=len(skipped), skipped_examples=skipped[:5],
                  train_images=len(raw["images"]))
    log_fn(f"merged {new.path}: {len(add)} new images ({added_people} people) added to "
           f"{train_path}; {len(skipped)} already labelled, left as they were")
    if rebuild and add:
        prepare(manual, data_dir=data_dir, overwrite=True, name=name, log_fn=log_fn)
    return result


def _main(argv):
    from absl import flags  # pylint: disable=import-outside-toplevel
    f = flags.FLAGS
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(argv) != 2 or argv[1] != "merge":
        print("usage: python -m vl4pose_jax.data.coco merge --manual_dir=DIR "
              "--annotations=FILE [--images=FOLDER] [--data_dir=...]", file=sys.stderr)
        return 2
    try:
        merge(f.manual_dir, f.annotations, images=f.images, data_dir=f.data_dir)
    except (CocoError, FileNotFoundError, builders.CorruptImageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from absl import app, flags  # pylint: disable=ungrouped-imports
    flags.DEFINE_string("manual_dir", None, "The dataset's folder (images/, train.json, ...).")
    flags.DEFINE_string("annotations", None, "The annotated COCO keypoints file to merge.")
    flags.DEFINE_string("images", None, "Folder its file names are relative to (default: "
                        "the annotated file's folder).")
    flags.DEFINE_string("data_dir", None, "TFDS data directory of the dataset.")
    flags.mark_flags_as_required(["manual_dir", "annotations"])
    app.run(_main)
