"""vl4pose_jax.report.rows: reading results.jsonl from workdirs, WORKDIR:METHOD specs."""
import pytest

from report_util import paired_rows, write_results
from vl4pose_jax.report import rows as report_rows, stats


def test_workdirs_combine_by_method_and_never_mix_a_method_seed(tmp_path):
    # a: random + vl4pose (diff 1); b: random on another model + cke (diff 3 to b's random).
    write_results(tmp_path / "a", paired_rows([1.0, 1.0]))
    write_results(tmp_path / "b", paired_rows([3.0, 3.0], method="cke"))
    for r in (rows := report_rows.read_rows([tmp_path / "b"])):
        r["metrics"] = {k: v + 10 for k, v in r["metrics"].items()}
    write_results(tmp_path / "b", rows)
    with pytest.raises(ValueError, match=r"both hold 'random' seed 0; keep one"):
        report_rows.read_rows([tmp_path / "a", tmp_path / "b"])
    rows = report_rows.read_rows([tmp_path / "a", f"{tmp_path / 'b'}:cke"])
    assert sorted({r["method"] for r in rows}) == ["cke", "random", "vl4pose"]
    paired = stats.paired_comparison(rows)
    # cke against a's random: 3 + 10 above, not 3 (b's random is left out).
    assert paired["cke"]["diffs"] == pytest.approx([13.0, 13.0])
    assert paired["vl4pose"]["diffs"] == pytest.approx([1.0, 1.0])
    assert report_rows.parse_workdir(tmp_path / "a") == (tmp_path / "a", None)
    _, sources = report_rows.read_workdirs([tmp_path / "a", f"{tmp_path / 'b'}:cke"])
    assert sources[("cke", 1)] == tmp_path / "b" and sources[("random", 1)] == tmp_path / "a"
    assert report_rows.parse_workdir(f"{tmp_path}:cke,mc_dropout") == (tmp_path,
                                                                       {"cke", "mc_dropout"})


def test_missing_empty_and_malformed_results_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.jsonl in"):
        report_rows.read_rows([tmp_path / "nope"])
    (tmp_path / "results.jsonl").write_text("")
    assert report_rows.read_rows([tmp_path]) == []
    with pytest.raises(ValueError, match="no result rows in"):
        report_rows.read_results([tmp_path])
    (tmp_path / "results.jsonl").write_text('{"method": "random"\n')
    with pytest.raises(ValueError, match=r"results.jsonl:1: not a JSON row"):
        report_rows.read_rows([tmp_path])


def test_latest_rows_keep_the_last_row_of_a_round_and_values_must_be_finite():
    first = {"method": "random", "seed": 0, "round": 0, "num_labelled": 100, "metrics": {"a": 1}}
    again = {**first, "metrics": {"a": 2}}
    other = {**first, "seed": 1}
    assert report_rows.latest_rows([first, other, again]) == [again, other]
    assert report_rows.headline_metric([first]) == "a" and report_rows.headline_metric([]) is None
    assert report_rows.seed_counts([first, other, again]) == {"random": 2}
    assert [report_rows.number(v) for v in (1, "2.5", None, "x", float("nan"), True)] == [
        1.0, 2.5, None, None, None, None]
