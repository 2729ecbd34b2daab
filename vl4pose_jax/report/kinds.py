"""Per-OOD-kind diagnostics of AL runs, as numbers: test accuracy per kind, pool and test OOD
AUROC of the acquisition score per kind, each selection's share per kind, Spearman correlation
of the score with the test error or PCK, VL4Pose's refinement gain and the records scored per
round. Each diagnostic is a spec in `KIND_TABLES` (title, the row field it reads, whether its
columns are labelled-set sizes or acquisition rounds, digits to print, what it holds), and
`kind_table` turns the rows into its cells: mean ± std over seeds per method, kind and column.
Rows that lack a field (older runs, methods without scores, data without OOD flags, the last
round) simply add no value.
"""
from __future__ import annotations

import collections

import numpy as np

from vl4pose_jax.report.rows import headline_metric, latest_rows, methods, number, seed_counts
from vl4pose_jax.report.stats import direction, mean_std_n

KIND_ORDER = ("in_distribution", "rare_pose", "appearance", "any", "pooled")


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
    a, b = number(r.get("argmax")), number(r.get("refined"))
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
    order = {k: i for i, k in enumerate(KIND_ORDER + ("argmax", "refined", "gain"))}
    return sorted(labels, key=lambda k: (order.get(k, len(order)), k))


def kind_table(rows, name, metric=None) -> dict:
    """One per-kind diagnostic (`KIND_TABLES[name]`), mean ± std over seeds:
    {'name', 'title', 'text', 'columns': 'labelled' | 'round', 'keys': column keys (sizes, or
    (round, num_labelled) pairs), 'labels': kinds, 'methods', 'seeds': {method: n},
    'cells': {(method, label): {key: (mean, std, n)}}, 'recorded': any value present}."""
    rows = latest_rows(rows)
    metric = metric or headline_metric(rows)
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
            v = number(v)
            if v is not None:
                values[(r["method"], label)][key].append(v)
    cells = {ml: {k: mean_std_n(v) for k, v in by_key.items()} for ml, by_key in values.items()}
    return {"name": name, "title": spec["title"],
            "text": spec["text"].format(metric=metric, direction=direction(metric)),
            "metric": metric, "columns": spec["columns"], "digits": spec["digits"],
            "label": spec.get("label", "kind"),
            "keys": sorted(keys), "labels": _label_order(labels), "methods": methods(rows),
            "seeds": seed_counts(rows), "cells": cells, "recorded": bool(cells)}


def kind_tables(rows, metric=None) -> dict:
    """Every per-kind diagnostic of `KIND_TABLES`, by name."""
    return {name: kind_table(rows, name, metric) for name in KIND_TABLES}


def seed_means_over_rounds(rows, name, metric=None) -> dict:
    """A per-round diagnostic summed up per run: each seed's mean over its rounds, then mean ±
    std over seeds; {(method, label): (mean, std, n)}."""
    metric = metric or headline_metric(rows)
    per_seed = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in latest_rows(rows):
        for label, v in KIND_TABLES[name]["values"](r, metric).items():
            if number(v) is not None:
                per_seed[(r["method"], label)][r["seed"]].append(number(v))
    return {ml: mean_std_n([float(np.mean(v)) for v in by_seed.values()])
            for ml, by_seed in per_seed.items()}
