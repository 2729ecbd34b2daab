"""The COCO commands: `prepare` builds a COCO dataset, `merge` adds annotated labels and rebuilds.

    commands.prepare("DIR", data_dir=...)      # what `prepare --dataset=coco_keypoints` runs
    commands.merge("DIR", "annotated.json", images="NEW", data_dir=...)   # `data.coco merge`

`prepare` reads the category from `DIR/train.json`, decides the tree (`files.tree_links`), writes
`coco_meta.json` and builds the dataset through `builders.build`; `merge` appends an annotated
file's new images to `train.json` (ids stay stable; see the `vl4pose_jax.data.coco` guide) and
prepares again. Both check every file before writing anything.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

import numpy as np

from vl4pose_jax import skeletons
from vl4pose_jax.data import builders
from vl4pose_jax.data.coco.dataset import (DOWNLOAD, NAME, SPLIT_FILES, SPLITS, meta_path,
                                           read_meta, spec)
from vl4pose_jax.data.coco.files import (CocoError, field_error, flip_pairs, inside, read_coco,
                                         tree_links)


def prepare(manual_dir, *, data_dir=None, root=None, links=None, category=None,
            skip_corrupt=False, overwrite=False, name: str = NAME, log_fn=print):
    """Read the category from `manual_dir/train.json`, write `coco_meta.json` (joints, tree,
    splits) and build the dataset, printing the tree and the validation split's size (or why
    there is none). `overwrite` rebuilds a built one (after a merge)."""
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
                raise field_error(manual / file, "categories[].keypoints", f"{list(other.names)} "
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
    meta["splits"] = [s for s in SPLITS if s in builder.info.splits]
    path.write_text(json.dumps(meta, indent=1))
    log_fn(f"{name}: {builders.validation_summary(builder.report)}")
    spec(name, data_dir)  # this process now means this dataset by `name`
    return builder



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
        raise field_error(new.path, "categories[].keypoints", f"{list(new.names)} differ from the "
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
