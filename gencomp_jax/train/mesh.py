"""Device mesh, shardings and global batches (jax.sharding; no pmap).

Data parallelism: the global batch is split along every batch axis of the mesh ("data" and, if
present, "fsdp"); parameters and optimizer state are replicated, except that with an "fsdp" axis and
`config.mesh.fsdp_min_size > 0` every state leaf with at least that many elements is sharded along
"fsdp" on its largest divisible dimension (ZeRO-3 / FSDP style: XLA inserts the all-gathers and
reduce-scatters). The jitted step is the same function in every case; only shardings change.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(mesh_cfg=None, *, devices: Sequence[Any] | None = None) -> Mesh:
    """Builds the mesh from `config.mesh` (shape with one -1 = all remaining devices; axes names).

    Default (mesh_cfg None): all devices on one "data" axis. Uses all global devices (every host);
    a shape whose product is smaller than the device count uses the first devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = tuple(int(s) for s in (mesh_cfg.shape if mesh_cfg is not None else (-1,)))
    axes = tuple(mesh_cfg.axes if mesh_cfg is not None else ("data",))
    if len(shape) != len(axes):
        raise ValueError(f"config.mesh.shape {shape} and config.mesh.axes {axes} differ in length.")
    if "data" not in axes:
        raise ValueError(f"config.mesh.axes {axes} must contain a 'data' axis.")
    if shape.count(-1) > 1:
        raise ValueError(f"config.mesh.shape {shape}: at most one -1.")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"config.mesh.shape {shape}: {len(devices)} devices are not divisible by {known}.")
        shape = tuple(len(devices) // known if s == -1 else s for s in shape)
    n = math.prod(shape)
    if n > len(devices):
        raise ValueError(f"config.mesh.shape {shape} needs {n} devices; only {len(devices)} are visible "
                         f"({jax.process_count()} process(es)). Use -1 for 'all devices'.")
    if n == len(devices) and jax.process_count() > 1:
        # Topology-aware order (hosts contiguous), as jax.make_mesh does.
        # Auto axis types: XLA propagates shardings; models need no sharding annotations.
        return jax.make_mesh(shape, axes, devices=devices,
                             axis_types=(jax.sharding.AxisType.Auto,) * len(axes))
    return Mesh(np.asarray(devices[:n], dtype=object).reshape(shape), axes)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    return tuple(a for a in mesh.axis_names if a in BATCH_AXES)


def num_batch_shards(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, P(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh, process_count: int | None = None) -> None:
    process_count = jax.process_count() if process_count is None else process_count
    shards = num_batch_shards(mesh)
    if global_batch % shards or global_batch % process_count:
        raise ValueError(
            f"config.data.batch_size={global_batch} (global) must be divisible by the number of "
            f"data-parallel devices ({shards}) and of processes ({process_count}). Change the batch "
            f"size or config.mesh.shape.")


def _leaf_spec(x, mesh: Mesh, min_size: int) -> P:
    if "fsdp" not in mesh.axis_names or min_size <= 0 or np.size(x) < min_size:
        return P()
    k = mesh.shape["fsdp"]
    dims = sorted(range(np.ndim(x)), key=lambda d: -x.shape[d])
    for d in dims:
        if x.shape[d] % k == 0:
            spec = [None] * np.ndim(x)
            spec[d] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, *, fsdp_min_size: int = 0) -> Any:
    """NamedSharding per leaf of `abstract_state` (replicated, or FSDP-sharded if large)."""
    return jax.tree.map(lambda x: NamedSharding(mesh, _leaf_spec(x, mesh, fsdp_min_size)), abstract_state)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Host-local numpy batch (this process's slice) -> global jax.Arrays sharded along the batch."""
    sharding = batch_sharding(mesh)
    out = {}
    for k, v in local_batch.items():
        v = np.asarray(v)
        global_shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
        out[k] = jax.make_array_from_process_local_data(sharding, v, global_shape)
    return out


def to_host(tree: Any) -> Any:
    """Global (possibly sharded, multi-host) arrays -> numpy on every process (collective for sharded)."""
    def get(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(get, tree)
