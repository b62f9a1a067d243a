r"""Evaluates a trained codec on a data set with real files (thin launcher; the work is in gencomp_jax.eval).

  python experiments/evaluate.py --workdir /tmp/hp --dataset kodak --out /tmp/hp/kodak.json \
      [--metrics psnr-rgb,ms-ssim,lpips-alex] [--realism] [--limit 4] [--plot /tmp/hp/rd.png] \
      [--option reconstruction=flow,denoise]

Writes the CompressAI-style results JSON, the per-image CSV beside it and, with --plot, an RD plot.
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir of the codec (config.json + checkpoints).")
flags.DEFINE_string("dataset", "kodak", "'kodak', 'skimage', 'tfds:NAME[:SPLIT]' or a folder of images.")
flags.DEFINE_string("out", None, "Results JSON to write (default: <workdir>/eval_<dataset>.json).")
flags.DEFINE_list("metrics", ["psnr-rgb", "ms-ssim", "lpips-alex"], "Per-image metrics.")
flags.DEFINE_bool("realism", False, "Also compute FID/KID (patch-based) over the data set.")
flags.DEFINE_string("realism_features", "inception", "Feature network for --realism.")
flags.DEFINE_string("inception_weights", None, "Path of the FID Inception weights file.")
flags.DEFINE_integer("realism_patch_size", None, "Patch size of --realism (default: the library's, 256; smaller "
                     "for small images, e.g. 32 for 64x64 crops; 0 = whole images).", lower_bound=0)
flags.DEFINE_integer("limit", None, "Evaluate only the first N images.")
flags.DEFINE_string("name", None, "Method name in the results (default: workdir name).")
flags.DEFINE_string("plot", None, "Also write an RD plot here.")
flags.DEFINE_multi_string("option", [], "NAME=V1,V2,...: a decode option of the codec to sweep (repeatable).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    import pathlib

    from gencomp_jax.eval import evaluate, loading, plot

    workdir = pathlib.Path(FLAGS.workdir)
    name = FLAGS.name or workdir.resolve().name
    out = FLAGS.out or str(workdir / f"eval_{pathlib.Path(FLAGS.dataset).name}.json")
    realism = None
    if FLAGS.realism:
        realism = {"features": FLAGS.realism_features}
        if FLAGS.inception_weights:
            realism["inception_weights"] = FLAGS.inception_weights
        if FLAGS.realism_patch_size is not None:
            realism["patch_size"] = FLAGS.realism_patch_size or None
    options = evaluate.parse_option_args(FLAGS.option)
    items = loading.load_eval_set(FLAGS.dataset, limit=FLAGS.limit)
    codec = loading.load_codec(workdir)
    res = evaluate.evaluate_codec(codec, items, name=name, description=f"{name} on {FLAGS.dataset}",
                                  metrics=FLAGS.metrics, realism=realism, options=options or None,
                                  out_json=out)
    print({k: v for k, v in res["results"].items()})
    print(f"wrote {out}")
    if FLAGS.plot:
        print(f"wrote {plot.plot_rd([res], FLAGS.plot)}")


if __name__ == "__main__":
    app.run(main)
