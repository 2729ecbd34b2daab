"""Shared pieces of the acquisition functions: the `Context` / `Selection` signature, pool
streaming through one jitted function (data-parallel over local devices), stable top-k,
k-center greedy in JAX with O(N) memory, MC-dropout pool statistics and the random pre-subset.

Every acquisition function is a pure function `select(ctx: Context, **options) -> Selection`.
`ctx.batches(record_indices)` yields numpy batch dicts (the `data.make_loader` contract: the
model input `image` or `depth` and `index`); the pool and the labelled set are arrays of record
indices, so any method (and the pre-subset) can stream any subset of them. Nothing here keeps
more than one batch of images or heatmaps: streamed outputs are reduced to per-record scores or
embeddings inside the jitted function.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import sys
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vl4pose_jax import parallel

TASKS = ("heatmap", "regression")
INPUT_KEY = {"heatmap": "image", "regression": "depth"}


# ------------------------------------------------------------------------------------ signature

@dataclasses.dataclass(frozen=True)
class Context:
    """Everything an acquisition function may read.

    task: 'heatmap' (stacked hourglass, human) or 'regression' (DeepPrior, hands).
    model / aux: the Flax modules (`aux` None when no auxiliary net was trained).
    state: `train.TrainState` (params, batch_stats, aux_params).
    batches: `batches(record_indices) -> iterable of numpy batch dicts` in inference mode (one
      pass, no augmentation, partial last batch kept), each with the model input and `index`;
      e.g. `loader_batches(source, batch_size)` or `array_batches(arrays, batch_size)`.
    labelled / pool: int64 record indices of the labelled set and of the unlabelled candidates.
    budget: number of records to select (fewer only when the pool is smaller).
    key: `jax.random` key; every random choice derives from it.
    skeleton: `skeletons.Skeleton` (VL4Pose).
    progress: tqdm bars while streaming (only when stderr is a TTY).
    """
    task: str
    model: Any
    state: Any
    batches: Callable[[np.ndarray], Iterable[Mapping[str, np.ndarray]]]
    labelled: np.ndarray
    pool: np.ndarray
    budget: int
    key: jax.Array
    skeleton: Any = None
    aux: Any = None
    progress: bool = True

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "labelled", np.asarray(self.labelled, np.int64).reshape(-1))
        object.__setattr__(self, "pool", np.asarray(self.pool, np.int64).reshape(-1))
        if self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")

    @property
    def input_key(self) -> str:
        return INPUT_KEY[self.task]

    def derive_key(self, tag: str) -> jax.Array:
        """A key for one named purpose, independent of the order in which methods use keys."""
        return jax.random.fold_in(self.key, int.from_bytes(tag.encode()[:4].ljust(4, b"\0"), "little"))


@dataclasses.dataclass(frozen=True)
class Selection:
    """indices: (n,) int64 selected pool record indices, in selection order (n = min(budget,
    pool)); scores: (N_scored,) float per scored record (higher = more informative for ranked
    methods; the k-center distance at scoring time for geometric ones) or None; scored_indices:
    the record index of each score (the pool, or its pre-subset), or None."""
    indices: np.ndarray
    scores: np.ndarray | None = None
    scored_indices: np.ndarray | None = None


def num_to_select(ctx: Context, pool_size: int | None = None) -> int:
    return int(min(ctx.budget, len(ctx.pool) if pool_size is None else pool_size))


# ---------------------------------------------------------------------------------- batch sources

def array_batches(arrays: Mapping[str, np.ndarray], batch_size: int):
    """A `Context.batches` factory over in-memory arrays whose first axis is the record index
    (row i = record i). Yields dicts of the given arrays plus `index`."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}

    def batches(indices):
        indices = np.asarray(indices, np.int64)
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            batch = {k: v[idx] for k, v in arrays.items()}
            batch["index"] = idx
            yield batch

    return batches


def loader_batches(source, batch_size: int, **loader_kwargs):
    """A `Context.batches` factory over a `data.Source` via `data.make_loader` (inference mode)."""
    from vl4pose_jax import data  # pylint: disable=import-outside-toplevel

    def batches(indices):
        indices = np.asarray(indices, np.int64)
        if len(indices) == 0:
            return iter(())
        return iter(data.make_loader(source, batch_size=batch_size, train=False, indices=indices,
                                     **loader_kwargs))

    return batches


# ------------------------------------------------------------------------------------- streaming

def _progress(iterable, enabled, total, desc):
    if enabled and sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel
            return tqdm(iterable, total=total, desc=desc, leave=False)
        except ImportError:
            pass
    return iterable


def stream(ctx: Context, indices, fn: Callable, *, key=None, desc: str = "scoring",
           extra: Any = None, gather: bool = True):
    """Run `fn(state, inputs_BxHxWxC, key, extra) -> dict of (B, ...) arrays` (jitted by the
    caller) over the records `indices`, one fixed-size batch at a time, and return
    `(record_indices (N,), {name: (N, ...) numpy})` sorted by record index.

    Batches are padded to the first batch's size (one compilation) and, with several local
    devices, to a multiple of the device count and sharded over a ('data',) `Mesh`; the state
    and `extra` are replicated. Batch t gets `fold_in(key, t)`. Results are fetched one batch
    behind the dispatch so host and device overlap.

    With several processes (`parallel.initialize_distributed`) each one streams its own share
    of `indices` (`parallel.process_share`); `gather=True` then hands every process all rows,
    `gather=False` only its own (ranked methods keep them and merge top-k candidates with
    `top_pool`, so no process receives every score). Batch keys count each process's own
    batches, so random draws (MC dropout) depend on the number of processes.
    """
    indices = np.asarray(indices, np.int64)
    if 0 < len(indices) < jax.process_count():
        raise ValueError(f"{len(indices)} records cannot be shared by {jax.process_count()} "
                         "processes (every process needs at least one)")
    indices = parallel.process_share(indices)
    if len(indices) == 0:
        return indices, {}
    key = ctx.derive_key("stream") if key is None else key
    mesh = parallel.data_mesh()
    state = parallel.replicate(ctx.state, mesh)
    extra_dev = None if extra is None else parallel.replicate(extra, mesh)
    batch_size = None
    out_index, out_parts, pending = [], [], None

    def fetch(p):
        n, res = p
        out_parts.append({k: np.asarray(v)[:n] for k, v in res.items()})

    for t, batch in enumerate(_progress(ctx.batches(indices), ctx.progress, None, desc)):
        inputs = np.asarray(batch[ctx.input_key], np.float32)
        n = inputs.shape[0]
        if batch_size is None:
            batch_size = n if mesh is None else -(-n // mesh.size) * mesh.size
        if n > batch_size:
            raise ValueError(f"batch of {n} after a first batch of {batch_size}")
        if n < batch_size:  # repeat the last row: keeps the padding finite for any model
            inputs = np.concatenate([inputs, np.repeat(inputs[-1:], batch_size - n, 0)])
        inputs = parallel.shard_batch({"x": inputs}, mesh)["x"]
        res = fn(state, inputs, jax.random.fold_in(key, t), extra_dev)
        if pending is not None:
            fetch(pending)
        pending = (n, res)
        out_index.append(np.asarray(batch["index"], np.int64))
    if pending is not None:
        fetch(pending)
    record_indices = np.concatenate(out_index)
    names = sorted(out_parts[0])
    outputs = [np.concatenate([p[k] for p in out_parts]) for k in names]
    if gather:
        record_indices, *outputs = parallel.gather_rows(record_indices, *outputs)
    order = np.argsort(record_indices, kind="stable")  # independent of the loader's order
    return record_indices[order], {k: v[order] for k, v in zip(names, outputs)}


def aligned(record_indices, values, wanted):
    """Reorder streamed `values` (rows for `record_indices`) to the order of `wanted`."""
    record_indices = np.asarray(record_indices, np.int64)
    order = np.argsort(record_indices, kind="stable")
    pos = np.searchsorted(record_indices[order], wanted)
    if np.any(pos >= len(order)) or np.any(record_indices[order][np.minimum(pos, len(order) - 1)] != wanted):
        raise ValueError("the batches did not return every requested record")
    return values[order[pos]]


# ---------------------------------------------------------------------------- model forward passes

def variables(state):
    out = {"params": state.params}
    if state.batch_stats:
        out["batch_stats"] = state.batch_stats
    return out


@functools.partial(jax.jit, static_argnames=("model", "aux", "keys"))
def heatmap_outputs(state, images, model, aux, keys):
    """Inference-mode hourglass outputs: `heatmaps_BxHxWxJ` (last stack), `heatmaps_BxSxHxWxJ`
    (all stacks), `penultimate_BxC`, the
    aux outputs; only `keys` are returned (so nothing else leaves the device)."""
    outputs = model.apply(variables(state), images, train=False)
    result = {"heatmaps_BxHxWxJ": outputs["heatmaps"][:, -1],
              "heatmaps_BxSxHxWxJ": outputs["heatmaps"], "penultimate_BxC": outputs["penultimate"]}
    if aux is not None:
        result.update(aux.apply({"params": state.aux_params}, outputs))
    return {k: result[k] for k in keys}


@functools.partial(jax.jit, static_argnames=("model", "aux", "keys"))
def regression_outputs(state, depth, model, aux, keys):
    """Deterministic DeepPrior outputs (`pose_BxJx3`, `embedding_BxD`, `log_var_BxJx3`) and
    the aux outputs on `embedding_BxD`; only `keys` are returned."""
    result = dict(model.apply(variables(state), depth, mc=False))
    if aux is not None:
        result.update(aux.apply({"params": state.aux_params}, result["embedding_BxD"]))
    return {k: result[k] for k in keys}


_JIT_CACHE: "collections.OrderedDict" = collections.OrderedDict()


def cached_jit(cache_key, build: Callable[[], Callable]):
    """`jax.jit(build())`, reused for an equal hashable `cache_key` (modules, skeletons and
    options are hashable), so repeated acquisitions (AL cycles, tests) compile once. `cache_key`
    None: no caching. At most 64 entries are kept."""
    if cache_key is None:
        return jax.jit(build())
    fn = _JIT_CACHE.get(cache_key)
    if fn is None:
        fn = _JIT_CACHE[cache_key] = jax.jit(build())
        while len(_JIT_CACHE) > 64:
            _JIT_CACHE.popitem(last=False)
    else:
        _JIT_CACHE.move_to_end(cache_key)
    return fn


def stream_outputs(ctx: Context, indices, keys, *, post=None, post_key=None, desc="scoring",
                   gather: bool = True):
    """Stream the deterministic model (+aux) outputs `keys` over `indices`, optionally reduced
    per batch on device by `post(outputs_dict) -> dict` (jitted together with the model).
    `post_key`: a hashable description of `post` and its options, for reusing the compiled
    function (no reuse when `post` is given without it). `gather`: see `stream`."""
    keys = tuple(keys)
    forward = heatmap_outputs if ctx.task == "heatmap" else regression_outputs
    model, aux = ctx.model, ctx.aux

    def build():
        def fn(state, inputs, key, extra):
            del key, extra
            out = forward(state, inputs, model, aux, keys)
            return out if post is None else post(out)
        return fn

    cache_key = None if (post is not None and post_key is None) else (
        "outputs", ctx.task, model, aux, keys, post_key)
    return stream(ctx, indices, cached_jit(cache_key, build), desc=desc, gather=gather)


def mc_pool_stats(ctx: Context, indices, *, num_samples: int = 70, chunk: int | None = None,
                  key=None, desc="MC dropout", gather: bool = True):
    """MC-dropout mean pose (N, 3J) and epistemic std (N, 3J) of DeepPrior over `indices`
    (T = `num_samples` passes per batch, vmapped in chunks of `chunk` passes). The key of every
    batch derives from `key` (default: the context's 'mc' key), so methods sharing it see the same
    passes. `num_samples=0` gives the deterministic pose and zero std."""
    from vl4pose_jax.models import mc_predict  # pylint: disable=import-outside-toplevel
    if ctx.task != "regression":
        raise ValueError("MC dropout needs the regression (DeepPrior) task")
    if num_samples and not ctx.model.dropout:
        raise ValueError("MC dropout needs a DeepPrior with a dropout variant ('A', 'B' or 'C')")
    key = ctx.derive_key("mc") if key is None else key
    model = ctx.model

    def build():
        def fn(state, depth, k, extra):
            del extra
            if not num_samples:
                pose = model.apply(variables(state), depth, mc=False)["pose_BxJx3"]
                flat = pose.reshape(pose.shape[0], -1)
                return {"mean": flat, "std": jnp.zeros_like(flat)}
            out = mc_predict(model, variables(state), depth, k, num_samples=num_samples,
                             chunk=chunk)
            mean, var = out["mean_BxJx3"], out["epistemic_var_BxJx3"]
            return {"mean": mean.reshape(mean.shape[0], -1),
                    "std": jnp.sqrt(var).reshape(var.shape[0], -1)}
        return fn

    fn = cached_jit(("mc", model, int(num_samples), chunk), build)
    idx, out = stream(ctx, indices, fn, key=key, desc=desc, gather=gather)
    if not len(idx):
        return idx, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return idx, out["mean"], out["std"]


# ------------------------------------------------------------------------------------ selection

def top_budget(scores, record_indices, count: int, *, highest: bool = True):
    """The `count` records with the highest (or lowest) score; ties by smaller record index;
    NaN scores rank last. Returns record indices in rank order."""
    scores = np.asarray(scores, np.float64)
    record_indices = np.asarray(record_indices, np.int64)
    key = -scores if highest else scores
    key = np.where(np.isnan(key), np.inf, key)
    order = np.lexsort((record_indices, key))
    return record_indices[order[:count]]


def top_pool(scores, record_indices, count: int, *, highest: bool = True):
    """`top_budget` over the pool when each process holds only its own records' scores
    (`stream(..., gather=False)`): per-process top-k, then only those candidates are gathered
    and ranked again. The same selection as `top_budget` on all scores; identical to it with
    one process."""
    return parallel.top_k_across_processes(
        functools.partial(top_budget, highest=highest), scores, record_indices, count)


def random_subset(ctx: Context, size) -> np.ndarray:
    """The random pre-subset of the pool: `size` records (an int) or that fraction of the pool
    (a float in (0, 1]), drawn uniformly without replacement from `ctx.derive_key('subset')`;
    returned sorted. At least `ctx.budget` records are kept when the pool has them."""
    n = len(ctx.pool)
    count = int(round(size * n)) if isinstance(size, float) else int(size)
    count = min(n, max(count, min(ctx.budget, n)))
    perm = np.asarray(jax.random.permutation(ctx.derive_key("subset"), n))
    return np.sort(ctx.pool[perm[:count]])


# ------------------------------------------------------------------------ k-center greedy (JAX)

def _block_sizes(n, m, d, elements):
    """Row/column block sizes for (n x m) distance blocks of at most ~`elements` entries."""
    cols = max(1, min(m, 1024, elements // 256))
    rows = max(1, min(n, elements // cols, max(1, elements // max(1, d))))
    return rows, cols


def _pad_rows(x, multiple):
    pad = (-x.shape[0]) % multiple
    return jnp.pad(x, ((0, pad), (0, 0))) if pad else x


@functools.partial(jax.jit, static_argnames=("rows", "cols"))
def _init_min_dist(pool, centres, pool_ub, centres_ub, rows, cols):
    """Per pool point: the squared distance to its nearest centre and (for CKE) the squared
    upper-bound distance to that centre (first centre on ties). The nearest centre is searched in
    rows x cols blocks with a matmul (|x|^2 - 2 x.c + |c|^2, float32); both returned values are
    then recomputed exactly as ||x - c||^2. O(N) outputs, O(rows x cols) temporaries."""
    n, m, d = pool.shape[0], centres.shape[0], pool.shape[1]
    P = _pad_rows(pool, rows).reshape(-1, rows, d)
    Pu = _pad_rows(pool_ub, rows).reshape(-1, rows, d)
    C = _pad_rows(centres, cols).reshape(-1, cols, d)
    c_sq = jnp.sum(C * C, axis=-1)
    col_valid = (jnp.arange(C.shape[0] * cols) < m).reshape(-1, cols)
    offsets = jnp.arange(C.shape[0]) * cols

    def per_row_block(args):
        p, pu = args
        p_sq = jnp.sum(p * p, axis=-1)

        def body(carry, blk):
            best, best_j = carry
            c, csq, valid, off = blk
            d2 = p_sq[:, None] - 2.0 * (p @ c.T) + csq[None, :]
            d2 = jnp.where(valid[None, :], d2, jnp.inf)
            j = jnp.argmin(d2, axis=1)
            dmin = jnp.take_along_axis(d2, j[:, None], 1)[:, 0]
            better = dmin < best
            return (jnp.where(better, dmin, best), jnp.where(better, j + off, best_j)), None

        init = (jnp.full((rows,), jnp.inf, pool.dtype), jnp.zeros((rows,), jnp.int32))
        (_, best_j), _ = jax.lax.scan(body, init, (C, c_sq, col_valid, offsets))
        d_lb = jnp.sum((p - centres[best_j]) ** 2, axis=-1)
        d_ub = jnp.sum((pu - centres_ub[best_j]) ** 2, axis=-1)
        return d_lb, d_ub

    d_lb, d_ub = jax.lax.map(per_row_block, (P, Pu))
    return d_lb.reshape(-1)[:n], d_ub.reshape(-1)[:n]


@jax.jit
def _sq_dist_to(points, b):
    """||points - points[b]||^2 exactly. Kept apart from the update and without a sqrt: fused
    with either, XLA:CPU runs this reduction ~8x slower. The greedy compares squared distances
    (the same order)."""
    return jnp.sum((points - points[b]) ** 2, axis=-1)


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _update(min_lb, dist, d_lb, d_ub, b):
    better = d_lb < min_lb
    min_lb = jnp.where(better, d_lb, min_lb)
    dist = jnp.where(better, d_ub, dist).at[b].set(-jnp.inf)
    return min_lb, dist, jnp.argmax(dist).astype(jnp.int32)


def _greedy(pool, pool_ub, min_lb, dist, first, budget, bounds):
    """`budget` greedy steps: pick argmax `dist` (first position on ties; -inf = taken), then
    update with the new centre (Sener & Savarese; with `bounds` the CKE paper's Algorithm 1).
    Jitted steps dispatched from Python without waiting for the device (a `fori_loop` body is
    ~7x slower on XLA:CPU, see `_sq_dist_to`)."""
    b = jnp.int32(first) if first >= 0 else jnp.argmax(dist).astype(jnp.int32)
    min_lb, dist = jnp.array(min_lb), jnp.array(dist)  # donated below: own copies
    picks = []
    for _ in range(budget):
        picks.append(b)
        d_lb = _sq_dist_to(pool, b)
        d_ub = _sq_dist_to(pool_ub, b) if bounds else d_lb
        min_lb, dist, b = _update(min_lb, dist, d_lb, d_ub, b)
    return jnp.stack(picks)


def kcenter_greedy(pool_features, centre_features, budget: int, *, key=None,
                   pool_upper=None, centre_upper=None, block_elements: int = 1 << 22):
    """k-center greedy (Sener & Savarese 2018) in JAX with O(N) working memory.

    pool_features (N, d): candidates; centre_features (M, d): already-labelled points (M may be
    0). Euclidean distances. Returns (picks (n,) int64 positions into the pool in selection
    order, n = min(budget, N); dist (N,) each candidate's distance to the labelled set before the
    first pick). Each step picks the candidate farthest from its nearest centre (lowest position
    on ties), then lowers the running min-distance vector with the new centre: one (N, d) pass per
    step, no N x M matrix (the labelled distances are taken in blocks of ~`block_elements`).
    With no centres the first pick is uniform from `key` (position 0 without a key).

    `pool_upper` / `centre_upper` (same shapes) give the CKE paper's Algorithm 1: the nearest
    centre of each candidate is found with the lower-bound features (`pool_features`, i.e.
    y - eta sigma) and the candidate's distance to it is measured with the upper-bound ones
    (y + eta sigma); the farthest candidate is picked. With upper = lower this is k-center greedy.
    """
    pool = jnp.asarray(pool_features, jnp.float32)
    n, d = pool.shape
    count = int(min(budget, n))
    centres = jnp.asarray(centre_features, jnp.float32).reshape(-1, d)
    pool_ub = pool if pool_upper is None else jnp.asarray(pool_upper, jnp.float32)
    centres_ub = centres if centre_upper is None else jnp.asarray(centre_upper, jnp.float32).reshape(-1, d)
    if count == 0:
        return np.zeros((0,), np.int64), np.full((n,), np.inf)
    first = -1
    if centres.shape[0] > 0:
        rows, cols = _block_sizes(n, centres.shape[0], d, block_elements)
        min_lb, dist = _init_min_dist(pool, centres, pool_ub, centres_ub, rows, cols)
    else:
        min_lb = dist = jnp.full((n,), jnp.inf, jnp.float32)
        if key is not None:
            first = int(jax.random.randint(key, (), 0, n))
    picks = _greedy(pool, pool_ub, min_lb, dist, first, count, pool_upper is not None)
    return np.asarray(picks, np.int64), np.sqrt(np.asarray(dist))
