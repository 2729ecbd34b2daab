"""Ranking new, unlabelled images or video frames with a trained run (the real AL loop).

    trained = workdir.load_trained(path)                        # the one loader
    inputs = rank.open_inputs("new_images/")                    # or a video, stride=10
    result = rank.score(trained, inputs, top_k=20)              # streamed, every local device
    result.order, result.image_rank, result.joints_px, ...

Inputs: a folder of images (searched recursively, natural order; file names relative to it) or
a video file decoded with PyAV (every `stride`-th frame, named `<video stem>/frame_NNNNNN.png`).
Each input is one person crop, unless a COCO file of person boxes (`boxes=`) lists the people of
each input by `file_name` (then one crop per box). A crop is the square of 1.75 x the box's
longer side (as the COCO datasets' crops), or the whole image (side = its longer side) without
boxes. Images are read and cropped a batch at a time (a thread pool decodes), so memory stays
flat whatever the number of inputs; only per-crop scores and keypoints are kept.

Scores are the acquisition method's own (`acquisition.select` on a pool of every crop; VL4Pose:
the negative log-likelihood of the predicted pose under the skeleton model, higher = more
unusual, computed in the same pass as the keypoints). Crops (people) are ranked by the method's
selection order for the first `top_k` crops, then by score (`Scored.order`, `person_rank`). An
input's score is the mean of its crops' scores, so an image of many people is ranked by its
typical person, not given one chance at the top per person; inputs are ranked by the method's
selection order, then by that score (highest first), so a geometric method (Core-Set) keeps
its greedy order. With person boxes, an input the boxes file does not list is one whole-image
crop (said in the output); one listed with no box is not scored. Without boxes an image of
several people is one whole-image crop whose pose straddles them: give boxes for such images.
Predicted keypoints are mapped from heatmap cells back to the original image's pixels through
the crop. Images are taken upright (EXIF orientation applied, `formats.upright`): sizes, boxes and
keypoints are those of the picture as viewers and annotation tools show it.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import pathlib
import re
from typing import Sequence

import jax
import numpy as np
from tqdm import tqdm

from vl4pose_jax import acquisition, data
from vl4pose_jax import heatmaps as hm
from vl4pose_jax.protocol import HUMAN_PRESETS
from vl4pose_jax.data import builders, coco, formats, transforms

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class InputError(ValueError):
    """Unusable input (names the file and what is wrong)."""


def _natural(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclasses.dataclass
class Inputs:
    """What to score. `names`: one per input (an image file relative to `root`, or a video frame
    name); `frames`: the frame number per input (-1 for images); `crops`: (input position,
    person, box (4,) or None) per crop. With person boxes: `whole_image` the inputs the boxes
    file does not list (one whole-image crop each), `no_person` those it lists without a box
    (no crop: not scored)."""
    kind: str                   # "images" or "video"
    root: pathlib.Path          # the folder (images) or the video file
    names: list
    frames: list
    crops: list
    stride: int = 1
    whole_image: list = dataclasses.field(default_factory=list)
    no_person: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.crops)

    @property
    def scorable(self) -> int:
        """How many inputs have at least one crop (at most this many can be ranked)."""
        return len({c[0] for c in self.crops})

    def describe(self) -> list:
        """Lines saying which inputs the boxes did not cover (empty without boxes)."""
        lines = []
        if self.whole_image:
            lines.append(f"{len(self.whole_image)} input(s) not in the boxes file scored as one "
                         "whole-image crop each (a whole image with several people is one crop "
                         f"straddling them), e.g. {self.names[self.whole_image[0]]}")
        if self.no_person:
            lines.append(f"{len(self.no_person)} input(s) listed in the boxes file with no box "
                         f"(no person) not scored, e.g. {self.names[self.no_person[0]]}")
        return lines


def _frame_name(video: pathlib.Path, frame: int) -> str:
    return f"{video.stem}/frame_{frame:06d}.png"


def count_video_frames(path: pathlib.Path) -> int:
    import av  # pylint: disable=import-outside-toplevel
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.error.FFmpegError, IndexError, OSError) as err:
        raise InputError(f"{path}: cannot read as a video ({err})") from None


def open_inputs(path, *, stride: int = 1, boxes=None) -> Inputs:
    """The inputs under `path` (a folder of images or a video file), with optional person
    boxes from a COCO file (`boxes`)."""
    path = pathlib.Path(path)
    if stride < 1:
        raise InputError(f"--stride must be >= 1, got {stride}")
    if path.is_dir():
        names = sorted((p.relative_to(path).as_posix() for p in path.rglob("*")
                        if p.suffix.lower() in IMAGE_EXTS and p.is_file()), key=_natural)
        if not names:
            raise InputError(f"{path}: no image files ({', '.join(IMAGE_EXTS)}) in this folder")
        kind, frames = "images", [-1] * len(names)
    elif path.is_file() and path.suffix.lower() in VIDEO_EXTS:
        total = count_video_frames(path)
        if total == 0:
            raise InputError(f"{path}: the video has no frames")
        frames = list(range(0, total, stride))
        names = [_frame_name(path, f) for f in frames]
        kind = "video"
    elif path.is_file():
        raise InputError(f"{path}: neither a folder of images nor a video ({', '.join(VIDEO_EXTS)})")
    else:
        raise InputError(f"{path}: not found")
    crops = [(i, 0, None) for i in range(len(names))]
    whole, empty = [], []
    if boxes is not None:
        crops, whole, empty = _crops_from_boxes(boxes, names)
    return Inputs(kind, path, names, frames, crops, stride, whole, empty)


def same_files(inputs: Inputs, known) -> dict:
    """{input position: known file} for the image inputs whose bytes equal a file of `known`
    (paths; e.g. the images of a labelled dataset). Only files of equal size are hashed."""
    import hashlib  # pylint: disable=import-outside-toplevel
    if inputs.kind != "images":
        return {}
    by_size: dict = {}
    for path in known:
        by_size.setdefault(pathlib.Path(path).stat().st_size, []).append(pathlib.Path(path))

    def digest(path):
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha1").hexdigest()

    hashes: dict = {}
    out = {}
    for pos, name in enumerate(inputs.names):
        path = inputs.root / name
        candidates = by_size.get(path.stat().st_size, [])
        if not candidates:
            continue
        for c in candidates:
            if c not in hashes:
                hashes[c] = digest(c)
        mine = digest(path)
        match = next((c for c in candidates if hashes[c] == mine), None)
        if match is not None:
            out[pos] = match
    return out


def without(inputs: Inputs, positions) -> Inputs:
    """`inputs` less the inputs at `positions` (their crops too; the rest renumbered)."""
    drop = set(int(p) for p in positions)
    keep = [p for p in range(len(inputs.names)) if p not in drop]
    new = {p: i for i, p in enumerate(keep)}
    return dataclasses.replace(
        inputs, names=[inputs.names[p] for p in keep], frames=[inputs.frames[p] for p in keep],
        crops=[(new[p], k, b) for p, k, b in inputs.crops if p in new],
        whole_image=[new[p] for p in inputs.whole_image if p in new],
        no_person=[new[p] for p in inputs.no_person if p in new])


def _crops_from_boxes(boxes_path, names):
    """(crops, inputs the file does not list: one whole-image crop each, inputs it lists with
    no box: none)."""
    boxes_path = pathlib.Path(boxes_path)
    raw = coco.read_coco_boxes(boxes_path)
    position = {n: i for i, n in enumerate(names)}
    crops, missing = [], []
    for file_name, people in raw.items():
        if file_name not in position:
            missing.append(file_name)
            continue
        for k, box in enumerate(people):
            crops.append((position[file_name], k, np.asarray(box, np.float32)))
    if missing:
        raise InputError(f"{boxes_path}: field `images[].file_name`: {len(missing)} file(s) not "
                         f"among the inputs, e.g. {missing[:3]}")
    whole = [i for i, n in enumerate(names) if n not in raw]
    empty = [position[n] for n in raw if not raw[n]]
    crops += [(i, 0, None) for i in whole]
    if not crops:
        raise InputError(f"{boxes_path}: field `annotations[].bbox`: no person box, and every "
                         "input is listed: nothing to score")
    crops.sort(key=lambda c: (c[0], c[1]))
    return crops, whole, sorted(empty)


class _Reader:
    """Encoded bytes of input i, read in increasing order (video: one sequential decode)."""

    def __init__(self, inputs: Inputs):
        self.inputs = inputs
        self._video = None
        self._next = 0
        self._last = (None, None)

    def __call__(self, i: int) -> bytes:
        if self.inputs.kind == "images":
            path = self.inputs.root / self.inputs.names[i]
            try:
                return path.read_bytes()
            except OSError as err:
                raise InputError(f"{path}: cannot read ({err})") from None
        if self._last[0] == i:
            return self._last[1]
        want = self.inputs.frames[i]
        if self._video is None or want < self._next:
            self._video = iter_frames(self.inputs.root)
            self._next = 0
        for frame_no, image in self._video:
            self._next = frame_no + 1
            if frame_no == want:
                buf = io.BytesIO()
                image.save(buf, format="BMP")
                self._last = (i, buf.getvalue())
                return self._last[1]
        raise InputError(f"{self.inputs.root}: frame {want} could not be decoded (the video "
                         "ends early or is corrupt)")


def iter_frames(path):
    """(frame number, PIL RGB image) for every frame of a video (PyAV)."""
    import av  # pylint: disable=import-outside-toplevel
    n = -1
    try:
        with av.open(str(path)) as container:
            for n, frame in enumerate(container.decode(video=0)):
                yield n, frame.to_image().convert("RGB")
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: video decoding failed at frame {n + 1} (counting from 0; "
                         f"frames 0..{n} decoded): {err}") from None


def _whole_image_crop(width, height):
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0, float(max(width, height))])


LARGE_PIXELS = 4096 * 4096   # larger inputs are reduced once, by a whole factor, after checking


def _prepare(args):
    """(example for human_transform, (width, height), crop (3,) in original pixels) or an
    exception. An image above `LARGE_PIXELS` is decoded once and reduced by a whole factor r
    (pixel p' covers original pixels [r p', r p' + r)) before cropping, so a 12,000 x 12,000
    PNG costs one decoded copy, not several; the crop is mapped into the reduced image."""
    data_bytes, box, index, skeleton, image_size, name = args
    from PIL import Image  # pylint: disable=import-outside-toplevel
    reduce = 1
    try:
        with Image.open(io.BytesIO(data_bytes)) as im:
            width, height = formats.oriented_size(im)   # as shown upright (EXIF)
            im.load()  # a truncated or corrupt file fails here, not in the crop
            if width * height > LARGE_PIXELS:
                reduce = int(np.ceil(np.sqrt(width * height / LARGE_PIXELS)))
                rgb = formats.upright(im)
                rgb = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
                buf = io.BytesIO()
                rgb.reduce(reduce).save(buf, format="BMP")
                data_bytes = buf.getvalue()
    except Exception as err:  # pylint: disable=broad-except
        return builders.CorruptImageError(f"corrupt or unreadable image {name}: {err}")
    if box is None:
        crop = _whole_image_crop(width, height)
    else:
        center, side = transforms.example_crop({"box": box}, transforms.EVAL_CROP_SCALE)
        crop = np.array([center[0], center[1], side])
    seen = np.array([(crop[0] - (reduce - 1) / 2) / reduce, (crop[1] - (reduce - 1) / 2) / reduce,
                     crop[2] / reduce])
    j = skeleton.num_joints
    example = {"image": data_bytes, "joints": np.zeros((j, 2), np.float32),
               "visibility": np.full((j,), -1, np.int8), "normalizer": np.float32(np.nan),
               "crop": seen, "id": name, "index": index}
    out = transforms.human_transform(example, None, train=False, image_size=image_size,
                                     skeleton=skeleton)
    return out, (width, height), crop


def check_top_k(inputs: Inputs, top_k: int, where: str = "the input"):
    """InputError (before any work) unless 1 <= `top_k` <= the inputs that have a crop."""
    kind = "frames" if inputs.kind == "video" else "images"
    if not 1 <= top_k <= inputs.scorable:
        raise InputError(
            f"--top_k={top_k} but {where} holds {len(inputs.names)} {kind}"
            + (f" (stride {inputs.stride})" if inputs.kind == "video" else "")
            + (f", of which {len(inputs.no_person)} have no person box and are not scored"
               if inputs.no_person else "")
            + f": choose 1..{inputs.scorable}")


def check_method(method: str, run_method: str):
    """The acquisition method `method` if it can score new images with a run trained by
    `run_method` (known, human pose, its auxiliary head the run's), else InputError naming
    the choices; needs no model, so a command checks it before loading one."""
    if method not in acquisition.names():
        raise InputError(f"--method={method}: unknown; known: {', '.join(acquisition.names())}")
    m = acquisition.get(method)
    if "heatmap" not in m.tasks:
        raise InputError(f"--method={method} does not score human poses (heatmaps)")
    head, run_head = m.aux_head("heatmap"), acquisition.get(run_method).aux_head("heatmap")
    if head is not None and head != run_head:
        raise InputError(f"method {method!r} needs the auxiliary head {head!r}, but the run "
                         f"in the workdir trained {run_method!r} ({run_head!r}); score with "
                         f"--method={run_method} or train a {method} run")
    return m


@dataclasses.dataclass
class Scored:
    """Per crop (N): `score`, `joints_px` (N, J, 2) in original pixels, `size` (N, 2) image
    width/height, `crop` (N, 3) centre x, y and side, `ok` (N,) False for skipped corrupt
    inputs; per input (M): `image_score`, `image_order` (input positions, best first),
    `image_rank` (M,) 1-based, 0 for skipped; `order` crop positions in ranking order,
    `person_rank` (N,) each crop's (person's) 1-based place in it, 0 for skipped. An input's
    score is the mean of its crops' (`_image_ranking`)."""
    inputs: Inputs
    skeleton: object
    method: str
    score: np.ndarray
    joints_px: np.ndarray
    size: np.ndarray
    crop: np.ndarray
    ok: np.ndarray
    order: np.ndarray
    image_score: np.ndarray
    image_order: np.ndarray
    image_rank: np.ndarray
    skipped: list
    person_rank: np.ndarray = None


def score(trained, inputs: Inputs, *, top_k: int, method: str | None = None,
          batch_size: int = 32, workers: int | None = None, skip_corrupt: bool = False,
          progress: bool = True, method_options: dict | None = None) -> Scored:
    """Score every crop of `inputs` with `trained` (`workdir.load_trained`) and rank them."""
    config = trained.config
    method = method or trained.method
    if config.task != "heatmap":
        raise InputError("scoring new images needs a human-pose (heatmap) run; "
                         f"{config.dataset!r} is a hand dataset")
    check_top_k(inputs, top_k)
    m = check_method(method, trained.method)
    head = m.aux_head("heatmap")
    if head is not None and (trained.nets.aux is None or trained.nets.aux.head != head):
        raise InputError(f"method {method!r} needs the auxiliary head {head!r}, but the run "
                         f"in the workdir trained {trained.method!r} "
                         f"({getattr(trained.nets.aux, 'head', None)!r}); score with "
                         f"--method={trained.method} or train a {method} run")
    skeleton = data.spec(config.dataset, data_dir=config.data_dir).skeleton
    preset = HUMAN_PRESETS[config.preset]
    size, stride = preset.input_size, preset.input_size / preset.heatmap_size
    n = len(inputs.crops)
    sizes = np.zeros((n, 2), np.int64)
    crops = np.zeros((n, 3), np.float64)
    ok = np.ones((n,), bool)
    skipped = []
    reader = _Reader(inputs)
    pool = concurrent.futures.ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1))

    def batches(indices):
        indices = np.asarray(indices, np.int64)
        bar = tqdm(total=len(indices), unit="crop", desc=f"scoring ({method})",
                   disable=not progress, leave=False)
        for start in range(0, len(indices), batch_size):
            bar.update(min(batch_size, len(indices) - start))
            idx = indices[start:start + batch_size]
            args = []
            for i in idx:
                pos, _, box = inputs.crops[int(i)]
                args.append((reader(pos), box, int(i), skeleton, size, _describe(inputs, pos)))
            results = list(pool.map(_prepare, args))
            images = []
            for i, res in zip(idx, results):
                if isinstance(res, Exception):
                    if not skip_corrupt:
                        raise res
                    ok[i] = False
                    skipped.append(str(res))
                    images.append(np.zeros((size, size, 3), np.float32))
                    continue
                out, wh, crop = res
                sizes[i], crops[i] = wh, crop
                images.append(out["image"])
            yield {"image": np.stack(images), "index": idx}
        bar.close()

    ctx = acquisition.Context(
        task="heatmap", model=trained.nets.model, aux=trained.nets.aux, state=trained.state,
        batches=batches, labelled=np.zeros((0,), np.int64), pool=np.arange(n, dtype=np.int64),
        budget=min(top_k, n), key=jax.random.key(0), skeleton=skeleton, progress=False)
    try:
        if m.rank_new is not None:   # scores and keypoints in one pass, ranked by score
            idx, scores, cells = m.rank_new(ctx, **(method_options or {}))
            sel_order = np.asarray([], np.int64)
        else:
            sel = acquisition.select(method, ctx, **(method_options or {}))
            sel_order = np.asarray(sel.indices, np.int64)
            scores = np.full((n,), np.nan)
            if sel.scores is not None:
                scores[np.asarray(sel.scored_indices, np.int64)] = np.asarray(sel.scores)
            idx, out = acquisition.common.stream_outputs(
                ctx, ctx.pool, ("heatmaps_BxHxWxJ",),
                post=lambda o: {"joints": hm.decode(o["heatmaps_BxHxWxJ"])[0]},
                post_key=("decode",), desc="keypoints")
            cells = out["joints"]
    finally:
        pool.shutdown(wait=False)
    idx = np.asarray(idx, np.int64)
    full_cells = np.zeros((n, skeleton.num_joints, 2), np.float64)
    full_cells[idx] = cells
    if m.rank_new is not None:
        full = np.full((n,), np.nan)
        full[idx] = scores
        scores = full
    scores = np.where(ok, scores, np.nan)
    q = (full_cells + 0.5) * stride - 0.5                    # crop pixels
    f = size / np.where(crops[:, 2] > 0, crops[:, 2], 1.0)  # crop px per image px
    mid = (size - 1) / 2.0
    joints_px = (q - mid) / f[:, None, None] + crops[:, None, :2]
    order = _crop_order(scores, sel_order, ok)
    image_order, image_score, image_rank = _image_ranking(
        inputs, order, scores, ok, selected=int(sum(bool(ok[i]) for i in sel_order)))
    person_rank = np.zeros((n,), np.int64)
    person_rank[order] = np.arange(1, len(order) + 1)
    return Scored(inputs, skeleton, method, scores, joints_px, sizes, crops, ok, order,
                  image_score, image_order, image_rank, skipped, person_rank)


def _describe(inputs: Inputs, pos: int) -> str:
    if inputs.kind == "images":
        return str(inputs.root / inputs.names[pos])
    return f"{inputs.root} frame {inputs.frames[pos]}"


def _crop_order(scores, sel_order, ok) -> np.ndarray:
    """Selection order first, then by score (highest first, NaN last, ties by position)."""
    n = len(scores)
    first = [int(i) for i in sel_order if ok[i]]
    rest = np.setdiff1d(np.arange(n), np.asarray(first, np.int64))
    key = np.where(np.isnan(scores[rest]), np.inf, -scores[rest])
    rest = rest[np.lexsort((rest, key))]
    rest = rest[ok[rest]]
    return np.concatenate([np.asarray(first, np.int64), rest]).astype(np.int64)


def _image_ranking(inputs: Inputs, order, scores, ok, selected: int = 0):
    """(image_order, image_score, image_rank). An input's score is the MEAN of its scored
    crops (people), so an image of many people ranks by its typical person: a crowd does not
    get one chance at the top per person, as the maximum would give it. Inputs reached by the
    method's own selection (the first `selected` crops of `order`, e.g. Core-Set's greedy
    picks) come first, in that order; the others follow by score, highest first (NaN last,
    ties by position). Inputs without a scored crop get rank 0."""
    m = len(inputs.names)
    total, count = np.zeros((m,)), np.zeros((m,))
    for i, (pos, _, _) in enumerate(inputs.crops):
        if ok[i] and not np.isnan(scores[i]):
            total[pos] += scores[i]
            count[pos] += 1
    image_score = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    seen, image_order = set(), []
    for i in order[:selected]:
        pos = inputs.crops[int(i)][0]
        if pos not in seen:
            seen.add(pos)
            image_order.append(pos)
    rest = sorted({inputs.crops[int(i)][0] for i in order[selected:]} - seen,
                  key=lambda p: (np.isnan(image_score[p]),
                                 -image_score[p] if not np.isnan(image_score[p]) else 0.0, p))
    image_order = np.asarray(image_order + rest, np.int64)
    image_rank = np.zeros((m,), np.int64)
    image_rank[image_order] = np.arange(1, len(image_order) + 1)
    return image_order, image_score, image_rank


def iter_images(inputs: Inputs, positions: Sequence[int]):
    """(position, PIL RGB image) of the given inputs, one at a time (a video is decoded once,
    up to the last wanted frame; frames come in frame order)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    wanted = [int(p) for p in positions]
    if not wanted:
        return
    if inputs.kind == "images":
        for p in wanted:
            with Image.open(inputs.root / inputs.names[p]) as im:
                yield p, formats.upright(im).convert("RGB")
        return
    frame_to_pos = {inputs.frames[p]: p for p in wanted}
    last = max(frame_to_pos)
    for frame_no, image in iter_frames(inputs.root):
        if frame_no in frame_to_pos:
            yield frame_to_pos[frame_no], image
        if frame_no >= last:
            break
