"""experiments.report: AUBC, paired comparison with random, per-OOD-kind tables, CLI."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from experiments import report

SIZES = (100, 200, 400)


def curve_rows(method, seed, values, metric="pck@0.2", sizes=SIZES, **extra):
    """One row per round of a (method, seed) run with the headline `values` per size."""
    return [{"method": method, "seed": seed, "round": r, "num_labelled": n,
             "metrics": {metric: float(v)}, "selected_ids": [], **extra}
            for r, (n, v) in enumerate(zip(sizes, values))]


def paired_rows(diffs, metric="pck@0.2", method="vl4pose"):
    """random and `method` on len(diffs) seeds; `method`'s AUBC exceeds random's by diffs[s]."""
    rows = []
    for s, d in enumerate(diffs):
        base = [40.0 + s, 50.0 + 2 * s, 55.0 + s]
        rows += curve_rows("random", s, base, metric)
        rows += curve_rows(method, s, [b + d for b in base], metric)
    return rows


def write_results(workdir, rows):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_aubc_of_a_three_point_curve_by_hand():
    # trapezoids: 100 * (10 + 20) / 2 + 200 * (20 + 40) / 2 = 1500 + 6000 = 7500, over 300.
    assert report.aubc([100, 200, 400], [10, 20, 40]) == pytest.approx(25.0)
    assert report.aubc([400, 100, 200], [40, 10, 20]) == pytest.approx(25.0)   # any order
    assert report.aubc([300], [61.5]) == 61.5                                  # one size
    with pytest.raises(ValueError, match="repeated labelled size"):
        report.aubc([100, 100], [1, 2])
    rows = curve_rows("random", 0, [10, 20, 40]) + curve_rows("random", 1, [20, 30, 50])
    a = report.aubc_table(rows)["methods"]["random"]
    assert a["per_seed"] == {0: pytest.approx(25.0), 1: pytest.approx(35.0)}
    assert a["stats"] == (pytest.approx(30.0), pytest.approx(5.0), 2)
    assert a["range"] == (100, 400)


def test_paired_p_values_are_scipys_on_the_aubc_differences():
    diffs = [1.0, 2.5, -0.5, 3.0, 0.7]
    c = report.paired_comparison(paired_rows(diffs))["vl4pose"]
    assert c["diffs"] == pytest.approx(diffs)
    assert c["stats"] == (pytest.approx(np.mean(diffs)), pytest.approx(np.std(diffs)), 5)
    assert c["t_p"] == pytest.approx(scipy.stats.ttest_1samp(diffs, 0.0).pvalue)
    assert c["wilcoxon_p"] == pytest.approx(scipy.stats.wilcoxon(diffs).pvalue)
    # Exact by hand: the only negative difference has the smallest rank, W- = 1, and
    # P(W- <= 1) = 2 / 2^5 (the empty set and {rank 1}); two-sided: 0.125.
    assert c["wilcoxon_p"] == pytest.approx(0.125)
    assert (c["n"], c["wins"]) == (5, 4)


def test_a_method_beating_random_on_all_five_seeds_shows_5_of_5():
    rows = paired_rows([0.4, 1.1, 0.9, 2.0, 1.5])
    assert report.paired_comparison(rows)["vl4pose"]["wins"] == 5
    md = report.aubc_markdown(rows)
    line = next(l for l in md.splitlines() if l.startswith("| vl4pose |"))
    assert line.endswith("| 0.0625 | 5 | 5/5 |")   # exact Wilcoxon: 2 / 2^5
    assert "better: > 0" in md


def test_lower_is_better_metric_counts_negative_differences_as_wins():
    assert report.lower_is_better("mean_error_mm") and not report.lower_is_better("pckh@0.5")
    rows = paired_rows([-2.0, -1.0, -3.0, 0.5], metric="mean_error_mm", method="cke")
    c = report.paired_comparison(rows)["cke"]
    assert c["wins"] == 3 and c["stats"][0] == pytest.approx(-1.375)
    md = report.report_markdown(rows)
    assert "lower is better" in md and "better: < 0" in md
    assert "a negative Δ is an improvement" in md
    assert "| 3/4 |" in md


def test_few_seeds_and_zero_differences_give_dashes_and_footnotes():
    one = report.aubc_markdown(paired_rows([1.0]))
    assert "| –¹ | –¹ | 1 | 1/1 |" in one and "¹ fewer than 2 seeds" in one
    zero = report.aubc_markdown(paired_rows([0.0, 0.0, 0.0]))
    assert "| n/a² | n/a² | 3 | 0/3 |" in zero and "² all differences are zero" in zero
    same = report.paired_comparison(paired_rows([1.0, 1.0, 1.0]))["vl4pose"]
    assert same["t_p"] is None and same["t_note"] == "constant"
    assert same["wilcoxon_p"] == pytest.approx(0.25)
    nobase = report.aubc_markdown(curve_rows("vl4pose", 0, [1, 2, 3]))
    assert "No random runs" in nobase


def test_missing_fields_show_dashes_and_never_crash():
    kinds = {"in_distribution": {"pck@0.2": 50.0}, "rare_pose": {"pck@0.2": 30.0},
             "appearance": {"pck@0.2": 40.0}}
    rows = (curve_rows("random", 0, [10, 20, 30])          # an older run: no new field at all
            + curve_rows("vl4pose", 0, [11, 21, 31], metrics_by_kind=kinds, test_spearman=0.4,
                         ood_auroc_by_kind={"rare_pose": 0.8, "pooled": float("nan")},
                         refine={"argmax": 30.0, "refined": None}))
    del rows[-1]["test_spearman"], rows[-1]["ood_auroc_by_kind"]   # the last round selects nothing
    tables = report.kind_tables(rows)
    assert not tables["num_scored"]["recorded"] and not tables["test_auroc_by_kind"]["recorded"]
    auroc = report.kind_markdown(tables["ood_auroc_by_kind"])
    assert "| random | (none recorded) | – | – | – |" in auroc
    assert "| vl4pose | rare_pose | 0.800 | 0.800 | – |" in auroc
    assert "| vl4pose | pooled | – | – | – |" in auroc            # NaN is not a value
    assert "| vl4pose | 0.400 | 0.400 | – |" in report.kind_markdown(tables["test_spearman"])
    refine = report.kind_markdown(tables["refine"])
    assert "| vl4pose | gain | – | – | – |" in refine
    assert "| vl4pose | argmax | 30.00 |" in refine
    md = report.report_markdown(rows, ["w"])
    assert "Not recorded in any row of these results:" in md
    assert "Pool records scored per round" in md.split("Not recorded in any row")[1]
    text = report.summary(rows)
    assert "| random | 10.00 | 20.00 | 30.00 |" in text and "| random | – | – | – |" in text


def test_partial_seeds_are_marked_with_their_count():
    rows = (curve_rows("vl4pose", 0, [1, 2, 3], test_spearman=0.5)
            + curve_rows("vl4pose", 1, [1, 2, 3]) + curve_rows("vl4pose", 2, [1, 2, 3],
                                                                test_spearman=0.3))
    t = report.kind_table(rows, "test_spearman")
    assert t["cells"][("vl4pose", "")][(0, 100)] == (pytest.approx(0.4), pytest.approx(0.1), 2)
    assert "0.400 ± 0.100 (n=2)" in report.kind_markdown(t)


def test_selection_shares_are_left_out_for_data_without_ood_flags():
    real = curve_rows("vl4pose", 0, [1, 2, 3], ood_selected_fraction=0.0)   # e.g. LSPET
    assert not report.kind_table(real, "ood_selected_by_kind")["recorded"]
    synthetic = curve_rows("vl4pose", 0, [1, 2, 3], ood_selected_fraction=0.0,
                           ood_selected_by_kind={"rare_pose": 0.0, "appearance": 0.0})
    t = report.kind_table(synthetic, "ood_selected_by_kind")
    assert t["cells"][("vl4pose", "any")][(0, 100)][0] == 0.0


def test_cli_end_to_end_writes_report_csvs_and_plots(tmp_path):
    rows = []
    for s in range(3):
        for method, bonus in (("random", 0.0), ("vl4pose", 2.0)):
            extra = dict(metrics_by_kind={k: {"pck@0.2": 40.0 + s + bonus} for k in
                                          ("in_distribution", "rare_pose", "appearance")},
                         ood_selected_by_kind={"rare_pose": 0.1, "appearance": 0.2},
                         num_scored=900)
            if method == "vl4pose":
                extra.update(ood_auroc_by_kind={"rare_pose": 0.7, "appearance": 0.6,
                                                "pooled": 0.65}, refine={"argmax": 1, "refined": 2})
            rows += curve_rows(method, s, [40 + s + bonus, 50 + s + bonus, 55 + s + bonus],
                               **extra)
    write_results(tmp_path / "w", rows)
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-m", "experiments.report", str(tmp_path / "w"),
                          f"--out={tmp_path / 'out'}"], cwd=root, env=env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    for name in ("report.md", "report.csv", "aubc.csv", "by_kind.csv", "learning_curve.png",
                 "ood_auroc.png", "accuracy_by_kind.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    md = (tmp_path / "out" / "report.md").read_text()
    for heading in ("## Headline metric by labelled-set size", "## Area under the budget curve",
                    "### Test accuracy per OOD kind", "### OOD AUROC of the acquisition score",
                    "### VL4Pose pose refinement", "### Pool records scored per round"):
        assert heading in md
    # AUBC of seed s: random 50 + s, vl4pose 52 + s; equal differences: no t-test (³).
    assert ("| vl4pose | 3 | 100–400 | 53.00 ± 0.82 | 2.00 ± 0.00 | n/a³ | 0.25 | 3 | 3/3 |"
            in md)
    assert "beat random" in out.stdout and "Pool OOD AUROC per kind" in out.stdout
    aubc_csv = (tmp_path / "out" / "aubc.csv").read_text().splitlines()
    assert aubc_csv[0].startswith("method,metric,lower_is_better,seeds") and len(aubc_csv) == 3

    missing = subprocess.run([sys.executable, "-m", "experiments.report", str(tmp_path / "nope")],
                             cwd=root, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0
    last = missing.stderr.strip().splitlines()[-1]
    assert last == f"error: no results.jsonl in {tmp_path / 'nope'}"


def test_write_summary_is_what_the_al_command_prints(tmp_path):
    write_results(tmp_path, paired_rows([1.0, 2.0]))
    text = report.write_summary([tmp_path], tmp_path / "out")
    assert text.startswith("| pck@0.2 \\ labelled | 100 | 200 | 400 |")
    assert "| vl4pose | 2 | 100–400 |" in text and "| 2/2 |" in text
    assert text.splitlines()[-1] == (f"wrote {tmp_path / 'out'}/: report.md, report.csv, "
                                     "aubc.csv, by_kind.csv, learning_curve.png")
    assert "Pool OOD AUROC" not in text        # nothing per kind recorded: no per-kind lines
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(ValueError, match="no result rows in"):
        report.write_summary([tmp_path], tmp_path / "out")
    (tmp_path / "results.jsonl").write_text('{"method": "random"\n')
    with pytest.raises(ValueError, match=r"results.jsonl:1: not a JSON row"):
        report.write_summary([tmp_path], tmp_path / "out")


def test_workdirs_combine_by_method_and_never_mix_a_method_seed(tmp_path):
    # a: random + vl4pose (diff 1); b: random on another model + cke (diff 3 to b's random).
    write_results(tmp_path / "a", paired_rows([1.0, 1.0]))
    write_results(tmp_path / "b", paired_rows([3.0, 3.0], method="cke"))
    for r in (rows := report.read_rows([tmp_path / "b"])):
        r["metrics"] = {k: v + 10 for k, v in r["metrics"].items()}
    write_results(tmp_path / "b", rows)
    with pytest.raises(ValueError, match=r"both hold 'random' seed 0; keep one"):
        report.read_rows([tmp_path / "a", tmp_path / "b"])
    rows = report.read_rows([tmp_path / "a", f"{tmp_path / 'b'}:cke"])
    assert sorted({r["method"] for r in rows}) == ["cke", "random", "vl4pose"]
    paired = report.paired_comparison(rows)
    # cke against a's random: 3 + 10 above, not 3 (b's random is left out).
    assert paired["cke"]["diffs"] == pytest.approx([13.0, 13.0])
    assert paired["vl4pose"]["diffs"] == pytest.approx([1.0, 1.0])
    assert report.parse_workdir(tmp_path / "a") == (tmp_path / "a", None)
