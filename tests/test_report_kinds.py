"""vl4pose_jax.report.kinds: per-OOD-kind diagnostics over seeds."""
import pytest

from report_util import curve_rows
from vl4pose_jax.report import kinds


def test_partial_seeds_count_only_the_seeds_with_a_value():
    rows = (curve_rows("vl4pose", 0, [1, 2, 3], test_spearman=0.5)
            + curve_rows("vl4pose", 1, [1, 2, 3]) + curve_rows("vl4pose", 2, [1, 2, 3],
                                                                test_spearman=0.3))
    t = kinds.kind_table(rows, "test_spearman")
    # sample std of 0.5 and 0.3: sqrt(2 · 0.1² / 1)
    assert t["cells"][("vl4pose", "")][(0, 100)] == (pytest.approx(0.4), pytest.approx(0.1414214),
                                                      2)
    assert t["seeds"] == {"vl4pose": 3}


def test_selection_shares_are_left_out_for_data_without_ood_flags():
    real = curve_rows("vl4pose", 0, [1, 2, 3], ood_selected_fraction=0.0)   # e.g. LSPET
    assert not kinds.kind_table(real, "ood_selected_by_kind")["recorded"]
    synthetic = curve_rows("vl4pose", 0, [1, 2, 3], ood_selected_fraction=0.0,
                           ood_selected_by_kind={"rare_pose": 0.0, "appearance": 0.0})
    t = kinds.kind_table(synthetic, "ood_selected_by_kind")
    assert t["cells"][("vl4pose", "any")][(0, 100)][0] == 0.0


def test_refinement_gain_and_auroc_fallback_to_the_pooled_value():
    rows = curve_rows("vl4pose", 0, [1, 2, 3], refine={"argmax": 30.0, "refined": 31.5},
                      ood_auroc=0.7)
    gain = kinds.kind_table(rows, "refine")["cells"][("vl4pose", "gain")]
    assert gain[100][0] == pytest.approx(1.5) and gain[100][2] == 1
    auroc = kinds.kind_table(rows, "ood_auroc_by_kind")
    assert auroc["labels"] == ["pooled"]
    assert auroc["cells"][("vl4pose", "pooled")][(2, 400)][0] == 0.7


def test_seed_means_over_rounds_average_each_seed_first():
    rows = (curve_rows("vl4pose", 0, [1, 2, 3], ood_auroc_by_kind={"rare_pose": 0.6})
            + curve_rows("vl4pose", 1, [1, 2, 3], ood_auroc_by_kind={"rare_pose": 0.8}))
    rows[0]["ood_auroc_by_kind"] = {"rare_pose": 0.9}      # seed 0: (0.9 + 0.6 + 0.6) / 3 = 0.7
    means = kinds.seed_means_over_rounds(rows, "ood_auroc_by_kind")
    assert means[("vl4pose", "rare_pose")] == (pytest.approx(0.75), pytest.approx(0.0707107), 2)
