"""Why a score does or does not predict failure, on the test split of a finished AL run:
`python -m experiments.diagnose WORKDIR --method=vl4pose --out=DIR` (heatmap datasets).

For every seed of the run, the newest round's model of `--method` predicts and scores the test
split. `DIR/diagnosis.json` holds, per seed: Spearman of the score with per-image PCK and with
per-image error, the share of failed images (per-image PCK below `--fail_below`) and the
score's AUROC for them, and the score's mean on failed and good images; for VL4Pose also what
pose refinement (Eq. 6) changes: the share of joints it moves, and how many of the moved joints
are correct before and after. `DIR/diagnosis.png`: the score's histogram for failed and good
images, and the score against per-image PCK, one colour per seed. A method's score is its
acquisition score (high = selected; VL4Pose: the negative log-likelihood); a method without
one (random, Core-Set) is refused before any work. Seeds whose checkpoint is missing are named
(`seeds_missing`) and the others diagnosed; a round whose checkpoint is gone while
results.jsonl lists it is noted per seed, and `num_labelled` is the round's row's.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import app, flags

from vl4pose_jax import acquire, acquisition, evaluation, metrics, protocol, records
from vl4pose_jax import workdir as wd
from vl4pose_jax.report.rows import read_rows


def diagnose_seed(workdir, method: str, seed: int, *, fail_below: float = 50.0,
                  data_dir=None) -> dict:
    """The diagnostics of one seed (module doc), plus the per-image arrays under 'arrays'."""
    t = wd.load_trained(workdir, method, seed, data_dir)
    cfg = t.config
    if cfg.task != "heatmap":
        raise protocol.SimulationError(f"{workdir}: experiments.diagnose needs a heatmap "
                                       f"dataset (per-image PCK), not {cfg.dataset!r}.")
    d = records.validate(cfg)
    p = evaluation.predict_test(cfg, d, t.nets, t.state)
    score_B = acquire.test_scores(cfg, d, t.nets, t.state, method, p, t.meta["round"])
    pck_B = evaluation.per_image_pck(cfg, p)
    error_B = evaluation.accuracy(cfg, p)[2]
    ok = np.isfinite(pck_B) & np.isfinite(score_B)
    failed = pck_B[ok] < fail_below
    out = {"seed": seed, "round": t.meta["round"], "num_labelled": len(t.meta["labelled_ids"]),
           "test_images": int(ok.sum()), "pck": round(float(np.mean(pck_B[ok])), 3),
           "spearman_score_pck": evaluation.spearman(score_B[ok], pck_B[ok]),
           "spearman_score_error": evaluation.spearman(score_B[ok], error_B[ok]),
           "failed_share": round(float(failed.mean()), 4),
           "zero_pck_share": round(float((pck_B[ok] == 0).mean()), 4),
           "auroc_failed": round(float(metrics.auroc(score_B[ok], failed)), 4)
           if 0 < failed.sum() < len(failed) else None,
           "mean_score_failed": round(float(score_B[ok][failed].mean()), 4) if failed.any() else None,
           "mean_score_good": round(float(score_B[ok][~failed].mean()), 4)
           if (~failed).any() else None}
    if "refined_BxJx2" in p.extra:
        thr = evaluation.pck_threshold(cfg)
        dist = {k: np.asarray(metrics.normalized_distances(p.extra[f"{k}_BxJx2"], p.gt,
                                                           p.normalizer))
                for k in ("argmax", "refined")}
        valid = (np.asarray(p.visible) > 0) & np.isfinite(dist["argmax"])
        moved = valid & np.any(p.extra["argmax_BxJx2"] != p.extra["refined_BxJx2"], axis=-1)
        out["refine"] = {
            "moved_joint_share": round(float(moved.sum() / valid.sum()), 4),
            "moved_joints": int(moved.sum()),
            "moved_correct_before": int((dist["argmax"][moved] <= thr).sum()),
            "moved_correct_after": int((dist["refined"][moved] <= thr).sum())}
    out["arrays"] = {"score": score_B[ok], "pck": pck_B[ok]}
    return out


def plot(results: list[dict], method: str, fail_below: float, path: pathlib.Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    score = np.concatenate([r["arrays"]["score"] for r in results])
    pck = np.concatenate([r["arrays"]["pck"] for r in results])
    bins = np.linspace(np.percentile(score, 1), np.percentile(score, 99), 40)
    for mask, label in ((pck < fail_below, f"failed (PCK < {fail_below:g} %)"),
                        (pck >= fail_below, "good")):
        if mask.any():
            ax0.hist(score[mask], bins=bins, alpha=0.6, density=True,
                     label=f"{label}: {mask.sum()}")
    ax0.set_xlabel(f"{method} score (high = selected)")
    ax0.set_ylabel("density")
    ax0.legend()
    ax0.set_title("score of failed and good test images (all seeds)")
    rng = np.random.default_rng(0)   # jitter only spreads the discrete PCK values for the eye
    for r in results:
        s, k, rho = r["arrays"]["score"], r["arrays"]["pck"], r["spearman_score_pck"]
        ax1.scatter(s, k + rng.uniform(-1.5, 1.5, len(k)), s=6, alpha=0.5,
                    label=f"seed {r['seed']}: Spearman " + ("undefined" if rho is None
                                                            else f"{rho:+.2f}"))
    ax1.set_xlabel(f"{method} score")
    ax1.set_ylabel("per-image PCK (%)")
    ax1.legend(fontsize=8)
    ax1.set_title("score against per-image PCK")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def check_method(config, workdir, method: str) -> None:
    """A method this run trained whose score diagnose can read (SimulationError otherwise)."""
    if method not in config.methods:
        raise protocol.SimulationError(f"--method={method}: {workdir} holds the methods "
                                       f"{', '.join(config.methods)}.")
    if not acquisition.get(method).scores_records:
        scoring = [m for m in config.methods if acquisition.get(m).scores_records]
        raise protocol.SimulationError(
            f"--method={method} selects without a score per image, so there is nothing to "
            "diagnose; " + (f"diagnose {', '.join(scoring)} instead." if scoring else
                            "this run has no scoring method."))


def _finite(value):
    """`value` with NaN / Inf floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _result_rows(workdir, method: str) -> dict:
    """{(seed, round): row} of `method` in the workdir's results.jsonl ({} without one)."""
    try:
        rows = read_rows([workdir], warn=lambda *a: None)
    except (OSError, ValueError):
        return {}
    return {(r.get("seed"), r.get("round")): r for r in rows if r.get("method") == method}


def run(workdir, method: str, out, *, fail_below: float = 50.0, data_dir=None,
        log=print) -> list[dict]:
    """Diagnose every seed that can be (module doc); a seed without a readable checkpoint is
    named (`log`, and `seeds_missing` in diagnosis.json), not a reason to give nothing. The
    round diagnosed and its labelled-set size come from the checkpoint and results.jsonl; a
    newest round whose checkpoint is gone is said. SimulationError when no seed can be."""
    config = wd.load_config(workdir)
    check_method(config, workdir, method)
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise protocol.SimulationError(f"--out={out} is a file, not a folder.")
    rows = _result_rows(workdir, method)
    results, missing = [], []
    for seed in range(config.seed, config.seed + config.trials):
        try:
            r = diagnose_seed(workdir, method, seed, fail_below=fail_below, data_dir=data_dir)
        except protocol.SimulationError as err:
            missing.append({"seed": seed, "why": str(err)})
            log(f"warning: seed {seed} cannot be diagnosed: {err}")
            continue
        row = rows.get((seed, r["round"]))
        if row and row.get("num_labelled") is not None:
            r["num_labelled"] = row["num_labelled"]
        newest = max((rnd for (s, rnd) in rows if s == seed and isinstance(rnd, int)),
                     default=None)
        if newest is not None and newest > r["round"]:
            r["note"] = (f"results.jsonl has rounds up to {newest}, but the newest checkpoint "
                         f"left is round {r['round']}: round {r['round']} is diagnosed")
            log(f"warning: seed {seed}: {r['note']}")
        results.append(r)
    if not results:
        raise protocol.SimulationError(
            f"no seed of {workdir} can be diagnosed: "
            + "; ".join(f"seed {m['seed']}: {m['why']}" for m in missing))
    out.mkdir(parents=True, exist_ok=True)
    plot(results, method, fail_below, out / "diagnosis.png")
    rows_out = [{k: v for k, v in r.items() if k != "arrays"} for r in results]
    (out / "diagnosis.json").write_text(json.dumps(_finite(
        {"workdir": str(workdir), "method": method, "fail_below": fail_below, "seeds": rows_out,
         "seeds_missing": missing}), indent=1, allow_nan=False) + "\n")
    return rows_out


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m experiments.diagnose WORKDIR --method=... --out=DIR")
    try:
        rows = run(argv[1], FLAGS.method, FLAGS.out or argv[1], fail_below=FLAGS.fail_below,
                   data_dir=FLAGS.data_dir, log=lambda m: print(m, file=sys.stderr))
    except (protocol.SimulationError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    FLAGS = flags.FLAGS
    flags.DEFINE_string("method", "vl4pose", "The run's method whose score is diagnosed.")
    flags.DEFINE_string("out", None, "Output folder (default: the workdir).")
    flags.DEFINE_float("fail_below", 50.0, "Per-image PCK (%) below which an image has failed.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory of the run's dataset, if it moved.")
    app.run(main)
