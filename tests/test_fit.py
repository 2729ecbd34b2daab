"""A round's training as the references do it (fit.py): the plateau schedule against
PyTorch's rules on a hand-computed sequence, the cosine schedule, the best-on-validation state
kept and early stopping (on a scripted validation loss, so that the epochs are known), the
validation loss over every example, a fresh against a carried optimizer, the result-row
fields and training plot, an exact resume with the best state and the schedule mid-round, the
protocols' defaults, old workdirs, and the missing validation split. Micro networks on the toy
dataset of tests/toy_dataset.py (train 16, pool 32, test 16, validation 8)."""
import dataclasses
import json

import jax
import numpy as np
import pytest

import toy_dataset
from conftest import micro_config, strip_timing
from vl4pose_jax import data, fit, nets, protocol, records, simulate
from vl4pose_jax import workdir as wd
from vl4pose_jax.protocol import SimulationError, round_key
from vl4pose_jax.report import plots

LR = 3e-4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    toy_dataset.register_toy()
    return str(tmp_path_factory.mktemp("fit_data"))


def config(data_dir, **kw):
    """Toy people, micro hourglass, 16 labelled at batch 8: two steps per epoch."""
    base = dict(dataset=toy_dataset.NAME, data_config=None, init_size=16, lr=LR,
                lr_schedule="plateau", optimizer_state="fresh", select_best=True)
    return micro_config(data_dir, **{**base, **kw})


def scripted(losses_by_step: dict, default: float = 1.0):
    """A `fit.validation_loss` stand-in: the loss of the state's global step count (restored
    on resume, so a resumed run sees the same sequence)."""
    return lambda config, d, n, state: losses_by_step.get(int(state.step), default)


def start(cfg):
    d = records.validate(cfg)
    n = nets.nets_for(cfg, "random")
    return d, n, n.init(round_key(cfg.seed, 0, "init"))


def train(cfg, d, n, state, epochs):
    """`epochs` of round 0 on the initial labelled set: (state, its `fit.Training`)."""
    record = fit.start_training(cfg)
    return fit.fit(cfg, d, n, state, records.initial_labelled(cfg, d), epochs, 0, "t",
                   training=record), record


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_plateau_step_follows_reduce_lr_on_plateau():
    """patience 5: the 6th epoch without a loss below best x (1 - 1e-4) halves the rate, then
    2 cooldown epochs count nothing; never below 3e-6, and a change below 1e-8 is no change."""
    losses = [1.0] * 7 + [0.99995, 0.5] + [0.6] * 6 + [0.4]
    p, lrs = fit.Plateau(4e-4), []
    for loss in losses:
        p = fit.plateau_step(p, loss)
        lrs.append(p.lr)
    # epoch 7: 6 bad epochs -> 2e-4; 8 (not 1e-4 better) and 9 in cooldown; 0.5 is the best;
    # 10..15 bad -> 1e-4 at epoch 15; 16 improves (cooldown).
    assert lrs == [4e-4] * 6 + [2e-4] * 8 + [1e-4] * 2
    assert (p.best, p.bad_epochs, p.cooldown) == (0.4, 0, 1)
    p = fit.Plateau(4e-6, best=0.1, bad_epochs=5)
    p = fit.plateau_step(p, 1.0)
    assert p.lr == 3e-6 and p.cooldown == 2
    assert fit.plateau_step(dataclasses.replace(p, bad_epochs=5, cooldown=0), 1.0).lr == 3e-6


def test_cosine_decays_to_a_hundredth_over_the_round():
    lrs = [fit.cosine_lr(LR, t, 10) for t in range(11)]
    assert lrs[0] == LR and lrs[10] == pytest.approx(0.01 * LR)
    assert lrs[5] == pytest.approx(LR * (0.01 + 0.99 * 0.5)) and np.all(np.diff(lrs) < 0)


def test_best_state_is_kept_and_early_stopping_stops(data_dir, monkeypatch):
    """Validation losses 5, 4, 4.5, 4.6, ... (epochs end at steps 2, 4, ...): epoch 2 is best
    and, with --early_stopping=2, training stops after epoch 4; the state returned is the one
    after 2 epochs (equal to a 2-epoch training)."""
    monkeypatch.setattr(fit, "validation_loss", scripted({2: 5.0, 4: 4.0, 6: 4.5, 8: 4.6}, 4.7))
    cfg = config(data_dir, lr_schedule="constant", early_stopping=2)
    d, n, state = start(cfg)
    best, record = train(cfg, d, n, fit.copy_state(state), 8)
    row = record.row()
    assert {k: row[k] for k in ("epochs_run", "best_epoch", "final_lr", "val_loss")} == {
        "epochs_run": 4, "best_epoch": 2, "final_lr": LR, "val_loss": 4.0}
    assert row["history"]["val_loss"] == [5.0, 4.0, 4.5, 4.6]
    assert row["history"]["lr"] == [LR] * 4 and len(row["history"]["train_loss"]) == 4
    assert int(best.step) == 4
    legacy = dataclasses.replace(cfg, select_best=False, early_stopping=0,
                                 optimizer_state="carried")
    two, none = train(legacy, d, n, state, 2)
    assert none is None   # the training of old runs keeps no record
    for a, b in zip(leaves(best), leaves(two)):
        np.testing.assert_array_equal(a, b)


def test_plateau_halves_the_pose_rate_only(data_dir, monkeypatch):
    """A constant validation loss: the 7th epoch's step halves the rate for epoch 8, in the
    pose optimizer's injected learning rate; the auxiliary Adam has no injected rate."""
    monkeypatch.setattr(fit, "validation_loss", scripted({}, 1.0))
    cfg = config(data_dir, select_best=False)
    d, n, state = start(cfg)
    state, record = train(cfg, d, n, state, 8)
    assert record.row()["history"]["lr"] == [LR] * 7 + [LR / 2]
    assert record.best_epoch == 1   # then cooldown after the cut at epoch 7
    assert (record.plateau.bad_epochs, record.plateau.cooldown) == (0, 1)
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(LR / 2)
    pose_tx, aux_tx = nets.optimizers(LR, scheduled=True)
    assert hasattr(pose_tx.init(state.params), "hyperparams")
    assert not hasattr(aux_tx.init(state.params)[0], "hyperparams")


def test_the_kept_state_has_the_lowest_validation_loss_over_every_example(data_dir):
    cfg = config(data_dir, lr=1e-2)
    d, n, state = start(cfg)
    best, record = train(cfg, d, n, state, 3)
    history = [v for _, v, _ in record.history_Ex3]
    assert len(history) == 3 and record.best_val == min(history)
    assert fit.validation_loss(cfg, d, n, best) == pytest.approx(min(history), rel=1e-6)
    # batches of 3, 3 and 2 validation examples: the same mean as one batch of 8
    odd = dataclasses.replace(cfg, batch_size=3)
    assert fit.validation_loss(odd, d, n, best) == pytest.approx(min(history), rel=1e-5)


def test_fresh_optimizer_restarts_adam(data_dir):
    cfg = config(data_dir, select_best=False, lr_schedule="constant")
    d, n, state = start(cfg)
    trained = fit.fit(cfg, d, n, state, records.initial_labelled(cfg, d), 1, 0, "t")
    fresh = n.fresh_optimizer(trained)
    assert int(trained.opt_state[0].count) == 2 and int(fresh.opt_state[0].count) == 0
    assert all(not np.any(np.asarray(m)) for m in jax.tree.leaves(fresh.opt_state[0].mu))
    for a, b in zip(leaves(trained), leaves(fresh)):
        np.testing.assert_array_equal(a, b)


def test_rows_plot_and_exact_resume(data_dir, tmp_path, monkeypatch):
    """Scripted validation (best: the first epoch of each round): a run stopped by a signal
    mid-epoch, then crashed after a checkpoint whose best state is not the current one, resumes
    to the rows of an uninterrupted run; the rows record the training and each round has its
    training plot; a carried optimizer changes round 1 only."""
    # Round 0 runs state.step 0 -> 6 and keeps step 2; round 1 runs 2 -> 8 and keeps step 4.
    monkeypatch.setattr(fit, "validation_loss", scripted({2: 0.5, 4: 0.8}, 1.0))
    cfg = config(data_dir, rounds=1, epochs=3, cycle_epochs=3, checkpoint_every=1)
    log = lambda *_: None  # noqa: E731
    reference = simulate.run(cfg, tmp_path / "a", log=log,
                             on_round=plots.round_plotter(tmp_path / "a"))
    assert [(r["round"], r["epochs_run"], r["best_epoch"], r["val_loss"], r["final_lr"])
            for r in reference] == [(0, 3, 1, 0.5, LR), (1, 3, 1, 0.8, LR)]
    assert reference[1]["history"]["val_loss"] == [0.8, 1.0, 1.0]
    assert reference[1]["history"]["lr"] == [LR] * 3
    for r in (0, 1):
        assert (tmp_path / "a" / "plots" / f"random_seed0_round{r}_training.png").stat().st_size
    trained = wd.load_trained(tmp_path / "a")
    assert int(trained.state.step) == 4   # round 1's best: its first epoch
    calls = iter(range(100))   # SIGTERM noted at the third step
    monkeypatch.setattr(fit.preemption, "requested",
                        lambda *_, **__: 15 if next(calls) == 2 else None)
    with pytest.raises(fit.preemption.Interrupted, match="step 3 of 6"):
        simulate.run(cfg, tmp_path / "b", log=log)
    monkeypatch.setattr(fit.preemption, "requested", lambda *_, **__: None)
    messages = []
    with pytest.raises(protocol.SimulatedCrash, match="round 1 at step 4"):
        simulate.run(dataclasses.replace(cfg, crash_at="train:1:4"), tmp_path / "b",
                     log=messages.append)
    assert any("resuming round 0 at step 3" in m for m in messages)
    resumed = simulate.run(cfg, tmp_path / "b", log=messages.append)
    assert any("resuming round 1 at step 4" in m for m in messages)
    assert strip_timing(resumed) == strip_timing(reference)
    carried = simulate.run(dataclasses.replace(cfg, optimizer_state="carried",
                                               checkpoint_every=0), tmp_path / "c", log=log)
    assert strip_timing(carried)[0] == strip_timing(reference)[0]
    assert carried[1]["history"]["train_loss"] != reference[1]["history"]["train_loss"]


def test_protocols_and_old_workdirs(tmp_path):
    lsp = protocol.make_config("lsp", ["vl4pose"])
    assert (lsp.epochs, lsp.cycle_epochs, lsp.lr_schedule, lsp.optimizer_state,
            lsp.select_best, lsp.early_stopping) == (150, 100, "plateau", "fresh", True, 0)
    assert nets.learning_rate(lsp) == 3e-4
    icvl = protocol.make_config("icvl", ["random"])
    assert (icvl.retrain, icvl.min_steps, icvl.lr_schedule, icvl.select_best) == (
        "scratch", 900, "constant", True)
    human = protocol.make_config("synthetic_human", ["random"])
    assert (human.data_config, human.cycle_epochs, human.lr_schedule, human.optimizer_state,
            human.select_best) == ("families", 12, "plateau", "fresh", True)
    assert protocol.make_config("synthetic_human", ["random"],
                                protocol="synthetic_human_v1").legacy_training
    old = protocol.make_config("lsp", ["vl4pose"], lr_schedule="constant",
                               optimizer_state="carried", select_best=False)
    assert old.legacy_training and not old.needs_validation
    with pytest.raises(SimulationError, match="--lr_schedule must be one of"):
        protocol.check(dataclasses.replace(old, lr_schedule="step"))
    # a workdir written before these fields resumes with the old behaviour
    (tmp_path / wd.CONFIG_FILE).write_text(json.dumps(
        {k: v for k, v in old.identity().items()
         if k not in ("lr_schedule", "optimizer_state", "select_best", "early_stopping")}))
    wd.check_config(old, tmp_path)
    assert wd.load_config(tmp_path).legacy_training
    with pytest.raises(SimulationError, match="select_best: was False, now True"):
        wd.check_config(dataclasses.replace(old, select_best=True), tmp_path)


def test_missing_validation_split_is_one_paragraph(data_dir, monkeypatch):
    cfg = config(data_dir, lr_schedule="cosine", select_best=False, early_stopping=3)
    load = data.load

    def built_before(name, split, **kw):   # a build without the split: data.load's KeyError
        if split == "validation":
            raise KeyError(f"{name!r} has no split 'validation' in this build")
        return load(name, split, **kw)

    monkeypatch.setattr(data, "load", built_before)
    with pytest.raises(SimulationError) as err:
        records.validate(cfg)
    message = str(err.value)
    assert "--early_stopping=3" in message and "'toy_pose'" in message and "\n" not in message
    assert "rebuild it with the current builder version" in message
    assert "python -m vl4pose_jax.data.prepare --dataset=toy_pose" in message
    spec = data.spec(toy_dataset.NAME)
    monkeypatch.setattr(data, "spec", lambda name, **kw: dataclasses.replace(
        spec, splits=("train", "pool", "test")))
    with pytest.raises(SimulationError, match="builder makes no 'validation' split"):
        records.load_data(dataclasses.replace(cfg, select_best=True))
    assert records.load_data(dataclasses.replace(cfg, early_stopping=0)).validation is None
