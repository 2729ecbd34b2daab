"""Reading and checking COCO keypoints files, and the tree the VL4Pose network needs from them.

`read_coco` parses one file into `Person`s (visibility in the project's convention, a box per
person) and raises `CocoError` naming the file and the field on anything unusable; file names
are checked to stay inside the images folder (`check_file_name`, `inside`). What it leaves out
is counted in `CocoFile.skipped` (crowd, with or without keypoints; no labelled keypoint;
other categories; exact duplicates; labelled joints with NaN/Inf coordinates, which prepare
masks and merge refuses), the first of each named in `CocoFile.skipped_examples`; a box comes
from the valid labelled joints only (`bbox_corners`). `load_json` reads JSON with a nesting
limit and `dump_json` writes strict JSON (no NaN/Inf). `read_coco_boxes` reads person boxes
for ranking new images. `tree_links` turns a category's skeleton into a tree and `flip_pairs`
finds left/right joints by name (rules in the `vl4pose_jax.data.coco` guide).
Pure Python and numpy: nothing here builds or reads a TFDS dataset.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from collections import deque

import numpy as np

FORMAT_HELP = (
    "A COCO keypoints file is a JSON object with `images` (id, file_name, width, height), "
    "`annotations` (id, image_id, category_id, keypoints [x1, y1, v1, ...], optional bbox "
    "[x, y, w, h]) and `categories` with one entry holding `keypoints` (joint names) and an "
    "optional 1-based `skeleton` ([[a, b], ...]).")


class CocoError(ValueError):
    """A COCO file or folder that cannot be used; the message names the file and the field."""


MAX_JSON_DEPTH = 64   # COCO files nest 4 deep; deeper is refused before Python's recursion limit


def _depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text's brackets (outside strings) nest at most `limit` deep."""
    if text.count("[") + text.count("{") <= limit:
        return True
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text).encode()
    codes = np.frombuffer(bare, np.uint8)
    step = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(codes, (ord("]"), ord("}"))))
    return int(np.cumsum(step).max(initial=0)) <= limit


def load_json(path):
    """The JSON value of file `path`, or CocoError naming it (missing, not UTF-8 JSON, nested
    deeper than `MAX_JSON_DEPTH`)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CocoError(f"{path}: file not found. {FORMAT_HELP}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CocoError(f"{path}: cannot be read as UTF-8 text ({err}). {FORMAT_HELP}") from None
    if not _depth_ok(text):
        raise CocoError(f"{path}: not a COCO file: its JSON nests more than {MAX_JSON_DEPTH} "
                        f"levels deep (a COCO file nests 4). {FORMAT_HELP}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise CocoError(f"{path}: not valid JSON ({err}). {FORMAT_HELP}") from None


def dump_json(value, **kwargs) -> str:
    """Strict JSON text (ValueError on NaN or Inf, which other JSON readers refuse)."""
    return json.dumps(value, allow_nan=False, **kwargs)



@dataclasses.dataclass
class Person:
    """One labelled person of a COCO file, in the project's conventions."""
    file_name: str
    k: int                # position among the image's annotations (sorted by annotation id)
    joints: np.ndarray    # (J, 2) float32 px
    visibility: np.ndarray  # (J,) int8, project convention
    box: np.ndarray       # (4,) float32 x0, y0, x1, y1 px
    annotation_id: int
    image_id: int
    has_bbox: bool = True   # the box is the annotation's own `bbox` (else: its joints' box)

    @property
    def id(self) -> str:
        return f"{self.file_name}#{self.k}"


@dataclasses.dataclass
class CocoFile:
    """A parsed and checked COCO keypoints file (`read_coco`)."""
    path: pathlib.Path
    raw: dict
    category: dict
    names: tuple
    skeleton_pairs: list   # 0-based (a, b) from the category's skeleton
    images: dict           # image id -> image dict
    people: list           # Person
    skipped: dict          # reason -> count (crowd, no_keypoints, other_category, ...)
    skipped_examples: dict = dataclasses.field(default_factory=dict)  # reason -> the first one


def field_error(path, field, what) -> CocoError:
    """A CocoError naming the file and the field, followed by the format's description."""
    return CocoError(f"{path}: field `{field}`: {what}. {FORMAT_HELP}")


def check_file_name(file_name, path, field="images[].file_name") -> str:
    """`file_name` as a safe relative POSIX path, or CocoError (absolute, `..`, empty)."""
    if not isinstance(file_name, str) or not file_name.strip():
        raise field_error(path, field, f"{file_name!r} is not a file name")
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
    """The category with keypoints (the first, or the one named or numbered `category`)."""
    cats = raw.get("categories")
    if not isinstance(cats, list) or not cats:
        raise field_error(path, "categories", "missing or empty")
    kp = [c for c in cats if isinstance(c, dict) and isinstance(c.get("keypoints"), list)
          and c["keypoints"]]
    if category is not None:
        kp = [c for c in kp if c.get("name") == category or str(c.get("id")) == str(category)]
    if not kp:
        raise field_error(path, "categories[].keypoints", "no category with a non-empty "
                          "`keypoints` list"
                          + (f" named {category!r}" if category is not None else ""))
    return kp[0]


def _skeleton_pairs(cat, names, path) -> list:
    pairs = []
    for i, link in enumerate(cat.get("skeleton") or []):
        if not isinstance(link, (list, tuple)) or len(link) != 2:
            raise field_error(path, f"categories[].skeleton[{i}]", f"{link!r} is not a pair")
        ends = []
        for end in link:
            if isinstance(end, str):
                if end not in names:
                    raise field_error(path, f"categories[].skeleton[{i}]",
                                      f"names unknown joint {end!r} (keypoints: {list(names)})")
                ends.append(names.index(end))
            elif isinstance(end, (int, float)) and float(end).is_integer():
                if not 1 <= int(end) <= len(names):
                    raise field_error(path, f"categories[].skeleton[{i}]",
                                      f"names unknown joint {int(end)} (1-based; the category has "
                                      f"{len(names)} keypoints)")
                ends.append(int(end) - 1)
            else:
                raise field_error(path, f"categories[].skeleton[{i}]", f"{end!r} is not a joint")
        if ends[0] != ends[1]:
            pairs.append(tuple(ends))
    return pairs


def read_coco(path, *, category=None, require_annotations=True) -> CocoFile:
    """Parse and check one COCO keypoints file (CocoError naming the file and the field)."""
    path = pathlib.Path(path)
    raw = load_json(path)
    if not isinstance(raw, dict):
        raise field_error(path, "(top level)", f"a {type(raw).__name__}, not a JSON object")
    for field in ("images", "annotations"):
        if not isinstance(raw.get(field), list):
            raise field_error(path, field, "missing or not a list")
    cat = keypoint_category(raw, path, category)
    names = tuple(str(n) for n in cat["keypoints"])
    if len(set(names)) != len(names):
        raise field_error(path, "categories[].keypoints", f"repeated joint names in {list(names)}")
    pairs = _skeleton_pairs(cat, names, path)
    images, seen_names = {}, set()
    for i, im in enumerate(raw["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise field_error(path, f"images[{i}]", "needs `id` and `file_name`")
        name = check_file_name(im["file_name"], path, f"images[{i}].file_name")
        if name in seen_names:
            raise field_error(path, f"images[{i}].file_name", f"{name!r} appears twice")
        if im["id"] in images:
            raise field_error(path, f"images[{i}].id", f"id {im['id']!r} appears twice")
        seen_names.add(name)
        images[im["id"]] = dict(im, file_name=name)
    num = len(names)
    by_image: dict = {}
    other_category = 0
    examples: dict = {}

    def example(reason, i, ann):   # the first annotation left out for each reason
        if reason not in examples:
            examples[reason] = (f"annotations[{i}] (id {ann.get('id')!r}, image "
                                f"{images[ann['image_id']]['file_name']!r})")
    for i, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise field_error(path, f"annotations[{i}]", "needs `image_id`")
        if ann["image_id"] not in images:
            raise field_error(path, f"annotations[{i}].image_id",
                              f"{ann['image_id']!r} is not an image id")
        if "category_id" in ann and ann["category_id"] != cat.get("id", ann["category_id"]):
            other_category += 1   # another category (e.g. a box-only one): counted
            example("other_category", i, ann)
            continue
        kps = ann.get("keypoints")
        if ann.get("iscrowd"):   # skipped below, whatever its keypoints (often none)
            by_image.setdefault(ann["image_id"], []).append((i, ann))
            continue
        if not isinstance(kps, list) or len(kps) != 3 * num:
            raise field_error(path, f"annotations[{i}].keypoints",
                              f"has {len(kps) if isinstance(kps, list) else 'no'} values, but the "
                              f"category has {num} keypoints ({3 * num} values: x, y, v each)")
        by_image.setdefault(ann["image_id"], []).append((i, ann))
    people = []
    skipped = dict(crowd=0, no_keypoints=0, other_category=other_category, duplicates=0,
                   non_finite_joints=0)
    for image_id, anns in by_image.items():
        anns.sort(key=lambda t: (t[1].get("id", t[0]), t[0]))
        seen: set = set()
        k = 0
        for i, ann in anns:
            if ann.get("iscrowd"):
                skipped["crowd"] += 1
                example("crowd", i, ann)
                k += 1
                continue
            try:
                kp = np.asarray(ann["keypoints"], np.float64).reshape(num, 3)
            except (TypeError, ValueError):
                raise field_error(path, f"annotations[{i}].keypoints",
                                  "values must be numbers") from None
            key = (kp.tobytes(), json.dumps(ann.get("bbox"), default=str))
            if key in seen:   # the same person twice (an exact copy, whatever its id)
                skipped["duplicates"] += 1
                example("duplicates", i, ann)
                k += 1   # the others keep their ids
                continue
            seen.add(key)
            v = kp[:, 2]
            if not np.all(np.isin(v, (0, 1, 2))):
                raise field_error(path, f"annotations[{i}].keypoints",
                                  "visibility flags must be 0, 1 or 2")
            vis = np.where(v == 2, 1, np.where(v == 1, 0, -1)).astype(np.int8)
            non_finite = int(((vis >= 0) & ~np.all(np.isfinite(kp[:, :2]), axis=1)).sum())
            skipped["non_finite_joints"] += non_finite
            if non_finite:
                example("non_finite_joints", i, ann)
            if not (vis >= 0).any():
                skipped["no_keypoints"] += 1
                example("no_keypoints", i, ann)
                k += 1
                continue
            box = bbox_corners(ann.get("bbox"), kp[:, :2], vis, path, f"annotations[{i}].bbox")
            people.append(Person(images[image_id]["file_name"], k, kp[:, :2].astype(np.float32),
                                 vis, box, ann.get("id", i), image_id,
                                 has_bbox=valid_bbox(ann.get("bbox")) is not None))
            k += 1
    if require_annotations and not people:
        raise field_error(path, "annotations", "no annotation with a labelled keypoint")
    return CocoFile(path, raw, cat, names, pairs, images, people, skipped, examples)


def read_coco_boxes(path) -> dict:
    """{file_name: [(x0, y0, x1, y1), ...]} from a COCO file of person boxes (`bbox` per
    annotation; keypoints not needed), people in annotation-id order. Every listed image is a
    key, one with no box (no person found) with an empty list; a crowd region (`iscrowd`)
    is not one person and is left out."""
    path = pathlib.Path(path)
    raw = load_json(path)
    if not isinstance(raw, dict):
        raise field_error(path, "(top level)", "not a JSON object")
    for field in ("images", "annotations"):
        if not isinstance(raw.get(field), list):
            raise field_error(path, field, "missing or not a list")
    names = {}
    for i, im in enumerate(raw["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise field_error(path, f"images[{i}]", "needs `id` and `file_name`")
        names[im["id"]] = check_file_name(im["file_name"], path, f"images[{i}].file_name")
    out: dict = {name: [] for name in names.values()}
    anns = sorted(enumerate(raw["annotations"]),
                  key=lambda t: (t[1].get("id", t[0]) if isinstance(t[1], dict) else t[0], t[0]))
    for i, ann in anns:
        if not isinstance(ann, dict) or ann.get("image_id") not in names:
            raise field_error(path, f"annotations[{i}].image_id", "missing or not an image id")
        if ann.get("iscrowd"):
            continue
        bbox = ann.get("bbox")
        try:
            x, y, w, h = (float(t) for t in bbox)
        except (TypeError, ValueError):
            raise field_error(path, f"annotations[{i}].bbox",
                              f"{bbox!r} is not [x, y, w, h]") from None
        if not (w > 0 and h > 0 and np.all(np.isfinite([x, y, w, h]))):
            raise field_error(path, f"annotations[{i}].bbox", f"{bbox!r} has no area")
        out.setdefault(names[ann["image_id"]], []).append((x, y, x + w, y + h))
    return out


def labelled_images(manual) -> dict:
    """{path of an image file: file_name} for every image that `manual`'s train.json,
    test.json or pool.json lists and that exists under `manual/images/` (names unchecked
    files are skipped: this only finds what is already labelled)."""
    manual = pathlib.Path(manual)
    out = {}
    for file in ("train.json", "test.json", "pool.json"):
        if not (manual / file).is_file():
            continue
        raw = load_json(manual / file)
        for im in (raw.get("images") or []) if isinstance(raw, dict) else []:
            try:
                name = check_file_name(im.get("file_name"), manual / file)
                path = inside(manual / "images", name)
            except (CocoError, AttributeError):
                continue
            if path.is_file():
                out[path] = name
    return out


def valid_bbox(bbox):
    """(x0, y0, x1, y1) of a COCO [x, y, w, h] box with a finite, positive area, else None."""
    try:
        x, y, w, h = (float(t) for t in bbox)
    except (TypeError, ValueError):
        return None
    if w > 0 and h > 0 and np.all(np.isfinite([x, y, x + w, y + h])):
        return np.array([x, y, x + w, y + h], np.float32)
    return None


def joints_box(joints, vis) -> np.ndarray:
    """(x0, y0, x1, y1) of the labelled (vis >= 0) joints with finite coordinates; NaN when none."""
    pts = np.asarray(joints, np.float64)
    keep = (np.asarray(vis) >= 0) & np.all(np.isfinite(pts), axis=-1)
    if not keep.any():
        return np.full((4,), np.nan, np.float32)
    pts = pts[keep]
    return np.array([*pts.min(0), *pts.max(0)], np.float32)


def bbox_corners(bbox, joints, vis, path="", field="bbox") -> np.ndarray:
    """(x0, y0, x1, y1) from a COCO [x, y, w, h] box, else the box of the labelled joints with
    finite coordinates (`joints_box`). A `bbox` that is not four numbers is a CocoError; one
    without a finite, positive area is ignored."""
    if bbox is not None:
        try:
            _ = [float(t) for t in bbox]
            if len(_) != 4:
                raise ValueError
        except (TypeError, ValueError):
            raise field_error(path, field, f"{bbox!r} is not [x, y, w, h]") from None
        box = valid_bbox(bbox)
        if box is not None:
            return box
    return joints_box(joints, vis)


# ----------------------------------------------------------------------------- the tree

def never_labelled(people, num: int) -> list:
    """Indices of the joints that no person in `people` labels (visibility < 0 everywhere)."""
    seen = np.zeros((num,), bool)
    for p in people:
        seen |= np.asarray(p.visibility) >= 0
    return [int(j) for j in np.flatnonzero(~seen)]


def mean_distances(people, num: int) -> np.ndarray:
    """(J, J) mean distance between two joints over the people labelling both, in units of
    each person's box (longer side); inf where no person labels both."""
    total = np.zeros((num, num))
    count = np.zeros((num, num))
    for p in people:
        xy = np.asarray(p.joints, np.float64)
        ok = (np.asarray(p.visibility) >= 0) & np.all(np.isfinite(xy), axis=1)
        side = float(max(p.box[2] - p.box[0], p.box[3] - p.box[1])) if np.all(
            np.isfinite(p.box)) else 0.0
        if ok.sum() < 2 or not side > 0:
            continue
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) / side
        both = ok[:, None] & ok[None]
        total += np.where(both, d, 0.0)
        count += both
    return np.where(count > 0, total / np.maximum(count, 1), np.inf)


def tree_links(names, pairs, *, root=None, links=None, unlabelled=(), distances=None):
    """(links as (parent, child) index pairs, root index, how: str, dropped pairs) — see the
    module doc for the rule. `unlabelled`: joints no training person labels; the tree's spine
    is built over the other joints and each of these hangs off, as a leaf, its first skeleton
    neighbour that is labelled (else the root). `distances` ((J, J), `mean_distances`): a
    labelled joint the spine does not reach hangs off the nearest reached joint (else the
    root)."""
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
    leaves = sorted(set(int(j) for j in unlabelled))
    if len(leaves) == num:
        leaves = []   # nothing labelled at all: read_coco refuses such a file before
    spine = [(a, b) for a, b in pairs if a not in leaves and b not in leaves]
    adj = [[] for _ in range(num)]
    for a, b in spine:
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
    else:  # the centre of the largest connected piece of the spine
        best = None
        for j in range(num):
            if j in leaves:
                continue
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

    def grow():
        while queue:
            j = queue.popleft()
            for idx, (a, b) in enumerate(pairs):
                if j not in (a, b) or a in leaves or b in leaves:
                    continue
                c = b if a == j else a
                if parent[c] == -2:
                    parent[c] = j
                    out.append((j, c))
                    used.add(idx)
                    queue.append(c)

    grow()
    unreached, nearest = [], []
    while True:   # labelled joints the spine misses: the nearest reached joint, else the root
        missing = [j for j in range(num) if parent[j] == -2 and j not in leaves]
        if not missing:
            break
        reached = [j for j in range(num) if parent[j] != -2 and j not in leaves]
        d = (np.asarray(distances, np.float64)[np.ix_(missing, reached)]
             if distances is not None else np.full((len(missing), len(reached)), np.inf))
        if np.isfinite(d).any():
            a, b = np.unravel_index(int(np.argmin(np.where(np.isfinite(d), d, np.inf))), d.shape)
            c, p = missing[a], reached[b]
            nearest.append((p, c))
        else:
            c, p = missing[0], r
            unreached.append(c)
        parent[c] = p
        out.append((p, c))
        queue.append(c)
        grow()
    hung = []
    for j in leaves:
        idx = next((i for i, (a, b) in enumerate(pairs)
                    if j in (a, b) and (b if a == j else a) not in leaves), None)
        p = r if idx is None else sum(pairs[idx]) - j
        used.add(idx)
        parent[j] = p
        out.append((p, j))
        hung.append((p, j))
    dropped = [pairs[i] for i in range(len(pairs)) if i not in used]
    is_tree = not dropped and not unreached and not nearest and len(pairs) == num - 1
    if is_tree:
        how = f"{source} (a tree), rooted at {names[r]!r}"
    else:
        how = (f"breadth-first spanning tree of {source} from {names[r]!r}"
               + (" over the labelled joints" if leaves else "")
               + (f"; links dropped: {[(names[a], names[b]) for a, b in dropped]}" if dropped else "")
               + ("; joints not reached, hung off the nearest joint (mean distance in labelled "
                  "people): " + ", ".join(f"{names[c]} under {names[p]}" for p, c in nearest)
                  if nearest else "")
               + (f"; joints not reached, hung off the root: {[names[j] for j in unreached]}"
                  if unreached else ""))
    if leaves:
        how += ("; joints never labelled in train.json, hung as leaves (kept out of the "
                "tree's spine): " + ", ".join(f"{names[c]} under {names[p]}" for p, c in hung))
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
