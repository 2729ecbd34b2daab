"""A method's scores in a simulation: `acquire` runs one round's selection (the round's
candidates, the method's `select` with its options, the share of each OOD kind in the selection
and the AUROC of the scores per OOD kind of the candidates), and `score_test_split` scores the
test split with a method that declares `scores_records` and compares the scores with the
per-image error (does the score predict failure?). `context` builds the `acquisition.Context`
both use.
"""
from __future__ import annotations

import numpy as np

from vl4pose_jax import acquisition, data, parallel
from vl4pose_jax.evaluation import (TestPredictions, accuracy, by_kind, per_image_pck,
                                    rounded_auroc, spearman)
from vl4pose_jax.nets import Nets
from vl4pose_jax.protocol import Config, round_key
from vl4pose_jax.records import Data, pre_subset_pool


def context(config: Config, d: Data, n: Nets, state, method: str, source, labelled_N, pool_N,
            rnd: int, budget: int) -> acquisition.Context:
    """The `acquisition.Context` of `method` in round `rnd`: records of `source` in batches,
    the labelled and candidate indices, the budget and the round's acquisition key."""
    return acquisition.Context(
        task=config.task, model=n.model, state=state, aux=n.aux,
        batches=acquisition.loader_batches(source, config.batch_size, image_size=d.image_size,
                                           num_workers=config.num_workers),
        labelled=labelled_N, pool=pool_N, budget=budget,
        key=round_key(config.seed, rnd, "acquire", method),
        skeleton=data.spec(config.dataset).skeleton, progress=config.progress)


def acquire(config: Config, d: Data, n: Nets, state, method: str, labelled_N, rnd: int):
    """(selection, statistics) for one round. Statistics: `num_scored` (candidates), the
    share of the selection of each OOD kind (`ood_selected_fraction`, `ood_selected_by_kind`)
    and, for methods that score records, the AUROC of the scores separating each OOD kind of
    the candidates from the in-distribution ones (`ood_auroc`, pooled, and
    `ood_auroc_by_kind`)."""
    is_labelled = np.zeros(len(d.source), bool)
    is_labelled[labelled_N] = True
    pool_N = np.flatnonzero(~is_labelled)
    pool_N = pre_subset_pool(config, d, pool_N[pool_N >= d.pool_start], rnd)
    ctx = context(config, d, n, state, method, d.source, labelled_N, pool_N, rnd, config.budget)
    sel = acquisition.select(method, ctx, **config.options(method))
    ood_sel = d.ood_N[sel.indices]
    stats = {"num_scored": int(len(pool_N)),
             "ood_selected_fraction": float(np.mean(ood_sel > 0))}
    if d.ood_N.any():
        stats["ood_selected_by_kind"] = {
            kind: round(float(np.mean(ood_sel == code)), 6)
            for code, kind in enumerate(data.OOD_KINDS) if code > 0}
    if sel.scores is not None and sel.scored_indices is not None and d.ood_N.any():
        # A diagnostic: with several processes, ranked methods hold only their own scores.
        scored, scores = parallel.gather_rows(np.asarray(sel.scored_indices, np.int64),
                                              np.asarray(sel.scores, np.float64))
        scored, first = np.unique(scored, return_index=True)  # geometric methods: all alike
        kinds = by_kind(scores[first], d.ood_N[scored], rounded_auroc)
        if kinds:
            stats["ood_auroc_by_kind"] = kinds
            stats["ood_auroc"] = kinds.get("pooled", next(iter(kinds.values())))
    return sel, stats


def test_scores(config: Config, d: Data, n: Nets, state, method: str, p: TestPredictions,
                rnd: int) -> np.ndarray:
    """`method`'s acquisition score of each test image of `p` (in the order of `p.index`),
    the whole test split scored as a pool by the model `state` of round `rnd`."""
    test_N = np.arange(len(d.test))
    ctx = context(config, d, n, state, method, d.test, np.zeros(0, np.int64), test_N, rnd, 1)
    sel = acquisition.select(method, ctx, **config.options(method))
    scored, scores = parallel.gather_rows(np.asarray(sel.scored_indices, np.int64),
                                          np.asarray(sel.scores, np.float64))
    score_of = dict(zip(scored.tolist(), scores.tolist()))
    return np.asarray([score_of[int(i)] for i in p.index])


def score_test_split(config: Config, d: Data, n: Nets, state, method: str,
                     p: TestPredictions, rnd: int) -> dict:
    """For a method that declares `scores_records`: its scores on the test split against the
    per-image error (`test_spearman`: Spearman correlation, positive when high scores go with
    large errors, i.e. the score predicts failure), for heatmap tasks against the per-image PCK
    (`test_spearman_pck`: negative when the score predicts failure) and against the OOD kinds
    (`test_auroc_by_kind`). Empty for other methods."""
    if not acquisition.get(method).scores_records or len(p.index) < 3:
        return {}
    scores_B = test_scores(config, d, n, state, method, p, rnd)
    error_B = accuracy(config, p)[2]
    ok = np.isfinite(error_B) & np.isfinite(scores_B)
    out = {"test_spearman": spearman(scores_B[ok], error_B[ok])}
    if config.task == "heatmap":
        pck_B = per_image_pck(config, p)
        ok = np.isfinite(pck_B) & np.isfinite(scores_B)
        out["test_spearman_pck"] = spearman(scores_B[ok], pck_B[ok])
    kinds = by_kind(scores_B, p.ood, rounded_auroc)
    if kinds:
        out["test_auroc_by_kind"] = kinds
    return out
