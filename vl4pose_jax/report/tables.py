"""The AL report as text tables: Markdown for report.md and for the summary the AL command
prints (headline metric per method and labelled-set size, AUBC with the paired comparison to
random and its footnotes, the per-OOD-kind diagnostics, each introduced by what it holds) and
CSV files of the same numbers (report.csv, aubc.csv, by_kind.csv in long format). Every cell is a
mean ± std over seeds; "–" marks a value no row recorded, "(n=k)" a cell that only k of the
method's seeds have.
"""
from __future__ import annotations

import csv

from vl4pose_jax.report.kinds import kind_table, kind_tables, seed_means_over_rounds
from vl4pose_jax.report.rows import headline_metric, latest_rows, methods, seed_counts
from vl4pose_jax.report.stats import (BASELINE, aggregate, aubc_table, direction,
                                      lower_is_better, paired_comparison)

_NOT_RECORDED = ("–: not recorded (older runs, methods without scores such as random, datasets "
                 "without OOD flags, or the last round, which selects nothing)")
_FOOTNOTES = {"few": "¹ fewer than 2 seeds shared with the baseline: no test.",
              "zero": "² all differences are zero: the tests are undefined.",
              "constant": "³ all differences are equal (zero variance): the t-test is undefined."}


def _mean_std(stats, digits=2, seeds=None) -> str:
    """'mean ± std' ('mean' for a single value, '–' for none), '(n=k)' when only k of `seeds`."""
    if stats is None:
        return "–"
    mean, std, n = stats
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
    return text + (f" (n={n})" if seeds is not None and n < seeds else "")


def _p(p, note) -> str:
    if note == "few":
        return "–¹"
    if note in ("zero", "constant"):
        return "n/a²" if note == "zero" else "n/a³"
    return f"{p:.3g}" if p is not None else "–"


def _workdirs(sources, method, seeds) -> str:
    """The workdirs the runs of `method` on `seeds` were read from ('' when unknown)."""
    if not sources:
        return ""
    return ", ".join(sorted({str(sources[(method, s)]) for s in seeds if (method, s) in sources}))


def _other_workdir(sources, method, baseline, seeds) -> bool:
    """Whether `method` is compared on some seed with a `baseline` run of another workdir."""
    return bool(sources) and any(sources.get((method, s)) != sources.get((baseline, s))
                                 for s in seeds)


def _delta(c) -> str:
    """'mean ± std [low, high]': the paired differences and their mean's 95 % t-interval."""
    ci = c["ci95"]
    return _mean_std(c["stats"]) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def markdown_table(table) -> str:
    """The headline table (`stats.aggregate`): a row per method, a column per labelled size."""
    header = f"| {table['metric']} \\ labelled | " + " | ".join(map(str, table["sizes"])) + " |"
    rule = "|---" * (len(table["sizes"]) + 1) + "|"
    lines = [header, rule]
    for method, v in table["methods"].items():
        lines.append(f"| {method} | " + " | ".join(_mean_std(v.get(s)) for s in table["sizes"])
                     + " |")
    return "\n".join(lines)


def aubc_markdown(rows, baseline=BASELINE, metric=None, sources=None) -> str:
    """The AUBC table joined with the paired comparison to `baseline`, with its footnotes.
    `sources` ({(method, seed): workdir}, `rows.read_workdirs`) marks the methods compared with
    baseline runs of another workdir and names both workdirs."""
    metric = metric or headline_metric(rows)
    at, pc = aubc_table(rows, metric), paired_comparison(rows, baseline, metric)
    if not pc:
        return "\n".join(
            [f"| method | seeds | labelled range | AUBC {metric} |", "|---" * 4 + "|"]
            + [f"| {m} | {len(a['per_seed'])} | "
               + (f"{a['range'][0]}–{a['range'][1]}" if a["range"] else "varies by seed")
               + f" | {_mean_std(a['stats'])} |" for m, a in at["methods"].items()]
            + ["", f"No {baseline} runs among these results: no paired comparison (add "
               f"--method=...,{baseline} to the run for one)."])
    better = "< 0" if at["lower_is_better"] else "> 0"
    lines = [f"| method | seeds | labelled range | AUBC {metric} | Δ vs {baseline}: mean ± std "
             f"[95 % CI] (better: {better}) | paired t-test p | paired t-test p (Holm) | "
             f"Wilcoxon p | Wilcoxon p (Holm) | paired seeds | beat {baseline} |",
             "|---" * 11 + "|"]
    notes, elsewhere = set(), {}   # elsewhere: {(method's workdirs, baseline's): [method]}
    for method, a in at["methods"].items():
        lo_hi = f"{a['range'][0]}–{a['range'][1]}" if a["range"] else "varies by seed"
        cells = [method, str(len(a["per_seed"])), lo_hi, _mean_std(a["stats"])]
        if method in pc:
            c = pc[method]
            notes.update(n for n in (c["t_note"], c["wilcoxon_note"]) if n)
            other = _other_workdir(sources, method, baseline, c["seeds"])
            if other:
                elsewhere.setdefault((_workdirs(sources, method, c["seeds"]),
                                      _workdirs(sources, baseline, c["seeds"])), []).append(method)
            cells += [_delta(c) + ("⁴" if other else ""),
                      _p(c["t_p"], c["t_note"]), _p(c["t_p_holm"], c["t_note"]),
                      _p(c["wilcoxon_p"], c["wilcoxon_note"]),
                      _p(c["wilcoxon_p_holm"], c["wilcoxon_note"]), str(c["n"]),
                      f"{c['wins']}/{c['n']}" if c["n"] else "–"]
        else:
            cells += ["–"] * 7
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [_FOOTNOTES[k] for k in ("few", "zero", "constant") if k in notes]
    lines += [f"⁴ {', '.join(names)} (read from {own}): Δ against the {baseline} runs of another "
              f"workdir ({base}), which may train another network or use other settings."
              for (own, base), names in elsewhere.items()]
    return "\n".join(lines).rstrip()


def _column(key) -> str:
    return str(key) if not isinstance(key, tuple) else f"{key[0]} ({key[1]})"


def kind_markdown(t) -> str:
    """Rows: method (× kind), columns: labelled sizes or 'round (labelled)'; "–" where absent."""
    with_kind = any(label != "" for label in t["labels"])
    head = "labelled" if t["columns"] == "labelled" else "round (labelled)"
    lines = ["| method | " + (f"{t['label']} | " if with_kind else "") + f"{head}: "
             + " | ".join(_column(k) for k in t["keys"]) + " |",
             "|---" * (len(t["keys"]) + 1 + with_kind) + "|"]
    for method in t["methods"]:
        if not any((method, label) in t["cells"] for label in t["labels"]):
            lines.append(f"| {method} | " + ("(none recorded) | " if with_kind else "")
                         + " | ".join("–" for _ in t["keys"]) + " |")
            continue
        for label in t["labels"]:
            by_key = t["cells"].get((method, label), {})
            cells = [_mean_std(by_key.get(k), t["digits"], t["seeds"][method]) for k in t["keys"]]
            lines.append(f"| {method} | " + (f"{label} | " if with_kind else "")
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def _header(rows, workdirs, metric) -> str:
    seeds = seed_counts(rows)
    return "\n".join([
        "# Active-learning report", "",
        f"Results: {', '.join(str(w) for w in workdirs)}. Methods (seeds): "
        + ", ".join(f"{m} ({seeds[m]})" for m in methods(rows)) + ".",
        f"Headline metric: **{metric}**, {direction(metric)}"
        + (" (%)." if not lower_is_better(metric) else "."),
        "Every cell is the mean ± std over seeds (std: the sample standard deviation, ddof = 1; "
        "a single value has no ± part); \"(n=k)\": only k of the method's seeds have a value; "
        f"{_NOT_RECORDED}."])


def report_markdown(rows, workdirs=(), baseline=BASELINE, sources=None) -> str:
    """The whole report.md: header, headline table, AUBC and paired tests, per-kind tables.
    `sources`: where each run was read from (`rows.read_workdirs`), see `aubc_markdown`."""
    rows = latest_rows(rows)
    metric = headline_metric(rows)
    better = "negative" if lower_is_better(metric) else "positive"
    parts = [_header(rows, workdirs, metric), "",
             "## Headline metric by labelled-set size", "",
             f"{metric} on the test split after training on each labelled-set size "
             f"({direction(metric)}).", "", markdown_table(aggregate(rows)), "",
             "## Area under the budget curve (AUBC) and paired comparison with " + baseline, "",
             f"AUBC: trapezoid area under {metric} against the number of labelled images, "
             "divided by the labelled range (last − first size), i.e. the metric's average over "
             "the budget in its own units (a run of one size: its value). Δ: per-seed AUBC "
             f"difference method − {baseline} over the seeds both have, each on the labelled "
             f"sizes both curves share; a {better} Δ is an improvement ({direction(metric)}); "
             "mean ± std over those seeds, and in brackets the 95 % confidence interval of the "
             "mean Δ from the t-distribution (mean ± t₀.₉₇₅,ₙ₋₁ · std / √n, n paired seeds). "
             "p-values: two-sided paired t-test (scipy.stats.ttest_rel) and Wilcoxon "
             "signed-rank test (scipy.stats.wilcoxon: zero differences dropped, exact null "
             "distribution for n ≤ 50; with n seeds its smallest p is 2/2ⁿ, 0.0625 for 5); "
             "(Holm): the same p-values adjusted by Holm–Bonferroni over the methods compared "
             f"with {baseline} that have a p-value of that test, to hold across all of them "
             f"(compare them, not the raw p, with 0.05). \"beat {baseline}\": seeds where the "
             "method's AUBC is better.", "",
             aubc_markdown(rows, baseline, metric, sources), "",
             "## Diagnostics: OOD kinds, scores, refinement", "",
             "Kinds (datasets with OOD flags, i.e. the synthetic sets): in_distribution, "
             "rare_pose, appearance. Tables by "
             "labelled size are measured after training on that many images; tables by round "
             "describe the scoring and selection of that round, by the model trained on the "
             "labelled size in brackets."]
    absent = []
    for t in kind_tables(rows, metric).values():
        if not t["recorded"]:
            absent.append(t["title"])
            continue
        parts += ["", f"### {t['title']}", "", t["text"], "", kind_markdown(t)]
    if absent:
        parts += ["", "Not recorded in any row of these results: " + "; ".join(absent) + "."]
    return "\n".join(parts) + "\n"


def _kind_rows(t, cells_of_method) -> list[str]:
    """A compact table: a row per method of the per-kind table `t`, a column per kind."""
    return (["| method | " + " | ".join(t["labels"]) + " |",
             "|---" * (len(t["labels"]) + 1) + "|"]
            + [f"| {m} | " + " | ".join(cells_of_method(m)) + " |" for m in t["methods"]])


def summary(rows, baseline=BASELINE, sources=None) -> str:
    """The compact text the AL command prints at the end: the headline table, AUBC with the
    paired comparison (`sources`: see `aubc_markdown`), and, when recorded, test accuracy per
    kind at the largest labelled size and the OOD AUROC per kind averaged over rounds (mean ±
    std over seeds)."""
    rows = latest_rows(rows)
    if not rows:
        return "no results"
    metric = headline_metric(rows)
    paired = any(r["method"] == baseline for r in rows)
    parts = [markdown_table(aggregate(rows)), "",
             f"AUBC ({metric} averaged over the labelled range, {direction(metric)})"
             + (f" and paired tests against {baseline} over seeds:" if paired else ":"),
             aubc_markdown(rows, baseline, metric, sources)]
    seeds = seed_counts(rows)
    acc = kind_table(rows, "accuracy_by_kind", metric)
    if acc["recorded"]:
        last = acc["keys"][-1]
        parts += ["", f"Test {acc['metric']} per kind at {last} labelled:"]
        parts += _kind_rows(acc, lambda m: [
            _mean_std(acc["cells"].get((m, k), {}).get(last), 2, seeds[m]) for k in acc["labels"]])
    auroc = kind_table(rows, "ood_auroc_by_kind", metric)
    if auroc["recorded"]:
        means = seed_means_over_rounds(rows, "ood_auroc_by_kind", metric)
        parts += ["", "Pool OOD AUROC per kind (each seed's mean over rounds):"]
        parts += _kind_rows(auroc, lambda m: [
            _mean_std(means.get((m, k)), 3, seeds[m]) for k in auroc["labels"]])
    return "\n".join(parts)


def write_csv(table, path):
    """report.csv: the headline table (`stats.aggregate`), a line per method and size."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "num_labelled", f"{table['metric']}_mean", "std", "seeds"])
        for method, v in table["methods"].items():
            for s in table["sizes"]:
                if s in v:
                    w.writerow([method, s, *v[s]])


def write_stats_csv(rows, path, baseline=BASELINE, sources=None):
    """AUBC per method (mean, std, seeds) with the paired comparison to `baseline`: mean and
    std of the differences, their mean's 95 % t-interval, raw and Holm-adjusted p-values, and
    the workdir of the baseline runs each method is compared with (when `sources` is given)."""
    metric = headline_metric(rows)
    at, pc = aubc_table(rows, metric), paired_comparison(rows, baseline, metric)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "metric", "lower_is_better", "seeds", "first_size", "last_size",
                    "aubc_mean", "aubc_std", f"diff_vs_{baseline}_mean", "diff_std",
                    "diff_ci95_low", "diff_ci95_high", "paired_seeds",
                    f"seeds_beating_{baseline}", "ttest_rel_p", "ttest_rel_p_holm", "wilcoxon_p",
                    "wilcoxon_p_holm", f"{baseline}_workdir"])
        for method, a in at["methods"].items():
            c = pc.get(method, {})
            st = c.get("stats") or (None, None, None)
            ci = c.get("ci95") or ("", "")
            w.writerow([method, metric, at["lower_is_better"], len(a["per_seed"]),
                        *(a["range"] or ("", "")), *a["stats"][:2], *st[:2], *ci,
                        c.get("n", ""), c.get("wins", ""), c.get("t_p", ""),
                        c.get("t_p_holm", ""), c.get("wilcoxon_p", ""),
                        c.get("wilcoxon_p_holm", ""),
                        _workdirs(sources, baseline, c["seeds"]) if c else ""])


def write_kind_csv(tables, path):
    """Long format: table, method, kind, round, num_labelled, mean, std, seeds."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["table", "method", "kind", "round", "num_labelled", "mean", "std", "seeds"])
        for t in tables.values():
            for (method, label), by_key in t["cells"].items():
                for key, (mean, std, n) in sorted(by_key.items()):
                    rnd, size = key if isinstance(key, tuple) else ("", key)
                    w.writerow([t["name"], method, label, rnd, size, mean, std, n])
