"""Statistics over seeds of AL learning curves, as pure functions of result rows: the headline
metric's mean ± std per method and labelled-set size (`aggregate`; std is the sample standard
deviation, ddof = 1), the normalised area under the budget curve per run (`aubc`, `aubc_table`),
and the paired comparison of every method with a baseline (random) over the seeds both have:
per-seed AUBC differences with their mean's 95 % t-interval, paired t-test and Wilcoxon
signed-rank p-values, raw and Holm–Bonferroni-adjusted over the methods compared, and seeds won
(`paired_test`, `t_interval`, `holm`, `paired_comparison`). Whether the metric is lower-is-better
(errors in mm) or higher-is-better (PCK in %) decides what a win is.
"""
from __future__ import annotations

import collections

import numpy as np
import scipy.stats

from vl4pose_jax.report.rows import headline_metric, latest_rows, number

BASELINE = "random"


def lower_is_better(metric) -> bool:
    """Error-like metrics (`mean_error_mm`; any name with 'error' or 'loss', or ending in '_mm')
    are lower-is-better; PCK / PCKh in % are higher-is-better."""
    name = str(metric).lower()
    return "error" in name or "loss" in name or name.endswith("_mm")


def direction(metric) -> str:
    """'lower is better' or 'higher is better'."""
    return "lower is better" if lower_is_better(metric) else "higher is better"


def mean_std_n(values):
    """(mean, sample standard deviation (ddof = 1), number of values) over the values that are
    not None; None if there are none. The std of a single value is undefined: NaN."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(np.mean(values)), std, len(values)


def aggregate(rows) -> dict:
    """{'metric': name, 'sizes': [...], 'methods': {method: {size: (mean, std, n)}}}."""
    if not rows:
        return {"metric": None, "sizes": [], "methods": {}}
    metric = headline_metric(rows)
    values = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in rows:   # a later row for the same (method, size, seed) replaces an earlier one
        value = number(r.get("metrics", {}).get(metric))   # None, NaN: no value
        if value is not None:
            values[r["method"]][r["num_labelled"]][r["seed"]] = value
    sizes = sorted({s for v in values.values() for s in v})
    table = {m: {s: mean_std_n(v[s].values()) for s in v} for m, v in values.items()}
    return {"metric": metric, "sizes": sizes, "methods": table}


def aubc(sizes, values) -> float:
    """Normalised area under the budget curve: the trapezoid area of `values` over the labelled
    `sizes`, divided by the labelled range max(sizes) − min(sizes). It is the metric's average
    over the budget, in the metric's units; a curve of a single size has its value as AUBC."""
    sizes_K, values_K = np.asarray(sizes, np.float64), np.asarray(values, np.float64)
    if sizes_K.size == 0 or sizes_K.shape != values_K.shape:
        raise ValueError(f"aubc needs as many values as sizes (>= 1); got {sizes_K.size}, "
                         f"{values_K.size}")
    order_K = np.argsort(sizes_K, kind="stable")
    sizes_K, values_K = sizes_K[order_K], values_K[order_K]
    if np.any(np.diff(sizes_K) == 0):
        raise ValueError(f"aubc: repeated labelled size in {sorted(sizes)}")
    if sizes_K.size == 1:
        return float(values_K[0])
    area = np.sum(np.diff(sizes_K) * (values_K[1:] + values_K[:-1]) / 2)
    return float(area / (sizes_K[-1] - sizes_K[0]))


def curves(rows, metric=None) -> dict:
    """{method: {seed: {num_labelled: headline value}}} over the latest rows."""
    rows = latest_rows(rows)
    metric = metric or headline_metric(rows)
    out = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in rows:
        value = number(r.get("metrics", {}).get(metric))
        if value is not None:
            out[r["method"]][r["seed"]][r["num_labelled"]] = value
    return {m: dict(v) for m, v in out.items()}


def aubc_table(rows, metric=None) -> dict:
    """AUBC per method and seed, mean ± std over seeds:
    {'metric', 'lower_is_better', 'methods': {method: {'per_seed': {seed: aubc},
    'range': (first size, last size) or None when seeds differ, 'stats': (mean, std, n)}}}."""
    metric = metric or headline_metric(rows)
    methods = {}
    for method, by_seed in curves(rows, metric).items():
        per_seed = {seed: aubc(list(c), list(c.values())) for seed, c in sorted(by_seed.items())}
        ranges = {(min(c), max(c)) for c in by_seed.values()}
        methods[method] = {"per_seed": per_seed, "range": ranges.pop() if len(ranges) == 1
                           else None, "stats": mean_std_n(per_seed.values())}
    return {"metric": metric, "lower_is_better": lower_is_better(metric), "methods": methods}


def paired_test(diffs) -> dict:
    """Two-sided tests that the paired differences have zero mean / median:
    {'t_p': scipy.stats.ttest_rel p, 'wilcoxon_p': scipy.stats.wilcoxon p} (scipy's defaults:
    zero differences dropped, exact null distribution for n <= 50). A p-value is None, with
    'note' saying why, for n < 2 ('few'), all differences zero ('zero'; both tests) or equal
    non-zero differences ('constant'; t-test only, its variance is zero)."""
    diffs_N = np.asarray(diffs, np.float64)
    out = {"t_p": None, "wilcoxon_p": None, "t_note": None, "wilcoxon_note": None}
    if diffs_N.size < 2:
        out["t_note"] = out["wilcoxon_note"] = "few"
        return out
    if np.all(diffs_N == 0):
        out["t_note"] = out["wilcoxon_note"] = "zero"
        return out
    if np.ptp(diffs_N) == 0:
        out["t_note"] = "constant"
    else:
        out["t_p"] = float(scipy.stats.ttest_rel(diffs_N, np.zeros_like(diffs_N)).pvalue)
    out["wilcoxon_p"] = float(scipy.stats.wilcoxon(diffs_N).pvalue)
    return out


def t_interval(values, level=0.95):
    """The `level` confidence interval of the mean of `values` from the t-distribution:
    mean ± t_{(1 + level) / 2, n − 1} · sd / √n (sd with ddof = 1), as (low, high); None for
    fewer than 2 values."""
    values_N = np.asarray(values, np.float64)
    n = values_N.size
    if n < 2:
        return None
    mean = float(np.mean(values_N))
    half = (float(scipy.stats.t.ppf((1 + level) / 2, n - 1))
            * float(np.std(values_N, ddof=1)) / np.sqrt(n))
    return mean - half, mean + half


def holm(p_values) -> list:
    """Holm–Bonferroni-adjusted p-values, in the order given; None stays None and is no test
    (m counts the others). With the m p-values sorted ascending, p_(0) ≤ … ≤ p_(m−1), the
    adjusted p_(i) is max over j ≤ i of min(1, (m − j) · p_(j)); rejecting where it is ≤ α
    keeps the family-wise error rate at α."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted = [None] * len(p_values)
    running = 0.0
    for j, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - j) * p))
        adjusted[i] = running
    return adjusted


def paired_comparison(rows, baseline=BASELINE, metric=None) -> dict:
    """Each method against `baseline` on the seeds both have: per seed, the AUBC difference
    (method − baseline), both AUBCs taken on the labelled sizes the two curves of that seed
    share; {method: {'seeds', 'diffs', 'stats': (mean, std, n) or None, 'ci95': the mean
    difference's 95 % t-interval (low, high) or None, 'wins': seeds where the method is better
    (diff > 0, or < 0 for a lower-is-better metric), 'n', 't_p', 'wilcoxon_p', 't_note',
    'wilcoxon_note', 't_p_holm', 'wilcoxon_p_holm'}}, the last two Holm-adjusted over the
    methods with a p-value of that test. Empty without baseline runs."""
    metric = metric or headline_metric(rows)
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
        out[method] = {"seeds": seeds, "diffs": diffs, "stats": mean_std_n(diffs),
                       "ci95": t_interval(diffs), "n": len(diffs),
                       "wins": sum(sign * d > 0 for d in diffs), **paired_test(diffs)}
    for test in ("t_p", "wilcoxon_p"):
        adjusted = holm([c[test] for c in out.values()])
        for c, p in zip(out.values(), adjusted):
            c[f"{test}_holm"] = p
    return out
