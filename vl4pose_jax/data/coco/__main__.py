"""`python -m vl4pose_jax.data.coco merge`: annotated labels into a COCO dataset, then a rebuild.

    python -m vl4pose_jax.data.coco merge --manual_dir=DIR --annotations=ANNOTATED.json \
        --images=FOLDER [--data_dir=...] [--skip_corrupt] [--replace_labels]

The command line of `commands.merge` (a transaction on DIR: see `commands`); `--helpfull` prints
the guide of `vl4pose_jax.data.coco`. Exit status 0, 1 on bad input, a folder in use or an I/O
failure (a one-paragraph error; nothing half-written stays), 2 without the `merge` argument,
130 on Ctrl-C (the next merge or prepare rolls the interrupted one back or finishes it).
"""
import logging
import sys

from absl import app, flags

from vl4pose_jax.data import base, coco
from vl4pose_jax.data.coco import commands


def main(argv):
    f = flags.FLAGS
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(argv) != 2 or argv[1] != "merge":
        print("usage: python -m vl4pose_jax.data.coco merge --manual_dir=DIR "
              "--annotations=FILE [--images=FOLDER] [--data_dir=...] [--skip_corrupt] "
              "[--replace_labels]",
              file=sys.stderr)
        return 2
    try:
        commands.merge(f.manual_dir, f.annotations, images=f.images, data_dir=f.data_dir,
                       skip_corrupt=f.skip_corrupt, replace_labels=f.replace_labels)
    except (coco.CocoError, OSError, base.CorruptImageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was switched; the next merge or prepare on "
              f"{f.manual_dir} rolls this one back (or finishes it if it was switching).",
              file=sys.stderr)
        return 130
    return 0


def _define_flags():
    flags.DEFINE_string("manual_dir", None, "The dataset's folder (images/, train.json, ...).")
    flags.DEFINE_string("annotations", None, "The annotated COCO keypoints file to merge.")
    flags.DEFINE_string("images", None, "Folder its file names are relative to (default: "
                        "the annotated file's folder).")
    flags.DEFINE_string("data_dir", None, "TFDS data directory of the dataset.")
    flags.DEFINE_bool("skip_corrupt", False, "Leave out new images that do not decode (and "
                      "their people), counted and listed, instead of stopping.")
    flags.DEFINE_bool("replace_labels", False, "Images already in train.json that the file "
                      "labels otherwise (corrected labels): replace their people by the file's "
                      "(the old train.json is kept as train.<date>.json). Without it they are "
                      "only reported.")
    flags.mark_flags_as_required(["manual_dir", "annotations"])


if __name__ == "__main__":
    _define_flags()
    sys.modules["__main__"].__doc__ = coco.__doc__  # --helpfull prints the COCO guide
    app.run(main)
