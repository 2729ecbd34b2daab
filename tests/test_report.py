"""The report command line (`python -m experiments.report`) and the report folder it writes
(vl4pose_jax.report.files)."""
import os
import pathlib
import subprocess
import sys

import pytest

from report_util import curve_rows, paired_rows, write_results
from vl4pose_jax.report import files


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
    for name in files.REPORT_FILES:
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    md = (tmp_path / "out" / "report.md").read_text()
    for heading in ("## Headline metric by labelled-set size", "## Area under the budget curve",
                    "### Test accuracy per OOD kind", "### OOD AUROC of the acquisition score",
                    "### VL4Pose pose refinement", "### Pool records scored per round"):
        assert heading in md
    # AUBC of seed s: random 50 + s, vl4pose 52 + s; equal differences: no t-test (³).
    assert ("| vl4pose | 3 | 100–400 | 53.00 ± 1.00 | 2.00 ± 0.00 [2.00, 2.00] | n/a³ | n/a³ | "
            "0.25 | 0.25 | 3 | 3/3 |" in md)
    assert "sample standard deviation, ddof = 1" in md
    assert "beat random" in out.stdout and "Pool OOD AUROC per kind" in out.stdout
    aubc_csv = (tmp_path / "out" / "aubc.csv").read_text().splitlines()
    assert aubc_csv[0].startswith("method,metric,lower_is_better,seeds") and len(aubc_csv) == 3

    missing = subprocess.run([sys.executable, "-m", "experiments.report", str(tmp_path / "nope")],
                             cwd=root, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0
    last = missing.stderr.strip().splitlines()[-1]
    assert last == f"error: no results.jsonl in {tmp_path / 'nope'}"


def test_the_al_commands_names_stay_importable_from_the_cli_module():
    from experiments import report  # pylint: disable=import-outside-toplevel
    assert report.write_summary is files.write_summary
    assert report.write_report is files.write_report
    assert callable(report.read_rows) and callable(report.round_plotter)


def test_write_summary_is_what_the_al_command_prints(tmp_path):
    write_results(tmp_path, paired_rows([1.0, 2.0]))
    text = files.write_summary([tmp_path], tmp_path / "out")
    assert text.startswith("| pck@0.2 \\ labelled | 100 | 200 | 400 |")
    assert "| vl4pose | 2 | 100–400 |" in text and "| 2/2 |" in text
    assert text.splitlines()[-1] == (f"wrote {tmp_path / 'out'}/: report.md, report.csv, "
                                     "aubc.csv, by_kind.csv, learning_curve.png")
    assert "Pool OOD AUROC" not in text        # nothing per kind recorded: no per-kind lines
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(ValueError, match="no result rows in"):
        files.write_summary([tmp_path], tmp_path / "out")
    (tmp_path / "results.jsonl").write_text('{"method": "random"\n')
    with pytest.raises(ValueError, match=r"results.jsonl:1: not a JSON row"):
        files.write_summary([tmp_path], tmp_path / "out")


def test_a_method_read_from_another_workdir_says_whose_random_it_is_compared_with(tmp_path):
    write_results(tmp_path / "plain", paired_rows([1.0, 1.0]))
    write_results(tmp_path / "bayes", paired_rows([3.0, 3.0], method="cke"))
    text = files.write_summary([tmp_path / "plain", f"{tmp_path / 'bayes'}:cke"], tmp_path / "out")
    assert "| 3.00 ± 0.00 [3.00, 3.00]⁴ |" in text
    assert (f"⁴ cke (read from {tmp_path / 'bayes'}): Δ against the random runs of another "
            f"workdir ({tmp_path / 'plain'})") in text
    aubc_csv = (tmp_path / "out" / "aubc.csv").read_text()
    assert aubc_csv.splitlines()[0].endswith(",random_workdir")
    assert f",{tmp_path / 'plain'}" in aubc_csv.splitlines()[-1]


def test_write_report_returns_the_headline_table(tmp_path):
    write_results(tmp_path, paired_rows([1.0, 2.0]))
    table = files.write_report([tmp_path], tmp_path / "out")
    assert table["sizes"] == [100, 200, 400] and table["methods"]["vl4pose"][100][2] == 2
    assert not (tmp_path / "out" / "ood_auroc.png").exists()
