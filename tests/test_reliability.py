"""Reliability of the AL command under the faults of a cluster (issue 13): a second launch on a
workdir is refused naming the holder, SIGTERM / Ctrl-C stop at the next step with a checkpoint
and resume exactly (real processes, real signals), a corrupt newest checkpoint falls back to the
newest intact one, plots lost by a kill are regenerated, storage faults and bad flags are one
paragraph. Smallest settings throughout (micro network, tiny synthetic set)."""
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io

from experiments import al, report
from conftest import micro_config, strip_timing
from vl4pose_jax import protocol, records, simulate
from vl4pose_jax import workdir as wd
from vl4pose_jax.data import builders, synthetic_builders

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "VL4POSE_DISTRIBUTED": ""}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel_data")
    builders.build("synthetic_human", data_dir=path, config="tiny")
    return str(path)


config, strip = micro_config, strip_timing


def cli(workdir, data_dir, *extra):
    return [sys.executable, "-m", "experiments.al", "--dataset=synthetic_human",
            "--method=random", "--preset=micro", "--data_config=tiny", f"--data_dir={data_dir}",
            "--init_size=16", "--budget=4", "--rounds=1", "--epochs=1", "--batch_size=8",
            f"--workdir={workdir}", *extra]


def run_cli(args, timeout=300):
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout, check=False)


def wait_for(predicate, proc, timeout=300.0):
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): "
                                 f"{proc.communicate()[1][-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


# ------------------------------------------------------------------------- 1. two launches

def test_second_launch_on_a_workdir_is_refused_naming_the_holder(data_dir, tmp_path):
    w = tmp_path / "w"
    holder = subprocess.Popen(cli(w, data_dir, "--cycle_epochs=100000"), cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = w / ".run.lock"
    try:
        wait_for(lambda: lock.is_file() and lock.read_text().strip(), holder)
        second = run_cli(cli(w, data_dir, "--cycle_epochs=100000"))
        assert second.returncode == 1
        assert f"is in use by process {holder.pid} on host" in second.stderr
        assert "Traceback" not in second.stderr
        with pytest.raises(protocol.SimulationError, match=f"in use by process {holder.pid}"):
            simulate.run(config(data_dir), w)   # library callers are refused too
    finally:
        holder.send_signal(signal.SIGKILL)   # kill -9: the kernel drops the lock
        holder.wait()
    with wd.lock(w):
        pass


# ------------------------------------------------------------------------- 2 and 7. flags

@pytest.mark.parametrize("value, message", [(2.5, "neither a fraction"), (0.0, r"\(0, 1\]"),
                                            (-3.0, r"\(0, 1\]")])
def test_bad_pre_subset_flag_is_refused(value, message):
    with pytest.raises(protocol.SimulationError, match=message):
        protocol.parse_pre_subset(value, 4)


def test_pre_subset_flag_parses_fractions_and_counts():
    assert protocol.parse_pre_subset(0.5, 4) == 0.5 and isinstance(protocol.parse_pre_subset(1.0, 4), float)
    assert protocol.parse_pre_subset(8.0, 4) == 8 and isinstance(protocol.parse_pre_subset(8.0, 4), int)
    assert protocol.parse_pre_subset(None, 4) is None
    rows = [{"method": "random", "seed": 0, "round": 0, "num_scored": 12}]
    assert al.scored_summary(rows) == "pool records scored per round: random seed 0 round 0: 12"


@pytest.mark.parametrize("kw, message", [
    (dict(pre_subset=2), "fewer than --budget=4"),
    (dict(pre_subset=1.5), r"fraction of the pool in \(0, 1\]"),
    (dict(pre_subset=0.0), r"\(0, 1\]"),
    (dict(lr=0.0), "--lr must be a positive number"),
    (dict(lr=-1e-3), "--lr must be a positive number"),
    (dict(methods=("random", "coreset", "random")), "'random' more than once"),
])
def test_bad_values_fail_before_training(data_dir, kw, message):
    with pytest.raises(protocol.SimulationError, match=message):
        records.validate(config(data_dir, **kw))


def test_empty_pool_names_init_size(data_dir, monkeypatch):
    """A dataset without a train split draws the initial set from the pool: a too large
    --init_size, not --budget, empties it."""
    real = records.load_data

    def pool_only(cfg):
        d = real(cfg)
        pool = d.source.parts[-1]
        union = records.Union([pool])
        return dataclasses.replace(d, source=union, ids=d.ids[d.pool_start:],
                                   ood_N=d.ood_N[d.pool_start:], pool_start=0)

    monkeypatch.setattr(records, "load_data", pool_only)
    with pytest.raises(protocol.SimulationError, match="--init_size=200.*lower --init_size"):
        records.validate(config(data_dir, init_size=200))


# --------------------------------------------------------------------- 3. corrupt checkpoints

def test_corrupt_newest_checkpoint_falls_back_to_the_newest_intact_one(data_dir, tmp_path):
    cfg = config(data_dir)
    reference = simulate.run(cfg, tmp_path / "a", log=lambda *_: None)
    rounds = "checkpoints/random/seed_0/rounds"
    for name, damage in [("metadata", lambda s: (s / "state" / "_METADATA").unlink()),
                         ("truncated", lambda s: [os.truncate(f, f.stat().st_size // 2)
                                                  for f in (s / "state").rglob("*")
                                                  if f.is_file() and f.stat().st_size > 100])]:
        w = tmp_path / name
        shutil.copytree(tmp_path / "a", w)
        damage(w / rounds / "1")
        messages = []
        rows = simulate.run(cfg, w, log=messages.append)
        assert strip(rows) == strip(reference)
        warning = next(m for m in messages if "skipped unreadable checkpoint" in m)
        assert str(w / rounds / "1") in warning and "resuming from step 0" in warning
        assert (w / "checkpoints/random/seed_0/unreadable/rounds_1").is_dir()
    w = tmp_path / "both"
    shutil.copytree(tmp_path / "a", w)
    for step in ("0", "1"):
        (w / rounds / step / "meta" / "metadata").unlink()
    with pytest.raises(protocol.SimulationError, match=f"no checkpoint in {w / rounds} can be "
                       f"read: step 1 .*step 0 .*Delete {w / rounds}"):
        simulate.run(cfg, w, log=lambda *_: None)


def test_corrupt_mid_round_checkpoint_falls_back_to_the_previous_one(data_dir, tmp_path):
    cfg = config(data_dir, epochs=3, checkpoint_every=1)
    reference = simulate.run(cfg, tmp_path / "a", log=lambda *_: None)
    with pytest.raises(protocol.SimulatedCrash):
        simulate.run(dataclasses.replace(cfg, crash_at="train:0:4"), tmp_path / "b",
                     log=lambda *_: None)
    training = tmp_path / "b/checkpoints/random/seed_0/training"
    (training / "4" / "state" / "_METADATA").unlink()
    messages = []
    rows = simulate.run(cfg, tmp_path / "b", log=messages.append)
    assert strip(rows) == strip(reference)
    assert any(f"{training / '4'} (" in m and "resuming from step 2" in m for m in messages)
    assert any("resuming round 0 at step 2" in m for m in messages)


# ------------------------------------------------------------------------- 4. signals

def test_sigterm_and_ctrl_c_save_at_the_next_step_and_resume_exactly(data_dir, tmp_path):
    w = tmp_path / "w"
    args = cli(w, data_dir, "--cycle_epochs=12", "--checkpoint_every=1")
    training = w / "checkpoints/random/seed_0/training"

    def steps():
        return sorted(int(p.name) for p in training.glob("*") if p.name.isdigit()) \
            if training.is_dir() else []

    def interrupt(sig, after):
        proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(s > after for s in steps()), proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        return proc.returncode, err

    code, err = interrupt(signal.SIGTERM, 0)
    assert code == 143, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "SIGTERM received: stopped after saving random s0 r1 at step ")
    stop = int(err.strip().splitlines()[-1].split(" at step ")[1].split()[0])
    assert 10**7 + stop in steps()   # the step it stopped at is checkpointed
    first = max(steps())
    code, err = interrupt(signal.SIGINT, first)
    assert code == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1].startswith("SIGINT received: stopped after saving")
    done = run_cli(args)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = [json.loads(line) for line in (w / "results.jsonl").read_text().splitlines()]
    reference = simulate.run(wd.load_config(w), tmp_path / "reference",
                             log=lambda *_: None)
    assert strip(resumed) == strip(reference)


# ------------------------------------------------------------------------- 5. plots

def test_plots_lost_by_a_kill_are_regenerated_on_resume(data_dir, tmp_path):
    cfg = config(data_dir, methods=("multipeak_entropy",))

    def killed(row, extras):   # a kill right after round 0's checkpoint, before its plots
        raise protocol.SimulatedCrash("killed before the plots")

    with pytest.raises(protocol.SimulatedCrash):
        simulate.run(cfg, tmp_path, on_round=killed, log=lambda *_: None)
    plots = tmp_path / "plots"
    assert not plots.exists()
    messages = []
    simulate.run(cfg, tmp_path, on_round=report.round_plotter(tmp_path), log=messages.append)
    assert any("regenerating the plots of round 0" in m for m in messages)
    assert not any("differs" in m for m in messages)
    for kind in ("gallery", "scores"):
        assert (plots / f"multipeak_entropy_seed0_round0_{kind}.png").stat().st_size > 0
    assert not [p for p in plots.iterdir() if ".tmp" in p.name]


# ------------------------------------------------------------------------- 6. storage, prepare

def test_workdir_that_is_a_file_is_one_paragraph(data_dir, tmp_path):
    (tmp_path / "w").write_text("not a folder")
    out = run_cli(cli(tmp_path / "w", data_dir))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{tmp_path / 'w'} exists and is not a folder" in out.stderr


def _private_mount(script, timeout=300):
    """Run `script` (sh) in a private mount namespace, so its tmpfs vanishes with it."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("needs `unshare -m` (root) for a private tmpfs")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_read_only_workdir_fails_at_once(data_dir, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = " ".join(cli(mnt / "w", data_dir, "--compilation_cache="))
    t0 = time.monotonic()
    out = _private_mount(f"mount -t tmpfs tmpfs {mnt} && mkdir {mnt}/w && echo '{{}}' > "
                         f"{mnt}/w/config.json && mount -o remount,ro {mnt} && exec {args}")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert f"cannot write to {mnt / 'w'} (Read-only file system)" in out.stderr
    assert time.monotonic() - t0 < 20   # before the data and the networks


def test_full_disk_is_one_paragraph(data_dir, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = " ".join(cli(mnt / "w", data_dir, "--compilation_cache="))
    out = _private_mount(f"mount -t tmpfs -o size=120k tmpfs {mnt} && exec {args}")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "No space left on device" in out.stderr and "rerun the same command" in out.stderr


@pytest.mark.parametrize("content, message", [
    (None, r"joints.mat: 'joints' has shape \(5, 14, 10\)"),
    (b"\x13garbage" * 40, "joints.mat: not a readable MATLAB file"),
])
def test_prepare_bad_joints_mat_names_the_file(tmp_path, content, message):
    for name in ("lsp", "lspet"):
        (tmp_path / "m" / name / "images").mkdir(parents=True)
    path = tmp_path / "m" / "lsp" / "joints.mat"
    if content is None:
        scipy.io.savemat(path, {"joints": np.zeros((5, 14, 10))})
    else:
        path.write_bytes(content)
    out = run_cli([sys.executable, "-m", "vl4pose_jax.data.prepare", "--dataset=lsp",
                   f"--manual_dir={tmp_path / 'm'}", f"--data_dir={tmp_path / 'd'}"])
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"error: {tmp_path / 'm' / 'lsp'}/" in out.stderr
    assert __import__("re").search(message, out.stderr)


def test_build_removes_a_killed_builds_leftover(tmp_path):
    leftover = tmp_path / "synthetic_human" / "tiny" / "incomplete.XYZ_1.0.0"
    leftover.mkdir(parents=True)
    (leftover / "part.array_record").write_bytes(b"half")
    builders.build("synthetic_human", data_dir=tmp_path, config="tiny")
    assert not leftover.exists()
    built = tmp_path / "synthetic_human" / "tiny" / str(synthetic_builders.SyntheticHuman.VERSION)
    assert built.is_dir()


# ------------------------------------------------- --init_from remembers the data (issue 29)

def _source_workdir(data_dir, path):
    """A workdir as experiments.al leaves it before training: config.json and data.json."""
    c = config(data_dir, methods=("vl4pose",), preset="micro")
    wd.check_config(c, path)
    wd.record_data(path, c)
    return c


def test_init_from_reads_dataset_data_dir_and_preset_from_the_source(data_dir, tmp_path):
    source = _source_workdir(data_dir, tmp_path / "w0")
    flags = al.FLAGS
    try:
        flags.unparse_flags()
        flags(["al", f"--init_from={tmp_path / 'w0'}"])
        c = al.config_from_flags(al.init_from_settings(tmp_path / "w0"))
        assert (c.dataset, c.methods, c.preset) == (source.dataset, ("vl4pose",), "micro")
        assert c.data_dir == str(pathlib.Path(data_dir).resolve())
        flags.unparse_flags()
        flags(["al", f"--init_from={tmp_path / 'w0'}", "--preset=tiny"])
        with pytest.raises(protocol.SimulationError, match="--preset=tiny .its network is 'micro'"):
            al.init_from_settings(tmp_path / "w0")
        flags.unparse_flags()
        flags(["al", f"--init_from={tmp_path / 'w0'}", f"--data_dir={tmp_path / 'moved'}"])
        c = al.config_from_flags(al.init_from_settings(tmp_path / "w0"))   # flags override
        assert c.data_dir == str(tmp_path / "moved") and c.dataset == source.dataset
    finally:
        flags.unparse_flags()


def test_init_from_with_a_contradicting_flag_is_one_paragraph(data_dir, tmp_path):
    _source_workdir(data_dir, tmp_path / "w0")
    proc = run_cli([sys.executable, "-m", "experiments.al", f"--init_from={tmp_path / 'w0'}",
                    "--dataset=lsp", f"--workdir={tmp_path / 'w1'}"], timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--dataset=lsp (it trained on synthetic_human)" in proc.stderr
    assert "data.json" in proc.stderr and not (tmp_path / "w1").exists()
