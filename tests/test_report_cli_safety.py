"""`python -m experiments.report` on what a kill or a hostile user leaves (issue 28): a truncated
last line of results.jsonl is skipped with a warning, a list row or an `--out` that is a file is
one line of error, never a traceback. Real command, made-up rows (seconds)."""
import json
import pathlib
import subprocess
import sys

from report_util import paired_rows, write_results
from vl4pose_jax.report import rows as rows_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def report(*args):
    return subprocess.run([sys.executable, "-m", "experiments.report", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    w = tmp_path / "w"
    rows = paired_rows([1.0, 2.0, 1.5])
    write_results(w, rows)
    whole = (w / "results.jsonl").read_text()
    (w / "results.jsonl").write_text(whole + json.dumps(rows[0])[:25])   # a kill mid-write
    proc = report(w)
    assert proc.returncode == 0, proc.stderr
    assert "the last line is not a whole JSON row" in proc.stderr and "skipped" in proc.stderr
    assert (w / "report.md").is_file()
    said = []
    assert len(rows_lib.read_rows([w], warn=said.append)) == len(rows) and len(said) == 1


def test_bad_rows_and_bad_out_are_one_line(tmp_path):
    w = tmp_path / "w"
    rows = paired_rows([1.0, 2.0])
    write_results(w, rows)
    text = (w / "results.jsonl").read_text()
    (w / "results.jsonl").write_text("not json\n" + text)
    proc = report(w)
    assert proc.returncode == 1 and "results.jsonl:1: not a JSON row" in proc.stderr
    (w / "results.jsonl").write_text("[1, 2]\n" + text)
    proc = report(w)
    assert proc.returncode == 1 and "results.jsonl:1: a JSON list, not a row" in proc.stderr
    assert "Traceback" not in proc.stderr
    write_results(w, rows)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        proc = report(w, f"--out={out}")
        assert proc.returncode == 1 and "is a file, not a folder" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
