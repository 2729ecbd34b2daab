r"""Rank new images or video frames with a trained run, for annotation.

    python -m experiments.score --workdir=W --images=DIR_OR_VIDEO --top_k=N --out=O \
        [--method=vl4pose] [--boxes=PERSON_BOXES.json] [--stride=10] [--batch_size=32]

`W` is a workdir of `python -m experiments.al` (e.g. one with `--rounds=0`: trained on the
labelled set alone); its newest round is loaded with `workdir.load_trained`. `--images` is a
folder of images (searched recursively) or a video file (PyAV; every `--stride`-th frame).
`--boxes`: an optional COCO file of person boxes (`file_name` relative to the folder, or
`<video stem>/frame_NNNNNN.png`); without it each image is one person crop. `--method`: any
acquisition method the run's auxiliary net supports (default: the run's own). Outputs in `O`
(written atomically; see `vl4pose_jax/export.py`): ranking.csv, top_k.coco.json,
label_studio/tasks.json + labeling_config.xml, gallery.png, and for a video frames/. Scoring
is streamed a batch at a time over every local device. Next step: annotate top_k.coco.json in
any COCO keypoints tool, then `python -m vl4pose_jax.data.coco merge`.
"""
from __future__ import annotations

import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags, defined only when it runs as a command (the library call `run`
    needs none, and other commands' flags of the same names must not collide with them)."""
    flags.DEFINE_string("workdir", None, "Workdir of a trained run (experiments.al).")
    flags.DEFINE_string("images", None, "Folder of images, or a video file.")
    flags.DEFINE_integer("top_k", 20, "How many inputs to export for annotation.")
    flags.DEFINE_string("out", None, "Output folder (must not exist or be empty, unless "
                        "--overwrite).")
    flags.DEFINE_string("method", None, "Scoring method (default: the run's own, e.g. vl4pose).")
    flags.DEFINE_string("boxes", None, "Optional COCO file of person boxes per input.")
    flags.DEFINE_integer("stride", 1, "Video: score every stride-th frame.")
    flags.DEFINE_integer("seed", None, "Which seed of the run (default: its first).")
    flags.DEFINE_integer("batch_size", 32, "Crops per batch.")
    flags.DEFINE_integer("workers", None, "Decoding threads (default: min(8, CPUs)).")
    flags.DEFINE_string("data_dir", None, "TFDS data directory of the run's dataset, if it moved.")
    flags.DEFINE_bool("skip_corrupt", False, "Skip corrupt images (listed in skipped.txt) instead "
                      "of stopping.")
    flags.DEFINE_bool("overwrite", False, "Replace a non-empty --out.")
    flags.DEFINE_string("image_url_prefix", None, "Label Studio: prefix of each task's image URL "
                        "(default: local-files storage, /data/local-files/?d=).")
    flags.DEFINE_string("label_studio_root", None, "Label Studio: its local-files document root "
                        "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); the images must be in a "
                        "subfolder of it and the tasks' URLs are made from it.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")


def run(workdir, images, out, *, top_k, method=None, boxes=None, stride=1, seed=None,
        batch_size=32, workers=None, data_dir=None, skip_corrupt=False, overwrite=False,
        image_url_prefix=None, label_studio_root=None, progress=True, log=print):
    """The whole command as a library call; returns (out folder, `rank.Scored`)."""
    import pathlib  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import export, rank  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import workdir as wd  # pylint: disable=import-outside-toplevel
    out = pathlib.Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise export.OutputError(f"{out} exists and is not empty: choose another --out or pass "
                                 "--overwrite")
    inputs = rank.open_inputs(images, stride=stride, boxes=boxes)
    if not 1 <= top_k <= len(inputs.names):
        raise rank.InputError(f"--top_k={top_k} but {images} holds {len(inputs.names)} "
                              f"{'frames' if inputs.kind == 'video' else 'images'}"
                              f"{f' (stride {stride})' if inputs.kind == 'video' else ''}: "
                              f"choose 1..{len(inputs.names)}")
    trained = wd.load_trained(workdir, seed=seed, data_dir=data_dir)
    t0 = time.perf_counter()
    scored = rank.score(trained, inputs, top_k=top_k, method=method, batch_size=batch_size,
                        workers=workers, skip_corrupt=skip_corrupt, progress=progress)
    seconds = time.perf_counter() - t0
    category = export.category_for(trained.config.dataset, scored.skeleton,
                                   trained.config.data_dir)
    info = {"description": "vl4pose_jax pre-annotations", "workdir": str(workdir),
            "method": scored.method, "round": trained.meta.get("round")}
    export.write(scored, out, top_k=top_k, category=category, overwrite=overwrite,
                 image_url_prefix=image_url_prefix, label_studio_root=label_studio_root,
                 info=info)
    log(f"scored {len(inputs.crops)} crops of {len(inputs.names)} "
        f"{'frames' if inputs.kind == 'video' else 'images'} in {seconds:.1f}s "
        f"({len(inputs.crops) / max(seconds, 1e-9):.1f}/s) with {scored.method}; top {top_k} "
        f"written to {out}" + (f"; {len(scored.skipped)} corrupt skipped" if scored.skipped else ""))
    return out, scored


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from vl4pose_jax import export, protocol, rank  # pylint: disable=import-outside-toplevel
    from vl4pose_jax.data import builders, coco  # pylint: disable=import-outside-toplevel
    for name in ("workdir", "images", "out"):
        if not getattr(FLAGS, name):
            print(f"error: --{name} is required", file=sys.stderr)
            sys.exit(2)
    try:
        run(FLAGS.workdir, FLAGS.images, FLAGS.out, top_k=FLAGS.top_k, method=FLAGS.method,
            boxes=FLAGS.boxes, stride=FLAGS.stride, seed=FLAGS.seed,
            batch_size=FLAGS.batch_size, workers=FLAGS.workers, data_dir=FLAGS.data_dir,
            skip_corrupt=FLAGS.skip_corrupt, overwrite=FLAGS.overwrite,
            image_url_prefix=FLAGS.image_url_prefix, label_studio_root=FLAGS.label_studio_root,
            progress=FLAGS.progress)
    except (protocol.SimulationError, rank.InputError, export.OutputError, coco.CocoError,
            builders.CorruptImageError, KeyError) as err:
        extra = (" (rerun with --skip_corrupt to skip such files and list them in skipped.txt)"
                 if isinstance(err, builders.CorruptImageError) else "")
        print(f"error: {err}{extra}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
