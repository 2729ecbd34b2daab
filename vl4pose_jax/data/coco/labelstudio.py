r"""Labels back from Label Studio: its export as a strict COCO keypoints file with the original
file names, which `python -m vl4pose_jax.data.coco merge` takes unchanged.

    python -m vl4pose_jax.data.coco.labelstudio EXPORT.json --images=NEW --manual_dir=DIR \
        --out=annotated.json

`EXPORT.json`: Label Studio's JSON export (Export -> JSON; the API's `exportType=JSON`) of tasks
written by `experiments.score` (`vl4pose_jax/export.py`). Per task, the newest annotation that
was not skipped; the person boxes (`RectangleLabels`) and their keypoints (`KeyPointLabels`, tied
to a box by `parentID`; a keypoint without one goes to the one box that contains it) become one
COCO annotation each. Percent coordinates become pixels of the original image (x = x% / 100 x
`original_width`), shown upright: an EXIF-rotated photo's size is checked as Label Studio
shows it (`formats.oriented_size`), and its upright size is written; a joint deleted in Label
Studio is absent (v = 0), one marked "occluded" (the per-joint `visibility` choice) is v = 1,
any other v = 2. `file_name` is the task's `data.file_name` (relative to `--images`, the folder
that was scored), never Label Studio's copy: an image exported twice appears once (its newest
annotation), and an image already in the dataset is left alone by `merge`. A person box without
keypoints is dropped (reported).

Label Studio's COCO export (the `result.json`, or the COCO_WITH_IMAGES zip) is read too where it
is enough: one person per image and no occlusion (it writes every joint v = 2, at whole pixels).
Its `../<folder>/x.jpg` and `images/<hash>__x.jpg` names are mapped back to the file under
`--images` with the longest matching path; an image with several person boxes (the export keeps
one person's keypoints) or a name not found is refused, naming the JSON export to use instead.
JSON-MIN is refused for the same reason (it drops which box a keypoint belongs to).
The joints are the dataset's (`--manual_dir`'s train.json category, in its order); a label that
is not one of them is refused. Exit status 0, 1 on bad input (the file, task and field named).
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import re
import sys
import zipfile

from absl import app, flags
from PIL import Image

from vl4pose_jax.data import formats
from vl4pose_jax.data.coco.files import (CocoError, check_file_name, inside, keypoint_category,
                                         read_coco)

BOX_TYPE, KEYPOINT_TYPE, CHOICES_TYPE = "rectanglelabels", "keypointlabels", "choices"
OCCLUDED = "occluded"
JSON_EXPORT = ("export the project as JSON instead (Export -> JSON; the API's "
               "exportType=JSON), which keeps every person and every occluded joint")
_HASH = re.compile(r"^[0-9a-f]{8}__")


class LabelStudioError(CocoError):
    """A Label Studio export that cannot be turned into COCO labels; names file, task, field."""


def read_export(path) -> tuple[str, object]:
    """("json", tasks) or ("coco", dict) from a Label Studio export: a JSON file or the
    COCO_WITH_IMAGES zip (its result.json); JSON-MIN and anything else are refused."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise LabelStudioError(f"{path}: file not found")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if "result.json" not in z.namelist():
                    raise LabelStudioError(f"{path}: a zip without result.json, not a Label "
                                           f"Studio COCO export; {JSON_EXPORT}")
                raw = json.loads(z.read("result.json"))
        else:
            raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise LabelStudioError(f"{path}: not valid JSON ({err})") from None
    if isinstance(raw, dict) and isinstance(raw.get("images"), list):
        return "coco", raw
    if isinstance(raw, list) and all(isinstance(t, dict) and "annotations" in t
                                     and isinstance(t.get("data"), dict) for t in raw):
        return "json", raw
    if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "annotation_id" in raw[0]:
        raise LabelStudioError(f"{path}: Label Studio's JSON-MIN export, which drops the link "
                               f"between a keypoint and its person box; {JSON_EXPORT}")
    raise LabelStudioError(f"{path}: neither Label Studio's JSON export (a list of tasks with "
                           "`data` and `annotations`) nor its COCO export; " + JSON_EXPORT)


def newest_annotation(task: dict) -> dict | None:
    """The task's newest annotation that was not skipped (cancelled), or None."""
    done = [a for a in task.get("annotations") or []
            if isinstance(a, dict) and not a.get("was_cancelled")
            and isinstance(a.get("result"), list)]
    return max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""),
                                    a.get("id") or 0), default=None)


def _box_corners(value, w, h, where) -> tuple:
    """(x0, y0, x1, y1) px of a Label Studio rectangle (percent, rotated about its top-left)."""
    try:
        x, y, bw, bh = (float(value[k]) for k in ("x", "y", "width", "height"))
        rot = math.radians(float(value.get("rotation") or 0.0))
    except (KeyError, TypeError, ValueError):
        raise LabelStudioError(f"{where}: `value` needs numbers x, y, width, height") from None
    x, y, bw, bh = x * w / 100, y * h / 100, bw * w / 100, bh * h / 100
    c, s = math.cos(rot), math.sin(rot)
    xs = [x + dx * c - dy * s for dx, dy in ((0, 0), (bw, 0), (0, bh), (bw, bh))]
    ys = [y + dx * s + dy * c for dx, dy in ((0, 0), (bw, 0), (0, bh), (bw, bh))]
    return max(0.0, min(xs)), max(0.0, min(ys)), min(float(w), max(xs)), min(float(h), max(ys))


def _size(result, where) -> tuple:
    try:
        w, h = int(result["original_width"]), int(result["original_height"])
    except (KeyError, TypeError, ValueError):
        raise LabelStudioError(f"{where}: needs `original_width` and `original_height`") from None
    if w <= 0 or h <= 0:
        raise LabelStudioError(f"{where}: image size {w} x {h}")
    return w, h


def people_of(result: list, names, where: str) -> tuple:
    """((width, height), people) from one annotation's `result`: per person a dict `box`
    (x0, y0, x1, y1 px or None) and `joints` {joint index: (x, y, v)}, in box order."""
    names = list(names)
    size, boxes, points, occluded = None, {}, [], set()
    for n, r in enumerate(result):
        at = f"{where}, result[{n}]"
        if not isinstance(r, dict):
            raise LabelStudioError(f"{at}: not an object")
        kind = str(r.get("type", "")).lower()
        if kind == CHOICES_TYPE and OCCLUDED in ((r.get("value") or {}).get("choices") or []):
            occluded.add(r.get("id"))
        if kind not in (BOX_TYPE, KEYPOINT_TYPE):
            continue
        this = _size(r, at)
        if size is not None and this != size:
            raise LabelStudioError(f"{at}: image size {this} differs from {size} of the other "
                                   "regions")
        size = this
        if kind == BOX_TYPE:
            boxes[r.get("id", f"#{n}")] = _box_corners(r.get("value") or {}, *size, at)
            continue
        value = r.get("value") or {}
        labels = value.get("keypointlabels") or []
        if len(labels) != 1 or labels[0] not in names:
            raise LabelStudioError(f"{at}: field `value.keypointlabels` {labels!r} is not one "
                                   f"joint of the dataset ({names})")
        try:
            x, y = float(value["x"]) * size[0] / 100, float(value["y"]) * size[1] / 100
        except (KeyError, TypeError, ValueError):
            raise LabelStudioError(f"{at}: field `value` needs numbers x and y") from None
        points.append((at, r.get("id"), r.get("parentID"), names.index(labels[0]), x, y))
    people = {b: {"box": box, "joints": {}} for b, box in boxes.items()}
    for at, rid, parent, j, x, y in points:
        if parent in boxes:
            owner = parent
        else:
            inside_boxes = [b for b, (x0, y0, x1, y1) in boxes.items()
                            if x0 <= x <= x1 and y0 <= y <= y1]
            if len(inside_boxes) == 1:
                owner = inside_boxes[0]
            elif not boxes:
                owner = None
                people.setdefault(None, {"box": None, "joints": {}})
            else:
                raise LabelStudioError(
                    f"{at}: keypoint {names[j]!r} has no person (no `parentID` of a box, and it "
                    f"lies in {len(inside_boxes)} of the {len(boxes)} person boxes): draw it "
                    "while its person's box is selected, or inside exactly one box")
        person = people[owner]
        if j in person["joints"]:
            raise LabelStudioError(f"{at}: joint {names[j]!r} twice for person "
                                   f"{owner if owner is not None else '(no box)'}")
        person["joints"][j] = (x, y, 1 if rid in occluded else 2)
    return size, list(people.values())


def coco_annotation(person, num_joints, ann_id, image_id, category_id) -> dict | None:
    """A COCO keypoints annotation of one person (None without keypoints)."""
    joints = person["joints"]
    if not joints:
        return None
    kps = []
    for j in range(num_joints):
        x, y, v = joints.get(j, (0.0, 0.0, 0))
        kps += [round(x, 3), round(y, 3), v]
    if person["box"] is not None:
        x0, y0, x1, y1 = person["box"]
    else:
        xs, ys = [p[0] for p in joints.values()], [p[1] for p in joints.values()]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "keypoints": kps,
            "num_keypoints": len(joints), "bbox": [round(x0, 3), round(y0, 3),
                                                   round(x1 - x0, 3), round(y1 - y0, 3)],
            "area": round((x1 - x0) * (y1 - y0), 3), "iscrowd": 0}


def _check_image(images, file_name, size, where):
    """The image under `images` exists and has `size` upright (EXIF orientation applied, as
    Label Studio shows it and as its percent coordinates refer to; else it labelled another
    picture); returns the upright (width, height)."""
    path = inside(pathlib.Path(images), file_name)
    if not path.is_file():
        raise LabelStudioError(f"{where}: image {path} not found: --images={images} must be the "
                               "folder that experiments.score ranked (--images there)")
    with Image.open(path) as im:
        upright = tuple(formats.oriented_size(im))
        if size is not None and upright != tuple(size):
            raise LabelStudioError(f"{where}: {path} is {upright[0]} x {upright[1]} (upright) "
                                   f"but was labelled as {size[0]} x {size[1]}: --images={images} "
                                   "is not the folder that was ranked")
        return upright


def from_json_export(tasks: list, category: dict, images, path) -> tuple[dict, dict]:
    """(COCO dict, report) from Label Studio's JSON export (module doc)."""
    names = list(category["keypoints"])
    chosen, report = {}, dict(tasks=len(tasks), unlabelled_tasks=0, repeated_images=0,
                              people_without_keypoints=0)
    for n, task in enumerate(tasks):
        where = f"{path}: task {task.get('id', f'#{n}')}"
        data = task.get("data") or {}
        if "file_name" not in data:
            raise LabelStudioError(f"{where}: field `data.file_name` missing: not a task written "
                                   "by experiments.score (its tasks.json holds it)")
        name = check_file_name(data["file_name"], where, "data.file_name")
        ann = newest_annotation(task)
        if ann is None:
            report["unlabelled_tasks"] += 1
            continue
        key = (str(ann.get("updated_at") or ann.get("created_at") or ""), ann.get("id") or 0)
        if name in chosen:
            report["repeated_images"] += 1
            if chosen[name][0] >= key:
                continue
        chosen[name] = (key, where, ann)
    images_out, anns = [], []
    for image_id, (name, (_, where, ann)) in enumerate(sorted(chosen.items()), 1):
        size, people = people_of(ann["result"], names, f"{where}, annotation {ann.get('id')}")
        size = _check_image(images, name, size, where)
        images_out.append({"id": image_id, "file_name": name, "width": size[0],
                           "height": size[1]})
        for person in people:
            a = coco_annotation(person, len(names), len(anns) + 1, image_id,
                                category.get("id", 1))
            if a is None:
                report["people_without_keypoints"] += 1
            else:
                anns.append(a)
    return _coco(images_out, anns, category, path), report


def original_name(file_name: str, images) -> str | None:
    """The file under `images` that a Label Studio COCO export's name stands for: its longest
    path suffix that exists there (`../<folder>/x.jpg` -> `x.jpg`), the upload hash stripped
    (`images/1a2b3c4d__x.jpg` -> `x.jpg`); None when none exists."""
    parts = [p for p in str(file_name).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        return None
    candidates = [parts[k:] for k in range(len(parts))]
    if _HASH.match(parts[-1]):
        candidates.append([_HASH.sub("", parts[-1])])
    for cand in candidates:
        rel = "/".join(cand)
        try:
            if inside(pathlib.Path(images), rel).is_file():
                return rel
        except CocoError:
            continue
    return None


def from_coco_export(raw: dict, category: dict, images, path) -> tuple[dict, dict]:
    """(COCO dict, report) from Label Studio's COCO export, where it is enough (module doc)."""
    names = list(category["keypoints"])
    cat = keypoint_category(raw, path)
    if list(cat["keypoints"]) != names:
        raise LabelStudioError(f"{path}: field `categories[].keypoints` {cat['keypoints']} "
                               f"differ from the dataset's {names} (the labelling config's "
                               "model_index order)")
    by_image: dict = {}
    for n, a in enumerate(raw.get("annotations") or []):
        if isinstance(a, dict):
            by_image.setdefault(a.get("image_id"), []).append((n, a))
    images_out, anns = [], []
    report = dict(tasks=len(raw["images"]), unlabelled_tasks=0, repeated_images=0,
                  people_without_keypoints=0)
    seen = set()
    for n, im in enumerate(raw["images"]):
        where = f"{path}: images[{n}] ({im.get('file_name')!r})"
        mine = by_image.get(im.get("id"), [])
        kp = [a for _, a in mine if a.get("category_id") == cat.get("id")
              and any(a.get("keypoints", [])[2::3])]
        boxes = [a for _, a in mine if a.get("category_id") != cat.get("id") and a.get("bbox")]
        if not kp:
            report["unlabelled_tasks"] += 1
            continue
        if len(kp) > 1 or len(boxes) > 1:
            raise LabelStudioError(f"{where}: {len(boxes)} person boxes but Label Studio's COCO "
                                   "export keeps the keypoints of one person per image (the "
                                   f"others are lost); {JSON_EXPORT}")
        name = original_name(im.get("file_name", ""), images)
        if name is None:
            raise LabelStudioError(f"{where}: no file under --images={images} matches this "
                                   f"name (Label Studio's own copy); {JSON_EXPORT}")
        if name in seen:
            report["repeated_images"] += 1
            continue
        seen.add(name)
        size = _check_image(images, name, None, where)
        image_id = len(images_out) + 1
        images_out.append({"id": image_id, "file_name": name, "width": size[0],
                           "height": size[1]})
        (a,) = kp
        joints = {j: (float(a["keypoints"][3 * j]), float(a["keypoints"][3 * j + 1]), 2)
                  for j in range(len(names)) if a["keypoints"][3 * j + 2]}
        box = None
        if boxes:
            x, y, w, h = (float(t) for t in boxes[0]["bbox"])
            box = (x, y, x + w, y + h)
        anns.append(coco_annotation({"box": box, "joints": joints}, len(names), len(anns) + 1,
                                    image_id, category.get("id", 1)))
    return _coco(images_out, anns, category, path), report


def _coco(images, anns, category, path) -> dict:
    cat = {k: category[k] for k in ("id", "name", "supercategory", "keypoints", "skeleton")
           if k in category}
    return {"info": {"description": "Label Studio labels converted by "
                                    "vl4pose_jax.data.coco.labelstudio", "source": str(path)},
            "images": images, "annotations": anns, "categories": [cat]}


def convert(export, images, category: dict) -> tuple[dict, dict]:
    """(COCO dict, report) from a Label Studio export file (JSON, or COCO where enough)."""
    if not pathlib.Path(images).is_dir():
        raise LabelStudioError(f"--images={images}: not a folder (give the folder that "
                               "experiments.score ranked)")
    kind, raw = read_export(export)
    if kind == "json":
        return from_json_export(raw, category, images, export)
    return from_coco_export(raw, category, images, export)


def write_json(obj, path):
    """Strict JSON, written atomically."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, allow_nan=False))
    os.replace(tmp, path)


def main(argv):
    f = flags.FLAGS
    if len(argv) != 2:
        print("usage: python -m vl4pose_jax.data.coco.labelstudio EXPORT.json --images=NEW "
              "--manual_dir=DIR --out=annotated.json", file=sys.stderr)
        return 2
    try:
        category = read_coco(pathlib.Path(f.manual_dir) / "train.json",
                             require_annotations=False).category
        coco, report = convert(argv[1], f.images, category)
        if not coco["annotations"]:
            raise LabelStudioError(f"{argv[1]}: no annotated person in {report['tasks']} tasks "
                                   f"({report['unlabelled_tasks']} without an annotation)")
        write_json(coco, f.out)
    except (CocoError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{f.out}: {len(coco['images'])} images, {len(coco['annotations'])} people "
          f"({sum(v == 1 for a in coco['annotations'] for v in a['keypoints'][2::3])} occluded "
          f"joints) from {report['tasks']} tasks; {report['unlabelled_tasks']} not annotated, "
          f"{report['repeated_images']} repeated images (newest annotation kept), "
          f"{report['people_without_keypoints']} boxes without keypoints dropped. Next: "
          f"python -m vl4pose_jax.data.coco merge --manual_dir={f.manual_dir} "
          f"--annotations={f.out} --images={f.images}")
    return 0


def _define_flags():
    flags.DEFINE_string("images", None, "The folder experiments.score ranked (the tasks' "
                        "file names are relative to it).")
    flags.DEFINE_string("manual_dir", None, "The dataset's folder: the joints are its "
                        "train.json category's.")
    flags.DEFINE_string("out", None, "The COCO keypoints file to write (for coco merge).")
    flags.mark_flags_as_required(["images", "manual_dir", "out"])


if __name__ == "__main__":
    _define_flags()
    app.run(main)
