"""Subprocess script for test_distributed.py: one of N jax.distributed processes on localhost.

Usage: dist_check.py WORKDIR COORDINATOR_ADDRESS NUM_PROCESSES PROCESS_ID
Each process has 2 forced CPU devices; CPU collectives via gloo (JAX's default on CPU).
"""

import json
import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(HERE.parents[1] / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from gencomp_jax.train import distributed, train_and_evaluate  # noqa: E402
import toymethod  # noqa: E402


def main():
    workdir, address, n, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    assert distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid)
    assert jax.process_count() == n and jax.device_count() == 2 * n
    config = dist_config()
    final = train_and_evaluate(config, workdir, method=toymethod.ToyAutoencoder(),
                               train_iterator=toymethod.toy_iterator(config))
    print("RESULT " + json.dumps({"process": jax.process_index(), "final": final}))


def dist_config():
    return toymethod.toy_config(**{"train.num_steps": 4, "train.checkpoint_every": 2,
                                   "train.log_every": 2})


if __name__ == "__main__":
    main()
