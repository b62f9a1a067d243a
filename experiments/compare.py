r"""Every method on identical data with real files (thin launcher; the work is in gencomp_jax/eval/compare.py).

  # train (or load) every method, evaluate every point, write results/*.json, table.md, rd.png
  python experiments/compare.py --config configs/compare.py:runlocal --workdir runs/compare
  # a subset, or other settings
  python experiments/compare.py --config configs/compare.py:runlocal --config.only=hyperprior,jpeg,webp ...
  # GPU / cluster: one SLURM job array per method (experiments/sweep.py), then the evaluation job
  python experiments/compare.py --config configs/compare.py:imagenet64 --workdir /shared/compare --emit slurm
  # table.md and rd.png again from the results files (e.g. other targets: --config.eval.targets.kid=0.5)
  python experiments/compare.py --config configs/compare.py:runlocal --workdir runs/compare --emit report
  # when the jobs are done (or to re-score existing runs): evaluate only
  python experiments/compare.py --config configs/compare.py:imagenet64 --workdir /shared/compare --emit evaluate
"""

import sys

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "configs/compare.py:<tiny|runlocal|imagenet64>.", lock_config=False)
flags.DEFINE_string("workdir", None, "Output folder (training runs, files, results, table.md, rd.png).")
flags.DEFINE_enum("emit", "run", ["run", "evaluate", "report", "commands", "slurm"],
                  "run: train then evaluate here; evaluate: evaluate existing runs; report: rewrite table.md and "
                  "rd.png from the results files; commands / slurm: write launch files (experiments/sweep.py per "
                  "method) and <workdir>/submit.sh instead of training.")
flags.DEFINE_string("python", sys.executable, "Interpreter in emitted commands.")
flags.DEFINE_string("slurm_options", None, "#SBATCH options for --emit slurm (space separated).")
flags.DEFINE_bool("progress", True, "Progress bars while evaluating.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _config_arg(argv) -> str:
    for i, a in enumerate(argv[1:], 1):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config":
            return argv[i + 1]
    raise app.UsageError("--config is required")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import logging as pylogging

    pylogging.getLogger("absl").setLevel(pylogging.WARNING)   # orbax chatter (as experiments/train.py)
    from gencomp_jax.eval import compare

    if FLAGS.emit in ("commands", "slurm"):
        compare.emit(FLAGS.config, FLAGS.workdir, _config_arg(sys.argv), mode=FLAGS.emit, python=FLAGS.python,
                     slurm_options=FLAGS.slurm_options)
        return
    if FLAGS.emit == "report":
        compare.write_report(FLAGS.config, FLAGS.workdir)
        print(open(f"{FLAGS.workdir}/table.md").read())
        return
    summary = compare.run_compare(FLAGS.config, FLAGS.workdir, train=FLAGS.emit == "run", progress=FLAGS.progress)
    print(f"\nWrote {FLAGS.workdir}/table.md, {FLAGS.workdir}/rd.png and {len(summary['curves'])} results JSON "
          f"files ({FLAGS.workdir}/results); {summary['seconds']['total']:.0f} s in all.")


if __name__ == "__main__":
    app.run(main)
