"""Figures of AL runs, drawn with matplotlib (Agg backend) into PNG files: learning curves of
the headline metric (mean ± 1 std band over seeds per method), per-OOD-kind panels of a
diagnostic table, and, per round, its training (train and validation pose loss per epoch, the
learning rate on a twin axis), a gallery of the selected images with predicted (and true)
skeletons and a histogram of the pool's scores against the selection's. `round_plotter(workdir)`
is the per-round hook of the AL command that writes the last three under WORKDIR/plots,
atomically, so that a present gallery means a plotted round.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def plot_learning_curves(table, path):
    """The headline table (`stats.aggregate`) against the labelled-set size: a line per method
    with a ± 1 std band, its number of seeds in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for method, v in table["methods"].items():
        sizes_K = sorted(v)
        mean_K = np.array([v[s][0] for s in sizes_K])
        std_K = np.array([v[s][1] for s in sizes_K])
        ns = sorted({v[s][2] for s in sizes_K})
        n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
        ax.plot(sizes_K, mean_K, marker="o", label=f"{method} (n={n})")
        ax.fill_between(sizes_K, mean_K - std_K, mean_K + std_K, alpha=0.2)
    ax.set_xlabel("labelled images")
    ax.set_ylabel(table["metric"])
    ax.grid(alpha=0.3)
    # the legend outside the axes: with many methods it would hide the bands
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
            x_K = [k[0] if isinstance(k, tuple) else k for k in keys]
            mean_K = np.array([by_key[k][0] for k in keys])
            std_K = np.array([by_key[k][1] for k in keys])
            ax.plot(x_K, mean_K, marker="o",
                    label=f"{method} (n={max(by_key[k][2] for k in keys)})")
            ax.fill_between(x_K, mean_K - std_K, mean_K + std_K, alpha=0.2)
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


def plot_training(history, title, path):
    """A round's training (`history` of a result row: per-epoch `train_loss`, `val_loss`, `lr`):
    the pose losses (on a log axis when positive), the learning rate on a twin log axis, the
    best validation epoch marked."""
    plt = _pyplot()
    epochs_E = np.arange(1, len(history["train_loss"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs_E, history["train_loss"], label="train pose loss")
    val_E = np.array([np.nan if v is None else v for v in history["val_loss"]], np.float64)
    if np.isfinite(val_E).any():
        ax.plot(epochs_E, val_E, label="validation pose loss")
        best = int(np.nanargmin(val_E))
        ax.plot(epochs_E[best], val_E[best], "o", color="black", label=f"best (epoch {best + 1})")
    if min(history["train_loss"] + [v for v in val_E if np.isfinite(v)]) > 0:
        ax.set_yscale("log")   # the aleatoric pose loss of DeepPrior can be negative
    ax.set_xlabel("epoch")
    ax.set_ylabel("pose loss")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(epochs_E, history["lr"], color="grey", linestyle="--", drawstyle="steps-post",
               label="learning rate")
    lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lr_lines = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], fontsize=8)
    ax.set_title(title, fontsize=9)
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
    """An `on_round` hook for `simulate.run`: the training plot of every round whose row has a
    `history`, gallery and score histogram per acquisition. Each PNG is written to a temporary
    name and renamed, the training plot and score histogram before the gallery, so a present
    gallery means a plotted round; `on_round.missing(row)` says a round's gallery or training
    plot is absent (a kill between its checkpoint and its plots), and `simulate.run` then calls
    the hook again for that round on resume."""
    plots = pathlib.Path(workdir) / "plots"

    def stem(row):
        return f"{row['method']}_seed{row['seed']}_round{row['round']}"

    def atomic(path, plot):   # plot(path) writes the figure
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        plot(tmp)
        os.replace(tmp, path)

    def on_round(row, extras):
        plots.mkdir(parents=True, exist_ok=True)
        if row.get("history"):
            title = f"{row['method']}, seed {row['seed']}, round {row['round']}: training"
            atomic(plots / f"{stem(row)}_training.png",
                   lambda p: plot_training(row["history"], title, p))
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
        return ((bool(row.get("selected_ids"))
                 and not (plots / f"{stem(row)}_gallery.png").exists())
                or (bool(row.get("history"))
                    and not (plots / f"{stem(row)}_training.png").exists()))

    on_round.missing = missing
    return on_round
