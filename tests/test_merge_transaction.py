"""`python -m vl4pose_jax.data.coco merge` as a transaction (issue 28), with real processes and
real kills: the folder's lock refuses a second merge naming the holder; a merge killed while
copying an image, after staging or half-way through the switch is rolled back or finished by
the next run, so `train.json` and the built dataset always agree; bad input (a truncated
image, NaN keypoints) is refused before anything is written, or skipped and counted with
`--skip_corrupt`. Tiny generated images: each test takes seconds.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from vl4pose_jax import locking
from vl4pose_jax.data.coco import commands

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = ["head", "left_hand", "right_hand"]


def _image(path: pathlib.Path, seed: int, size=(40, 30)):
    from PIL import Image
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path,
                                                                                 quality=90)


def coco_file(names, *, first_id=1, keypoints=None, bbox=True):
    """A COCO dict with one person per image (file names `names`)."""
    images, anns = [], []
    for n, name in enumerate(names):
        images.append({"id": first_id + n, "file_name": name, "width": 40, "height": 30})
        kps = keypoints if keypoints is not None else [10 + n % 5, 5, 2, 20, 15, 2, 30, 20, 1]
        ann = {"id": 100 + first_id + n, "image_id": first_id + n, "category_id": 1,
               "keypoints": kps, "iscrowd": 0}
        if bbox:
            ann["bbox"] = [5, 2, 30, 25]
        anns.append(ann)
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": NAMES,
                            "skeleton": [[1, 2], [1, 3]]}]}


def make_dataset(tmp: pathlib.Path, n_train=4, n_test=2):
    """DIR (images + train.json + test.json), prepared in DATA; returns (DIR, DATA)."""
    manual = tmp / "manual"
    names = [f"t{i:03d}.jpg" for i in range(n_train + n_test)]
    for i, name in enumerate(names):
        _image(manual / "images" / name, i)
    (manual / "train.json").write_text(json.dumps(coco_file(names[:n_train])))
    (manual / "test.json").write_text(json.dumps(coco_file(names[n_train:])))
    data_dir = tmp / "data"
    commands.prepare(manual, data_dir=data_dir, log_fn=lambda *a: None)
    return manual, data_dir


def annotated(tmp: pathlib.Path, tag: str, n: int, seed: int, **kw) -> pathlib.Path:
    """NEW_<tag>/ with n images and annotated_<tag>.json labelling them."""
    folder = tmp / f"new_{tag}"
    names = [f"{tag}{i:03d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        _image(folder / name, seed + i)
    path = tmp / f"annotated_{tag}.json"
    path.write_text(json.dumps(coco_file(names, **kw)))
    return path


def merge_cmd(manual, data_dir, path, *extra):
    return [sys.executable, "-m", "vl4pose_jax.data.coco", "merge", f"--manual_dir={manual}",
            f"--annotations={path}", f"--images={path.parent / ('new_' + path.stem.split('_')[1])}",
            f"--data_dir={data_dir}", *extra]


def run(cmd, **env):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, **env))


def start_and_stop_at(cmd, stage):
    """Start `cmd` with the test hook holding it at `stage`; return the process once there."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, **{commands.STOP_AT_ENV: stage}))
    said = []
    for line in proc.stderr:   # log lines come first
        said.append(line)
        if line.strip() == f"stopped at {stage}":
            return proc
    proc.wait(timeout=30)
    raise AssertionError(f"exit {proc.returncode} before stage {stage}: {''.join(said)}")


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()


def dataset_ids(data_dir) -> set:
    from vl4pose_jax import data
    from vl4pose_jax.data import builders
    builder = builders.get_builder("coco_keypoints", data_dir=data_dir)
    assert builder.is_prepared()
    ids = set()
    for split in builder.info.splits:
        if split in ("train", "validation"):
            ids |= set(data.load("coco_keypoints", split, data_dir=data_dir).ids())
    return ids


def train_ids(manual) -> set:
    from vl4pose_jax.data import coco
    return {p.id for p in coco.read_coco(manual / "train.json").people}


def assert_agree(manual, data_dir):
    """train.json and the built dataset hold the same people; no leftovers."""
    assert train_ids(manual) == dataset_ids(data_dir)
    assert not (manual / commands.JOURNAL).exists() and not (manual / commands.STAGING).exists()
    assert not list((manual / "images").glob(".*merge-tmp"))
    assert not (data_dir / ".coco_keypoints.staging").exists()
    assert not list((data_dir / "coco_keypoints").glob(".replaced-*"))
    json.loads((manual / "train.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"train.json holds {c}"))


def test_lock_refuses_a_second_merge_and_a_killed_one_is_rolled_back(tmp_path):
    """Merge A held after staging (lock taken, dataset staged) refuses merge B naming A's
    process; A is killed; B then rolls A back and merges; A's rerun adds A: nothing lost."""
    manual, data_dir = make_dataset(tmp_path)
    before = train_ids(manual)
    a = annotated(tmp_path, "a", 3, 50)
    b = annotated(tmp_path, "b", 2, 80)
    proc_a = start_and_stop_at(merge_cmd(manual, data_dir, a), "staged")
    refused = run(merge_cmd(manual, data_dir, b))
    assert refused.returncode == 1, refused.stderr
    assert f"is in use by process {proc_a.pid}" in refused.stderr
    assert "wait for it to finish" in refused.stderr and "Traceback" not in refused.stderr
    kill(proc_a)
    assert (manual / commands.JOURNAL).is_file()          # A died mid-transaction
    assert train_ids(manual) == before == dataset_ids(data_dir)   # nothing switched
    done_b = run(merge_cmd(manual, data_dir, b))
    assert done_b.returncode == 0, done_b.stderr
    assert "rolled back the merge of" in done_b.stdout
    assert not (manual / "images" / "a000.jpg").exists()   # A's copies removed
    assert_agree(manual, data_dir)
    done_a = run(merge_cmd(manual, data_dir, a))
    assert done_a.returncode == 0, done_a.stderr
    assert train_ids(manual) == before | {f"a{i:03d}.jpg#0" for i in range(3)} | {
        f"b{i:03d}.jpg#0" for i in range(2)}
    assert_agree(manual, data_dir)


def test_lock_held_by_another_process_is_named(tmp_path):
    manual, data_dir = make_dataset(tmp_path, n_train=2, n_test=1)
    a = annotated(tmp_path, "a", 1, 50)
    with locking.FolderLock(manual, commands.LOCK):
        proc = run(merge_cmd(manual, data_dir, a))
    assert proc.returncode == 1 and f"process {os.getpid()}" in proc.stderr, proc.stderr
    assert str(manual / ".dataset.lock") in proc.stderr


def test_kill_during_the_switch_is_finished_by_the_rerun(tmp_path):
    """Killed after the dataset was switched but before train.json: the next run finishes the
    switch (train.json gets the new people) and then finds nothing new to add."""
    manual, data_dir = make_dataset(tmp_path)
    a = annotated(tmp_path, "a", 2, 50)
    kill(start_and_stop_at(merge_cmd(manual, data_dir, a), "switch"))
    assert train_ids(manual) != dataset_ids(data_dir)     # the moment the journal covers
    again = run(merge_cmd(manual, data_dir, a))
    assert again.returncode == 0, again.stderr
    assert "finished the merge of" in again.stdout and "0 new images" in again.stdout
    assert {"a000.jpg#0", "a001.jpg#0"} <= train_ids(manual)
    assert_agree(manual, data_dir)
    assert len(list(manual.glob("train.*-*.json"))) == 1   # the old train.json, kept once


def test_kill_while_copying_leaves_no_truncated_image(tmp_path):
    manual, data_dir = make_dataset(tmp_path, n_train=2, n_test=1)
    a = annotated(tmp_path, "a", 2, 50)
    kill(start_and_stop_at(merge_cmd(manual, data_dir, a), "copy"))
    assert not (manual / "images" / "a000.jpg").exists()   # only a temporary name
    assert (manual / "images" / ".a000.jpg.merge-tmp").is_file()
    again = run(merge_cmd(manual, data_dir, a))
    assert again.returncode == 0, again.stderr
    assert "exists and differs" not in again.stderr
    for i in range(2):
        name = f"a{i:03d}.jpg"
        assert (manual / "images" / name).read_bytes() == (a.parent / "new_a" / name).read_bytes()
    assert_agree(manual, data_dir)


def test_a_truncated_new_image_changes_nothing_or_is_skipped(tmp_path):
    manual, data_dir = make_dataset(tmp_path, n_train=2, n_test=1)
    a = annotated(tmp_path, "a", 3, 50)
    victim = a.parent / "new_a" / "a001.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    train_before = (manual / "train.json").read_bytes()
    ids_before = dataset_ids(data_dir)
    proc = run(merge_cmd(manual, data_dir, a))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert str(victim) in proc.stderr and "--skip_corrupt" in proc.stderr
    assert "nothing was written" in proc.stderr
    assert (manual / "train.json").read_bytes() == train_before
    assert dataset_ids(data_dir) == ids_before
    assert not (manual / "images" / "a000.jpg").exists()
    assert not list(manual.glob("train.*-*.json"))
    proc = run(merge_cmd(manual, data_dir, a, "--skip_corrupt"))
    assert proc.returncode == 0, proc.stderr
    assert "1 corrupt image(s) skipped" in proc.stdout and str(victim) in proc.stdout
    assert train_ids(manual) - {p for p in ids_before} == {"a000.jpg#0", "a002.jpg#0"}
    assert_agree(manual, data_dir)


def test_non_finite_keypoints_are_refused_before_writing(tmp_path):
    manual, data_dir = make_dataset(tmp_path, n_train=2, n_test=1)
    a = annotated(tmp_path, "a", 1, 50)
    raw = json.loads(a.read_text())
    raw["annotations"][0]["keypoints"][3] = float("nan")
    a.write_text(json.dumps(raw))          # NaN, as Python's json writes it
    train_before = (manual / "train.json").read_bytes()
    proc = run(merge_cmd(manual, data_dir, a))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert str(a) in proc.stderr and "'left_hand'" in proc.stderr and "NaN" in proc.stderr
    assert (manual / "train.json").read_bytes() == train_before


def test_a_dataset_deleted_by_an_old_failed_merge_is_rebuilt(tmp_path):
    """Before this version a failed merge could leave train.json merged and no dataset; a rerun
    with nothing new now builds the missing dataset."""
    import shutil
    manual, data_dir = make_dataset(tmp_path, n_train=2, n_test=1)
    a = annotated(tmp_path, "a", 1, 50)
    commands.merge(manual, a, images=a.parent / "new_a", data_dir=data_dir,
                   log_fn=lambda *x: None)
    shutil.rmtree(data_dir / "coco_keypoints" / "2.0.0")
    said = []
    result = commands.merge(manual, a, images=a.parent / "new_a", data_dir=data_dir,
                            log_fn=said.append)
    assert result["added_images"] == 0 and any("building it" in s for s in said)
    assert_agree(manual, data_dir)


def test_an_old_truncated_copy_is_replaced(tmp_path):
    manual, data_dir = make_dataset(tmp_path, n_train=2, n_test=1)
    a = annotated(tmp_path, "a", 1, 50)
    src = a.parent / "new_a" / "a000.jpg"
    (manual / "images" / "a000.jpg").write_bytes(src.read_bytes()[:100])
    commands.merge(manual, a, images=a.parent / "new_a", data_dir=data_dir,
                   log_fn=lambda *x: None)
    assert (manual / "images" / "a000.jpg").read_bytes() == src.read_bytes()
    # A different, whole image under the same name is the user's: refused.
    b = annotated(tmp_path, "b", 1, 90)
    _image(manual / "images" / "b000.jpg", 7)
    from vl4pose_jax.data import coco
    with pytest.raises(coco.CocoError, match="exists and differs"):
        commands.merge(manual, b, images=b.parent / "new_b", data_dir=data_dir,
                       log_fn=lambda *x: None)
    assert_agree(manual, data_dir)


def test_prepare_is_refused_while_a_merge_holds_the_folder(tmp_path):
    manual, data_dir = make_dataset(tmp_path, n_train=2, n_test=1)
    a = annotated(tmp_path, "a", 1, 50)
    holder = start_and_stop_at(merge_cmd(manual, data_dir, a), "staged")
    try:
        proc = run([sys.executable, "-m", "vl4pose_jax.data.prepare", "--dataset=coco_keypoints",
                    f"--manual_dir={manual}", f"--data_dir={data_dir}", "--overwrite"])
        assert proc.returncode == 1 and f"is in use by process {holder.pid}" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        kill(holder)
    proc = run([sys.executable, "-m", "vl4pose_jax.data.prepare", "--dataset=coco_keypoints",
                f"--manual_dir={manual}", f"--data_dir={data_dir}", "--overwrite"])
    assert proc.returncode == 0 and "rolled back the merge of" in proc.stdout, proc.stderr
    assert_agree(manual, data_dir)
