"""Predictions and every test metric of a simulation: `predict_test` runs a trained state
over the test split (every process on its own devices), `evaluate` gives the headline metric
(PCK@0.2, PCKh@0.5 or the mean joint error in mm) with its per-joint table, the accuracy per OOD
kind and, for VL4Pose, the metric of its refined pose (Eq. 6); `accuracy` (per image too),
`per_image_pck`, `spearman`, `by_kind` and `rounded_auroc` are the pieces `experiments.diagnose` and the
studies call; `selected_examples` gives the inputs and predicted poses of a selection for
galleries.

    p = evaluation.predict_test(config, d, n, state)
    row = evaluation.evaluate(config, d, n, state, p)      # {'metrics': ..., 'per_joint': ...}
    mean, per_joint, per_image_B = evaluation.accuracy(config, p)
"""
from __future__ import annotations

import collections
import dataclasses
import functools

import numpy as np
from scipy import stats as st

from vl4pose_jax import data, metrics, parallel
from vl4pose_jax.nets import Nets
from vl4pose_jax.protocol import HUMAN_PRESETS, Config
from vl4pose_jax.records import Data


def predict_batch(n: Nets, state, inputs, mesh, batch_index: int = 0) -> dict:
    """The joint decodings of `n.predict(state, inputs)` ({key: array} for `n.eval_keys`), the
    batch split over this process's devices (`state` replicated on `mesh`); the batch is padded
    to a multiple of the device count. `batch_index` seeds a stochastic predict's draws."""
    count = inputs.shape[0]
    pad = -count % parallel.num_devices(mesh)
    if pad:
        inputs = np.concatenate([inputs, np.repeat(inputs[-1:], pad, 0)])
    inputs = parallel.shard_batch({"x": inputs}, mesh)["x"]
    out = n.predict(state, inputs, batch_index) if n.stochastic else n.predict(state, inputs)
    return {k: np.asarray(out[k])[:count] for k in n.eval_keys}


@dataclasses.dataclass
class TestPredictions:
    """Predictions on the test split, aligned per image: `pred`, `gt` (B, J, D), `visible`
    (B, J), `normalizer` (B,) (heatmap task; None otherwise), `ood` (B,) kind codes,
    `index` (B,) test record indices, and `extra` {name: (B, J, D)} further decodings."""
    pred: np.ndarray
    gt: np.ndarray
    visible: np.ndarray
    normalizer: np.ndarray | None
    ood: np.ndarray
    index: np.ndarray
    extra: dict


def predict_test(config: Config, d: Data, n: Nets, state) -> TestPredictions:
    """Predict the whole test split (every process on its own devices): heatmap joints in
    heatmap cells, hand joints in mm; `extra` holds `n.predict`'s other joint decodings
    (e.g. VL4Pose's refined pose, key `refined_BxJx2`)."""
    sp = data.spec(config.dataset)
    mesh = parallel.data_mesh()
    state = parallel.replicate(state, mesh)
    loader = data.make_loader(d.test, batch_size=config.batch_size, train=False,
                              num_workers=config.num_workers, image_size=d.image_size)
    parts = collections.defaultdict(list)
    for t, batch in enumerate(loader):
        if config.task == "heatmap":
            out = predict_batch(n, state, batch["image"], mesh)
            parts["pred"].append(out.pop("joints_BxJx2"))
            parts["normalizer"].append(batch["normalizer"])
            for k, v in out.items():
                parts["extra:" + k].append(v)
        else:
            out = predict_batch(n, state, batch["depth"], mesh, t)
            to_mm = functools.partial(data.normalised_uvd_to_xyz_mm,
                                      center_uvd_Bx3=batch["center_uvd"],
                                      cube_mm_B=batch["cube_mm"], intrinsics=sp.intrinsics)
            parts["pred"].append(np.asarray(to_mm(out["pose_BxJx3"])))
            batch = dict(batch, joints=np.asarray(to_mm(batch["joints"])))
        parts["gt"].append(batch["joints"])
        parts["visible"].append(batch["visible"])
        parts["ood"].append(batch["ood"])
        parts["index"].append(batch["index"])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return TestPredictions(cat["pred"], cat["gt"], cat["visible"], cat.get("normalizer"),
                           cat["ood"], cat["index"],
                           {k[6:]: v for k, v in cat.items() if k.startswith("extra:")})


def metric_name(config: Config) -> str:
    if config.task != "heatmap":
        return "mean_error_mm"
    return "pckh@0.5" if data.spec(config.dataset).metric == "pckh" else "pck@0.2"


def pck_threshold(config: Config) -> float:
    """The headline PCK threshold (fraction of the normaliser): PCKh@0.5 or PCK@0.2."""
    return 0.5 if metric_name(config).startswith("pckh") else 0.2


def spearman(a, b) -> float | None:
    """Spearman correlation rounded to 6 digits; None where undefined (fewer than 3 values or a
    constant side, e.g. every image at 0 PCK), so that records compare equal on resume."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return round(float(st.spearmanr(a, b).statistic), 6)


def per_image_pck(config: Config, p: TestPredictions) -> np.ndarray:
    """Per-image PCK (%, the headline threshold) over the image's valid joints (NaN when none,
    or when the image has no usable normaliser), heatmap task only."""
    dist = np.asarray(metrics.normalized_distances(p.pred, p.gt, p.normalizer))
    valid = (np.asarray(p.visible) > 0) & np.isfinite(dist)
    with np.errstate(invalid="ignore"):
        return 100 * (valid & (dist <= pck_threshold(config))).sum(-1) / valid.sum(-1)


def accuracy(config: Config, p: TestPredictions, pred=None, rows=None):
    """(mean, per-joint, per-image error) of `pred` (default `p.pred`) on the `rows` mask.
    Per-image error: the mean normalised joint distance (heatmap task) or mm (hands) over the
    image's valid joints (NaN when none)."""
    pred = p.pred if pred is None else pred
    rows = np.ones(len(p.pred), bool) if rows is None else rows
    gt, vis = p.gt[rows], p.visible[rows]
    if config.task == "heatmap":
        thr = pck_threshold(config)
        r = metrics.pck(pred[rows], gt, vis, p.normalizer[rows], threshold=thr)
        dist = np.asarray(metrics.normalized_distances(pred[rows], gt, p.normalizer[rows]))
        mean, per_joint = 100 * float(r.mean), 100 * np.asarray(r.per_joint)
    else:
        r = metrics.mean_joint_error(pred[rows], gt, vis)
        dist = np.linalg.norm(pred[rows] - gt, axis=-1)
        mean, per_joint = float(r.mean), np.asarray(r.per_joint)
    valid = np.asarray(vis) > 0
    with np.errstate(invalid="ignore"):
        per_image = np.where(valid, dist, 0).sum(-1) / valid.sum(-1)
    return mean, per_joint, per_image


def evaluate(config: Config, d: Data, n: Nets, state, p: TestPredictions | None = None) -> dict:
    """Test-split metrics: {'metrics': {name: value}, 'per_joint': {name: [J values]}}, plus,
    when the test split has OOD examples, 'metrics_by_kind' {kind: {name: value}} (kinds:
    'in_distribution' and each OOD kind present), and, when `n.predict` gives VL4Pose's
    refined pose, 'refine' {'argmax': value, 'refined': value}: the metric of the integer
    argmax pose and of the refined pose (Eq. 6; both in whole heatmap cells, so the difference
    is refinement's alone; the headline metric uses the sub-cell decoding)."""
    p = predict_test(config, d, n, state) if p is None else p
    name = metric_name(config)
    mean, per_joint, _ = accuracy(config, p)
    out = {"metrics": {name: round(mean, 6)},
           "per_joint": {name: [round(float(v), 6) for v in per_joint]}}
    if p.ood.any():
        kinds = {"in_distribution": p.ood == 0}
        kinds.update({k: p.ood == code for code, k in enumerate(data.OOD_KINDS)
                      if code > 0 and (p.ood == code).any()})
        out["metrics_by_kind"] = {k: {name: round(accuracy(config, p, rows=m)[0], 6)}
                                  for k, m in kinds.items()}
    if "refined_BxJx2" in p.extra:   # both integer cells: refinement's own effect
        out["refine"] = {k: round(accuracy(config, p, pred=p.extra[f"{k}_BxJx2"])[0], 6)
                         for k in ("argmax", "refined")}
    return out


def by_kind(values_N: np.ndarray, ood_N: np.ndarray, fn) -> dict:
    """{kind: fn(values of in-distribution records, values of that kind)} for every OOD kind
    present, plus 'pooled' (every OOD kind together)."""
    out = {}
    ind = values_N[ood_N == 0]
    for code, kind in enumerate(data.OOD_KINDS):
        if code > 0 and (ood_N == code).any():
            out[kind] = fn(ind, values_N[ood_N == code])
    if len(out) > 1:
        out["pooled"] = fn(ind, values_N[ood_N > 0])
    return out


def rounded_auroc(negatives, positives) -> float:
    """AUROC of `positives` scoring above `negatives`, rounded to 6 digits (NaN if either is
    empty), so that records compare equal on resume."""
    if not len(negatives) or not len(positives):
        return float("nan")
    scores = np.concatenate([negatives, positives])
    labels = np.concatenate([np.zeros(len(negatives), bool), np.ones(len(positives), bool)])
    return round(float(metrics.auroc(scores, labels)), 6)


def selected_examples(config: Config, d: Data, n: Nets, state, indices_N, limit: int = 16):
    """Inputs, predicted and true 2-D joints of up to `limit` selected records, for galleries:
    {'image_NxSxSxC', 'joints_NxJx2', 'gt_NxJx2' (input pixels, x y; NaN where not labelled),
    'ood_N' (OOD kind names), 'links'}."""
    indices_N = np.asarray(indices_N, np.int64)[:limit]
    if len(indices_N) == 0:
        return None
    batch = next(iter(data.make_loader(d.source, batch_size=len(indices_N), train=False,
                                       indices=indices_N, image_size=d.image_size)))
    state = parallel.replicate(state, None)
    if config.task == "heatmap":
        stride = d.image_size / HUMAN_PRESETS[config.preset].heatmap_size
        to_px = lambda cells: (np.asarray(cells) + 0.5) * stride - 0.5  # noqa: E731
        image, pred = batch["image"], n.predict(state, batch["image"])["joints_BxJx2"]
    else:
        to_px = lambda uvd: (np.asarray(uvd)[..., :2] + 1.0) * 0.5 * d.image_size - 0.5  # noqa
        image, pred = batch["depth"], n.predict(state, batch["depth"])["pose_BxJx3"]
    truth = np.where(np.asarray(batch["visible"])[..., None] > 0, to_px(batch["joints"]), np.nan)
    return {"image_NxSxSxC": image, "joints_NxJx2": to_px(pred), "gt_NxJx2": truth,
            "ood_N": [data.OOD_KINDS[int(k)] for k in d.ood_N[indices_N]],
            "links": data.spec(config.dataset).skeleton.links}
