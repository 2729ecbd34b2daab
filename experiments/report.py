"""Aggregate AL runs: `python -m experiments.report WORKDIR... [--out=DIR]` reads every
`results.jsonl`, and writes a Table-1-style summary (rows = methods, columns = labelled-set
sizes, mean ± std over seeds of the first metric) as Markdown and CSV, plus a learning-curve PNG
with ±1 std bands, into `--out` (default: the first workdir). `round_plotter(workdir)` is the
per-round hook of the AL command: a gallery of each selection with predicted skeletons and a
histogram of the pool's scores vs the selection's (for VL4Pose, the likelihood histogram). `aggregate(rows)` and
`markdown_table(table)` are the pure pieces the AL command reuses to print its final table.
"""
from __future__ import annotations

import collections
import csv
import json
import os
import pathlib

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder (default: the first workdir).")


def read_rows(workdirs) -> list[dict]:
    rows = []
    for w in workdirs:
        path = pathlib.Path(w) / "results.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"no results.jsonl in {w}")
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def aggregate(rows) -> dict:
    """{'metric': name, 'sizes': [...], 'methods': {method: {size: (mean, std, n)}}}."""
    if not rows:
        return {"metric": None, "sizes": [], "methods": {}}
    metric = next(iter(rows[0]["metrics"]))
    values = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in rows:   # a later row for the same (method, size, seed) replaces an earlier one
        values[r["method"]][r["num_labelled"]][r["seed"]] = r["metrics"][metric]
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
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, v in table["methods"].items():
        sizes = sorted(v)
        mean = np.array([v[s][0] for s in sizes])
        std = np.array([v[s][1] for s in sizes])
        ax.plot(sizes, mean, marker="o", label=method)
        ax.fill_between(sizes, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("labelled images")
    ax.set_ylabel(table["metric"])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def plot_gallery(examples, title, path, columns: int = 4):
    """The selected inputs with their predicted skeletons (`simulate.selected_examples`)."""
    plt = _pyplot()
    images, joints = np.asarray(examples["image_NxSxSxC"]), np.asarray(examples["joints_NxJx2"])
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image_SxSxC, joints_Jx2 in zip(axes.ravel(), images, joints):
        if image_SxSxC.shape[-1] == 1:
            ax.imshow(image_SxSxC[..., 0], cmap="gray")
        else:
            ax.imshow(np.clip(image_SxSxC, 0, 1))
        for parent, child in examples["links"]:
            ax.plot(joints_Jx2[[parent, child], 0], joints_Jx2[[parent, child], 1], "-",
                    color="lime", linewidth=1)
        ax.plot(joints_Jx2[:, 0], joints_Jx2[:, 1], "o", color="red", markersize=2)
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


def write_report(workdirs, out) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = aggregate(read_rows(workdirs))
    (out / "report.md").write_text(markdown_table(table) + "\n")
    write_csv(table, out / "report.csv")
    plot_learning_curves(table, out / "learning_curve.png")
    return table


def main(argv):
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError("usage: python -m experiments.report WORKDIR [WORKDIR...]")
    out = FLAGS.out or workdirs[0]
    table = write_report(workdirs, out)
    print(markdown_table(table))
    print(f"wrote {out}/report.md, report.csv, learning_curve.png")


if __name__ == "__main__":
    app.run(main)
