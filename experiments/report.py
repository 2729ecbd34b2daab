"""Aggregate AL runs: `python -m experiments.report WORKDIR... [--out=DIR]` reads every
`results.jsonl` (`WORKDIR:m1,m2`: only methods m1 and m2 of it) and writes into `--out`
(default: the first workdir) report.md, a reviewer's report: the headline metric per method and
labelled-set size (mean ± std over seeds); the normalised area under the budget curve (AUBC:
trapezoid area over the labelled range divided by that range, in the metric's units) with a
paired comparison to random over seeds (AUBC difference, paired t-test and Wilcoxon signed-rank
p-values, seeds won); and, where the runs recorded them, per-OOD-kind diagnostics (test accuracy
per kind, pool and test OOD AUROC per kind, OOD share of each selection, Spearman of score vs
test error, VL4Pose refinement gain, records scored). Also report.csv (headline table),
aubc.csv, by_kind.csv, learning_curve.png (±1 std bands, seeds in the legend), ood_auroc.png and
accuracy_by_kind.png. Absent fields show as "–". `write_summary(workdirs, out)` writes all that
and returns the compact text the AL command prints at the end (`summary(rows)`); `aggregate`,
`markdown_table`, `aubc`, `aubc_table`, `paired_comparison` and `kind_table` are the pure
pieces.
`round_plotter(workdir)` is the per-round hook of the AL command: a gallery of each selection
with predicted skeletons and a histogram of the pool's scores vs the selection's (for VL4Pose,
the likelihood histogram).
"""
from __future__ import annotations

import collections
import csv
import json
import math
import os
import pathlib
import sys

import numpy as np
import scipy.stats
from absl import app, flags

FLAGS = flags.FLAGS


def parse_workdir(spec) -> tuple[pathlib.Path, set | None]:
    """'WORKDIR' or 'WORKDIR:method,method' (only those methods' rows) -> (path, methods)."""
    spec = str(spec)
    path, sep, names = spec.rpartition(":")
    if not sep or not names or pathlib.Path(spec).exists():
        return pathlib.Path(spec), None
    return pathlib.Path(path), {n for n in names.split(",") if n}


def read_rows(workdirs) -> list[dict]:
    """The rows of every workdir ('WORKDIR[:method,...]', see `parse_workdir`). Two workdirs
    holding the same (method, seed) are refused: their rows would silently mix."""
    rows, owner = [], {}
    for spec in workdirs:
        w, methods = parse_workdir(spec)
        path = w / "results.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"no results.jsonl in {w}")
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{i}: not a JSON row ({err.msg})") from None
                if methods is not None and row.get("method") not in methods:
                    continue
                key = (row.get("method"), row.get("seed"))
                if owner.setdefault(key, w) != w:
                    raise ValueError(
                        f"{owner[key]} and {w} both hold {key[0]!r} seed {key[1]}; keep one, "
                        f"e.g. '{w}:METHOD,...' reads only the methods named")
                rows.append(row)
    return rows


def aggregate(rows) -> dict:
    """{'metric': name, 'sizes': [...], 'methods': {method: {size: (mean, std, n)}}}."""
    if not rows:
        return {"metric": None, "sizes": [], "methods": {}}
    metric = next(iter(rows[0]["metrics"]))
    values = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in rows:   # a later row for the same (method, size, seed) replaces an earlier one
        value = _number(r.get("metrics", {}).get(metric))   # None, NaN: no value
        if value is not None:
            values[r["method"]][r["num_labelled"]][r["seed"]] = value
    sizes = sorted({s for v in values.values() for s in v})
    table = {m: {s: (float(np.mean(list(v[s].values()))), float(np.std(list(v[s].values()))),
                     len(v[s])) for s in v} for m, v in values.items()}
    return {"metric": metric, "sizes": sizes, "methods": table}


def _cell(entry):
    if entry is None:
        return "–"
    mean, std, n = entry
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def markdown_table(table) -> str:
    header = f"| {table['metric']} \\ labelled | " + " | ".join(map(str, table["sizes"])) + " |"
    rule = "|---" * (len(table["sizes"]) + 1) + "|"
    lines = [header, rule]
    for method, v in table["methods"].items():
        lines.append(f"| {method} | " + " | ".join(_cell(v.get(s)) for s in table["sizes"])
                     + " |")
    return "\n".join(lines)


def write_csv(table, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "num_labelled", f"{table['metric']}_mean", "std", "seeds"])
        for method, v in table["methods"].items():
            for s in table["sizes"]:
                if s in v:
                    w.writerow([method, s, *v[s]])


def plot_learning_curves(table, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for method, v in table["methods"].items():
        sizes = sorted(v)
        mean = np.array([v[s][0] for s in sizes])
        std = np.array([v[s][1] for s in sizes])
        ns = sorted({v[s][2] for s in sizes})
        n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
        ax.plot(sizes, mean, marker="o", label=f"{method} (n={n})")
        ax.fill_between(sizes, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("labelled images")
    ax.set_ylabel(table["metric"])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside: bands stay visible
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- Statistics over seeds: AUBC, paired comparison with random, per-OOD-kind diagnostics ----

BASELINE = "random"
_KIND_ORDER = ("in_distribution", "rare_pose", "appearance", "any", "pooled")
_NOT_RECORDED = ("–: not recorded (older runs, methods without scores such as random, datasets "
                 "without OOD flags, or the last round, which selects nothing)")


def lower_is_better(metric) -> bool:
    """Error-like metrics (`mean_error_mm`; any name with 'error' or 'loss', or ending in '_mm')
    are lower-is-better; PCK / PCKh in % are higher-is-better."""
    name = str(metric).lower()
    return "error" in name or "loss" in name or name.endswith("_mm")


def _direction(metric) -> str:
    return "lower is better" if lower_is_better(metric) else "higher is better"


def _number(value):
    """A finite float, or None for an absent, non-numeric or non-finite value."""
    if isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def latest_rows(rows) -> list[dict]:
    """One row per (method, seed, round), the last one read (a resumed run rewrites its rows)."""
    keep = {}
    for r in rows:
        keep[(r["method"], r["seed"], r.get("round", r.get("num_labelled")))] = r
    return list(keep.values())


def _methods(rows) -> list:
    return list(dict.fromkeys(r["method"] for r in rows))


def _seeds(rows) -> dict:
    """{method: number of distinct seeds}."""
    seeds = collections.defaultdict(set)
    for r in rows:
        seeds[r["method"]].add(r["seed"])
    return {m: len(s) for m, s in seeds.items()}


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values)), len(values)


def aubc(sizes, values) -> float:
    """Normalised area under the budget curve: the trapezoid area of `values` over the labelled
    `sizes`, divided by the labelled range max(sizes) − min(sizes). It is the metric's average
    over the budget, in the metric's units; a curve of a single size has its value as AUBC."""
    x, y = np.asarray(sizes, np.float64), np.asarray(values, np.float64)
    if x.size == 0 or x.shape != y.shape:
        raise ValueError(f"aubc needs as many values as sizes (>= 1); got {x.size}, {y.size}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) == 0):
        raise ValueError(f"aubc: repeated labelled size in {sorted(sizes)}")
    if x.size == 1:
        return float(y[0])
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def curves(rows, metric=None) -> dict:
    """{method: {seed: {num_labelled: headline value}}} over the latest rows."""
    rows = latest_rows(rows)
    metric = metric or (next(iter(rows[0]["metrics"])) if rows else None)
    out = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in rows:
        value = _number(r.get("metrics", {}).get(metric))
        if value is not None:
            out[r["method"]][r["seed"]][r["num_labelled"]] = value
    return {m: dict(v) for m, v in out.items()}


def aubc_table(rows, metric=None) -> dict:
    """AUBC per method and seed, mean ± std over seeds:
    {'metric', 'lower_is_better', 'methods': {method: {'per_seed': {seed: aubc},
    'range': (first size, last size) or None when seeds differ, 'stats': (mean, std, n)}}}."""
    metric = metric or (next(iter(rows[0]["metrics"])) if rows else None)
    methods = {}
    for method, by_seed in curves(rows, metric).items():
        per_seed = {seed: aubc(list(c), list(c.values())) for seed, c in sorted(by_seed.items())}
        ranges = {(min(c), max(c)) for c in by_seed.values()}
        methods[method] = {"per_seed": per_seed, "range": ranges.pop() if len(ranges) == 1
                           else None, "stats": _stats(per_seed.values())}
    return {"metric": metric, "lower_is_better": lower_is_better(metric), "methods": methods}


def paired_test(diffs) -> dict:
    """Two-sided tests that the paired differences have zero mean / median:
    {'t_p': scipy.stats.ttest_rel p, 'wilcoxon_p': scipy.stats.wilcoxon p} (scipy's defaults:
    zero differences dropped, exact null distribution for n <= 50). A p-value is None, with
    'note' saying why, for n < 2 ('few'), all differences zero ('zero'; both tests) or equal
    non-zero differences ('constant'; t-test only, its variance is zero)."""
    d = np.asarray(diffs, np.float64)
    out = {"t_p": None, "wilcoxon_p": None, "t_note": None, "wilcoxon_note": None}
    if d.size < 2:
        out["t_note"] = out["wilcoxon_note"] = "few"
        return out
    if np.all(d == 0):
        out["t_note"] = out["wilcoxon_note"] = "zero"
        return out
    if np.ptp(d) == 0:
        out["t_note"] = "constant"
    else:
        out["t_p"] = float(scipy.stats.ttest_rel(d, np.zeros_like(d)).pvalue)
    out["wilcoxon_p"] = float(scipy.stats.wilcoxon(d).pvalue)
    return out


def paired_comparison(rows, baseline=BASELINE, metric=None) -> dict:
    """Each method against `baseline` on the seeds both have: per seed, the AUBC difference
    (method − baseline), both AUBCs taken on the labelled sizes the two curves of that seed
    share; {method: {'seeds', 'diffs', 'stats': (mean, std, n) or None, 'wins': seeds where the
    method is better (diff > 0, or < 0 for a lower-is-better metric), 'n', 't_p',
    'wilcoxon_p', 't_note', 'wilcoxon_note'}}. Empty without baseline runs."""
    metric = metric or (next(iter(rows[0]["metrics"])) if rows else None)
    by_method = curves(rows, metric)
    if baseline not in by_method:
        return {}
    sign = -1.0 if lower_is_better(metric) else 1.0
    out = {}
    for method, by_seed in by_method.items():
        if method == baseline:
            continue
        seeds, diffs = [], []
        for seed, c in sorted(by_seed.items()):
            base = by_method[baseline].get(seed, {})
            common = sorted(set(c) & set(base))
            if common:
                seeds.append(seed)
                diffs.append(aubc(common, [c[s] for s in common])
                             - aubc(common, [base[s] for s in common]))
        out[method] = {"seeds": seeds, "diffs": diffs, "stats": _stats(diffs), "n": len(diffs),
                       "wins": sum(sign * d > 0 for d in diffs), **paired_test(diffs)}
    return out


def _p(p, note) -> str:
    if note == "few":
        return "–¹"
    if note in ("zero", "constant"):
        return "n/a²" if note == "zero" else "n/a³"
    return f"{p:.3g}" if p is not None else "–"


def _mean_std(stats, digits=2, seeds=None) -> str:
    if stats is None:
        return "–"
    mean, std, n = stats
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
    return text + (f" (n={n})" if seeds is not None and n < seeds else "")


def aubc_markdown(rows, baseline=BASELINE, metric=None) -> str:
    """The AUBC table joined with the paired comparison to `baseline`, with its footnotes."""
    metric = metric or (next(iter(rows[0]["metrics"])) if rows else None)
    at, pc = aubc_table(rows, metric), paired_comparison(rows, baseline, metric)
    better = "< 0" if at["lower_is_better"] else "> 0"
    lines = [f"| method | seeds | labelled range | AUBC {metric} | Δ vs {baseline} (better: "
             f"{better}) | paired t-test p | Wilcoxon p | paired seeds | beat {baseline} |",
             "|---" * 9 + "|"]
    notes = set()
    for method, a in at["methods"].items():
        lo_hi = f"{a['range'][0]}–{a['range'][1]}" if a["range"] else "varies by seed"
        cells = [method, str(len(a["per_seed"])), lo_hi, _mean_std(a["stats"])]
        if method in pc:
            c = pc[method]
            notes.update(n for n in (c["t_note"], c["wilcoxon_note"]) if n)
            cells += [_mean_std(c["stats"]), _p(c["t_p"], c["t_note"]),
                      _p(c["wilcoxon_p"], c["wilcoxon_note"]), str(c["n"]),
                      f"{c['wins']}/{c['n']}" if c["n"] else "–"]
        else:
            cells += ["–"] * 5
        lines.append("| " + " | ".join(cells) + " |")
    if not pc:
        lines.append(f"\nNo {baseline} runs among these results: no paired comparison.")
    foot = {"few": "¹ fewer than 2 seeds shared with the baseline: no test.",
            "zero": "² all differences are zero: the tests are undefined.",
            "constant": "³ all differences are equal (zero variance): the t-test is undefined."}
    lines += [""] + [foot[k] for k in ("few", "zero", "constant") if k in notes]
    return "\n".join(lines).rstrip()


# Per-kind diagnostics: each spec says what the table holds, which row field it reads, whether
# its columns are labelled sizes or acquisition rounds, and how many digits to print.

def _by_kind(field, fallback_pooled=None):
    def values(row, _metric):
        out = dict(row[field]) if isinstance(row.get(field), dict) else {}
        if fallback_pooled and "pooled" not in out and fallback_pooled in row:
            out["pooled"] = row[fallback_pooled]
        return out
    return values


def _accuracy_by_kind(row, metric):
    kinds = row.get("metrics_by_kind")
    if not isinstance(kinds, dict):
        return {}
    return {k: (m.get(metric) if isinstance(m, dict) else None) for k, m in kinds.items()}


def _selected_by_kind(row, _metric):
    out = _by_kind("ood_selected_by_kind")(row, _metric)
    # datasets without OOD flags (real data) record no kinds and a meaningless 0 share
    if "ood_selected_fraction" in row and (out or row["ood_selected_fraction"] > 0):
        out["any"] = row["ood_selected_fraction"]
    return out


def _refine(row, _metric):
    r = row.get("refine")
    if not isinstance(r, dict):
        return {}
    a, b = _number(r.get("argmax")), _number(r.get("refined"))
    return {"argmax": a, "refined": b, "gain": b - a if a is not None and b is not None
            else None}


KIND_TABLES = {
    "accuracy_by_kind": dict(
        title="Test accuracy per OOD kind", columns="labelled", digits=2, values=_accuracy_by_kind,
        text="The headline metric on the test images of each kind ({metric}, {direction})."),
    "ood_auroc_by_kind": dict(
        title="OOD AUROC of the acquisition score per kind (pool)", columns="round", digits=3,
        values=_by_kind("ood_auroc_by_kind", fallback_pooled="ood_auroc"),
        text="AUROC of the method's score separating the pool's records of each kind from its "
             "in-distribution records (pooled: all OOD kinds together; 0.5 is chance, higher "
             "means the score ranks that kind first)."),
    "ood_selected_by_kind": dict(
        title="Share of each round's selection per OOD kind", columns="round", digits=2,
        values=_selected_by_kind,
        text="Fraction of the images selected in the round that are of each kind (any: all OOD "
             "kinds together)."),
    "test_auroc_by_kind": dict(
        title="OOD AUROC of the score per kind (test split)", columns="round", digits=3,
        values=_by_kind("test_auroc_by_kind"),
        text="As the pool AUROC, on the test split."),
    "test_spearman": dict(
        title="Spearman correlation of the score with the per-image test error",
        columns="round", digits=3,
        values=lambda row, _m: {"": row.get("test_spearman")},
        text="Positive: the score predicts the model's failures on the test split."),
    "test_spearman_pck": dict(
        title="Spearman correlation of the score with the per-image test PCK",
        columns="round", digits=3,
        values=lambda row, _m: {"": row.get("test_spearman_pck")},
        text="Heatmap models: the score against each test image's PCK over its valid joints. "
             "Negative: the score predicts failure. VL4Pose's score is the negative "
             "log-likelihood, so Spearman(log-likelihood, PCK) is this value negated."),
    "refine": dict(
        title="VL4Pose pose refinement: argmax vs refined decoding", columns="labelled", digits=2,
        values=_refine, label="decoding",
        text="Test {metric} of argmax decoding and of VL4Pose's `refine_pose`; gain = refined − "
             "argmax per seed ({direction})."),
    "num_scored": dict(
        title="Pool records scored per round", columns="round", digits=0,
        values=lambda row, _m: {"": row.get("num_scored")},
        text="Number of pool records the method scored in the round."),
}


def _label_order(labels):
    order = {k: i for i, k in enumerate(_KIND_ORDER + ("argmax", "refined", "gain"))}
    return sorted(labels, key=lambda k: (order.get(k, len(order)), k))


def kind_table(rows, name, metric=None) -> dict:
    """One per-kind diagnostic (`KIND_TABLES[name]`), mean ± std over seeds:
    {'name', 'title', 'text', 'columns': 'labelled' | 'round', 'keys': column keys (sizes, or
    (round, num_labelled) pairs), 'labels': kinds, 'methods', 'seeds': {method: n},
    'cells': {(method, label): {key: (mean, std, n)}}, 'recorded': any value present}."""
    rows = latest_rows(rows)
    metric = metric or (next(iter(rows[0]["metrics"])) if rows else None)
    spec = KIND_TABLES[name]
    if name == "accuracy_by_kind" and rows:   # fall back to the kinds' own first metric
        names = [n for r in rows if isinstance(r.get("metrics_by_kind"), dict)
                 for m in r["metrics_by_kind"].values() if isinstance(m, dict) for n in m]
        if names and metric not in names:
            metric = names[0]
    values = collections.defaultdict(lambda: collections.defaultdict(list))
    labels, keys = set(), set()
    for r in rows:
        key = r["num_labelled"] if spec["columns"] == "labelled" else (r["round"],
                                                                        r["num_labelled"])
        keys.add(key)
        for label, v in spec["values"](r, metric).items():
            labels.add(label)
            v = _number(v)
            if v is not None:
                values[(r["method"], label)][key].append(v)
    cells = {ml: {k: _stats(v) for k, v in by_key.items()} for ml, by_key in values.items()}
    return {"name": name, "title": spec["title"],
            "text": spec["text"].format(metric=metric, direction=_direction(metric)),
            "metric": metric, "columns": spec["columns"], "digits": spec["digits"],
            "label": spec.get("label", "kind"),
            "keys": sorted(keys), "labels": _label_order(labels), "methods": _methods(rows),
            "seeds": _seeds(rows), "cells": cells, "recorded": bool(cells)}


def kind_tables(rows, metric=None) -> dict:
    """Every per-kind diagnostic of `KIND_TABLES`, by name."""
    return {name: kind_table(rows, name, metric) for name in KIND_TABLES}


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
    seeds = _seeds(rows)
    return "\n".join([
        "# Active-learning report", "",
        f"Results: {', '.join(str(w) for w in workdirs)}. Methods (seeds): "
        + ", ".join(f"{m} ({seeds[m]})" for m in _methods(rows)) + ".",
        f"Headline metric: **{metric}**, {_direction(metric)}"
        + (" (%)." if not lower_is_better(metric) else "."),
        "Every cell is the mean ± std over seeds (std with ddof = 0; a single value has no ± "
        f"part); \"(n=k)\": only k of the method's seeds have a value; {_NOT_RECORDED}."])


def report_markdown(rows, workdirs=(), baseline=BASELINE) -> str:
    """The whole report.md: header, headline table, AUBC and paired tests, per-kind tables."""
    rows = latest_rows(rows)
    metric = next(iter(rows[0]["metrics"])) if rows else None
    better = "negative" if lower_is_better(metric) else "positive"
    parts = [_header(rows, workdirs, metric), "",
             "## Headline metric by labelled-set size", "",
             f"{metric} on the test split after training on each labelled-set size "
             f"({_direction(metric)}).", "", markdown_table(aggregate(rows)), "",
             "## Area under the budget curve (AUBC) and paired comparison with " + baseline, "",
             f"AUBC: trapezoid area under {metric} against the number of labelled images, "
             "divided by the labelled range (last − first size), i.e. the metric's average over "
             "the budget in its own units (a run of one size: its value). Δ: per-seed AUBC "
             f"difference method − {baseline} over the seeds both have, each on the labelled "
             f"sizes both curves share; a {better} Δ is an improvement ({_direction(metric)}). "
             "p-values: two-sided paired t-test (scipy.stats.ttest_rel) and Wilcoxon "
             "signed-rank test (scipy.stats.wilcoxon: zero differences dropped, exact null "
             "distribution for n ≤ 50; with n seeds its smallest p is 2/2ⁿ, 0.0625 for 5). "
             f"\"beat {baseline}\": seeds where the method's AUBC is better.", "",
             aubc_markdown(rows, baseline, metric), "",
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


def summary(rows, baseline=BASELINE) -> str:
    """The compact text the AL command prints at the end: the headline table, AUBC with the
    paired comparison, and, when recorded, test accuracy per kind at the largest labelled size
    and the OOD AUROC per kind averaged over rounds (mean ± std over seeds)."""
    rows = latest_rows(rows)
    if not rows:
        return "no results"
    metric = next(iter(rows[0]["metrics"]))
    parts = [markdown_table(aggregate(rows)), "",
             f"AUBC ({metric} averaged over the labelled range, {_direction(metric)}) and paired "
             f"tests against {baseline} over seeds:", aubc_markdown(rows, baseline, metric)]
    seeds = _seeds(rows)
    acc = kind_table(rows, "accuracy_by_kind", metric)
    if acc["recorded"]:
        last = acc["keys"][-1]
        parts += ["", f"Test {acc['metric']} per kind at {last} labelled:",
                  "| method | " + " | ".join(acc["labels"]) + " |",
                  "|---" * (len(acc["labels"]) + 1) + "|"]
        parts += [f"| {m} | " + " | ".join(_mean_std(acc["cells"].get((m, k), {}).get(last),
                                                      2, seeds[m]) for k in acc["labels"]) + " |"
                  for m in acc["methods"]]
    auroc = kind_table(rows, "ood_auroc_by_kind", metric)
    if auroc["recorded"]:
        per_seed = collections.defaultdict(lambda: collections.defaultdict(list))
        spec = KIND_TABLES["ood_auroc_by_kind"]
        for r in rows:
            for k, v in spec["values"](r, metric).items():
                if _number(v) is not None:
                    per_seed[(r["method"], k)][r["seed"]].append(_number(v))
        parts += ["", "Pool OOD AUROC per kind (each seed's mean over rounds):",
                  "| method | " + " | ".join(auroc["labels"]) + " |",
                  "|---" * (len(auroc["labels"]) + 1) + "|"]
        for m in auroc["methods"]:
            cells = [_mean_std(_stats([float(np.mean(v)) for v in per_seed[(m, k)].values()]),
                               3, seeds[m]) for k in auroc["labels"]]
            parts.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(parts)


def write_stats_csv(rows, path, baseline=BASELINE):
    """AUBC per method (mean, std, seeds) with the paired comparison to `baseline`."""
    metric = next(iter(rows[0]["metrics"])) if rows else None
    at, pc = aubc_table(rows, metric), paired_comparison(rows, baseline, metric)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "metric", "lower_is_better", "seeds", "first_size", "last_size",
                    "aubc_mean", "aubc_std", f"diff_vs_{baseline}_mean", "diff_std",
                    "paired_seeds", f"seeds_beating_{baseline}", "ttest_rel_p", "wilcoxon_p"])
        for method, a in at["methods"].items():
            c = pc.get(method, {})
            st = c.get("stats") or (None, None, None)
            w.writerow([method, metric, at["lower_is_better"], len(a["per_seed"]),
                        *(a["range"] or ("", "")), *a["stats"][:2], *st[:2], c.get("n", ""),
                        c.get("wins", ""), c.get("t_p", ""), c.get("wilcoxon_p", "")])


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


def plot_kind_panels(t, path, ylabel, chance=None):
    """One panel per kind of a per-kind table: mean ± 1 std over seeds per method, x = round
    or labelled size; legend with the number of seeds."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel
    labels = [k for k in t["labels"] if any((m, k) in t["cells"] for m in t["methods"])]
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.5), squeeze=False)
    for ax, label in zip(axes[0], labels):
        for method in t["methods"]:
            by_key = t["cells"].get((method, label), {})
            if not by_key:
                continue
            keys = sorted(by_key)
            x = [k[0] if isinstance(k, tuple) else k for k in keys]
            mean = np.array([by_key[k][0] for k in keys])
            std = np.array([by_key[k][1] for k in keys])
            ax.plot(x, mean, marker="o", label=f"{method} (n={max(by_key[k][2] for k in keys)})")
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
        ax.set_title(label or t["title"], fontsize=10)
        if t["columns"] == "round":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round" if t["columns"] == "round" else "labelled images")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(t["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def _draw_pose(ax, image_SxSxC, joints_Jx2, links, colour):
    if image_SxSxC.shape[-1] == 1:
        ax.imshow(image_SxSxC[..., 0], cmap="gray")
    else:
        ax.imshow(np.clip(image_SxSxC, 0, 1))
    for parent, child in links:
        ax.plot(joints_Jx2[[parent, child], 0], joints_Jx2[[parent, child], 1], "-",
                color=colour, linewidth=1)
    ax.plot(joints_Jx2[:, 0], joints_Jx2[:, 1], "o", color="red", markersize=2)


def plot_gallery(examples, title, path, columns: int = 4):
    """The selected inputs with their predicted skeletons (`simulate.selected_examples`).
    With `gt_NxJx2` each example shows the ground truth (cyan) beside the prediction (lime);
    with `ood_N` (kind names) each is titled with its kind, OOD kinds in red."""
    plt = _pyplot()
    images, joints = np.asarray(examples["image_NxSxSxC"]), np.asarray(examples["joints_NxJx2"])
    truth = examples.get("gt_NxJx2")
    kinds = examples.get("ood_N")
    per = 1 if truth is None else 2
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns * per, figsize=(2 * columns * per, 2.2 * rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    cells = axes.reshape(rows * columns, per)
    for i, (image_SxSxC, joints_Jx2) in enumerate(zip(images, joints)):
        if truth is not None:
            _draw_pose(cells[i, 0], image_SxSxC, np.asarray(truth[i]), examples["links"], "cyan")
            cells[i, 0].set_title("truth", fontsize=7)
        _draw_pose(cells[i, -1], image_SxSxC, joints_Jx2, examples["links"], "lime")
        label = "predicted"
        if kinds is not None:
            kind = str(kinds[i])
            label += f" · {'in-dist.' if kind == 'none' else kind}"
            cells[i, -1].set_title(label, fontsize=7,
                                   color="black" if kind == "none" else "red")
        elif truth is not None:
            cells[i, -1].set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_score_histogram(scores_N, selected_mask_N, title, path, xlabel="score"):
    """Histogram of the pool's scores against those of the selection (VL4Pose: -log L)."""
    plt = _pyplot()
    scores_N, selected_mask_N = np.asarray(scores_N, np.float64), np.asarray(selected_mask_N)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.histogram_bin_edges(scores_N[np.isfinite(scores_N)], bins=30)
    ax.hist(scores_N, bins=bins, alpha=0.5, label="pool", density=True)
    ax.hist(scores_N[selected_mask_N], bins=bins, alpha=0.6, label="selected", density=True)
    ax.set_xlabel(xlabel)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def round_plotter(workdir):
    """An `on_round` hook for `simulate.run`: gallery and score histogram per acquisition. Each
    PNG is written to a temporary name and renamed, the score histogram before the gallery, so a
    present gallery means a plotted round; `on_round.missing(row)` says a round's gallery is
    absent (a kill between its checkpoint and its plots), and `simulate.run` then calls the hook
    again for that round on resume."""
    plots = pathlib.Path(workdir) / "plots"

    def stem(row):
        return f"{row['method']}_seed{row['seed']}_round{row['round']}"

    def atomic(path, plot):   # plot(path) writes the figure
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        plot(tmp)
        os.replace(tmp, path)

    def on_round(row, extras):
        plots.mkdir(parents=True, exist_ok=True)
        sel = extras.get("selection")
        if sel is not None and sel.scores is not None and sel.scored_indices is not None:
            mask = np.isin(np.asarray(sel.scored_indices), np.asarray(sel.indices))
            xlabel = "-log likelihood" if row["method"] == "vl4pose" else "score"
            title = f"{row['method']}: pool vs selection, round {row['round']}"
            atomic(plots / f"{stem(row)}_scores.png",
                   lambda p: plot_score_histogram(sel.scores, mask, title, p, xlabel))
        if extras.get("examples") is not None:
            title = f"{row['method']}, seed {row['seed']}, round {row['round']}: selected"
            atomic(plots / f"{stem(row)}_gallery.png",
                   lambda p: plot_gallery(extras["examples"], title, p))

    def missing(row):
        return bool(row.get("selected_ids")) and not (plots / f"{stem(row)}_gallery.png").exists()

    on_round.missing = missing
    return on_round


REPORT_FILES = ("report.md", "report.csv", "aubc.csv", "by_kind.csv", "learning_curve.png",
                "ood_auroc.png", "accuracy_by_kind.png")


def _write(rows, workdirs, out) -> list[str]:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = aggregate(rows)
    (out / "report.md").write_text(report_markdown(rows, workdirs))
    write_csv(table, out / "report.csv")
    write_stats_csv(latest_rows(rows), out / "aubc.csv")
    tables = kind_tables(rows, table["metric"])
    write_kind_csv(tables, out / "by_kind.csv")
    plot_learning_curves(table, out / "learning_curve.png")
    for name, png, ylabel, chance in (
            ("ood_auroc_by_kind", "ood_auroc.png", "pool OOD AUROC", 0.5),
            ("accuracy_by_kind", "accuracy_by_kind.png", tables["accuracy_by_kind"]["metric"],
             None)):
        if tables[name]["recorded"]:
            plot_kind_panels(tables[name], out / png, ylabel, chance)
        else:
            (out / png).unlink(missing_ok=True)   # no stale plot from an earlier report
    return [f for f in REPORT_FILES if (out / f).exists()]


def _read_nonempty(workdirs) -> list[dict]:
    rows = read_rows(workdirs)
    if not rows:
        raise ValueError("no result rows in " + ", ".join(f"{w}/results.jsonl" for w in workdirs))
    return rows


def write_report(workdirs, out) -> dict:
    """Writes into `out`: report.md (every table, with what it is), report.csv (headline metric
    per method and labelled size), aubc.csv (AUBC and the paired comparison with random),
    by_kind.csv (per-kind diagnostics, long format), learning_curve.png and, when recorded,
    ood_auroc.png and accuracy_by_kind.png. Returns the headline table (`aggregate`)."""
    rows = _read_nonempty(workdirs)
    _write(rows, workdirs, out)
    return aggregate(rows)


def write_summary(workdirs, out) -> str:
    """`write_report`, returning the text to print: `summary` and the files written. Raises
    FileNotFoundError (a workdir without results.jsonl) or ValueError (no or malformed rows)."""
    rows = _read_nonempty(workdirs)
    written = _write(rows, workdirs, out)
    return summary(rows) + f"\n\nwrote {out}/: " + ", ".join(written)


def main(argv):
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError(
            "usage: python -m experiments.report WORKDIR[:METHOD,...] [WORKDIR...]")
    try:
        print(write_summary(workdirs, FLAGS.out or workdirs[0]))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    flags.DEFINE_string("out", None, "Output folder (default: the first workdir).")
    app.run(main)
