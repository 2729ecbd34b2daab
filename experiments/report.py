"""Aggregate AL runs: `python -m experiments.report WORKDIR... [--out=DIR]` reads every
`results.jsonl` (`WORKDIR:m1,m2`: only methods m1 and m2 of it) and writes into `--out` (default:
the first workdir) report.md, a reviewer's report: the headline metric per method and labelled-set
size (mean ± sample std over seeds); the normalised area under the budget curve (AUBC: trapezoid
area over the labelled range divided by that range, in the metric's units) with a paired
comparison to random over seeds (AUBC difference with its 95 % t-interval, paired t-test and
Wilcoxon signed-rank p-values, raw and Holm–Bonferroni-adjusted over the methods, seeds won; a
method read from another workdir than random's is marked); and, where the runs recorded them,
per-OOD-kind diagnostics (test accuracy per kind, pool and test OOD AUROC per kind, OOD share of
each selection, Spearman of score vs test error, VL4Pose refinement gain, records scored). Also
report.csv (headline table), aubc.csv, by_kind.csv, learning_curve.png (±1 std bands, seeds in the
legend), ood_auroc.png and accuracy_by_kind.png. Absent fields show as "–". It prints the compact
summary the AL command prints at the end and the files written; a missing workdir, malformed
rows or an `--out` that is a file exit 1 with one line (an unreadable last line, cut by a kill
while writing, is skipped with a warning). The library is `vl4pose_jax.report`; `read_rows`, `write_report`,
`write_summary` and `round_plotter` (the AL command's per-round plots) are importable from here
too.
"""
from __future__ import annotations

import pathlib
import sys

from absl import app, flags

from vl4pose_jax.report.files import write_report, write_summary
from vl4pose_jax.report.plots import round_plotter
from vl4pose_jax.report.rows import read_rows

__all__ = ["read_rows", "round_plotter", "write_report", "write_summary"]

FLAGS = flags.FLAGS


def main(argv):
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError(
            "usage: python -m experiments.report WORKDIR[:METHOD,...] [WORKDIR...]")
    out = pathlib.Path(FLAGS.out or workdirs[0])
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        print(f"error: --out={out}: {blocked} is a file, not a folder; choose a folder",
              file=sys.stderr)
        sys.exit(1)
    try:
        print(write_summary(workdirs, out))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    flags.DEFINE_string("out", None, "Output folder (default: the first workdir).")
    app.run(main)
