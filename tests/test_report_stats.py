"""vl4pose_jax.report.stats: AUBC, mean ± std over seeds, paired comparison with random,
t-intervals, Holm–Bonferroni."""
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from report_util import curve_rows, paired_rows
from vl4pose_jax.report import stats


def test_aubc_of_a_three_point_curve_by_hand():
    # trapezoids: 100 * (10 + 20) / 2 + 200 * (20 + 40) / 2 = 1500 + 6000 = 7500, over 300.
    assert stats.aubc([100, 200, 400], [10, 20, 40]) == pytest.approx(25.0)
    assert stats.aubc([400, 100, 200], [40, 10, 20]) == pytest.approx(25.0)   # any order
    assert stats.aubc([300], [61.5]) == 61.5                                  # one size
    with pytest.raises(ValueError, match="repeated labelled size"):
        stats.aubc([100, 100], [1, 2])
    rows = curve_rows("random", 0, [10, 20, 40]) + curve_rows("random", 1, [20, 30, 50])
    a = stats.aubc_table(rows)["methods"]["random"]
    assert a["per_seed"] == {0: pytest.approx(25.0), 1: pytest.approx(35.0)}
    # sample std of 25 and 35: sqrt((5² + 5²) / (2 − 1)) = sqrt(50)
    assert a["stats"] == (pytest.approx(30.0), pytest.approx(math.sqrt(50)), 2)
    assert a["range"] == (100, 400)


def test_aggregate_is_mean_std_and_seeds_per_method_and_size():
    rows = (curve_rows("random", 0, [10, 20, 40]) + curve_rows("random", 1, [20, 30, 50])
            + curve_rows("vl4pose", 0, [1, float("nan"), 3]))
    table = stats.aggregate(rows)
    assert table["metric"] == "pck@0.2" and table["sizes"] == [100, 200, 400]
    assert table["methods"]["random"][100] == (pytest.approx(15.0), pytest.approx(math.sqrt(50)),
                                               2)
    vl4pose = table["methods"]["vl4pose"]
    assert sorted(vl4pose) == [100, 400] and vl4pose[100][::2] == (1.0, 1)
    assert math.isnan(vl4pose[100][1])           # one seed: the sample std is undefined


def test_std_over_seeds_is_the_sample_std():
    # mean 1.34; squared deviations 0.1156 + 1.3456 + 3.3856 + 2.7556 + 0.4096 = 8.012, / 4
    assert stats.mean_std_n([1.0, 2.5, -0.5, 3.0, 0.7, None]) == (
        pytest.approx(1.34), pytest.approx(math.sqrt(2.003)), 5)
    assert stats.mean_std_n([None]) is None


def test_paired_p_values_are_scipys_on_the_aubc_differences():
    diffs = [1.0, 2.5, -0.5, 3.0, 0.7]
    c = stats.paired_comparison(paired_rows(diffs))["vl4pose"]
    assert c["diffs"] == pytest.approx(diffs)
    assert c["stats"] == (pytest.approx(1.34), pytest.approx(math.sqrt(2.003)), 5)
    assert c["ci95"] == pytest.approx(scipy.stats.t.interval(0.95, 4, loc=1.34,
                                                             scale=math.sqrt(2.003 / 5)))
    assert c["t_p"] == pytest.approx(scipy.stats.ttest_1samp(diffs, 0.0).pvalue)
    assert c["wilcoxon_p"] == pytest.approx(scipy.stats.wilcoxon(diffs).pvalue)
    # Exact by hand: the only negative difference has the smallest rank, W- = 1, and
    # P(W- <= 1) = 2 / 2^5 (the empty set and {rank 1}); two-sided: 0.125.
    assert c["wilcoxon_p"] == pytest.approx(0.125)
    assert (c["n"], c["wins"]) == (5, 4)


def test_t_interval_from_known_numbers():
    # [1, 2, 3]: mean 2, sd 1, n 3; t_{0.975, 2} = 4.302653 (tables: 4.303)
    half = 4.302653 / math.sqrt(3)
    assert stats.t_interval([1.0, 2.0, 3.0]) == pytest.approx((2 - half, 2 + half), rel=1e-6)
    # [2, 4]: mean 3, sd sqrt(2), n 2: half width t_{0.975, 1} · sqrt(2) / sqrt(2) = 12.7062
    assert stats.t_interval([2.0, 4.0]) == pytest.approx((3 - 12.7062, 3 + 12.7062), rel=1e-5)
    assert stats.t_interval([5.0, 5.0]) == (5.0, 5.0)     # no spread: a point
    assert stats.t_interval([1.0]) is None


def test_holm_by_hand():
    # sorted: 0.005 · 4 = 0.02, 0.01 · 3 = 0.03, 0.03 · 2 = 0.06, 0.04 · 1 = 0.04 -> 0.06 (running
    # maximum keeps the order of the raw p-values)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, None, 0.4]) == [pytest.approx(0.8), None, pytest.approx(0.8)]
    assert stats.holm([0.3, 0.6]) == [pytest.approx(0.6), pytest.approx(0.6)]
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]                  # capped at 1
    assert stats.holm([0.2]) == [0.2] and stats.holm([]) == []


def _holm_rejects(p_values, alpha):
    """Holm's step-down procedure itself: test the smallest p first at alpha / m, the next at
    alpha / (m − 1), ...; stop at the first one kept."""
    m, rejected = len(p_values), set()
    for j, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        if p_values[i] > alpha / (m - j):
            break
        rejected.add(i)
    return rejected


def test_holm_adjusted_p_is_the_smallest_alpha_at_which_the_procedure_rejects():
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 5, 8):
        for _ in range(50):
            p = list(rng.uniform(0, 0.2, m) ** 2)
            adjusted = stats.holm(p)
            assert all(a >= q for a, q in zip(adjusted, p))
            # between any two distinct adjusted values the procedure rejects exactly those below
            cuts = sorted(set(adjusted) | {0.0, 1.0})
            for lo, hi in itertools.pairwise(cuts):
                alpha = (lo + hi) / 2
                assert _holm_rejects(p, alpha) == {i for i, a in enumerate(adjusted) if a < alpha}


def test_paired_comparison_adjusts_each_test_over_the_methods():
    rows = paired_rows([1.0, 2.5, -0.5, 3.0, 0.7])
    rows += [r | {"method": "cke"} for r in paired_rows([0.1, 0.4, 0.2, 0.3, 0.6])
             if r["method"] == "vl4pose"]
    rows += [r | {"method": "egl"} for r in paired_rows([1.0]) if r["method"] == "vl4pose"]
    pc = stats.paired_comparison(rows)
    for test in ("t_p", "wilcoxon_p"):
        raw = [pc["vl4pose"][test], pc["cke"][test]]
        assert [pc["vl4pose"][f"{test}_holm"], pc["cke"][f"{test}_holm"]] == stats.holm(raw)
        assert pc["egl"][test] is pc["egl"][f"{test}_holm"] is None   # one seed: not counted
    assert pc["cke"]["t_p_holm"] == pytest.approx(2 * pc["cke"]["t_p"])   # the smaller of two


def test_a_method_beating_random_on_all_five_seeds_wins_5():
    assert stats.paired_comparison(paired_rows([0.4, 1.1, 0.9, 2.0, 1.5]))["vl4pose"]["wins"] == 5


def test_lower_is_better_metric_counts_negative_differences_as_wins():
    assert stats.lower_is_better("mean_error_mm") and not stats.lower_is_better("pckh@0.5")
    c = stats.paired_comparison(paired_rows([-2.0, -1.0, -3.0, 0.5], metric="mean_error_mm",
                                            method="cke"))["cke"]
    assert c["wins"] == 3 and c["stats"][0] == pytest.approx(-1.375)


def test_few_seeds_zero_or_equal_differences_have_no_p_value():
    assert stats.paired_test([1.0]) == {"t_p": None, "wilcoxon_p": None, "t_note": "few",
                                        "wilcoxon_note": "few"}
    zero = stats.paired_test([0.0, 0.0, 0.0])
    assert zero["t_p"] is zero["wilcoxon_p"] is None and zero["t_note"] == "zero"
    same = stats.paired_comparison(paired_rows([1.0, 1.0, 1.0]))["vl4pose"]
    assert same["t_p"] is None and same["t_note"] == "constant"
    assert same["wilcoxon_p"] == pytest.approx(0.25)
    assert stats.paired_comparison(curve_rows("vl4pose", 0, [1, 2, 3])) == {}
