"""Data parallelism over local devices: a ('data',) mesh, sharded batches, replicated state.

Jitted steps need no change: given a batch sharded along its first axis and a replicated
`TrainState`, `jax.jit` partitions the computation over the mesh (each device computes its
slice of the batch; gradients and BatchNorm statistics are reduced across devices, so the
update equals the single-device one up to float reduction order).

    mesh = parallel.data_mesh()                  # None with a single device
    state = parallel.replicate(state, mesh)
    state, logs = train_step(state, parallel.shard_batch(batch, mesh))
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices=None) -> Mesh | None:
    """A 1-D ('data',) mesh over `devices` (default: all local devices); None for one device."""
    devices = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.asarray(devices), ("data",)) if len(devices) > 1 else None


def replicate(tree, mesh: Mesh | None):
    """Put every array of `tree` on every device of `mesh` (unchanged without a mesh)."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch, mesh: Mesh | None):
    """Split the numeric arrays of a batch dict along axis 0 over `mesh`; others stay on host.

    The batch size must be a multiple of the number of devices (pad or drop the remainder).
    """
    if mesh is None:
        return {k: v for k, v in batch.items() if _numeric(v)}
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    out = {}
    for name, value in batch.items():
        if not _numeric(value):
            continue
        if value.shape[0] % mesh.size:
            raise ValueError(f"batch '{name}' has {value.shape[0]} rows, not a multiple of the "
                             f"{mesh.size} devices")
        out[name] = jax.device_put(value, sharding)
    return out


def _numeric(value) -> bool:
    return hasattr(value, "dtype") and np.dtype(value.dtype).kind in "biuf"
