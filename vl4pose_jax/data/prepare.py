r"""Build one dataset into a TFDS data directory (array_record, no TensorFlow needed).

    python -m vl4pose_jax.data.prepare --dataset=lspet --manual_dir=/path/to/lspet_dataset \
        [--data_dir=~/tensorflow_datasets] [--skip_corrupt] [--config=tiny]

Real datasets are downloaded by the user (licences forbid redistribution); `--manual_dir` is the
folder holding the extracted files, as listed below. The synthetic sets need no download.
Building is done once; a finished build is reused, an interrupted one is never mistaken for a
finished one (TFDS writes into an `incomplete.*` folder and renames it at the end; the next build
removes the folder a killed one left). A bad label file (wrong array shape, garbage bytes) is a
one-paragraph error naming it.
"""
from __future__ import annotations

import logging
import sys

from absl import app, flags

from vl4pose_jax.data import base, builders, coco, registry
from vl4pose_jax.data.coco import commands as coco_commands


def _help_text() -> str:
    return "\n".join([__doc__, "Datasets and the files they expect:", registry.download_help()])


def main(argv):
    del argv
    f = flags.FLAGS
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if coco.is_coco(f.dataset):
            builder = coco_commands.prepare(f.manual_dir, data_dir=f.data_dir, root=f.root,
                                            links=f.links, category=f.category,
                                            skip_corrupt=f.skip_corrupt, overwrite=f.overwrite)
        else:
            builder = builders.build(f.dataset, manual_dir=f.manual_dir, data_dir=f.data_dir,
                                     config=f.config, skip_corrupt=f.skip_corrupt)
    except (OSError, ValueError, base.CorruptImageError, KeyError, coco.CocoError) as err:
        print(f"error: {str(err).strip(chr(39))}", file=sys.stderr)
        if isinstance(err, base.CorruptImageError):
            print("(rerun with --skip_corrupt to skip such files and list them in "
                  "corrupt_files.txt beside the dataset)", file=sys.stderr)
        return 1
    print(f"{f.dataset}: built in {builder.data_dir}: "
          + ", ".join(f"{k}={v.num_examples}" for k, v in builder.info.splits.items()))
    return 0


def _define_flags():
    *others, last = registry.names()
    flags.DEFINE_string("dataset", None, f"{', '.join(others)} or {last}.")
    flags.DEFINE_string("manual_dir", None, "Folder with the downloaded, extracted files "
                        "(real datasets only; see the list above).")
    flags.DEFINE_string("data_dir", None, "TFDS data directory to build into (default: "
                        "$VL4POSE_DATA_DIR, else ~/tensorflow_datasets).")
    flags.DEFINE_string("config", None, "Builder config (synthetic sets: sizes).")
    flags.DEFINE_bool("skip_corrupt", False, "Skip corrupt/truncated images and list them in "
                      "corrupt_files.txt beside the dataset, instead of stopping.")
    flags.DEFINE_string("root", None, "coco_keypoints: root joint of the tree (default: the "
                        "skeleton's centre).")
    flags.DEFINE_list("links", None, "coco_keypoints: the tree as joint-name pairs a-b,b-c,... "
                      "(default: the category's skeleton, or its spanning tree).")
    flags.DEFINE_string("category", None, "coco_keypoints: the category (name or id) when "
                        "several have keypoints.")
    flags.DEFINE_bool("overwrite", False, "coco_keypoints: rebuild a dataset already built.")
    flags.mark_flag_as_required("dataset")


if __name__ == "__main__":
    _define_flags()
    sys.modules["__main__"].__doc__ = _help_text()  # --help lists the datasets and files
    app.run(main)
