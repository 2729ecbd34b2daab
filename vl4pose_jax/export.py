"""Writing a ranking (`rank.Scored`) for annotators: a CSV of every input, the top N as a COCO
keypoints file and as Label Studio tasks with predictions, a gallery, and (video) the frames.

`write(scored, out_dir, top_k=...)` writes into a temporary sibling folder and renames it to
`out_dir` only when everything is written, so a failed run never leaves output that looks
complete; what it writes is readable by all (folders 0o755, files 0o644, whatever the
umask: `make_readable`), for an annotation server running as another user. Annotation formats
are a registry, `FORMATS` (name -> `writer(job, folder)`, a `Job` holding the ranking and the
top inputs): a new format is one function and one line. Joints that no train.json person of a
COCO dataset labels (`coco.absent_joints`, `absent_for`) are pre-annotated as absent. Files:

  ranking.csv            every crop (one per input without person boxes): rank of its input
                         (1 = most informative; empty for skipped corrupt inputs), input file
                         or frame, frame number (-1: image), person, input score (the mean of
                         its crops' scores), crop score, `person_rank` (the crop's own place
                         among all crops, when the ranking has one), the crop's box and
                         `<joint>_x`, `<joint>_y` predicted keypoints in the original image's
                         pixels. A text cell a spreadsheet would read as a formula (starting
                         with = + - @, tab or CR) is prefixed with ' (OWASP CSV injection).
  top_k.coco.json        the top N inputs and their predicted poses as COCO keypoints
                         pre-annotations (v = 2 for every predicted joint, clipped into the
                         image; [0, 0, 0] for a never-labelled joint, which `num_keypoints`
                         leaves out; `score` per annotation); `file_name` relative to
                         `images_root` (recorded in `info`): the input folder, or `frames/`
                         for a video.
  label_studio/tasks.json, label_studio/labeling_config.xml
                         Label Studio import (below): one task per top-N input, ordered most
                         unusual first by Label Studio's own prediction-score order.
  gallery.png            the top N (at most 48 shown) with their predicted skeletons.
  frames/<video>/frame_NNNNNN.png   (video) the top N frames as image files.

Label Studio (checked against a running 1.22 / 1.23 server, `tests/test_labelstudio.py`): a
task is `{"data": {...}, "predictions": [{"model_version", "score", "result": [...]}]}`.
  * `data`: `image` (the URL: `image_url_prefix` + URL-quoted file name; with
    `label_studio_root`, the local-files URL of the image below Label Studio's document root,
    right by construction), `file_name` (relative to `images_root`: how labels find their way
    back), `rank` (1 = most unusual), `method` and `method_score` (the method's raw score).
  * `score`: Label Studio wants a confidence in [0, 1] and serves the lowest first (uncertainty
    sampling; the data manager's "Prediction score" column ascending), so the score is
    `(rank - 1) / N`: 0 for the most unusual input of the N exported.
  * `result`: per person `p<k>` a `rectanglelabels` box (`id` "p<k>": the given person box, else
    the predicted keypoints' box padded by 10 % of its longer side) and one `keypointlabels`
    result per joint but the never-labelled ones (`id` "p<k>_<joint>", `parentID` "p<k>": tied
    to that person's box). Values are percent of the image (x% = 100 x / width, Label Studio's
    own converter's convention).
  * The config: the image, a `RectangleLabels` "person", a `KeyPointLabels` whose labels carry
    `model_index` (the skeleton's order: Label Studio's COCO export needs it) and a per-region
    `Choices` "visibility" with "occluded" (COCO v = 1) shown when a region is selected.
  `vl4pose_jax.data.coco.labelstudio` reads the export back.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

FROM_NAME, TO_NAME = "keypoints", "image"
BOX_NAME, BOX_LABEL = "person", "person"
VISIBILITY_NAME, OCCLUDED = "visibility", "occluded"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
GALLERY_MAX = 48
_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
            "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3"]


class OutputError(ValueError):
    """The output folder cannot be written as asked."""


def category_for(dataset: str, skeleton, data_dir=None) -> dict:
    """The COCO category of the exported poses: a COCO dataset's own (its original skeleton),
    else one built from the skeleton (1-based links)."""
    from vl4pose_jax.data import coco  # pylint: disable=import-outside-toplevel
    if coco.is_coco(dataset):
        meta = coco.read_meta(data_dir, dataset)
        if meta and meta.get("category"):
            return dict(meta["category"])
    return {"id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(skeleton.names),
            "skeleton": [[p + 1, c + 1] for p, c in skeleton.links]}


def absent_for(dataset: str, data_dir=None) -> set:
    """The joints (indices) to pre-annotate as absent: a COCO dataset's never-labelled ones
    (`coco.absent_joints`, read from its coco_meta.json), else none."""
    from vl4pose_jax.data import coco  # pylint: disable=import-outside-toplevel
    return set(coco.absent_joints(data_dir, dataset)) if coco.is_coco(dataset) else set()


def _box_of(scored, i):
    box = scored.inputs.crops[i][2]
    if box is not None:
        return [float(t) for t in box]
    w, h = scored.size[i]
    return [0.0, 0.0, float(w), float(h)]


def _crops_by_input(scored):
    out = {}
    for i, (pos, _, _) in enumerate(scored.inputs.crops):
        out.setdefault(pos, []).append(i)
    return out


def _clipped(joints, size):
    w, h = size
    return np.stack([np.clip(joints[:, 0], 0, max(w - 1, 0)),
                     np.clip(joints[:, 1], 0, max(h - 1, 0))], -1)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula (`FORMULA_STARTS`)
    gets a leading ' (OWASP CSV injection advice), e.g. a file named `=1+2.jpg`."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def write_ranking_csv(scored, path):
    """ranking.csv (module doc): every crop, the ranked inputs first; `person_rank` when the
    ranking has one."""
    names = scored.skeleton.names
    by_input = _crops_by_input(scored)
    person_rank = scored.person_rank
    positions = list(scored.image_order) + [p for p in range(len(scored.inputs.names))
                                            if scored.image_rank[p] == 0]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([csv_text(t) for t in
                    ["rank", "input", "frame", "person", "input_score", "score"]
                    + (["person_rank"] if person_rank is not None else [])
                    + ["box_x0", "box_y0", "box_x1", "box_y1"]
                    + [f"{n}_{a}" for n in names for a in ("x", "y")]])
        for pos in positions:
            rank = int(scored.image_rank[pos])
            for i in by_input.get(int(pos), []):
                ok = bool(scored.ok[i])
                joints = scored.joints_px[i] if ok else np.full((len(names), 2), np.nan)
                own = ([int(person_rank[i]) or ""] if person_rank is not None else [])
                w.writerow([rank or "", csv_text(str(scored.inputs.names[pos])),
                            scored.inputs.frames[pos], scored.inputs.crops[i][1],
                            _num(scored.image_score[pos]), _num(scored.score[i])] + own
                           + [_num(v) for v in _box_of(scored, i)]
                           + [_num(v) for v in joints.reshape(-1)])


def _num(v):
    v = float(v)
    return "" if not np.isfinite(v) else f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.6e}"


def coco_dict(scored, top, category, images_root, info=None, absent=()) -> dict:
    """The top inputs' predicted poses as COCO keypoints (module doc); the joints in `absent`
    (indices) are written [0, 0, 0] and not counted in `num_keypoints`."""
    absent = set(absent)
    by_input = _crops_by_input(scored)
    images, anns = [], []
    for rank, pos in enumerate(top, 1):
        crops = [i for i in by_input[int(pos)] if scored.ok[i]]
        w, h = (int(t) for t in scored.size[crops[0]])
        images.append({"id": rank, "file_name": scored.inputs.names[pos], "width": w,
                       "height": h, "vl4pose_rank": rank,
                       "vl4pose_score": _float(scored.image_score[pos]),
                       **({"frame": scored.inputs.frames[pos]} if scored.inputs.kind == "video"
                          else {})})
        for i in crops:
            joints = _clipped(scored.joints_px[i], (w, h))
            kps = []
            for j, (x, y) in enumerate(joints.tolist()):
                kps += [0, 0, 0] if j in absent else [round(x, 2), round(y, 2), 2]
            x0, y0, x1, y1 = _box_of(scored, i)
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(w), x1), min(float(h), y1)
            anns.append({"id": len(anns) + 1, "image_id": rank,
                         "category_id": category.get("id", 1), "keypoints": kps,
                         "num_keypoints": sum(j not in absent for j in range(len(joints))),
                         "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                         "score": _float(scored.score[i])})
    return {"info": dict(info or {}, images_root=str(images_root)), "images": images,
            "annotations": anns, "categories": [category]}


def _float(v):
    v = float(v)
    return v if np.isfinite(v) else None


def labeling_config(names) -> str:
    """The Label Studio config (module doc): image, person box, keypoints with `model_index` in
    the skeleton's order, and the per-joint "occluded" choice."""
    labels = "\n".join(f'    <Label value={quoteattr(n)} model_index="{k}" '
                       f'background="{_COLOURS[k % len(_COLOURS)]}"/>'
                       for k, n in enumerate(names))
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
            f'  <RectangleLabels name="{BOX_NAME}" toName="{TO_NAME}" strokeWidth="2">\n'
            f'    <Label value="{BOX_LABEL}" background="#ffa500"/>\n  </RectangleLabels>\n'
            f'  <KeyPointLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2">\n'
            f"{labels}\n  </KeyPointLabels>\n"
            f'  <View visibleWhen="region-selected">\n'
            f'    <Header value="Selected joint"/>\n'
            f'    <Choices name="{VISIBILITY_NAME}" toName="{TO_NAME}" perRegion="true" '
            f'choice="single">\n      <Choice value="{OCCLUDED}"/>\n    </Choices>\n'
            f"  </View>\n</View>\n")


def label_studio_score(rank: int, count: int) -> float:
    """The prediction score of the input at `rank` (1-based) of `count`: in [0, 1), lowest for
    the most unusual, since Label Studio serves the lowest score first."""
    return (rank - 1) / max(count, 1)


def person_box(scored, i, size, pad=0.1, absent=()):
    """(x0, y0, x1, y1) px of crop `i`'s person: its given box, else the predicted keypoints'
    box (but the `absent` joints', unless all are) padded by `pad` x its longer side, clipped
    into the image."""
    w, h = size
    if scored.inputs.crops[i][2] is not None:
        x0, y0, x1, y1 = _box_of(scored, i)
    else:
        joints = _clipped(scored.joints_px[i], size)
        absent = set(absent)
        shown = [j for j in range(len(joints)) if j not in absent]
        joints = joints[shown] if shown else joints
        (x0, y0), (x1, y1) = joints.min(0), joints.max(0)
        m = pad * max(x1 - x0, y1 - y0, 1.0)
        x0, y0, x1, y1 = x0 - m, y0 - m, x1 + m, y1 + m
    return (max(0.0, float(x0)), max(0.0, float(y0)), min(float(w), float(x1)),
            min(float(h), float(y1)))


def local_files_prefix(images_root, document_root) -> str:
    """The local-files URL prefix of `images_root` below Label Studio's document root
    (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); OutputError when it is not below it."""
    root = pathlib.Path(document_root).resolve()
    images = pathlib.Path(images_root).resolve()
    if not root.is_dir():
        raise OutputError(f"--label_studio_root={document_root}: not a folder (give Label "
                          "Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
    if images == root or root not in images.parents:
        raise OutputError(f"--label_studio_root={document_root}: the images ({images}) are not "
                          "in a subfolder of it; Label Studio serves local files only from a "
                          "storage that is a subfolder of its document root")
    return LOCAL_FILES_PREFIX + quote(images.relative_to(root).as_posix() + "/")


def _region(rid, kind, name, size, value, parent=None):
    w, h = size
    return {"id": rid, **({"parentID": parent} if parent else {}), "from_name": name,
            "to_name": TO_NAME, "type": kind, "original_width": w, "original_height": h,
            "image_rotation": 0, "value": value}


def label_studio_tasks(scored, top, *, image_url_prefix=LOCAL_FILES_PREFIX,
                       model_version="vl4pose_jax", point_size=0.6, absent=()) -> list:
    """One task per input of `top` (module doc): data, a [0, 1] score, boxes and keypoints
    (none for the joints in `absent`, indices: the annotator adds them where seen)."""
    absent = set(absent)
    by_input = _crops_by_input(scored)
    names = scored.skeleton.names
    tasks = []
    for rank, pos in enumerate(top, 1):
        crops = [i for i in by_input[int(pos)] if scored.ok[i]]
        w, h = (int(t) for t in scored.size[crops[0]])
        result = []
        for i in crops:
            person = f"p{scored.inputs.crops[i][1]}"
            x0, y0, x1, y1 = person_box(scored, i, (w, h), absent=absent)
            result.append(_region(person, "rectanglelabels", BOX_NAME, (w, h), {
                "x": 100.0 * x0 / w, "y": 100.0 * y0 / h, "width": 100.0 * (x1 - x0) / w,
                "height": 100.0 * (y1 - y0) / h, "rotation": 0, "rectanglelabels": [BOX_LABEL]}))
            for j, (x, y) in enumerate(_clipped(scored.joints_px[i], (w, h)).tolist()):
                if j in absent:
                    continue
                result.append(_region(f"{person}_{j}", "keypointlabels", FROM_NAME, (w, h), {
                    "x": 100.0 * x / w, "y": 100.0 * y / h, "width": point_size,
                    "keypointlabels": [names[j]]}, parent=person))
        name = scored.inputs.names[pos]
        tasks.append({"data": {"image": image_url_prefix + quote(name), "file_name": name,
                               "rank": rank, "frame": scored.inputs.frames[pos],
                               "method": scored.method,
                               "method_score": _float(scored.image_score[pos])},
                      "predictions": [{"model_version": model_version,
                                       "score": label_studio_score(rank, len(top)),
                                       "result": result}]})
    return tasks


def draw_pose(image, joints, links, *, width=2):
    """Draw a skeleton on a PIL image (in place)."""
    from PIL import ImageDraw  # pylint: disable=import-outside-toplevel
    d = ImageDraw.Draw(image)
    for k, (p, c) in enumerate(links):
        (x0, y0), (x1, y1) = joints[p], joints[c]
        d.line([(x0, y0), (x1, y1)], fill=_COLOURS[k % len(_COLOURS)], width=width)
    r = max(1.5, width)
    for x, y in joints:
        d.ellipse([x - r, y - r, x + r, y + r], fill="white", outline="black")


def gallery(scored, top, images, path, *, tile=160, columns=6):
    """A grid of the top inputs with their predicted skeletons, captioned rank and score."""
    from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
    top = list(top)[:GALLERY_MAX]
    by_input = _crops_by_input(scored)
    columns = max(1, min(columns, len(top)))
    rows = -(-len(top) // columns)
    caption = 14
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, pos in enumerate(top):
        image = images[int(pos)].copy()
        w, h = image.size
        s = tile / max(w, h)
        line = max(1, round(2 / max(s, 1e-3) * 0.75))
        for i in by_input[int(pos)]:
            if scored.ok[i]:
                draw_pose(image, scored.joints_px[i], scored.skeleton.links, width=line)
        image = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
        x, y = (k % columns) * tile, (k // columns) * (tile + caption)
        sheet.paste(image, (x + (tile - image.size[0]) // 2,
                            y + caption + (tile - image.size[1]) // 2))
        score = scored.image_score[int(pos)]
        draw.text((x + 3, y + 1), f"#{k + 1}  {score:.1f}" if np.isfinite(score) else f"#{k + 1}",
                  fill="black")
    sheet.save(path, optimize=True)


@dataclasses.dataclass(frozen=True)
class Job:
    """What an annotation format writes: the ranking, the top inputs' positions (best first),
    the COCO `category`, the folder the images' `file_name`s are relative to, the URL prefix of
    the images for a web tool, `info` (run, method, round), and `absent`: the joints (indices)
    to write as absent, not as predicted (`absent_for`)."""
    scored: object
    top: list
    category: dict
    images_root: pathlib.Path
    image_url_prefix: str | None
    info: dict | None
    label_studio_root: str | None = None
    absent: frozenset = frozenset()


def write_coco(job: Job, folder: pathlib.Path):
    """top_k.coco.json: COCO keypoints pre-annotations of the top inputs."""
    (folder / "top_k.coco.json").write_text(json.dumps(
        coco_dict(job.scored, job.top, job.category, job.images_root, job.info, job.absent),
        allow_nan=False))


def write_label_studio(job: Job, folder: pathlib.Path):
    """label_studio/tasks.json and labeling_config.xml: Label Studio tasks with predictions."""
    (folder / "label_studio").mkdir()
    prefix = (local_files_prefix(job.images_root, job.label_studio_root)
              if job.label_studio_root is not None else job.image_url_prefix)
    (folder / "label_studio" / "tasks.json").write_text(json.dumps(label_studio_tasks(
        job.scored, job.top, image_url_prefix=LOCAL_FILES_PREFIX if prefix is None else prefix,
        model_version=f"vl4pose_jax {job.scored.method}", absent=job.absent), indent=1,
        allow_nan=False))
    (folder / "label_studio" / "labeling_config.xml").write_text(
        labeling_config(job.scored.skeleton.names))


def make_readable(out: pathlib.Path):
    """Folders 0o755 and files 0o644 under `out` (and `out`), whatever the umask or the
    temporary folder's 0o700: an annotation server running as another user reads them."""
    os.chmod(out, 0o755)
    for folder, dirs, files in os.walk(out):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o644)


# Annotation formats: name -> writer(job, folder); a new format is a function and one line.
FORMATS = {"coco": write_coco, "label_studio": write_label_studio}


def write(scored, out_dir, *, top_k: int, category: dict, overwrite: bool = False,
          image_url_prefix: str | None = None, info: dict | None = None,
          formats=None, label_studio_root=None, absent=(),
          extra_files: dict | None = None) -> pathlib.Path:
    """Write every output (module doc) into `out_dir`, atomically and readable by all: the
    ranking, the gallery, every annotation format of `formats` (names in `FORMATS`; default:
    all) with the joints of `absent` (indices; `absent_for`) as absent, and `extra_files`
    (name -> text, e.g. a marker). Label Studio's image URLs: `label_studio_root` (its
    document root; the images must be in a subfolder of it) or `image_url_prefix` (default
    `LOCAL_FILES_PREFIX`), not both."""
    if label_studio_root is not None and image_url_prefix is not None:
        raise OutputError(f"--label_studio_root={label_studio_root} and --image_url_prefix="
                          f"{image_url_prefix}: give one (the root makes the prefix)")
    unknown = sorted(set(formats or ()) - set(FORMATS))
    if unknown:
        raise OutputError(f"unknown annotation format(s) {', '.join(unknown)}; known: "
                          + ", ".join(FORMATS))
    from vl4pose_jax import rank  # pylint: disable=import-outside-toplevel
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise OutputError(f"{out_dir} exists and is not empty: choose another --out or pass "
                          "--overwrite")
    top = [int(p) for p in scored.image_order[:top_k]]
    if len(top) < top_k:
        raise OutputError(f"only {len(top)} inputs could be scored (the others were skipped as "
                          f"corrupt), fewer than --top_k={top_k}")
    images_root = (out_dir.resolve() / "frames" if scored.inputs.kind == "video"
                   else scored.inputs.root.resolve())
    if label_studio_root is not None:
        local_files_prefix(images_root, label_studio_root)  # refused before anything is written
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        write_ranking_csv(scored, tmp / "ranking.csv")
        if scored.inputs.kind == "video":
            for pos, image in rank.iter_images(scored.inputs, top):  # one at a time
                dst = tmp / "frames" / scored.inputs.names[pos]
                dst.parent.mkdir(parents=True, exist_ok=True)
                image.save(dst)
        job = Job(scored, top, category, images_root, image_url_prefix, info,
                  label_studio_root, frozenset(int(j) for j in absent))
        for name in formats if formats is not None else FORMATS:
            FORMATS[name](job, tmp)
        shown = top[:GALLERY_MAX]
        gallery(scored, shown, dict(rank.iter_images(scored.inputs, shown)), tmp / "gallery.png")
        if scored.skipped:
            (tmp / "skipped.txt").write_text("\n".join(scored.skipped) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        make_readable(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
