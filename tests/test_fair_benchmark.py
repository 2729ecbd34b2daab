"""The simulator as a fair instrument: methods of one (seed, round) score the same candidates,
from-scratch rounds train equally long, Bayesian DeepPrior is evaluated as the mean of its MC
passes, and every round records per-kind accuracy, OOD AUROC per kind, the selections' OOD
shares, score/error Spearman on the test split and VL4Pose's refinement."""
import dataclasses

import numpy as np
import pytest
from scipy import stats

from conftest import micro_config, strip_timing
from experiments import diagnose, report
import jax

from vl4pose_jax import (acquire, data, evaluation, fit, metrics, models, nets, protocol, records,
                         simulate)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fair_data"))


config = micro_config


def test_pre_subset_is_paired_across_methods(data_dir):
    """One random priority per record per (seed, round): every method scores the same
    candidates; labelled records drop out without reshuffling the others."""
    cfg = config(data_dir, pre_subset=10)
    d = records.validate(cfg)
    pool = np.arange(d.pool_start, len(d.source))
    a = records.pre_subset_pool(cfg, d, pool, 1)
    assert len(a) == 10 and np.all(np.isin(a, pool))
    assert np.array_equal(a, records.pre_subset_pool(cfg, d, pool, 1))
    assert not np.array_equal(a, records.pre_subset_pool(cfg, d, pool, 2))
    # a labelled set differing by one candidate keeps the other nine
    b = records.pre_subset_pool(cfg, d, np.setdiff1d(pool, a[:1]), 1)
    assert len(np.intersect1d(a, b)) == 9
    # and the methods really score those candidates
    labelled = records.initial_labelled(cfg, d)
    scored = {}
    for method in ("learning_loss", "multipeak_entropy"):
        n = nets.nets_for(cfg, method)
        state = n.init(protocol.round_key(cfg.seed, 0, "init"))
        sel, stats_ = acquire.acquire(cfg, d, n, state, method, labelled, 0)
        scored[method] = np.sort(sel.scored_indices)
        assert stats_["num_scored"] == 10
    assert np.array_equal(scored["learning_loss"], scored["multipeak_entropy"])
    assert np.array_equal(scored["learning_loss"],
                          records.pre_subset_pool(cfg, d, pool[~np.isin(pool, labelled)], 0))


def test_scratch_rounds_train_equally_long(data_dir, tmp_path, monkeypatch):
    epochs_seen = []
    real = fit.fit

    def spy(config, d, n, state, labelled_N, epochs, *args, **kwargs):
        epochs_seen.append(epochs)
        return real(config, d, n, state, labelled_N, epochs, *args, **kwargs)

    monkeypatch.setattr(simulate, "fit", spy)
    simulate.run(config(data_dir, retrain="scratch", epochs=2, cycle_epochs=1, rounds=2),
                 tmp_path / "scratch", log=lambda *_: None)
    assert epochs_seen == [2, 2, 2]
    epochs_seen.clear()
    simulate.run(config(data_dir, retrain="finetune", epochs=2, cycle_epochs=1, rounds=2),
                 tmp_path / "finetune", log=lambda *_: None)
    assert epochs_seen == [2, 1, 1]


def test_bayesian_deepprior_is_evaluated_as_its_mc_mean(data_dir):
    cfg = config(data_dir, dataset="synthetic_hand", methods=("mc_dropout",),
                 retrain="scratch", method_options={"mc_dropout": {"num_samples": 3}})
    d = records.validate(cfg)
    n = nets.nets_for(cfg, "mc_dropout")
    assert n.model.dropout == "A" and n.model.aleatoric   # the CKE paper's Bayesian model
    state = n.init(protocol.round_key(0, 0, "init"))
    p = evaluation.predict_test(cfg, d, n, state)
    # evaluation batch t draws its dropout masks from fold_in(key(0), t): no two batches share them
    loader = data.make_loader(d.test, batch_size=cfg.batch_size, train=False,
                                       image_size=d.image_size)
    batches = list(loader)[:2]
    assert len(batches) == 2 and len(batches[1]["depth"]) == cfg.batch_size
    for t, batch in enumerate(batches):
        key = jax.random.fold_in(jax.random.key(0), t)
        mc = models.mc_predict(n.model, {"params": state.params}, batch["depth"], key,
                               num_samples=3)
        single = n.model.apply({"params": state.params}, batch["depth"], mc=False)["pose_BxJx3"]
        to_mm = lambda uvd, b=batch: np.asarray(data.normalised_uvd_to_xyz_mm(  # noqa
            uvd, center_uvd_Bx3=b["center_uvd"], cube_mm_B=b["cube_mm"],
            intrinsics=d.test.spec.intrinsics))
        rows = p.pred[t * cfg.batch_size:(t + 1) * cfg.batch_size]
        np.testing.assert_allclose(rows, to_mm(mc["mean_BxJx3"]), atol=1e-3)
        assert np.abs(rows - to_mm(single)).max() > 1e-2
    same = batches[0]["depth"]
    assert np.abs(np.asarray(n.predict(state, same, 0)["pose_BxJx3"])
                  - np.asarray(n.predict(state, same, 1)["pose_BxJx3"])).max() > 1e-4
    np.testing.assert_array_equal(n.predict(state, same, 0)["pose_BxJx3"],
                                  n.predict(state, same)["pose_BxJx3"])
    plain = nets.nets_for(dataclasses.replace(cfg, methods=("random",)), "random")
    assert plain.model.dropout is None and not plain.model.aleatoric
    # --bayesian_deepprior: random selection on the same Bayesian model, a fair baseline.
    bayes = dataclasses.replace(cfg, methods=("random",), bayesian_deepprior=True)
    records.validate(bayes)
    assert nets.nets_for(bayes, "random").model.dropout == "A"
    with pytest.raises(protocol.SimulationError, match="--bayesian_deepprior applies to hand"):
        records.validate(dataclasses.replace(bayes, dataset="synthetic_human"))


def test_rounds_record_per_kind_diagnostics(data_dir, tmp_path):
    cfg = config(data_dir, methods=("vl4pose", "random"))
    rows = simulate.run(cfg, tmp_path, log=lambda *_: None,
                        on_round=report.round_plotter(tmp_path))
    assert (tmp_path / "plots" / "vl4pose_seed0_round0_gallery.png").stat().st_size > 0
    d = records.validate(cfg)
    test_kinds = {data.OOD_KINDS[k] for k in
                  records.read_field(d.test, "ood")}
    for r in rows:
        by_kind = r["metrics_by_kind"]
        assert set(by_kind) == {"in_distribution"} | (test_kinds - {"none"})
        assert all(0 <= v["pck@0.2"] <= 100 for v in by_kind.values())
    vl4pose = [r for r in rows if r["method"] == "vl4pose"]
    first = vl4pose[0]
    assert first["num_scored"] == 32
    assert set(first["ood_auroc_by_kind"]) == {"rare_pose", "appearance", "pooled"}
    assert first["ood_auroc"] == first["ood_auroc_by_kind"]["pooled"]
    assert sum(first["ood_selected_by_kind"].values()) == pytest.approx(
        first["ood_selected_fraction"])
    assert -1 <= first["test_spearman"] <= 1 and "test_auroc_by_kind" in first
    assert -1 <= first["test_spearman_pck"] <= 1
    assert set(first["refine"]) == {"argmax", "refined"}
    random_rows = [r for r in rows if r["method"] == "random"]
    assert "test_spearman" not in random_rows[0] and "refine" not in random_rows[0]
    assert "ood_selected_by_kind" in random_rows[0]
    # experiments.diagnose reloads the newest round's model and gets the recorded correlations
    [diag] = diagnose.run(tmp_path, "vl4pose", tmp_path / "diagnosis")
    last = vl4pose[-1]
    assert diag["round"] == last["round"] and diag["test_images"] == len(d.test)
    assert diag["spearman_score_pck"] == last["test_spearman_pck"]
    assert diag["spearman_score_error"] == last["test_spearman"]
    r = diag["refine"]
    assert r["moved_correct_before"] <= r["moved_joints"] and r["moved_correct_after"] <= r[
        "moved_joints"]
    assert (tmp_path / "diagnosis" / "diagnosis.png").stat().st_size > 0


def test_per_kind_accuracy_and_per_image_error_by_hand():
    """`_accuracy` on hand-made predictions: per-kind PCK, and the per-image error is the mean
    normalised distance over valid joints."""
    cfg = config("unused")
    gt = np.zeros((3, 2, 2), np.float32)
    pred = np.array([[[1, 0], [0, 3]], [[0, 0], [0, 0]], [[4, 0], [0, 0]]], np.float32)
    visible = np.array([[1, 1], [1, 0], [1, 1]], np.float32)
    p = evaluation.TestPredictions(pred, gt, visible, np.full(3, 10.0, np.float32),
                                 np.array([0, 1, 0]), np.arange(3), {})
    mean, _, per_image = evaluation.accuracy(cfg, p)
    assert mean == pytest.approx(100 * 3 / 5)          # 0.1 ok, 0.3 no, 0 ok, 0.4 no, 0 ok
    np.testing.assert_allclose(per_image, [0.2, 0.0, 0.2])
    # per-image PCK over the valid joints: (0.1 ok, 0.3 no), (0 ok, invalid), (0.4 no, 0 ok)
    np.testing.assert_allclose(evaluation.per_image_pck(cfg, p),
                               [50.0, 100.0, 50.0])
    ind, _, _ = evaluation.accuracy(cfg, p, rows=p.ood == 0)
    assert ind == pytest.approx(100 * 2 / 4)
    # AUROC per kind against metrics.auroc, Spearman against scipy
    scores, ood = np.array([0.1, 0.9, 0.4, 0.8, 0.3]), np.array([0, 1, 0, 2, 1])
    by_kind = evaluation.by_kind(scores, ood, evaluation.rounded_auroc)
    assert by_kind["rare_pose"] == pytest.approx(0.75)  # 0.9 > 0.1, 0.4; 0.3 > 0.1 only
    assert by_kind["appearance"] == 1.0
    assert by_kind["pooled"] == pytest.approx(metrics.auroc(
        np.array([0.1, 0.4, 0.9, 0.8, 0.3]), np.array([0, 0, 1, 1, 1], bool)))
    assert stats.spearmanr([1, 2, 3], [1, 3, 2]).statistic == pytest.approx(0.5)


def test_shared_round0_equals_separate_runs(data_dir, tmp_path):
    """Round 0 trained once for every heatmap method of a seed gives exactly the results of
    separate trainings, also when the shared training is killed and resumed mid-way."""
    strip = strip_timing
    cfg = config(data_dir, methods=("vl4pose", "random", "learning_loss"), epochs=2,
                 checkpoint_every=1)
    log = []
    shared = simulate.run(cfg, tmp_path / "shared", log=log.append)
    assert any("round 0 trained once for vl4pose, random, learning_loss" in m for m in log)
    separate = simulate.run(dataclasses.replace(cfg, share_round0=False), tmp_path / "separate",
                            log=lambda *_: None)
    assert strip(shared) == strip(separate)
    with pytest.raises(protocol.SimulatedCrash, match="step 2"):
        simulate.run(dataclasses.replace(cfg, crash_at="train:0:2"), tmp_path / "crashed",
                     log=lambda *_: None)
    log.clear()
    resumed = simulate.run(cfg, tmp_path / "crashed", log=log.append)
    assert any("shared: resuming round 0 at step 2" in m for m in log)
    assert strip(resumed) == strip(separate)


def test_shared_regression_round0_equals_separate_runs(data_dir, tmp_path):
    """Regression methods share round 0 when they train the same network without an auxiliary
    net (random + coreset on DeepPrior, mc_dropout + cke on Bayesian DeepPrior; vl4pose, with
    its auxiliary net, trains alone); the results are those of separate trainings."""
    mc = dict(num_samples=3)
    cfg = config(data_dir, dataset="synthetic_hand", retrain="scratch", epochs=2,
                 methods=("random", "vl4pose", "mc_dropout", "coreset", "cke"),
                 method_options={"mc_dropout": mc, "cke": mc})
    log = []
    shared = simulate.run(cfg, tmp_path / "shared", log=log.append)
    once = [m for m in log if "round 0 trained once" in m]
    assert [m.split(" for ")[1] for m in once] == ["random, coreset", "mc_dropout, cke"]
    separate = simulate.run(dataclasses.replace(cfg, share_round0=False), tmp_path / "separate",
                            log=lambda *_: None)
    assert strip_timing(shared) == strip_timing(separate)
    r0 = {r["method"]: r["metrics"]["mean_error_mm"] for r in shared if r["round"] == 0}
    assert r0["random"] == r0["coreset"] != r0["mc_dropout"] == r0["cke"]


def test_small_hand_preset_crops_64_pixels(data_dir):
    """--preset=small (the synthetic_hand study's CPU size) feeds DeepPrior 64 x 64 crops: the
    loader and the network agree (fc1 sees 9 x 9 x 12 features after the three VALID convs)."""
    cfg = config(data_dir, dataset="synthetic_hand", methods=("random",), preset="small",
                 retrain="scratch")
    d = records.validate(cfg)
    assert d.image_size == 64
    n = nets.nets_for(cfg, "random")
    state = n.init(protocol.round_key(0, 0, "init"))
    assert state.params["fc1"]["kernel"].shape == (9 * 9 * 12, 1024)
    batch = next(iter(data.make_loader(d.test, batch_size=4, train=False,
                                                image_size=d.image_size)))
    assert batch["depth"].shape == (4, 64, 64, 1)
    assert np.isfinite(n.predict(state, batch["depth"])["pose_BxJx3"]).all()
