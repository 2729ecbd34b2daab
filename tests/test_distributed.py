"""Scale-out of the AL simulator on CPU: one process with 4 forced devices selects exactly what one
device selects (and each device really gets a quarter of every batch); two processes joined by
`--distributed` train over all four devices, share pool scoring with the per-process top-k merge
(equal to ranking every score at once), checkpoint with Orbax and resume mid-round."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from vl4pose_jax import acquire, protocol, records, simulate
from vl4pose_jax import workdir as wd

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMING = ("seconds_train", "seconds_score")
SETTINGS = dict(dataset="synthetic_human", methods=("vl4pose",), preset="micro",
                data_config="tiny", init_size=16, budget=4, rounds=1, epochs=2, cycle_epochs=1,
                batch_size=8, checkpoint_every=1, progress=False)

_FOUR_DEVICES = r"""
import json, sys
import jax
from vl4pose_jax import parallel, protocol, simulate
from vl4pose_jax import workdir as wd
assert len(jax.devices()) == 4
rows_per_device = set()
shard_batch = parallel.shard_batch
def spy(batch, mesh):
    out = shard_batch(batch, mesh)
    for name, value in out.items():
        rows_per_device.add((name, value.shape[0],
                             tuple(s.data.shape[0] for s in value.addressable_shards)))
    return out
parallel.shard_batch = spy
config = protocol.Config(**json.loads(sys.argv[1]))
rows = simulate.run(config, sys.argv[2], log=lambda *a: None)
print("ROWS", json.dumps(sorted(rows_per_device)))
"""


def _env(devices):
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))


def _results(workdir):
    lines = (pathlib.Path(workdir) / wd.RESULT_FILE).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dist_data"))


def test_four_devices_repeat_exactly(data_dir, tmp_path):
    """On a fixed device count a run is reproducible: two 4-device runs give identical
    results (selections, metrics, diagnostics), and every device trains on a quarter of each
    batch. Across device counts only the distribution is the same: gradients and BatchNorm
    statistics are reduced in another order and Adam amplifies the difference over epochs
    (one update equals the single-device one to 1e-6: tests/test_parallel.py)."""
    settings = dict(SETTINGS, data_dir=data_dir)
    records.validate(protocol.Config(**settings))  # builds the tiny set once
    runs = []
    for name in ("a", "b"):
        out = subprocess.run([sys.executable, "-c", _FOUR_DEVICES,
                              json.dumps({**settings, "methods": list(settings["methods"])}),
                              str(tmp_path / name)],
                             env=_env(4), capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        shards = json.loads(out.stdout.split("ROWS", 1)[1])
        # Training batches of 8 images: 2 rows on each of the 4 devices.
        assert ["image", 8, [2, 2, 2, 2]] in shards
        assert all(rows == [size // 4] * 4 for _, size, rows in shards)
        runs.append(_results(tmp_path / name))
    assert runs[0] == runs[1]
    assert len(runs[0][0]["selected_ids"]) == 4 and "ood_auroc" in runs[0][0]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(data_dir, workdir, *extra):
    port = _free_port()
    args = [f"--dataset={SETTINGS['dataset']}", "--method=vl4pose", "--preset=micro",
            "--data_config=tiny", "--init_size=16", "--budget=4", "--rounds=1", "--epochs=2",
            "--cycle_epochs=1", "--batch_size=8", "--checkpoint_every=1",
            f"--data_dir={data_dir}", f"--workdir={workdir}", "--compilation_cache=",
            "--distributed", f"--coordinator_address=localhost:{port}", "--num_processes=2",
            *extra]
    procs = [subprocess.Popen([sys.executable, "-m", "experiments.al", *args,
                               f"--process_id={i}"], env=_env(2), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    return [(p.wait(timeout=900), *p.communicate()) for p in procs]


def test_two_processes_train_score_checkpoint_and_resume(data_dir, tmp_path):
    config = protocol.Config(**SETTINGS, data_dir=data_dir)
    d = records.validate(config)  # builds the tiny synthetic set once
    crashed = _two_processes(data_dir, tmp_path, "--crash_at=train:0:2")
    assert all(rc != 0 for rc, _, _ in crashed)
    assert "simulated crash" in crashed[0][2]
    resumed = _two_processes(data_dir, tmp_path)
    for rc, _, err in resumed:
        assert rc == 0, err[-3000:]
    assert "resuming round 0 at step 2" in resumed[0][1] + resumed[0][2]
    assert "pck@0.2" in resumed[0][1] and "pck@0.2" not in resumed[1][1]  # primary speaks

    rows = _results(tmp_path)
    assert [r["round"] for r in rows] == [0, 1] and "ood_auroc" in rows[0]
    # The per-process top-k merge selected exactly what ranking the whole pool selects, from
    # the state saved (by both processes) at the end of round 0.
    trained = wd.load_trained(tmp_path, data_dir=data_dir)
    assert trained.meta["round"] == 1
    n = trained.nets
    mngr = wd.manager(wd.run_dir(tmp_path, "vl4pose", 0) / "rounds")
    state, meta = wd.restore(mngr, 0, trained.state)
    labelled = records.initial_labelled(config, d)
    assert meta["labelled_ids"][:16] == [d.ids[i] for i in labelled]
    sel, stats = acquire.acquire(config, d, n, state, "vl4pose", labelled, 0)
    assert [d.ids[i] for i in sel.indices] == rows[0]["selected_ids"]
    assert stats["ood_auroc"] == pytest.approx(rows[0]["ood_auroc"], abs=1e-6)
    pool = np.setdiff1d(np.arange(d.pool_start, len(d.source)), labelled)
    assert np.array_equal(np.sort(sel.scored_indices), pool)


_HELPERS = r"""
import sys
import numpy as np
from vl4pose_jax import parallel
parallel.initialize_distributed(f"localhost:{sys.argv[1]}", 2, int(sys.argv[2]))
import jax
from vl4pose_jax.acquisition import common
me = jax.process_index()
everything = np.arange(7) * 10
mine = parallel.process_share(everything)
assert list(mine) == ([0, 10, 20, 30] if me == 0 else [40, 50, 60])
(rows, pairs) = parallel.gather_rows(mine, np.stack([mine, -mine], 1))
assert list(rows) == list(everything) and pairs.shape == (7, 2)
assert parallel.gather_bytes(b"state-%d" % me * (me + 1)) == [b"state-0", b"state-1state-1"]
scores = np.random.default_rng(0).normal(size=7).round(1)
scores[[1, 5]] = 9.0   # a tie across processes: the smaller record index ranks first
for highest in (True, False):
    for count in (1, 3, 7):
        want = common.top_budget(scores, everything, count, highest=highest)
        got = common.top_pool(scores[mine // 10], mine, count, highest=highest)
        assert list(got) == list(want), (highest, count, got, want)
print("OK", me)
"""


def test_process_helpers_on_two_processes():
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", _HELPERS, str(port), str(i)], env=_env(1),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and f"OK {i}" in out, err[-3000:]
