"""The COCO commands: `prepare` builds a COCO dataset, `merge` adds annotated labels and rebuilds.

    commands.prepare("DIR", data_dir=...)      # what `prepare --dataset=coco_keypoints` runs
    commands.merge("DIR", "annotated.json", images="NEW", data_dir=...)   # `data.coco merge`

`prepare` reads the category from `DIR/train.json`, decides the tree (`files.tree_links`), writes
`coco_meta.json` and builds the dataset through `builders.build`; `merge` appends an annotated
file's new images to `train.json` (ids stay stable; see the `vl4pose_jax.data.coco` guide) and
builds the dataset again.

Both are transactions on `DIR`, holding its lock (`DIR/.dataset.lock`, a `locking.FolderLock`,
the kind a workdir has: a second merge or prepare is refused naming the holder). Every input is
checked before anything is written (the files, the ids, every new image decoded, keypoints
finite). A rebuild is staged beside the old files: the new `train.json` and the image links in
`DIR/.merge-staging/`, the new dataset in `DATA/.<name>.staging/`, new images copied into
`DIR/images/` under a temporary name and renamed; only when both are complete does the journal
`DIR/.merge-journal.json` say "switching", and the old dataset, its `coco_meta.json` and
`train.json` are replaced (the old `train.json` kept as `train.<date>.json`). A merge or prepare
started after a kill first reads the journal (`recover`): before "switching" it rolls back
(removes the staged files and the images it copied), after it finishes the switch. So
`train.json` and the built dataset always agree once a command has run.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import sys
import time

import numpy as np

from vl4pose_jax import locking, skeletons
from vl4pose_jax.data import base, builders
from vl4pose_jax.data.coco.dataset import (DOWNLOAD, NAME, SPLIT_FILES, SPLITS, meta_path,
                                           read_meta, spec)
from vl4pose_jax.data.coco.files import (CocoError, dump_json, field_error, flip_pairs, inside,
                                         mean_distances, never_labelled, read_coco, tree_links)

LOCK = "dataset"                   # DIR/.dataset.lock
JOURNAL = ".merge-journal.json"    # DIR/.merge-journal.json
STAGING = ".merge-staging"         # DIR/.merge-staging/: the next train.json, links to the rest


STOP_AT_ENV = "VL4POSE_TEST_STOP_AT"   # tests: hold the process at a stage, to kill it there


def _stop_at(stage: str):
    """Tests (real kills at exact points): with $VL4POSE_TEST_STOP_AT = `stage` ('copy': half
    an image copied; 'staged': everything staged, not switched; 'switch': the dataset switched,
    train.json not yet), say so on stderr and wait to be killed."""
    if os.environ.get(STOP_AT_ENV) == stage:
        print(f"stopped at {stage}", file=sys.stderr, flush=True)
        time.sleep(3600)


# ----------------------------------------------------------------------- lock and journal

@contextlib.contextmanager
def locked(manual: pathlib.Path, *, read_only_ok: bool = False):
    """Hold `manual`'s lock; CocoError (one paragraph) when another process holds it. With
    `read_only_ok`, a folder that cannot be written is used unlocked (nothing can merge into it)."""
    try:
        lock = locking.FolderLock(manual, LOCK).acquire()
    except locking.LockedError as err:
        raise CocoError(f"{err}. A merge or prepare is already working on {manual}; two at once "
                        "would lose labels: wait for it to finish (or stop it), then rerun.") from None
    except locking.LockIOError as err:
        if read_only_ok and manual.is_dir():
            yield None
            return
        raise CocoError(f"{err.strerror}: merging needs a writable dataset folder "
                        f"({manual}).") from None
    try:
        yield lock
    finally:
        lock.release()


def _write_journal(manual: pathlib.Path, journal: dict):
    path = manual / JOURNAL
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(dump_json(journal, indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _staging_data(data_dir, name: str) -> pathlib.Path:
    return pathlib.Path(data_dir or base.default_data_dir()) / f".{name}.staging"


def recover(manual, *, log_fn=print) -> str | None:
    """Finish or roll back a merge or rebuild that was killed in `manual` (call it holding the
    lock): 'rolled back', 'finished', or None when there was nothing to do. Staged leftovers
    without a journal (a kill before it was written) are removed."""
    manual = pathlib.Path(manual)
    path = manual / JOURNAL
    if not path.is_file():
        shutil.rmtree(manual / STAGING, ignore_errors=True)
        return None
    try:
        journal = json.loads(path.read_text())
    except ValueError:   # a journal is written whole (renamed into place): cannot happen
        raise CocoError(f"{path} is unreadable: delete it and {manual / STAGING}, then prepare "
                        "the dataset again with --overwrite.") from None
    what = f"the {journal.get('what', 'merge')} started {journal.get('started')}"
    if journal["state"] == "switching":
        _switch(manual, journal)
        log_fn(f"finished {what} (it was interrupted while switching to the new files)")
        outcome = "finished"
    else:
        gone = _roll_back(manual, journal)
        log_fn(f"rolled back {what}: it was interrupted before switching; train.json and the "
               f"dataset are as they were" + (f" ({gone} copied image(s) removed)" if gone else ""))
        outcome = "rolled back"
    path.unlink()
    return outcome


def _roll_back(manual: pathlib.Path, journal: dict) -> int:
    gone = 0
    for name in journal.get("created_images", []):
        dst = manual / "images" / name
        for p in (dst, _tmp_copy(dst)):
            if p.is_file() or p.is_symlink():
                p.unlink()
                gone += p == dst
    shutil.rmtree(manual / STAGING, ignore_errors=True)
    shutil.rmtree(journal["staging_data"], ignore_errors=True)
    return gone


def _switch(manual: pathlib.Path, journal: dict):
    """Replace the dataset, its meta and train.json by the staged ones; every step is
    idempotent, so a switch killed half-way is finished by running it again."""
    name, version = journal["name"], journal["version"]
    staged_root = pathlib.Path(journal["staging_data"]) / name
    target_root = pathlib.Path(journal["data_dir"]) / name
    if journal.get("rebuild", True):
        staged, target = staged_root / version, target_root / version
        old = target_root / f".replaced-{version}"
        target_root.mkdir(parents=True, exist_ok=True)
        if staged.is_dir():
            if target.exists() and not old.exists():
                os.replace(target, old)
            elif target.exists():   # the old copy is already aside: this one is a leftover
                shutil.rmtree(target)
            os.replace(staged, target)
        if (staged_root / "coco_meta.json").is_file():
            os.replace(staged_root / "coco_meta.json", target_root / "coco_meta.json")
        shutil.rmtree(old, ignore_errors=True)
        _stop_at("switch")
    new_train = manual / STAGING / "train.json"
    if new_train.is_file():
        train = manual / "train.json"
        backup = manual / f"train.{journal['stamp']}.json"
        if train.is_file() and not backup.exists():
            shutil.copyfile(train, backup)
        os.replace(new_train, train)
    shutil.rmtree(manual / STAGING, ignore_errors=True)
    shutil.rmtree(journal["staging_data"], ignore_errors=True)


def _tmp_copy(dst: pathlib.Path) -> pathlib.Path:
    return dst.with_name(f".{dst.name}.merge-tmp")


def _copy_atomic(src: pathlib.Path, dst: pathlib.Path):
    """Copy `src` to `dst` through a temporary name, so a kill never leaves a truncated `dst`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_copy(dst)
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        data = fin.read()
        fout.write(data[:len(data) // 2])
        fout.flush()
        _stop_at("copy")
        fout.write(data[len(data) // 2:])
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)


# ----------------------------------------------------------------------------- prepare

def plan_meta(manual: pathlib.Path, *, old=None, root=None, links=None, category=None,
              name: str = NAME, retree: bool = False) -> dict:
    """`coco_meta.json` for `manual`'s files (every file checked): joints, tree, flip pairs,
    splits, and the joints no train.json person labels (`never_labelled`: kept out of the
    tree's spine, see `files.tree_links`; exported as absent). A rebuild (`old` meta, same
    joints and skeleton, no `root` / `links`) keeps the tree exactly: link k stays link k, so
    a model fine-tuned from the previous weights reads its auxiliary outputs the same way;
    with `retree` (prepare --overwrite) a tree decided before never-labelled joints were
    known is decided again."""
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
                raise field_error(manual / file, "categories[].keypoints", f"{list(other.names)} "
                                  f"differ from train.json's {list(coco.names)}")
    never = never_labelled(coco.people, len(coco.names))
    if (old and old["names"] == list(coco.names) and root is None and links is None
            and old.get("category", {}).get("skeleton") == coco.category.get("skeleton")
            and not (retree and "never_labelled" not in old)):
        tree, flips, how = old["links"], old["flip_pairs"], old["tree"]
    else:
        tree, _, how, _ = tree_links(coco.names, coco.skeleton_pairs, root=root, links=links,
                                     unlabelled=never,
                                     distances=mean_distances(coco.people, len(coco.names)))
        flips = flip_pairs(coco.names)
    skeleton = skeletons.Skeleton(coco.names, tuple(map(tuple, tree)), tuple(map(tuple, flips)),
                                  name=name)
    return dict(names=list(coco.names), links=[list(t) for t in skeleton.links],
                flip_pairs=[list(t) for t in skeleton.flip_pairs], tree=how,
                category={k: coco.category[k] for k in ("id", "name", "supercategory",
                                                        "keypoints", "skeleton")
                          if k in coco.category},
                flips_named=[[coco.names[a], coco.names[b]] for a, b in skeleton.flip_pairs],
                splits=[s for s, f in SPLIT_FILES.items() if (manual / f).is_file()],
                never_labelled=[coco.names[j] for j in never],
                manual_dir=str(manual.resolve()))


def _build_staged(meta: dict, files: pathlib.Path, staging_data: pathlib.Path, *,
                  skip_corrupt: bool, name: str):
    """Build the dataset of `files` (a manual folder) with `meta` into `staging_data`; the
    meta written there records its splits. Returns the builder."""
    shutil.rmtree(staging_data, ignore_errors=True)
    path = meta_path(staging_data, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_json(meta, indent=1))
    builder = builders.build(name, manual_dir=files, data_dir=staging_data,
                             skip_corrupt=skip_corrupt)
    meta = dict(meta, splits=[s for s in SPLITS if s in builder.info.splits])
    path.write_text(dump_json(meta, indent=1))
    return builder


SKIP_REASONS = {"crowd": "crowd (iscrowd = 1)", "no_keypoints": "with no labelled keypoint",
                "other_category": "of another category", "duplicates": "exact copies"}


def _skipped_line(counts: dict, examples, lead: str) -> list:
    """[`lead` + each reason's count and its first example], or [] when nothing was skipped."""
    said = [f"{v} {SKIP_REASONS.get(k, k.replace('_', ' '))}"
            + (f" (e.g. {examples[k]})" if examples and k in examples else "")
            for k, v in counts.items() if v and k in SKIP_REASONS]
    return [lead + ", ".join(said)] if said else []


def _report_line(report: dict, name: str) -> str:
    """What the build masked, replaced and skipped, in one line (empty when nothing)."""
    parts = []
    if report.get("masked_joints"):
        parts.append(f"{report['masked_joints']} labelled joint(s) masked (NaN/Inf or more than "
                     "one image size outside the image)")
    if report.get("absurd_boxes"):
        parts.append(f"{report['absurd_boxes']} bbox(es) larger than the image or far outside "
                     "it replaced by the box of the valid joints")
    if report.get("dropped_no_joints"):
        parts.append(f"{report['dropped_no_joints']} person(s) with no valid joint left out")
    for split, counts in (report.get("skipped_annotations") or {}).items():
        parts.extend(_skipped_line(counts, (report.get("skipped_examples") or {}).get(split),
                                   f"{split}: annotations skipped: "))
    if report.get("corrupt"):
        parts.append(f"{len(report['corrupt'])} corrupt image(s) skipped")
    return f"{name}: " + "; ".join(parts) if parts else ""


def _build_and_switch(manual: pathlib.Path, meta: dict, *, data_dir, skip_corrupt: bool,
                      name: str, log_fn, what: str, created_images=(), new_train=None,
                      rebuild: bool = True, journal_in_manual: bool = True):
    """The transaction: stage the new train.json (`new_train`, a dict) and the new dataset
    beside the old ones, then switch (module doc). `created_images`: images copied by the
    caller under the journal (rolled back with it). Without `journal_in_manual` (a read-only
    DIR: only the dataset changes) no journal is kept: a kill leaves at worst no dataset, which
    the next prepare builds. Returns the staged builder (or None)."""
    data_dir = pathlib.Path(data_dir or base.default_data_dir())
    staging_data = _staging_data(data_dir, name)
    version = str(builders.get_builder(name, data_dir=data_dir).version)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):   # two merges in one second keep two backups
        if not (manual / f"train.{stamp}.json").exists():
            break
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{k}"
    journal = dict(what=what, state="staging", name=name, version=version,
                   data_dir=str(data_dir.resolve()), staging_data=str(staging_data.resolve()),
                   created_images=list(created_images), rebuild=rebuild, stamp=stamp,
                   started=datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds"))
    write = _write_journal if journal_in_manual else (lambda *a: None)
    write(manual, journal)
    staged_files = manual
    if new_train is not None:
        staged_files = manual / STAGING
        shutil.rmtree(staged_files, ignore_errors=True)
        staged_files.mkdir()
        tmp = staged_files / "train.json.tmp"
        tmp.write_text(dump_json(new_train))
        os.replace(tmp, staged_files / "train.json")
        os.symlink(os.path.join("..", "images"), staged_files / "images")
        for split, file in SPLIT_FILES.items():
            if split != "train" and (manual / file).is_file():
                os.symlink(os.path.join("..", file), staged_files / file)
    builder = None
    if rebuild:
        try:
            builder = _build_staged(meta, staged_files, staging_data, skip_corrupt=skip_corrupt,
                                    name=name)
        except BaseException:
            _roll_back(manual, journal)
            if journal_in_manual:
                (manual / JOURNAL).unlink()
            raise
    _stop_at("staged")
    journal["state"] = "switching"
    write(manual, journal)
    _switch(manual, journal)
    if journal_in_manual:
        (manual / JOURNAL).unlink()
    if builder is not None:
        spec(name, data_dir)  # this process now means this dataset by `name`
        builder = builders.get_builder(name, data_dir=data_dir)
        line = _report_line(_read_report(builder), name)
        if line:
            log_fn(line)
    return builder


def _read_report(builder) -> dict:
    path = pathlib.Path(builder.data_dir) / "build_report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def prepare(manual_dir, *, data_dir=None, root=None, links=None, category=None,
            skip_corrupt=False, overwrite=False, name: str = NAME, log_fn=print):
    """Read the category from `manual_dir/train.json`, write `coco_meta.json` (joints, tree,
    splits) and build the dataset, printing the tree, the validation split's size (or why
    there is none) and what was masked or skipped. `overwrite` rebuilds a built one, staged
    beside it and switched when complete (module doc)."""
    manual = pathlib.Path(manual_dir)
    if not manual.is_dir():
        raise FileNotFoundError(f"{name}: manual directory {manual} does not exist.\n{DOWNLOAD}")
    with locked(manual, read_only_ok=True) as lock:
        if lock is not None:
            recover(manual, log_fn=log_fn)
        old = read_meta(data_dir, name)
        meta = plan_meta(manual, old=old, root=root, links=links, category=category, name=name,
                         retree=overwrite)
        path = meta_path(data_dir, name)
        builder = builders.get_builder(name, data_dir=data_dir)
        if builder.is_prepared() and not overwrite:
            if old and (old["names"], old["links"]) != (meta["names"], meta["links"]):
                raise CocoError(f"{path.parent} holds a {name} dataset with other joints or tree; "
                                "rerun with --overwrite to replace it")
            log_fn(f"{name} is already built in {builder.data_dir} (--overwrite rebuilds it)")
            return builder
        log_fn(f"{name}: {len(meta['names'])} joints; tree: {meta['tree']}; flip pairs: "
               f"{meta['flips_named']}")
        if meta["never_labelled"]:
            log_fn(f"{name}: warning: joint(s) {meta['never_labelled']} are labelled in no "
                   f"person of {manual / 'train.json'}: nothing teaches the model where they "
                   "are; they hang off the tree as leaves and pre-annotations mark them absent (v = 0). Label "
                   "them in some images, or drop them from the category, to change this.")
        if old and old["links"] != meta["links"] and builder.is_prepared():
            log_fn(f"{name}: the tree differs from the previous build's: a run trained on that "
                   "build reads its skeleton outputs by the old links; train a new run rather "
                   "than fine-tune one (--init_from).")
        builder = _build_and_switch(manual, meta, data_dir=data_dir, skip_corrupt=skip_corrupt,
                                    name=name, log_fn=log_fn, what="rebuild",
                                    journal_in_manual=lock is not None)
    log_fn(f"{name}: {builders.validation_summary(_read_report(builder))}")
    return builder


# ------------------------------------------------------------------------------- merge

def _decodes(path: pathlib.Path) -> str | None:
    """None when the image at `path` decodes whole, else why not."""
    return _decoded_size(path)[0]


def _decoded_size(path: pathlib.Path):
    """(None, (width, height) as shown upright) when the image at `path` decodes whole, else
    (why not, None)."""
    try:
        size = base._check_decodes(path, path.read_bytes())  # pylint: disable=protected-access
        return None, size
    except (base.CorruptImageError, OSError) as err:
        return str(err), None


def _check_orientation(new_path, im: dict, src: pathlib.Path, size) -> None:
    """CocoError when the annotated file gives image `im` (file `src`, shown `size` upright)
    the stored, sideways size of an EXIF-rotated photo: the tool then labelled the unrotated
    pixels, and its labels would not match the picture everyone else is shown."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    w, h = im.get("width"), im.get("height")
    with Image.open(src) as opened:
        stored = opened.size
    if stored != tuple(size) and (w, h) == stored:
        raise CocoError(
            f"{new_path}: images[].file_name {im['file_name']!r} is {w} x {h} there, but the "
            f"photo is shown {size[0]} x {size[1]} (its EXIF orientation tag turns it): the "
            "annotation tool labelled it sideways, so its keypoints would not match the picture "
            "after the merge. Nothing was written. Re-export from a tool that shows the photo "
            "upright, or save the photo upright without the tag (e.g. PIL.ImageOps.exif_transpose) "
            "and label it again.")


def _annotation(p, ann_id, image_id, cat_id) -> dict:
    """The COCO annotation of person `p` (`files.Person`) under the given ids."""
    v = np.where(p.visibility == 1, 2, np.where(p.visibility == 0, 1, 0))
    kps = []
    for (x, y), vv in zip(p.joints.tolist(), v.tolist()):
        kps += [float(x), float(y), int(vv)] if vv else [0.0, 0.0, 0]
    ann = dict(id=ann_id, image_id=image_id, category_id=cat_id, keypoints=kps,
               num_keypoints=int((v > 0).sum()), iscrowd=0)
    if p.has_bbox:
        x0, y0, x1, y1 = (float(t) for t in p.box)
        ann.update(bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0))
    return ann


def _same_people(old, new, tol_px: float = 0.01) -> bool:
    """Whether two images' people (`files.Person`, in their k order) carry the same labels:
    as many people, the same visibility, labelled joints within `tol_px`."""
    old, new = sorted(old, key=lambda p: p.k), sorted(new, key=lambda p: p.k)
    if len(old) != len(new):
        return False
    for a, b in zip(old, new):
        if not np.array_equal(a.visibility, b.visibility):
            return False
        on = a.visibility >= 0
        if on.any() and not np.allclose(a.joints[on], b.joints[on], atol=tol_px, equal_nan=True):
            return False
    return True


def merge(manual_dir, annotations, *, images=None, data_dir=None, rebuild=True,
          skip_corrupt: bool = False, replace_labels: bool = False, name: str = NAME,
          log_fn=print) -> dict:
    """Add the images of an annotated COCO file (any tool that writes COCO keypoints) to the
    labelled set `manual_dir/train.json`, copying the image files into `manual_dir/images/`,
    then rebuild the dataset, as one transaction (module doc). Images already in
    train/test/pool are left as they are (reported), so nothing labelled is lost or
    duplicated; new images and annotations get new ids (max + 1). `images`: the folder the
    annotated file's `file_name`s are relative to (default: the file's own folder; the
    `images_root` that `experiments.score` records in the file's `info` is only quoted in the
    error, never followed, so a shared file cannot make the tool read elsewhere). A new image
    that does not decode is an error naming it, or with `skip_corrupt` is left out with its
    people (counted, listed). A labelled joint with NaN/Inf coordinates is an error. An image
    already in train.json whose people the file labels otherwise (corrected labels) is
    reported; with `replace_labels` its people are replaced by the file's (the image keeps its
    id; the old train.json is kept as `train.<date>.json`). Images of test/pool.json are never
    changed. Returns counts. A rerun after nothing new still builds a dataset that is missing."""
    manual = pathlib.Path(manual_dir)
    if not manual.is_dir():
        raise FileNotFoundError(f"{name}: manual directory {manual} does not exist.\n{DOWNLOAD}")
    with locked(manual):
        recover(manual, log_fn=log_fn)
        return _merge_locked(manual, annotations, images=images, data_dir=data_dir,
                             rebuild=rebuild, skip_corrupt=skip_corrupt, name=name,
                             log_fn=log_fn, replace_labels=replace_labels)


def _merge_locked(manual, annotations, *, images, data_dir, rebuild, skip_corrupt, name,
                  log_fn, replace_labels=False) -> dict:
    train_path = manual / "train.json"
    train = read_coco(train_path)
    new = read_coco(annotations, require_annotations=True)
    if new.names != train.names:
        raise field_error(new.path, "categories[].keypoints", f"{list(new.names)} differ from the "
                          f"dataset's {list(train.names)} ({train_path})")
    for p in new.people:
        labelled = p.visibility >= 0
        bad = labelled & ~np.all(np.isfinite(p.joints), axis=1)
        if bad.any():
            raise field_error(new.path, "annotations[].keypoints", f"annotation id "
                              f"{p.annotation_id} of {p.file_name!r} labels joint(s) "
                              f"{[new.names[j] for j in np.flatnonzero(bad)]} with NaN or "
                              "infinite coordinates; fix them (or mark them v = 0)")
    recorded = (new.raw.get("info") or {}).get("images_root")
    images = pathlib.Path(images) if images is not None else new.path.parent
    known = set(train.images[i]["file_name"] for i in train.images)
    for split in ("test", "pool"):
        if (manual / SPLIT_FILES[split]).is_file():
            other = read_coco(manual / SPLIT_FILES[split], require_annotations=False)
            known |= {im["file_name"] for im in other.images.values()}
    labelled_ids = {p.image_id for p in new.people}
    train_ids = {im["file_name"]: i for i, im in train.images.items()}
    add, skipped, corrupt, created, corrected = [], [], [], [], []
    for image_id, im in new.images.items():
        if image_id not in labelled_ids:
            continue
        if im["file_name"] in known:
            skipped.append(im["file_name"])
            if im["file_name"] in train_ids and not _same_people(
                    [p for p in train.people if p.image_id == train_ids[im["file_name"]]],
                    [p for p in new.people if p.image_id == image_id]):
                corrected.append((image_id, train_ids[im["file_name"]], im["file_name"]))
                if replace_labels:   # labelled upright, as the photo is shown?
                    held = inside(manual / "images", im["file_name"])
                    why, shown = _decoded_size(held)
                    if why is None:
                        _check_orientation(new.path, im, held, shown)
            continue
        src = inside(images, im["file_name"])
        if not src.is_file():
            raise CocoError(f"{new.path}: field `images[].file_name`: image {src} not found; "
                            "give the folder the file names are relative to with --images"
                            + (f" (the file says it was exported from {recorded}; a path "
                               "written in a shared file is never used without you)"
                               if recorded else ""))
        why, shown = _decoded_size(src)
        if why is None:
            _check_orientation(new.path, im, src, shown)
            im = dict(im, width=shown[0], height=shown[1])   # as shown upright
        if why is not None:
            if not skip_corrupt:
                raise base.CorruptImageError(
                    f"{why} ({new.path}: images[].file_name {im['file_name']!r}); nothing was "
                    "written. Rerun with --skip_corrupt to leave such images (and their people) "
                    "out, or replace the file.")
            corrupt.append(str(src))
            continue
        dst = inside(manual / "images", im["file_name"])
        if dst.exists():
            old_bytes, new_bytes = dst.read_bytes(), src.read_bytes()
            if old_bytes != new_bytes and not (new_bytes.startswith(old_bytes)
                                               and _decodes(dst) is not None):
                raise CocoError(f"{dst} exists and differs from {src}, and is not labelled in "
                                f"train/test/pool: rename the new image ({new.path}: "
                                f"images[].file_name {im['file_name']!r}) or remove the old file")
            # else: the same file, or a truncated copy an older version left when killed
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            created.append(im["file_name"])
        add.append((image_id, im, src, dst))
    raw = json.loads(json.dumps(train.raw))
    next_image = max([int(i) for i in train.images if isinstance(i, int)] + [0]) + 1
    next_ann = max([int(a.get("id", 0)) for a in raw["annotations"]
                    if isinstance(a.get("id", 0), int)] + [0]) + 1
    cat_id = train.category.get("id", 1)
    added_people = 0
    for image_id, im, src, dst in add:
        entry = {k: v for k, v in im.items() if k in ("width", "height", "file_name")}
        entry["id"] = next_image
        raw["images"].append(entry)
        for p in sorted((p for p in new.people if p.image_id == image_id), key=lambda p: p.k):
            raw["annotations"].append(_annotation(p, next_ann, next_image, cat_id))
            next_ann += 1
            added_people += 1
        next_image += 1
    replaced = corrected if replace_labels else []
    for new_id, train_id, _ in replaced:   # the image keeps its id; its people are replaced
        raw["annotations"] = [a for a in raw["annotations"] if a.get("image_id") != train_id]
        for p in sorted((p for p in new.people if p.image_id == new_id), key=lambda p: p.k):
            raw["annotations"].append(_annotation(p, next_ann, train_id, cat_id))
            next_ann += 1
    result = dict(added_images=len(add), added_people=added_people,
                  already_labelled=len(skipped), skipped_examples=skipped[:5],
                  corrected=[c[2] for c in corrected], replaced=[c[2] for c in replaced],
                  corrupt=corrupt, skipped_annotations=dict(new.skipped),
                  train_images=len(raw["images"]))
    log_fn(f"merging {new.path}: {len(add)} new images ({added_people} people) for "
           f"{train_path}; {len(skipped)} already labelled, left as they were"
           + (f"; {len(corrupt)} corrupt image(s) skipped: {corrupt[:5]}" if corrupt else "")
           + "".join("; " + line for line in _skipped_line(
               new.skipped, new.skipped_examples, "annotations skipped: ")))
    if corrected:
        names = [c[2] for c in corrected]
        log_fn(f"{len(corrected)} image(s) already in {train_path} come with other labels "
               f"(corrected?), e.g. {names[:3]}: "
               + ("their labels are replaced by the new ones (the old train.json is kept as "
                  "train.<date>.json)" if replace_labels else
                  "left as they were; rerun with --replace_labels to apply the new labels (the "
                  "old train.json is kept as train.<date>.json)"))
    if not add and not replaced:
        if rebuild and not builders.get_builder(name, data_dir=data_dir).is_prepared():
            log_fn(f"{name} is not built in {data_dir or base.default_data_dir()}: building it")
            prepare(manual, data_dir=data_dir, skip_corrupt=skip_corrupt, name=name,
                    log_fn=log_fn)
        return result
    old_meta = read_meta(data_dir, name)
    if rebuild and old_meta is None:
        log_fn(f"no {name} dataset in {data_dir or base.default_data_dir()} yet: building one "
               "there (pass --data_dir if the dataset lives elsewhere)")
    meta = plan_meta(manual, old=old_meta, name=name) if rebuild else None
    try:
        dump_json(raw)
    except ValueError as err:   # NaN/Inf elsewhere in train.json (written by another tool)
        raise CocoError(f"{train_path} or {new.path} holds a NaN or infinite number ({err}); "
                        "fix the file: other COCO readers refuse it.") from None
    # Everything is checked: the transaction starts (the journal names the images it adds).
    data_dir_path = pathlib.Path(data_dir or base.default_data_dir())
    _write_journal(manual, dict(what=f"merge of {new.path}", state="staging", name=name,
                                version="", data_dir=str(data_dir_path.resolve()),
                                staging_data=str(_staging_data(data_dir_path, name).resolve()),
                                created_images=created, rebuild=rebuild,
                                started=time.strftime("%Y-%m-%d %H:%M:%S")))
    for _, im, src, dst in add:
        if im["file_name"] in created:
            _copy_atomic(src, dst)
    _build_and_switch(manual, meta, data_dir=data_dir, skip_corrupt=skip_corrupt, name=name,
                      log_fn=log_fn, what=f"merge of {new.path}", created_images=created,
                      new_train=raw, rebuild=rebuild)
    log_fn(f"merged {new.path}: {len(add)} new images ({added_people} people) added to "
           f"{train_path}" + (f"; the labels of {len(replaced)} image(s) replaced"
                              if replaced else "")
           + (f"; {name} rebuilt in {data_dir_path}" if rebuild else ""))
    return result
