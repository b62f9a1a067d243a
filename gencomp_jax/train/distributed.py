"""Multi-process start-up on JAX's own runtime (jax.distributed), and the process-0 rule.

One process per host (GPU node or TPU VM), each seeing its local devices; after
`initialize`, `jax.devices()` lists every device of every process and the jitted training step runs
as one SPMD program over the global mesh. Only process 0 writes logs, plots and results; orbax
checkpoints are written by all processes together (it coordinates them itself).
"""

from __future__ import annotations

import logging
import os

import jax

_log = logging.getLogger(__name__)

# Environment variables that mean "this process is one of several launched by a cluster manager".
_CLUSTER_ENV = {
    "slurm": lambda e: int(e.get("SLURM_NTASKS", e.get("SLURM_NPROCS", "1")) or 1) > 1 and "SLURM_JOB_ID" in e,
    "openmpi": lambda e: int(e.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1,
    "mpich": lambda e: int(e.get("PMI_SIZE", "1") or 1) > 1,
    "tpu_pod": lambda e: "," in e.get("TPU_WORKER_HOSTNAMES", "") or "MEGASCALE_COORDINATOR_ADDRESS" in e,
    "k8s_jobset": lambda e: "JOBSET_NAME" in e and int(e.get("JAX_NUM_PROCESSES", "1") or 1) > 1,
}

_initialized = False


def detect_cluster(environ=None) -> str | None:
    """Name of the cluster environment this process runs in, or None for a plain single process."""
    environ = os.environ if environ is None else environ
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return "env"
    for name, test in _CLUSTER_ENV.items():
        try:
            if test(environ):
                return name
        except ValueError:
            continue
    return None


def initialize(*, mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: list[int] | None = None) -> bool:
    """Starts jax.distributed when needed; returns True if this is a multi-process run.

    mode: "auto" (explicit arguments, else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
    JAX_PROCESS_ID, else a detected SLURM / Open MPI / TPU-pod environment; otherwise single process),
    "on" (always call jax.distributed.initialize, letting JAX auto-detect the cluster), "off" (never).
    Must be called before anything touches a JAX device.
    """
    global _initialized
    if _initialized or mode == "off":
        return jax.process_count() > 1
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"distributed mode {mode!r}: use 'auto', 'on' or 'off'.")
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    explicit = coordinator_address is not None or num_processes is not None or process_id is not None
    cluster = detect_cluster()
    if mode == "auto" and not explicit and cluster is None:
        return False
    if explicit and (coordinator_address is None or num_processes is None or process_id is None) \
            and cluster is None:
        raise ValueError(
            "Multi-process start-up needs all three of --coordinator_address (host:port of process 0), "
            "--num_processes and --process_id (or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / "
            f"JAX_PROCESS_ID); got {coordinator_address!r}, {num_processes!r}, {process_id!r}.")
    kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
    if local_device_ids is not None:
        kwargs["local_device_ids"] = local_device_ids
    _log.info("jax.distributed.initialize(%s) [cluster: %s]", kwargs, cluster)
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
    _initialized = True
    _log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
              jax.process_count(), jax.local_device_count(), jax.device_count())
    return jax.process_count() > 1


def is_main_process() -> bool:
    """True on process 0: the only one that writes logs, plots and result files."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits for every process (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
