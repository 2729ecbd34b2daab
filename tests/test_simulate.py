"""The AL simulator (`simulate.run`): every method runs two rounds, a crashed run resumes to
exactly the uninterrupted result, a changed config is refused, bad settings fail before any
training."""
import dataclasses
import json
import os
import pathlib

import numpy as np
import pytest

from experiments import report
from conftest import micro_config, strip_timing
from vl4pose_jax import acquisition, protocol, records, simulate
from vl4pose_jax import workdir as wd



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("al_data"))


config, strip = micro_config, strip_timing


def test_every_heatmap_method_runs_two_rounds(data_dir, tmp_path):
    methods = tuple(m for m in acquisition.names() if "heatmap" in acquisition.get(m).tasks)
    cfg = config(data_dir, methods=methods,
                 method_options={"egl": dict(k=3, chunk=2), "coregcn": dict(steps=20),
                                 "uncertaingcn": dict(steps=20)})
    rows = simulate.run(cfg, tmp_path)
    assert [(r["method"], r["round"]) for r in rows] == [(m, r) for m in methods for r in (0, 1)]
    for r in rows:
        assert r["num_labelled"] == 16 + 4 * r["round"]
        assert set(r["metrics"]) == {"pck@0.2"} and np.isfinite(r["metrics"]["pck@0.2"])
        assert len(r["per_joint"]["pck@0.2"]) == 14
        if r["round"] == 0:
            assert len(set(r["selected_ids"])) == 4
            assert all(i.startswith("pool/") for i in r["selected_ids"])
            assert 0.0 <= r["ood_selected_fraction"] <= 1.0
    on_disk = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert strip(on_disk) == strip(rows)
    assert any("ood_auroc" in r for r in rows if r["method"] == "vl4pose")


def test_hand_methods_run_two_rounds(data_dir, tmp_path):
    """DeepPrior variants: plain (vl4pose regression head), MC dropout (mc_dropout, cke),
    aleatoric output; mean joint error in mm."""
    methods = ("vl4pose", "mc_dropout", "cke", "aleatoric")
    cfg = config(data_dir, dataset="synthetic_hand", methods=methods, retrain="scratch",
                 method_options={"mc_dropout": dict(num_samples=3), "cke": dict(num_samples=3)})
    rows = simulate.run(cfg, tmp_path, log=lambda *_: None,
                        on_round=report.round_plotter(tmp_path))
    assert [(r["method"], r["round"]) for r in rows] == [(m, r) for m in methods for r in (0, 1)]
    assert (tmp_path / "plots" / "vl4pose_seed0_round0_gallery.png").stat().st_size > 0
    assert (tmp_path / "plots" / "vl4pose_seed0_round0_scores.png").stat().st_size > 0
    for r in rows:
        assert np.isfinite(r["metrics"]["mean_error_mm"]) and r["metrics"]["mean_error_mm"] > 0
        assert len(r["per_joint"]["mean_error_mm"]) == 16
    assert all(len(r["selected_ids"]) == 4 for r in rows if r["round"] == 0)


def test_resume_after_crash_is_exact(data_dir, tmp_path):
    """Crash mid-training (after a mid-round checkpoint with the grain iterator state), then
    after a round's checkpoint: the resumed run ends exactly as the uninterrupted one."""
    cfg = config(data_dir, methods=("vl4pose",), rounds=2, epochs=2, checkpoint_every=1)
    log = lambda *_: None  # noqa: E731
    reference = simulate.run(cfg, tmp_path / "a", log=log)
    with pytest.raises(protocol.SimulatedCrash, match="step 2"):
        simulate.run(dataclasses.replace(cfg, crash_at="train:0:2"), tmp_path / "b", log=log)
    assert not (tmp_path / "b" / "results.jsonl").exists()
    messages = []
    with pytest.raises(protocol.SimulatedCrash, match="after round 1"):
        simulate.run(dataclasses.replace(cfg, crash_at="round:1"), tmp_path / "b",
                     log=messages.append)
    assert any("resuming round 0 at step 2" in m for m in messages)
    partial = (tmp_path / "b" / "results.jsonl").read_text().splitlines()
    assert len(partial) == 2
    resumed = simulate.run(cfg, tmp_path / "b", log=log)
    assert strip(resumed) == strip(reference)
    # a finished run resumes to the same rows without training
    assert strip(simulate.run(cfg, tmp_path / "b", log=log)) == strip(reference)
    with pytest.raises(protocol.SimulationError, match="different settings.*budget"):
        simulate.run(dataclasses.replace(cfg, budget=5), tmp_path / "b", log=log)
    trained = wd.load_trained(tmp_path / "b")
    assert trained.method == "vl4pose" and trained.meta["round"] == 2
    assert strip(trained.meta["results"]) == strip(reference)
    with pytest.raises(protocol.SimulationError, match="no run of method 'random'"):
        wd.load_trained(tmp_path / "b", method="random")
    with pytest.raises(protocol.SimulationError, match="holds no config.json"):
        wd.load_trained(tmp_path / "nothing")


@pytest.mark.parametrize("kw, message", [
    (dict(dataset="nope"), "unknown dataset 'nope'; known datasets: .*synthetic_human"),
    (dict(methods=("nope",)), "unknown method 'nope'; known methods: random"),
    (dict(methods=("cke",)), "'cke' supports the regression"),
    (dict(budget=20, rounds=2), "only 32"),
    (dict(retrain="sometimes"), "scratch"),
    (dict(dataset="lsp", data_config=None), "python -m vl4pose_jax.data.prepare --dataset=lsp"),
])
def test_bad_settings_fail_before_training(data_dir, kw, message):
    with pytest.raises(protocol.SimulationError, match=message):
        records.validate(config(data_dir, **kw))


def test_cli_bad_flags_exit_nonzero_with_message():
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "experiments.al", "--dataset=nope"], cwd=root,
                         env=env, capture_output=True, text=True, check=False)
    assert out.returncode != 0
    assert "unknown dataset 'nope'; known datasets:" in out.stderr


def test_report_aggregates_seeds(tmp_path):
    rows = [{"method": m, "seed": s, "round": r, "num_labelled": 10 * (r + 1),
             "metrics": {"pck@0.2": float(s + r + (m == "vl4pose"))}}
            for m in ("random", "vl4pose") for s in (0, 1) for r in (0, 1)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = report.write_report([tmp_path], tmp_path / "out")
    assert table["sizes"] == [10, 20]
    assert table["methods"]["vl4pose"][20] == (2.5, pytest.approx(0.5 ** 0.5), 2)   # ddof 1
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| vl4pose | 1.50 ± 0.71 | 2.50 ± 0.71 |" in md
    assert (tmp_path / "out" / "learning_curve.png").stat().st_size > 0


def test_non_finite_loss_stops_training_with_a_clear_error(data_dir, tmp_path):
    with pytest.raises(protocol.NonFiniteLossError, match="non-finite loss"):
        simulate.run(config(data_dir, lr=1e30, epochs=4), tmp_path)
