"""Helpers for the report tests: result rows of made-up AL runs, and a workdir holding them."""
import json

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
    """`rows` as `workdir`/results.jsonl."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
