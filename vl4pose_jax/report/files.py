"""The report folder: which files an AL report consists of and how they are written from the
rows of one or more workdirs. `write_report` writes report.md (every table, with what it is),
report.csv (headline metric per method and labelled size), aubc.csv (AUBC and the paired
comparison with random), by_kind.csv (per-kind diagnostics, long format), learning_curve.png and,
when the rows recorded them, ood_auroc.png and accuracy_by_kind.png; `write_summary` does the
same and returns the compact text the AL command prints.
"""
from __future__ import annotations

import pathlib

from vl4pose_jax.report import plots, tables
from vl4pose_jax.report.kinds import kind_tables
from vl4pose_jax.report.rows import latest_rows, read_results
from vl4pose_jax.report.stats import aggregate

REPORT_FILES = ("report.md", "report.csv", "aubc.csv", "by_kind.csv", "learning_curve.png",
                "ood_auroc.png", "accuracy_by_kind.png")


def _write(rows, sources, workdirs, out) -> list[str]:
    """Writes every report file of `rows` (read from `sources`, see `rows.read_workdirs`) into
    `out`; returns the names of those present."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = aggregate(rows)
    (out / "report.md").write_text(tables.report_markdown(rows, workdirs, sources=sources))
    tables.write_csv(table, out / "report.csv")
    tables.write_stats_csv(latest_rows(rows), out / "aubc.csv", sources=sources)
    by_kind = kind_tables(rows, table["metric"])
    tables.write_kind_csv(by_kind, out / "by_kind.csv")
    plots.plot_learning_curves(table, out / "learning_curve.png")
    for name, png, ylabel, chance in (
            ("ood_auroc_by_kind", "ood_auroc.png", "pool OOD AUROC", 0.5),
            ("accuracy_by_kind", "accuracy_by_kind.png", by_kind["accuracy_by_kind"]["metric"],
             None)):
        if by_kind[name]["recorded"]:
            plots.plot_kind_panels(by_kind[name], out / png, ylabel, chance)
        else:
            (out / png).unlink(missing_ok=True)   # no stale plot from an earlier report
    return [f for f in REPORT_FILES if (out / f).exists()]


def write_report(workdirs, out) -> dict:
    """Writes the report files of `workdirs` ('WORKDIR[:method,...]') into `out`. Returns the
    headline table (`stats.aggregate`)."""
    rows, sources = read_results(workdirs)
    _write(rows, sources, workdirs, out)
    return aggregate(rows)


def write_summary(workdirs, out) -> str:
    """`write_report`, returning the text to print: `tables.summary` and the files written.
    Raises FileNotFoundError (a workdir without results.jsonl) or ValueError (no or malformed
    rows)."""
    rows, sources = read_results(workdirs)
    written = _write(rows, sources, workdirs, out)
    return tables.summary(rows, sources=sources) + f"\n\nwrote {out}/: " + ", ".join(written)
