r"""Rate sweep: one training run per value of a config key, then one RD curve.

  # run locally, one after another, then evaluate on Kodak with real files and plot
  python experiments/sweep.py --config configs/hyperprior.py:runlocal --workdir runs/sweep \
      --key model.lmbda --values 0.0035,0.013,0.05
  # emit one command per run (any scheduler), or a SLURM job array, instead of running
  python experiments/sweep.py ... --emit commands      # -> runs/sweep/commands.txt
  python experiments/sweep.py ... --emit slurm         # -> runs/sweep/sweep.sbatch (sbatch it)
  # when the jobs are done: evaluate + plot the existing workdirs
  python experiments/sweep.py ... --emit evaluate

Each run's workdir is <workdir>/<key>=<value> and is self-describing (config.json beside its
checkpoints). Extra `--config.x=y` overrides are applied to every run and copied into emitted commands.
"""

import pathlib
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from gencomp_jax.config_utils import parse_value

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/hyperprior.py:runlocal.",
                                lock_config=False)
flags.DEFINE_string("workdir", None, "Sweep root; run i goes to <workdir>/<key>=<value>.")
flags.DEFINE_string("key", "model.lmbda", "Dotted config key to sweep (e.g. model.lmbda).")
flags.DEFINE_list("values", None, "Values of --key, comma-separated.")
flags.DEFINE_enum("emit", "run", ["run", "commands", "slurm", "evaluate"],
                  "run: train then evaluate locally; commands/slurm: write launch files only; "
                  "evaluate: evaluate + plot existing workdirs.")
flags.DEFINE_bool("evaluate", True, "After local runs, evaluate with real files and plot (codecs only).")
flags.DEFINE_string("dataset", "kodak", "Evaluation set (kodak or a folder).")
flags.DEFINE_integer("limit", None, "Evaluate on the first N images only.")
flags.DEFINE_string("out", None, "Results JSON (default <workdir>/rd.json; plot beside it as rd.png).")
flags.DEFINE_list("metrics", ["psnr-rgb", "ms-ssim"], "Per-image metrics (e.g. psnr-rgb,ms-ssim,lpips-alex).")
flags.DEFINE_string("reference", None, "Reference curve to overlay in the plot (e.g. balle2018).")
flags.DEFINE_string("python", sys.executable, "Interpreter in emitted commands.")
flags.DEFINE_string("slurm_options", "--gres=gpu:1 --cpus-per-task=8 --time=24:00:00",
                    "#SBATCH options for --emit slurm (space separated).")
flags.mark_flags_as_required(["config", "workdir", "values"])
FLAGS = flags.FLAGS

TRAIN = pathlib.Path(__file__).resolve().parent / "train.py"


def set_key(config, key: str, value):
    node = config
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    if last not in node:
        raise ValueError(f"--key {key!r}: the config has no such key.")
    old = node[last]
    if isinstance(old, float) and isinstance(value, int):
        value = float(value)
    node[last] = value


def run_dirs(root: pathlib.Path, key: str, values) -> list[pathlib.Path]:
    return [root / f"{key}={v}" for v in values]


def config_overrides(argv) -> list[str]:
    """The `--config.x=y` arguments given to this script (forwarded to every run)."""
    return [a for a in argv[1:] if a.startswith("--config.")]


def _config_arg_with_preset(argv) -> str:
    for a in argv[1:]:
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    i = argv.index("--config")
    return argv[i + 1]


def main(argv):
    root = pathlib.Path(FLAGS.workdir)
    values = [parse_value(v) for v in FLAGS.values]
    dirs = run_dirs(root, FLAGS.key, FLAGS.values)
    full_argv = sys.argv
    if FLAGS.emit in ("commands", "slurm"):
        root.mkdir(parents=True, exist_ok=True)
        config_arg = _config_arg_with_preset(full_argv)
        cmds = [shlex.join([FLAGS.python, str(TRAIN), f"--config={config_arg}", f"--workdir={wd}",
                            *config_overrides(full_argv), f"--config.{FLAGS.key}={v}"])
                for v, wd in zip(FLAGS.values, dirs)]
        eval_cmd = shlex.join([FLAGS.python, str(pathlib.Path(__file__).resolve()), f"--config={config_arg}",
                               f"--workdir={root}", f"--key={FLAGS.key}", f"--values={','.join(FLAGS.values)}",
                               *config_overrides(full_argv), "--emit=evaluate"])
        if FLAGS.emit == "commands":
            path = root / "commands.txt"
            path.write_text("\n".join(cmds) + "\n")
        else:
            path = root / "sweep.sbatch"
            opts = "\n".join(f"#SBATCH {o}" for o in FLAGS.slurm_options.split())
            body = "\n".join(f"  {shlex.quote(c)}" for c in cmds)
            path.write_text(
                "#!/bin/bash\n"
                f"#SBATCH --job-name=gencomp-sweep\n#SBATCH --array=0-{len(cmds) - 1}\n{opts}\n"
                f"#SBATCH --output={root}/slurm-%A_%a.out\n"
                "# One run per array task; each resumes from its own latest checkpoint if re-queued.\n"
                f"CMDS=(\n{body}\n)\n"
                'eval "${CMDS[$SLURM_ARRAY_TASK_ID]}"\n')
        print(f"Wrote {path} ({len(cmds)} runs). After they finish, evaluate and plot with:\n  {eval_cmd}")
        return

    if FLAGS.emit == "run":
        from gencomp_jax.train import train_and_evaluate

        for v, wd in zip(values, dirs):
            config = FLAGS.config.copy_and_resolve_references()
            set_key(config, FLAGS.key, v)
            print(f"== training {FLAGS.key}={v} in {wd}")
            train_and_evaluate(config, wd)
        if not FLAGS.evaluate:
            return

    from gencomp_jax import registry
    if not registry.get(FLAGS.config.method).is_codec:
        print(f"Method {FLAGS.config.method!r} is not a codec: skipping the RD evaluation.")
        return
    from gencomp_jax.eval.sweep import evaluate_sweep

    out = pathlib.Path(FLAGS.out) if FLAGS.out else root / "rd.json"
    merged = evaluate_sweep([str(d) for d in dirs], out_json=out, name=FLAGS.config.method,
                            dataset=FLAGS.dataset, limit=FLAGS.limit, plot_path=out.with_suffix(".png"),
                            reference=FLAGS.reference, metrics=FLAGS.metrics)
    from gencomp_jax.eval.results import format_table

    print(format_table([(d.name, merged["runs"][str(d)]) for d in dirs]))
    print(f"\nRD curve (all runs): {out}\nPlot: {out.with_suffix('.png')}")
    for d in dirs:
        run_json = out.with_name(f"{out.stem}_{d.resolve().name}.json")
        print(f"{d.name}: checkpoints in {d}, results {run_json}, per image {run_json.with_name(run_json.stem + '_per_image.csv')}")


if __name__ == "__main__":
    app.run(main)
