r"""Trains any method: `python experiments/train.py --config configs/hyperprior.py:runlocal --workdir runs/hp`.

Resumes automatically from the latest checkpoint in --workdir. Config values can be overridden with
`--config.model.lmbda=0.01`. Multi-host (one process per host / GPU node / TPU VM):

  # explicit
  python experiments/train.py --config ... --workdir ... \
      --coordinator_address=host0:1234 --num_processes=2 --process_id=0      # (1 on the other host)
  # SLURM / Open MPI / TPU pod: detected from the environment (--distributed=auto, the default);
  # --distributed=on always calls jax.distributed.initialize() and lets JAX detect the cluster.
"""

import json
import logging as pylogging

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/hyperprior.py:runlocal.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for config.json, checkpoints, metrics (resumed if present).")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "auto: start jax.distributed when flags/env (SLURM, Open MPI, TPU pod, JAX_COORDINATOR_ADDRESS) "
                  "say this is one of several processes; on: always; off: never.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
flags.DEFINE_list("local_device_ids", None, "Devices this process uses (e.g. one process per GPU: 0).")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from gencomp_jax.train import distributed

    distributed.initialize(
        mode=FLAGS.distributed, coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
        local_device_ids=[int(i) for i in FLAGS.local_device_ids] if FLAGS.local_device_ids else None)
    import jax

    from gencomp_jax.train import train_and_evaluate

    if jax.process_index() == 0:
        logging.set_verbosity(logging.INFO)
    else:
        logging.set_verbosity(logging.WARNING)
    pylogging.getLogger("absl").setLevel(pylogging.WARNING)  # orbax chatter
    pylogging.getLogger("gencomp_jax").setLevel(pylogging.INFO)
    logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
    final = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if jax.process_index() == 0:
        print(json.dumps({"workdir": FLAGS.workdir, **final}, indent=1, default=float))


if __name__ == "__main__":
    app.run(main)
