"""Acquisition functions for active learning in pose estimation: VL4Pose and every baseline of
the VL4Pose (BMVC 2022) and Bayesian DeepPrior / CKE (WACV 2021) papers, one signature each.

    from vl4pose_jax import acquisition
    ctx = acquisition.Context(task="heatmap", model=model, aux=aux, state=state,
                              skeleton=skeletons.lsp14,
                              batches=acquisition.loader_batches(source, batch_size=32),
                              labelled=labelled_idx, pool=unlabelled_idx, budget=1000,
                              key=jax.random.key(cycle))
    sel = acquisition.select("vl4pose", ctx, pre_subset=None, num_peaks=1)
    sel.indices          # (budget,) int64 pool record indices, selection order
    sel.scores, sel.scored_indices   # per scored record (e.g. OOD AUROC against `ood`)

`names()` lists the methods; `get(name)` resolves a name once to a `Method`, which declares
everything a caller needs to know: `select`, `tasks`, `aux_head(task)` (the auxiliary head the
simulator must train, or None), `deepprior` (the hand network it needs: 'plain', 'aleatoric' or
'bayesian'), `scores_records` (its score is a function of the record alone, so the test split can
be scored too) and `rank_new` (how it ranks new images with keypoints in one pass, or None:
selection order, then scores). A method is a module with `select(ctx: Context, **options) ->
Selection`, `TASKS` and optionally `REQUIRES_AUX` (a head name, None, or a {task: head} dict),
`DEEPPRIOR`, `SCORES_RECORDS` and `rank_new`; add yours with `register(name, module)` or one
line in `_BUILTIN`. `check_options(name, options)` refuses options its `select` does not take.
`select(name, ctx, pre_subset=...)` first draws the random pre-subset of the pool (an int count
or a fraction; the CKE protocol scores 10 %) for any method, then checks the result.

Several processes (`parallel.initialize_distributed`): `stream` gives each process its share of
the records; ranked methods keep their own scores and merge per-process top-k candidates
(`top_pool`), so `Selection.scores` then holds this process's records only; geometric methods
gather their features. The selection is the same on every process.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from types import ModuleType
from typing import Callable

import numpy as np

from vl4pose_jax.acquisition.common import (Context, Selection, array_batches, kcenter_greedy,
                                            loader_batches, random_subset, stream, top_budget,
                                            top_pool)

# name -> module in this package; one line per method.
_BUILTIN = {
    "random": "random_sampling",
    "coreset": "coreset",
    "vl4pose": "vl4pose",
    "aleatoric": "aleatoric",
    "learning_loss": "learning_loss",
    "multipeak_entropy": "multipeak_entropy",
    "mc_dropout": "mc_dropout",
    "cke": "cke",
    "egl": "egl",
    "coregcn": "coregcn",
    "uncertaingcn": "uncertaingcn",
}
_REGISTERED: dict[str, ModuleType | object] = {}
# The hand networks a method may declare (`DEEPPRIOR`): plain DeepPrior, DeepPrior with its own
# log-variance head, Bayesian DeepPrior (MC dropout + aleatoric head, evaluated as the MC mean).
DEEPPRIORS = ("plain", "aleatoric", "bayesian")


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    select: Callable[..., Selection]
    tasks: tuple[str, ...]
    requires_aux: object = None
    deepprior: str = "plain"
    scores_records: bool = False
    rank_new: Callable | None = None

    def aux_head(self, task: str):
        """The `AuxNet` head this method needs for `task` (None: no auxiliary net)."""
        if isinstance(self.requires_aux, dict):
            return self.requires_aux.get(task)
        return self.requires_aux


def register(name: str, module) -> None:
    """Register a method: any object with `select`, `TASKS` and optionally `REQUIRES_AUX`,
    `DEEPPRIOR`, `SCORES_RECORDS` and `rank_new` (module doc)."""
    if not callable(getattr(module, "select", None)) or not getattr(module, "TASKS", None):
        raise TypeError("a method needs a callable `select` and a non-empty `TASKS`")
    _REGISTERED[name] = module


def names() -> list[str]:
    return list(_BUILTIN) + [n for n in _REGISTERED if n not in _BUILTIN]


def get(name: str) -> Method:
    if name in _REGISTERED:
        module = _REGISTERED[name]
    elif name in _BUILTIN:
        module = importlib.import_module(f"{__name__}.{_BUILTIN[name]}")
    else:
        raise KeyError(f"unknown acquisition method {name!r}; known: {names()}")
    deepprior = getattr(module, "DEEPPRIOR", "plain")
    if deepprior not in DEEPPRIORS:
        raise ValueError(f"method {name!r} declares DEEPPRIOR={deepprior!r}; known: {DEEPPRIORS}")
    return Method(name, module.select, tuple(module.TASKS), getattr(module, "REQUIRES_AUX", None),
                  deepprior, bool(getattr(module, "SCORES_RECORDS", False)),
                  getattr(module, "rank_new", None))


def check_options(name: str, options: dict) -> None:
    """Raise ValueError naming the method and option when `select` of `name` does not take
    one of `options` (`pre_subset` is taken by every method)."""
    params = inspect.signature(get(name).select).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = sorted(k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    for key in options:
        if key != "pre_subset" and key not in known:
            raise ValueError(f"method {name!r} has no option {key!r}; its options: "
                             + (", ".join(known + ["pre_subset"])))


def select(name: str, ctx: Context, *, pre_subset: int | float | None = None,
           **options) -> Selection:
    """Run method `name` on `ctx` (optionally on a random pre-subset of the pool) and check the
    result: `min(budget, pool)` unique pool records, none labelled."""
    method = get(name)
    if ctx.task not in method.tasks:
        raise ValueError(f"{name!r} supports tasks {method.tasks}, not {ctx.task!r}")
    head = method.aux_head(ctx.task)
    if head is not None and (ctx.aux is None or getattr(ctx.aux, "head", None) != head):
        raise ValueError(f"{name!r} needs an auxiliary net with head {head!r}")
    if np.intersect1d(ctx.pool, ctx.labelled).size:
        raise ValueError("the pool and the labelled set overlap")
    if len(np.unique(ctx.pool)) != len(ctx.pool):
        raise ValueError("the pool has repeated record indices")
    if pre_subset is not None:
        ctx = dataclasses.replace(ctx, pool=random_subset(ctx, pre_subset))
    sel = method.select(ctx, **options)
    indices = np.asarray(sel.indices, np.int64)
    expected = min(ctx.budget, len(ctx.pool))
    if (len(indices) != expected or len(np.unique(indices)) != expected
            or not np.all(np.isin(indices, ctx.pool))):
        raise AssertionError(f"{name!r} returned an invalid selection")
    return dataclasses.replace(sel, indices=indices)


__all__ = ["Context", "Selection", "Method", "select", "get", "names", "register", "check_options",
           "array_batches", "loader_batches", "kcenter_greedy", "stream", "top_budget",
           "random_subset", "top_pool"]
