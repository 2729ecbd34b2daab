"""Behaviour pinned: a small committed AL run (every result row of two heatmap and three
regression methods, two acquisition rounds, micro networks on the tiny synthetic sets) must be
reproduced exactly by the current code. Regenerate the files only for an intended change of
behaviour: `VL4POSE_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py`, and say why in the
commit."""
import json
import os
import pathlib

import pytest

from conftest import micro_config, strip_timing
from vl4pose_jax import simulate

GOLDEN = pathlib.Path(__file__).parent / "golden"
RUNS = {
    "human": dict(methods=("random", "vl4pose", "learning_loss"), rounds=2, epochs=2),
    "hand": dict(dataset="synthetic_hand", methods=("random", "aleatoric", "mc_dropout"),
                 retrain="scratch", rounds=2, epochs=2,
                 method_options={"mc_dropout": dict(num_samples=3)}),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("golden_data"))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_rows_equal_the_committed_golden_run(name, data_dir, tmp_path):
    rows = strip_timing(simulate.run(micro_config(data_dir, **RUNS[name]), tmp_path,
                                     log=lambda *_: None))
    rows = json.loads(json.dumps(rows, sort_keys=True))
    path = GOLDEN / f"{name}.jsonl"
    if os.environ.get("VL4POSE_WRITE_GOLDEN") == "1":
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    golden = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len(golden)
    for row, want in zip(rows, golden):
        assert row == want, (row["method"], row["seed"], row["round"])
