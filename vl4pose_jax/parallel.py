"""Data parallelism over a ('data',) device mesh, on one host or several.

Training is data-parallel over every device of every process (`train_mesh`): parameters are
replicated, the batch axis is sharded, and each process supplies only its own rows of the
global batch (`shard_batch` assembles them with `jax.make_array_from_process_local_data`).
Jitted steps need no change: given a replicated `TrainState` and a sharded batch, `jax.jit`
partitions the computation (each device computes its slice of the batch; gradients and
BatchNorm statistics are reduced across devices, so the update equals the single-device one
up to float reduction order).

Pool scoring needs no communication: every process scores its own share of the records
(`process_share`) on its local devices (`data_mesh`) with a local copy of the state, keeps
its top-k (`top_k_across_processes`) and only those candidates are gathered.

    mesh = parallel.train_mesh()                 # None with a single device in all
    state = parallel.replicate(state, mesh)
    state, logs = train_step(state, parallel.shard_batch(local_batch, mesh))

With one process every helper here is the identity or its obvious single-host meaning;
`initialize_distributed()` (the simulator's `--distributed`) joins several.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


# --------------------------------------------------------------------------------- processes

def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Join a multi-process run (`jax.distributed.initialize`); must run before any other JAX
    call. Arguments left None are detected by JAX (Slurm, Open MPI, Cloud TPU; the coordinator
    also from $JAX_COORDINATOR_ADDRESS). On CPU, cross-process collectives use gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU backend only
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)


def is_primary() -> bool:
    """True on the process that writes shared files (results, plots, reports)."""
    return jax.process_index() == 0


def process_share(indices) -> np.ndarray:
    """This process's contiguous share of `indices` (all of them with one process)."""
    indices = np.asarray(indices)
    if jax.process_count() == 1:
        return indices
    return np.array_split(indices, jax.process_count())[jax.process_index()]


def gather_rows(*arrays):
    """Concatenate each process's `arrays` (same row count within a process, any count across
    processes) in process order; every process gets the whole. Identity with one process."""
    if jax.process_count() == 1:
        return arrays
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    arrays = [np.asarray(a) for a in arrays]
    counts = np.asarray(multihost_utils.process_allgather(np.int64(len(arrays[0])))).reshape(-1)
    most = int(counts.max())
    out = []
    for a in arrays:
        padded = np.zeros((most,) + a.shape[1:], a.dtype)
        padded[:len(a)] = a
        every = np.asarray(multihost_utils.process_allgather(padded))  # (P, most, ...)
        out.append(np.concatenate([every[p, :int(n)] for p, n in enumerate(counts)]))
    return tuple(out)


def gather_bytes(blob: bytes) -> list[bytes]:
    """Every process's `blob`, in process order (e.g. per-host data-iterator states)."""
    if jax.process_count() == 1:
        return [blob]
    (lengths,) = gather_rows(np.array([len(blob)], np.int64))
    (data,) = gather_rows(np.frombuffer(blob, np.uint8))
    ends = np.cumsum(lengths)
    return [data[e - n:e].tobytes() for e, n in zip(ends, lengths)]


def top_k_across_processes(top_k, scores, record_indices, count: int):
    """The global `top_k(scores, record_indices, count) -> record indices` over every process's
    (scores, record_indices) while moving only `count` candidates per process: each process
    ranks its own records, the candidates are gathered, and the same ranking of the union is
    taken on every process. Equal to ranking all scores at once whenever `top_k` orders by a
    total order (score, then record index)."""
    if jax.process_count() == 1:
        return top_k(scores, record_indices, count)
    scores, record_indices = np.asarray(scores), np.asarray(record_indices)
    local = top_k(scores, record_indices, count)
    by_index = np.argsort(record_indices)
    rows = by_index[np.searchsorted(record_indices, local, sorter=by_index)]
    cand_scores, cand_indices = gather_rows(scores[rows], local)
    return top_k(cand_scores, cand_indices, count)


# ------------------------------------------------------------------------------------ meshes

def data_mesh(devices=None) -> Mesh | None:
    """A 1-D ('data',) mesh over `devices` (default: this process's devices); None for one."""
    devices = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.asarray(devices), ("data",)) if len(devices) > 1 else None


def train_mesh() -> Mesh | None:
    """A ('data',) mesh over the devices of every process; None for a single device."""
    return data_mesh(jax.devices())


def num_devices(mesh: Mesh | None) -> int:
    return 1 if mesh is None else mesh.size


def host_local(x):
    """A process-local value of `x`: this process's replica of a replicated global array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x.addressable_data(0)
    return x


def replicate(tree, mesh: Mesh | None):
    """Put every array of `tree` on every device of `mesh` (a global mesh: on every process,
    from this process's copy; without a mesh: a single-device, process-local copy)."""
    if mesh is None:
        return jax.tree.map(host_local, tree)
    sharding = NamedSharding(mesh, PartitionSpec())
    if len(mesh.local_devices) == mesh.size:
        return jax.device_put(jax.tree.map(host_local, tree), sharding)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        value = np.asarray(host_local(x))
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.tree.map(put, tree)


def shard_batch(batch, mesh: Mesh | None):
    """Split the numeric arrays of a batch dict along axis 0 over `mesh`; others are dropped.

    `batch` holds this process's rows (all of them with one process); the global batch is the
    concatenation over processes. This process's rows must be a multiple of its device count.
    """
    if mesh is None:
        return {k: v for k, v in batch.items() if _numeric(v)}
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    local_devices = len(mesh.local_devices)
    out = {}
    for name, value in batch.items():
        if not _numeric(value):
            continue
        if value.shape[0] % local_devices:
            raise ValueError(f"batch '{name}' has {value.shape[0]} rows, not a multiple of the "
                             f"{local_devices} devices")
        out[name] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
    return out


def _numeric(value) -> bool:
    return hasattr(value, "dtype") and np.dtype(value.dtype).kind in "biuf"
