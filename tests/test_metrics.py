"""Metrics against hand-computed cases."""
import numpy as np
import pytest

from vl4pose_jax import metrics, skeletons


def test_pck_hand_computed():
    # Two images, three joints, normaliser 10 and 20; errors chosen by hand.
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [1.0, 0.0]    # 0.10 -> hit at 0.2
    pred[0, 1] = [3.0, 4.0]    # 0.50 -> miss
    pred[0, 2] = [0.0, 2.0]    # 0.20 -> hit (<=)
    pred[1, 0] = [0.0, 5.0]    # 0.25 -> miss
    pred[1, 1] = [2.0, 0.0]    # 0.10 -> hit
    pred[1, 2] = [100.0, 0.0]  # invalid joint, ignored
    valid = np.array([[1, 1, 1], [1, 1, 0]])
    rate = metrics.pck(pred, gt, valid, np.array([10.0, 20.0]), threshold=0.2)
    assert float(rate.mean) == pytest.approx(3 / 5)
    np.testing.assert_allclose(rate.per_joint, [0.5, 0.5, 1.0])


def test_pck_joint_never_valid_is_nan_and_bad_normaliser_excluded():
    gt = np.zeros((2, 2, 2))
    pred = np.ones((2, 2, 2))
    rate = metrics.pck(pred, gt, np.array([[1, 0], [1, 0]]), np.array([10.0, 0.0]), 0.2)
    assert float(rate.mean) == 1.0  # only image 0 joint 0 counts: error sqrt(2)/10 <= 0.2
    assert np.isnan(rate.per_joint[1])


def test_torso_and_head_size():
    joints = np.zeros((1, 14, 2))
    s = skeletons.lsp14
    joints[0, s.index("lsho")] = [0, 0]
    joints[0, s.index("rhip")] = [3, 4]       # 5
    joints[0, s.index("rsho")] = [10, 0]
    joints[0, s.index("lhip")] = [10, 12]     # 12
    assert float(metrics.torso_size(joints)[0]) == pytest.approx(12.0)
    box = np.array([[10.0, 20.0, 13.0, 24.0]])  # diagonal 5
    assert float(metrics.head_size(box)[0]) == pytest.approx(3.0)
    assert float(metrics.head_size(box, factor=1.0)[0]) == pytest.approx(5.0)


def test_auc_of_constant_error():
    # Every joint has normalised error 0.205: on the 51-point grid over [0, 0.5] the pooled PCK
    # is 0 up to 0.20 and 1 from 0.21, so the trapezoid area is 0.005 + 0.29, over 0.5 = 0.59.
    gt = np.zeros((4, 3, 2))
    pred = gt + np.array([2.05, 0.0])
    value = metrics.auc(pred, gt, np.ones((4, 3)), np.full(4, 10.0))
    assert float(value) == pytest.approx(0.59, abs=1e-6)


def test_mean_joint_error_mm():
    gt = np.zeros((2, 2, 3))
    pred = np.array([[[1.0, 2.0, 2.0], [0.0, 0.0, 4.0]],
                     [[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    err = metrics.mean_joint_error(pred, gt, np.array([[1, 1], [1, 0]]))
    assert float(err.mean) == pytest.approx((3.0 + 4.0 + 0.0) / 3)
    np.testing.assert_allclose(err.per_joint, [1.5, 4.0])


def test_per_joint_table_names_joints():
    table = metrics.per_joint_table(np.arange(14.0), skeletons.lsp14)
    assert table.splitlines()[0].startswith("| head | neck |")
    assert "13.0" in table


def test_auroc_against_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    positive = rng.random(40) < 0.3
    pos, neg = scores[positive], scores[~positive]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.auroc(scores, positive) == pytest.approx(expected)
    assert metrics.auroc([1.0, 2.0, 3.0], [False, False, True]) == 1.0
    assert np.isnan(metrics.auroc([1.0, 2.0], [False, False]))
