"""vl4pose_jax.report.tables: the Markdown of report.md and of the summary, and the CSVs."""
import csv
import math

import pytest

from report_util import curve_rows, paired_rows
from vl4pose_jax.report import kinds, stats, tables


def test_a_method_beating_random_on_all_five_seeds_shows_5_of_5():
    md = tables.aubc_markdown(paired_rows([0.4, 1.1, 0.9, 2.0, 1.5]))
    line = next(l for l in md.splitlines() if l.startswith("| vl4pose |"))
    assert line.endswith("| 0.0625 | 0.0625 | 5 | 5/5 |")   # exact Wilcoxon: 2 / 2^5; one method
    assert ("| Δ vs random: mean ± std [95 % CI] (better: > 0) | paired t-test p | "
            "paired t-test p (Holm) | Wilcoxon p | Wilcoxon p (Holm) |") in md


def test_lower_is_better_metric_is_said_so():
    md = tables.report_markdown(paired_rows([-2.0, -1.0, -3.0, 0.5], metric="mean_error_mm",
                                            method="cke"))
    assert "lower is better" in md and "better: < 0" in md
    assert "a negative Δ is an improvement" in md
    assert "| 3/4 |" in md


def test_few_seeds_and_zero_differences_give_dashes_and_footnotes():
    one = tables.aubc_markdown(paired_rows([1.0]))
    assert "| 1.00 | –¹ | –¹ | –¹ | –¹ | 1 | 1/1 |" in one and "¹ fewer than 2 seeds" in one
    zero = tables.aubc_markdown(paired_rows([0.0, 0.0, 0.0]))
    assert "| 0.00 ± 0.00 [0.00, 0.00] | n/a² | n/a² | n/a² | n/a² | 3 | 0/3 |" in zero
    assert "² all differences are zero" in zero
    nobase = tables.aubc_markdown(curve_rows("vl4pose", 0, [1, 2, 3]))
    assert "No random runs" in nobase and "paired" not in nobase.splitlines()[0]
    one_method = tables.summary(curve_rows("vl4pose", 0, [1, 2, 3]))
    assert "paired tests against random" not in one_method and "No random runs" in one_method


def test_missing_fields_show_dashes_and_never_crash():
    by_kind = {"in_distribution": {"pck@0.2": 50.0}, "rare_pose": {"pck@0.2": 30.0},
               "appearance": {"pck@0.2": 40.0}}
    rows = (curve_rows("random", 0, [10, 20, 30])          # an older run: no new field at all
            + curve_rows("vl4pose", 0, [11, 21, 31], metrics_by_kind=by_kind, test_spearman=0.4,
                         ood_auroc_by_kind={"rare_pose": 0.8, "pooled": float("nan")},
                         refine={"argmax": 30.0, "refined": None}))
    del rows[-1]["test_spearman"], rows[-1]["ood_auroc_by_kind"]   # the last round selects nothing
    t = kinds.kind_tables(rows)
    assert not t["num_scored"]["recorded"] and not t["test_auroc_by_kind"]["recorded"]
    auroc = tables.kind_markdown(t["ood_auroc_by_kind"])
    assert "| random | (none recorded) | – | – | – |" in auroc
    assert "| vl4pose | rare_pose | 0.800 | 0.800 | – |" in auroc
    assert "| vl4pose | pooled | – | – | – |" in auroc            # NaN is not a value
    assert "| vl4pose | 0.400 | 0.400 | – |" in tables.kind_markdown(t["test_spearman"])
    refine = tables.kind_markdown(t["refine"])
    assert "| vl4pose | gain | – | – | – |" in refine
    assert "| vl4pose | argmax | 30.00 |" in refine
    md = tables.report_markdown(rows, ["w"])
    assert "Not recorded in any row of these results:" in md
    assert "Pool records scored per round" in md.split("Not recorded in any row")[1]
    text = tables.summary(rows)
    assert "| random | 10.00 | 20.00 | 30.00 |" in text and "| random | – | – | – |" in text


def test_partial_seeds_are_marked_with_their_count():
    rows = (curve_rows("vl4pose", 0, [1, 2, 3], test_spearman=0.5)
            + curve_rows("vl4pose", 1, [1, 2, 3]) + curve_rows("vl4pose", 2, [1, 2, 3],
                                                                test_spearman=0.3))
    assert "0.400 ± 0.141 (n=2)" in tables.kind_markdown(kinds.kind_table(rows, "test_spearman"))


def test_delta_cell_shows_the_95_percent_t_interval():
    # differences 1, 2, 3: mean 2, sd 1, half width t_{0.975, 2} / sqrt(3) = 2.484
    md = tables.aubc_markdown(paired_rows([1.0, 2.0, 3.0]))
    assert "| 2.00 ± 1.00 [-0.48, 4.48] |" in md


def test_a_baseline_of_another_workdir_is_named():
    rows = paired_rows([1.0, 1.0]) + [r | {"method": "cke"} for r in paired_rows([2.0, 2.0])
                                      if r["method"] == "vl4pose"]
    sources = {(r["method"], r["seed"]): "a" for r in rows}
    assert "⁴" not in tables.aubc_markdown(rows, sources=sources)
    sources.update({("cke", 0): "b", ("cke", 1): "b"})
    md = tables.aubc_markdown(rows, sources=sources)
    assert "| 2.00 ± 0.00 [2.00, 2.00]⁴ |" in md and "| 1.00 ± 0.00 [1.00, 1.00] |" in md
    assert md.splitlines()[-1] == ("⁴ cke (read from b): Δ against the random runs of another "
                                   "workdir (a), which may train another network or use other "
                                   "settings.")


def test_csvs_hold_the_tables_numbers(tmp_path):
    rows = paired_rows([1.0, 2.0])
    tables.write_csv(stats.aggregate(rows), tmp_path / "report.csv")
    tables.write_stats_csv(rows, tmp_path / "aubc.csv",
                           sources={(r["method"], r["seed"]): "w" for r in rows})
    with open(tmp_path / "report.csv", newline="") as f:
        headline = list(csv.DictReader(f))
    assert headline[0]["method"] == "random" and headline[0]["seeds"] == "2"
    assert float(headline[0]["pck@0.2_mean"]) == 40.5
    assert float(headline[0]["std"]) == pytest.approx(0.5 * math.sqrt(2))   # 40 and 41, ddof 1
    with open(tmp_path / "aubc.csv", newline="") as f:
        aubc = {r["method"]: r for r in csv.DictReader(f)}
    c = stats.paired_comparison(rows)["vl4pose"]
    assert float(aubc["vl4pose"]["diff_vs_random_mean"]) == 1.5
    assert float(aubc["vl4pose"]["diff_std"]) == pytest.approx(0.5 * math.sqrt(2))
    assert (float(aubc["vl4pose"]["diff_ci95_low"]),
            float(aubc["vl4pose"]["diff_ci95_high"])) == pytest.approx(c["ci95"])
    assert float(aubc["vl4pose"]["ttest_rel_p_holm"]) == pytest.approx(c["t_p"])  # one method
    assert float(aubc["vl4pose"]["wilcoxon_p_holm"]) == pytest.approx(c["wilcoxon_p"])
    assert aubc["vl4pose"]["random_workdir"] == "w" and aubc["random"]["random_workdir"] == ""
    assert aubc["random"]["diff_vs_random_mean"] == "" and aubc["vl4pose"]["paired_seeds"] == "2"
