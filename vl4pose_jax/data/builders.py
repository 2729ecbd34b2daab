"""Building and opening datasets by name: `build` (once, under a lock) and `get_builder`.

    builders.build("lspet", manual_dir=".../lspet_dataset", data_dir=...)   # or data.build
    builders.build("synthetic_human", config="tiny", data_dir=...)         # no download
    python -m vl4pose_jax.data.prepare --dataset=lspet --manual_dir=...     # the command line

The builder of a name comes from `registry`; read a built dataset with `vl4pose_jax.data.load`.
Bad input: a missing manual directory or label file raises `FileNotFoundError` naming it and
where the dataset is downloaded. Labels whose image is missing are skipped and counted (a
partial download builds what is there). A corrupt or truncated image raises `CorruptImageError`
naming the file, unless `skip_corrupt=True`: then it is skipped and listed in
`corrupt_files.txt` beside the dataset. NaN/Inf or absurd coordinates are masked (visibility -1)
and counted. Every count goes to the log and to `build_report.json` beside the dataset. TFDS
writes into an `incomplete.*` folder and renames it only when the build has finished, so an
interrupted build never loads as complete (`load` then says which command to run, and raises
`DatasetNotPreparedError`); the next build deletes such leftovers (builds of one dataset config
take turns through a `locking.FolderLock`). A build by another version of the builder (e.g. one
from before the `validation` split) is never read: `load` names it and the command that
rebuilds (`not_prepared_message`).
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import shutil

from vl4pose_jax import locking
from vl4pose_jax.data import base, registry
# `builders.CorruptImageError`: what building raises, importable from here too.
from vl4pose_jax.data.base import CorruptImageError  # pylint: disable=unused-import
from vl4pose_jax.data.base import default_data_dir

log = logging.getLogger(__name__)


class DatasetNotPreparedError(FileNotFoundError):
    """A dataset that has not been built yet; the message names the command that builds it."""


def get_builder(name: str, *, data_dir=None, config=None, **kwargs):
    """The TFDS builder object for `name` (nothing is built or read)."""
    cls = registry.get(name).builder
    if config is not None:
        kwargs["config"] = config
    return cls(data_dir=os.fspath(data_dir or default_data_dir()), **kwargs)


def build(name: str, *, manual_dir=None, data_dir=None, config=None, skip_corrupt=False):
    """Build dataset `name` once (a no-op if it is already complete). Returns the builder.

    Writes `build_report.json` (counts of labels, missing images, masked joints, corrupt files,
    split sizes) and, when images were skipped, `corrupt_files.txt` beside the dataset.
    """
    builder = get_builder(name, data_dir=data_dir, config=config, skip_corrupt=skip_corrupt,
                          manual_dir=manual_dir)
    folder = pathlib.Path(builder.data_dir).parent
    # One build of a dataset config at a time (a second waits), so leftovers are from kills.
    with locking.FolderLock(folder, "build", blocking=True):
        remove_incomplete(folder)
        return _build_locked(name, builder, manual_dir)


def remove_incomplete(folder) -> list:
    """Delete the `incomplete.*` folders TFDS leaves in a dataset config's `folder` when a build
    is killed (call it holding the build lock); returns them, each logged as a warning."""
    gone = sorted(p for p in pathlib.Path(folder).glob("incomplete.*") if p.is_dir())
    for p in gone:
        log.warning("removing %s, left by an interrupted build", p)
        shutil.rmtree(p)
    return gone


def _build_locked(name, builder, manual_dir):
    if builder.is_prepared():
        log.info("%s is already built in %s", name, builder.data_dir)
        return builder
    if manual_dir is None and builder.NEEDS_MANUAL_DIR:
        raise FileNotFoundError(f"{name}: --manual_dir is required.\n{builder.DOWNLOAD}")
    if manual_dir is not None:
        base.require_dir(manual_dir, name, builder.DOWNLOAD)
    builder.download_and_prepare()
    report = dict(builder.report)
    report["built_splits"] = {k: v.num_examples for k, v in builder.info.splits.items()}
    out = pathlib.Path(builder.data_dir)
    (out / "build_report.json").write_text(json.dumps(report, indent=1, default=str))
    if report["corrupt"]:
        (out / "corrupt_files.txt").write_text("\n".join(report["corrupt"]) + "\n")
    log.info("%s built in %s: %s", name, out, json.dumps(
        {k: report[k] for k in ("labels", "missing_images", "masked_joints", "dropped_no_joints",
                                "built_splits")}))
    if report.get("validation"):
        log.info("%s: %s", name, validation_summary(report))
    if report["corrupt"]:
        log.warning("%s: %d corrupt images skipped, listed in %s", name, len(report["corrupt"]),
                    out / "corrupt_files.txt")
    return builder


def validation_summary(report: dict) -> str:
    """One line on a build report's validation split: its size and rule, or why there is none."""
    v = report["validation"]
    if not v["people"]:
        why = [n for n in report["notes"] if n.startswith("no validation split")]
        return why[0] if why else "no validation split"
    return (f"validation = {v['people']} people of {v['images']} images, taken out of "
            f"{v['source']!r} ({v['side_images']} images): {v['rule']}")


def other_builds(builder) -> list[str]:
    """Versions of the builder's dataset completely built beside its own (older layouts)."""
    folder = pathlib.Path(builder.data_dir).parent
    if not folder.is_dir():
        return []
    return sorted(p.parent.name for p in folder.glob("*/dataset_info.json")
                  if re.fullmatch(r"\d+\.\d+\.\d+", p.parent.name)
                  and p.parent.name != str(builder.version))


def not_prepared_message(name: str, builder, data_dir=None, config=None) -> str:
    """Why `name` cannot be read from `builder.data_dir`, and the command that builds it."""
    label = f"dataset {name!r}{'' if config is None else f' (config {config!r})'}"
    command = prepare_command(name, data_dir=data_dir, config=config)
    old = other_builds(builder)
    if old:
        folder = pathlib.Path(builder.data_dir).parent
        change = builder.RELEASE_NOTES.get(str(builder.version), "another layout")
        return (f"{label} in {folder} was built by version {', '.join(old)} of its builder, "
                f"not by this version {builder.version} ({change}); an old build is never read. "
                f"Rebuild it with:\n  {command}\n(then the old build can be deleted: "
                f"{', '.join(str(folder / v) for v in old)})")
    return f"{label} is not built in {builder.data_dir}. Build it with:\n  {command}"


def prepare_command(name: str, data_dir=None, config=None) -> str:
    """The shell command that builds `name` (for error messages)."""
    cmd = f"python -m vl4pose_jax.data.prepare --dataset={name}"
    if registry.get(name).builder.NEEDS_MANUAL_DIR:
        cmd += " --manual_dir=<folder with the downloaded files>"
    if config:
        cmd += f" --config={config}"
    if data_dir:
        cmd += f" --data_dir={data_dir}"
    return cmd
