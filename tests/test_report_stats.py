"""vl4pose_jax.report.stats: AUBC, mean ± std over seeds, paired comparison with random."""
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
    assert a["stats"] == (pytest.approx(30.0), pytest.approx(5.0), 2)
    assert a["range"] == (100, 400)


def test_aggregate_is_mean_std_and_seeds_per_method_and_size():
    rows = (curve_rows("random", 0, [10, 20, 40]) + curve_rows("random", 1, [20, 30, 50])
            + curve_rows("vl4pose", 0, [1, float("nan"), 3]))
    table = stats.aggregate(rows)
    assert table["metric"] == "pck@0.2" and table["sizes"] == [100, 200, 400]
    assert table["methods"]["random"][100] == (pytest.approx(15.0), pytest.approx(5.0), 2)
    assert table["methods"]["vl4pose"] == {100: (1.0, 0.0, 1), 400: (3.0, 0.0, 1)}


def test_paired_p_values_are_scipys_on_the_aubc_differences():
    diffs = [1.0, 2.5, -0.5, 3.0, 0.7]
    c = stats.paired_comparison(paired_rows(diffs))["vl4pose"]
    assert c["diffs"] == pytest.approx(diffs)
    assert c["stats"] == (pytest.approx(np.mean(diffs)), pytest.approx(np.std(diffs)), 5)
    assert c["t_p"] == pytest.approx(scipy.stats.ttest_1samp(diffs, 0.0).pvalue)
    assert c["wilcoxon_p"] == pytest.approx(scipy.stats.wilcoxon(diffs).pvalue)
    # Exact by hand: the only negative difference has the smallest rank, W- = 1, and
    # P(W- <= 1) = 2 / 2^5 (the empty set and {rank 1}); two-sided: 0.125.
    assert c["wilcoxon_p"] == pytest.approx(0.125)
    assert (c["n"], c["wins"]) == (5, 4)


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
