r"""COCO-keypoints datasets: your own labelled images as a TFDS dataset, and labels merged back.

    python -m vl4pose_jax.data.prepare --dataset=coco_keypoints --manual_dir=DIR \
        [--root=JOINT] [--links=a-b,b-c,...] [--data_dir=...]
    python -m vl4pose_jax.data.coco merge --manual_dir=DIR --annotations=ANNOTATED.json \
        --images=FOLDER [--data_dir=...] [--skip_corrupt]

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
    the skeleton does not reach hang off the nearest reached joint (mean distance, in person
    sizes, over the train.json people labelling both), else the root. `--links=a-b,...`
    (joint names) replaces the skeleton. What was done is written to `coco_meta.json` beside
    the dataset and printed.
  * Joints no train.json person labels (COCO's eyes and ears in many own datasets) are named
    in a warning, kept out of the tree's spine (the tree is built over the labelled joints;
    each never-labelled joint hangs as a leaf off its first labelled skeleton neighbour, else
    the root) and listed in `coco_meta.json` (`never_labelled`), so pre-annotations can mark
    them absent. A rebuild keeps the tree (below); `prepare --overwrite` decides it again
    for a dataset prepared before this rule.
  * Left/right pairs for flip augmentation come from the names: `left_X`/`right_X`,
    `X_left`/`X_right`, `lX`/`rX` (case-insensitive, both present).
  * Visibility: COCO v = 0 (not labelled) -> -1 (absent), v = 1 (labelled, occluded) -> 0,
    v = 2 (visible) -> 1, the project's convention; written back the same way. Coordinates are
    taken as the project's pixel coordinates (pixel centres at integers), unchanged, in the
    picture as shown upright (a JPEG's EXIF orientation applied, as viewers and annotation
    tools do; widths and heights likewise).
  * People: every non-crowd annotation with at least one labelled keypoint, several per
    image (crowd ones, with or without `keypoints`, are skipped; prepare prints each reason's
    count and first case). Its crop is taken from `bbox` (x, y, w, h), or from the labelled keypoints' box when absent:
    a square of 1.75 (training: 1.5-2.0) x the box's longer side (`transforms.human_transform`).
    The PCK normaliser is 0.5 x the box's longer side (pck@0.2 = 10 % of the person's size).
  * Ids: `<file_name>#<k>`, k = the person's position among its image's annotations sorted by
    annotation id. Merging appends new images with new image and annotation ids (max + 1), and
    never touches an image already labelled, so every id of the dataset stays stable; an
    image of train.json that the merged file labels otherwise (corrected labels) is reported,
    and with `--replace_labels` its people are replaced (its image id kept, the old
    train.json kept as `train.<date>.json`). An exact
    copy of an annotation (same image, keypoints and bbox) is skipped and counted, as are
    annotations of other categories, crowd ones and ones with no labelled keypoint.
  * Absurd input: a labelled joint with NaN/Inf coordinates or more than one image size
    outside the image is masked (absent) when building, and a bbox wider or taller than two
    image sizes or wholly far outside the image is replaced by the box of the valid joints;
    boxes and PCK normalisers come from valid joints only. Prepare prints the counts (also in
    `build_report.json`). Merge refuses NaN/Inf joints; every JSON file is written strict.
  * Merge and prepare are transactions on DIR (lock `DIR/.dataset.lock`, journal
    `DIR/.merge-journal.json`; see `commands`): a second one is refused naming the holder,
    everything is checked before anything is written, and a run after a kill rolls the killed
    one back or finishes it, so train.json and the built dataset always agree.
  * Validation (for checkpoint selection and the learning-rate schedule): the train.json images
    whose file name hashes (sha1) below 10 %, all their people, taken out of `train`; never
    from test.json, nor from pool.json (it stands for unlabelled data in simulations). The
    rule reads the file name alone, so merging labels never moves an image between train and
    validation. With fewer than 10 train.json images no validation split is built (the build
    report says so; from the 10th image on the ~10 % that hash into it leave train).

Several COCO datasets side by side: give each its own `--data_dir` (the skeleton is read from
the `--data_dir` a dataset is loaded from).

Modules: `files` (reading and checking COCO files, the tree, flip pairs), `dataset`
(`coco_meta.json`, the spec, the TFDS builder), `commands` (`prepare` and `merge` as library
calls), `__main__` (the `merge` command line). This package re-exports `files` and `dataset`.
"""
from vl4pose_jax.data.coco.dataset import (DOWNLOAD, DOWNLOAD_HELP, META_FILE, NAME, SPLIT_FILES,
                                           CocoKeypoints, absent_joints, is_coco, meta_path,
                                           read_meta, skeleton_from_meta, spec)
from vl4pose_jax.data.coco.files import (FORMAT_HELP, CocoError, CocoFile, Person, bbox_corners,
                                         check_file_name, flip_pairs, inside, keypoint_category,
                                         labelled_images, mean_distances, never_labelled,
                                         read_coco, read_coco_boxes, tree_links)
