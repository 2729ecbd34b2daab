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
label_studio/tasks.json + labeling_config.xml, gallery.png, and for a video frames/, plus the
marker .vl4pose_score.json. Scoring is streamed a batch at a time over every local device.

Safety: every flag is checked before the model loads; `--data_dir` defaults to the one the
workdir recorded (`workdir.recorded_data`; a given one holding another dataset is refused);
`--out` may not be a file, lie under one, or overlap `--images`; `--overwrite` replaces only a
folder holding an earlier output of this command (the marker), never inputs, a dataset or a
workdir; a lock beside `--out` keeps two runs apart and the unfinished folders of killed runs
are removed; Ctrl-C exits 130 with nothing written. Images already in the run's COCO dataset
(the same file content as one its train/test/pool.json lists) are left out and said, unless
`--include_labelled`. The output is readable by all (folders 0o755, files 0o644). Next step:
annotate top_k.coco.json in any COCO keypoints tool, then `python -m vl4pose_jax.data.coco
merge`.
"""
from __future__ import annotations

import json
import pathlib
import shutil
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
    flags.DEFINE_string("data_dir", None, "TFDS data directory of the run's dataset (default: the "
                        "one the workdir recorded); give it only if the dataset moved.")
    flags.DEFINE_bool("skip_corrupt", False, "Skip corrupt images (listed in skipped.txt) instead "
                      "of stopping.")
    flags.DEFINE_bool("overwrite", False, "Replace --out when it holds an earlier output of this "
                      "command (never anything else).")
    flags.DEFINE_string("image_url_prefix", None, "Label Studio: prefix of each task's image URL "
                        "(default: local-files storage, /data/local-files/?d=).")
    flags.DEFINE_string("label_studio_root", None, "Label Studio: its local-files document root "
                        "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); the images must be in a "
                        "subfolder of it and the tasks' URLs are made from it.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_bool("include_labelled", False, "Also score images already in the run's COCO "
                      "dataset (by default those with the same file content as a labelled "
                      "image are left out, and said).")


MARKER = ".vl4pose_score.json"   # in every --out this command wrote: --overwrite may replace it


def check_out(out: pathlib.Path, images: pathlib.Path, overwrite: bool):
    """Refuse an `--out` that this command must not write (export.OutputError, one paragraph):
    a file or a folder under a file, the inputs or a folder inside or around them, a non-empty
    folder without --overwrite, and with --overwrite any folder that holds no previous output
    of this command (`MARKER`; e.g. a dataset or a workdir)."""
    from vl4pose_jax import export  # pylint: disable=import-outside-toplevel
    if out.exists() and not out.is_dir():
        raise export.OutputError(f"--out={out} is a file, not a folder: choose a folder path")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise export.OutputError(f"--out={out} is under {parent}, which is a file: choose a "
                                     "path below a folder")
    o, i = out.resolve(), images.resolve()
    if o == i or i in o.parents or o in i.parents:
        raise export.OutputError(
            f"--out={out} and --images={images} overlap (one is inside the other): the output "
            "would be scored as input next time, or replace the inputs. Choose an --out outside "
            "the input folder.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise export.OutputError(f"{out} exists and is not empty: choose another --out or pass "
                                 "--overwrite (it replaces only an earlier output of "
                                 "experiments.score)")
    if not _written_by_score(out):
        raise export.OutputError(
            f"--overwrite: {out} was not written by experiments.score (it has no {MARKER}"
            + ("; it looks like a dataset folder" if (out / "train.json").exists() else "")
            + ("; it looks like a workdir" if (out / "config.json").exists() else "")
            + "), so it is not replaced: choose another --out, or delete it yourself.")


def _written_by_score(out: pathlib.Path) -> bool:
    """Whether `out` holds this command's output: the marker, or (outputs written before the
    marker existed) ranking.csv beside a top_k.coco.json whose `info` says so."""
    if (out / MARKER).is_file():
        return True
    try:
        info = json.loads((out / "top_k.coco.json").read_text()).get("info") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return ((out / "ranking.csv").is_file() and not (out / "train.json").exists()
            and info.get("description") == "vl4pose_jax pre-annotations")


def clean_partials(out: pathlib.Path, log=print) -> list:
    """Remove the temporary folders (`.<out>.partial-*`) of killed runs into `out` (call it
    holding the output's lock); returns them."""
    gone = sorted(p for p in out.parent.glob(f".{out.name}.partial-*") if p.is_dir())
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    if gone:
        log(f"removed {len(gone)} unfinished output folder(s) of killed runs: "
            + ", ".join(p.name for p in gone))
    return gone


def data_dir_for(workdir, data_dir=None):
    """The run's data directory: `data_dir` (the flag) when given, else the one the workdir
    recorded (`workdir.recorded_data`), else None (the default). A given one whose dataset has
    other joints or tree than the run's is refused (SimulationError)."""
    from vl4pose_jax import protocol  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import workdir as wd  # pylint: disable=import-outside-toplevel
    config = wd.load_config(workdir)
    record = wd.recorded_data(workdir) or {}
    if data_dir is None:
        return record.get("data_dir")
    if record.get("skeleton") and wd.skeleton_record(config.dataset, data_dir) != record[
            "skeleton"]:
        raise protocol.SimulationError(
            f"--data_dir={data_dir}: its {config.dataset} is not the dataset {workdir} was "
            f"trained on (other joints or tree, or not prepared there; the run's is in "
            f"{record.get('data_dir')}). Leave --data_dir out to use the run's, or point it at "
            "a copy of that dataset.")
    return data_dir


def check_flags(workdir, *, top_k, method, seed, batch_size, workers):
    """Every flag that needs no model (SimulationError / rank.InputError, one paragraph)."""
    from vl4pose_jax import protocol, rank  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import workdir as wd  # pylint: disable=import-outside-toplevel
    if top_k < 1:
        raise rank.InputError(f"--top_k={top_k}: must be at least 1")
    if batch_size < 1:
        raise rank.InputError(f"--batch_size={batch_size}: must be at least 1")
    if workers is not None and workers < 1:
        raise rank.InputError(f"--workers={workers}: must be at least 1 (or left out: "
                              "min(8, CPUs))")
    config = wd.load_config(workdir)
    run_method = method
    if len(config.methods) == 1:
        run_method = config.methods[0]
    elif method is None or method not in config.methods:
        raise protocol.SimulationError(f"{workdir} holds the methods "
                                       f"{', '.join(config.methods)}; choose one with --method.")
    rank.check_method(method or run_method, run_method)
    if seed is not None and not config.seed <= seed < config.seed + config.trials:
        raise protocol.SimulationError(f"--seed={seed}: {workdir} holds seeds {config.seed}.."
                                       f"{config.seed + config.trials - 1}")


def _load_trained(workdir, *, seed, data_dir, tries: int = 5):
    """`workdir.load_trained`, again when the newest checkpoint vanished while it was read (an
    experiments.al run on the workdir keeps two and deletes older ones)."""
    from vl4pose_jax import protocol  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import workdir as wd  # pylint: disable=import-outside-toplevel
    for attempt in range(tries):
        try:
            return wd.load_trained(workdir, seed=seed, data_dir=data_dir)
        except FileNotFoundError as err:
            if attempt == tries - 1:
                raise protocol.SimulationError(
                    f"the newest checkpoint of {workdir} kept vanishing while it was read "
                    f"({err.filename or err}): an experiments.al run is writing it. Rerun "
                    "when it has finished a round, or score a copy of the workdir.") from None
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _leave_out_labelled(workdir, inputs, data_dir, log):
    """`inputs` less the images already in the run's COCO dataset (the same file content as an
    image train/test/pool.json lists: what a merge copied), said in one line; InputError when
    nothing is left. Other datasets: `inputs` unchanged."""
    from vl4pose_jax import rank  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import workdir as wd  # pylint: disable=import-outside-toplevel
    from vl4pose_jax.data import coco  # pylint: disable=import-outside-toplevel
    config = wd.load_config(workdir)
    meta = (coco.read_meta(data_dir or config.data_dir, config.dataset)
            if coco.is_coco(config.dataset) else None)
    if not meta or not meta.get("manual_dir") or inputs.kind != "images":
        return inputs
    labelled = coco.labelled_images(meta["manual_dir"])
    same = rank.same_files(inputs, labelled)
    if not same:
        return inputs
    pos, path = next(iter(same.items()))
    if len(same) == len(inputs.names):
        raise rank.InputError(
            f"every one of the {len(same)} inputs in {inputs.root} is already in the dataset "
            f"{meta['manual_dir']} (the same file content, e.g. {inputs.names[pos]} = images/"
            f"{labelled[path]}): nothing new to score. Pass --include_labelled to score them "
            "anyway.")
    log(f"{len(same)} input(s) already in the dataset {meta['manual_dir']} (the same file "
        f"content) left out, e.g. {inputs.names[pos]} = images/{labelled[path]} "
        "(--include_labelled scores them)")
    return rank.without(inputs, same)


def run(workdir, images, out, *, top_k, method=None, boxes=None, stride=1, seed=None,
        batch_size=32, workers=None, data_dir=None, skip_corrupt=False, overwrite=False,
        image_url_prefix=None, label_studio_root=None, progress=True, log=print,
        include_labelled=False):
    """The whole command as a library call; returns (out folder, `rank.Scored`). Every flag is
    checked before the model loads; `out` is replaced only when it holds an earlier output
    of this command; the run holds a lock beside `out` and first removes what killed runs
    left there. Images already in the run's COCO dataset are left out (said) unless
    `include_labelled`; what is written is readable by all (`export.make_readable`); a
    COCO dataset's never-labelled joints are pre-annotated absent (`export.absent_for`)."""
    from vl4pose_jax import export, locking, rank  # pylint: disable=import-outside-toplevel
    out, images = pathlib.Path(out), pathlib.Path(images)
    check_flags(workdir, top_k=top_k, method=method, seed=seed, batch_size=batch_size,
                workers=workers)
    data_dir = data_dir_for(workdir, data_dir)
    check_out(out, images, overwrite)
    inputs = rank.open_inputs(images, stride=stride, boxes=boxes)
    if not include_labelled:
        inputs = _leave_out_labelled(workdir, inputs, data_dir, log)
    rank.check_top_k(inputs, top_k, str(images))
    for line in inputs.describe():
        log(f"--boxes={boxes}: {line}")
    if label_studio_root is not None:  # the images must be below Label Studio's document root
        export.local_files_prefix(out.resolve() / "frames" if inputs.kind == "video" else images,
                                  label_studio_root)
    try:
        lock = locking.FolderLock(out.parent, f"score-{out.name}").acquire()
    except locking.LockedError as err:
        raise export.OutputError(f"{err}: another experiments.score is writing {out}; wait for "
                                 "it or choose another --out.") from None
    except locking.LockIOError as err:
        raise export.OutputError(f"--out={out}: {err.strerror}") from None
    try:
        clean_partials(out, log)
        trained = _load_trained(workdir, seed=seed, data_dir=data_dir)
        t0 = time.perf_counter()
        scored = rank.score(trained, inputs, top_k=top_k, method=method,
                            batch_size=batch_size, workers=workers, skip_corrupt=skip_corrupt,
                            progress=progress)
        seconds = time.perf_counter() - t0
        category = export.category_for(trained.config.dataset, scored.skeleton,
                                       trained.config.data_dir)
        info = {"description": "vl4pose_jax pre-annotations", "workdir": str(workdir),
                "method": scored.method, "round": trained.meta.get("round")}
        check_out(out, images, overwrite)   # again: it may have changed while scoring
        marker = json.dumps({"written_by": "experiments.score", "workdir": str(workdir),
                             "method": scored.method, "inputs": str(images)}, indent=1)
        export.write(scored, out, top_k=top_k, category=category, overwrite=overwrite,
                     image_url_prefix=image_url_prefix, label_studio_root=label_studio_root,
                     info=info, extra_files={MARKER: marker},
                     absent=export.absent_for(trained.config.dataset, trained.config.data_dir))
    finally:
        lock.release()
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
            progress=FLAGS.progress, include_labelled=FLAGS.include_labelled)
    except (protocol.SimulationError, rank.InputError, export.OutputError, coco.CocoError,
            builders.CorruptImageError, KeyError) as err:
        extra = (" (rerun with --skip_corrupt to skip such files and list them in skipped.txt)"
                 if isinstance(err, builders.CorruptImageError) else "")
        print(f"error: {str(err).strip(chr(39))}{extra}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"interrupted: nothing was written to {FLAGS.out} (an earlier output there is "
              "unchanged); rerun the same command to score again.", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        print(f"error: writing {FLAGS.out} failed ({err.strerror or err}"
              + (f": {err.filename}" if getattr(err, "filename", None) else "")
              + "); nothing was replaced. Make room (or fix the storage) and rerun.",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
