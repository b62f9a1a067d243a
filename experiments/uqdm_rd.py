"""UQDM progressive RD curve: sweep tau (number of received steps) for the three reconstructions.

    python experiments/uqdm_rd.py --workdir /tmp/uqdm                      # a training workdir
    python experiments/uqdm_rd.py --params p.msgpack --config_arg runlocal  # or raw flax params
        [--dataset kodak] [--limit 4] [--crop 64] [--out_dir experiments/results/uqdm_rd]

One compressed file per image; each rate point decodes a truncated copy of it (eval library:
rate_points + truncate, bpp from the real prefix bytes). Writes
  <out_dir>/uqdm_rd.json      {"curves": {"denoise"|"ancestral"|"flow": {"bpp", "psnr-rgb", "steps"}},
                              "lossless_bpp", "nelbo_bpp_est", ...} and one eval-library results
                              file per reconstruction (<out_dir>/uqdm-<recon>.json)
  <out_dir>/uqdm_rd.png       bpp vs PSNR, one line per reconstruction (eval.plot.plot_rd)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from gencomp_jax.config_utils import load_config  # noqa: E402


def _config(arg):
    return load_config(f"uqdm:{arg}")


class _Points:
    """The codec with rate points restricted to one reconstruction and lossy steps (0..T)."""

    def __init__(self, codec, reconstruction):
        self._codec, self._r = codec, reconstruction
        self.name = codec.name

    def rate_points(self):
        return [p for p in self._codec.rate_points(reconstruction=(self._r,)) if p["steps"] <= self._codec.T]

    def __getattr__(self, item):
        return getattr(self._codec, item)


def load_codec(args):
    from gencomp_jax.codecs import uqdm as C

    if args.workdir:
        from gencomp_jax.eval.loading import load_codec as load
        return load(args.workdir)
    cfg = _config(args.config_arg)
    return C.make_codec(cfg, C.initial_params(cfg, params_file=args.params))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="")
    ap.add_argument("--params", default="")
    ap.add_argument("--config_arg", default="runlocal")
    ap.add_argument("--dataset", default="kodak")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--crop", type=int, default=64, help="centre crop size (0 = full images)")
    ap.add_argument("--out_dir", default=str(REPO / "experiments" / "results" / "uqdm_rd"))
    args = ap.parse_args(argv)

    from gencomp_jax.eval.evaluate import evaluate_codec
    from gencomp_jax.eval.loading import load_eval_set
    from gencomp_jax.eval.plot import plot_rd

    codec = load_codec(args)
    images = load_eval_set(args.dataset, limit=args.limit)
    if args.crop:
        c = args.crop
        images = [(n, im[(im.shape[0] - c) // 2:(im.shape[0] - c) // 2 + c,
                         (im.shape[1] - c) // 2:(im.shape[1] - c) // 2 + c]) for n, im in images]
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = ("psnr-rgb", "ms-ssim") if min(im.shape[0] for _, im in images) >= 161 else ("psnr-rgb",)
    curves, results = {}, []
    for r in ("denoise", "ancestral", "flow"):
        res = evaluate_codec(_Points(codec, r), images, name=f"uqdm-{r}", metrics=metrics,
                             description=f"UQDM T={codec.T}, {r} reconstruction, tau sweep",
                             out_json=out / f"uqdm-{r}.json", progress=False)
        res.pop("per_image", None)
        results.append(res)
        curves[r] = {"steps": [p["steps"] for p in res["rate_points"]], **res["results"]}
    sizes = [len(codec.compress(im)) * 8 / (im.shape[0] * im.shape[1]) for _, im in images]
    est = [codec.estimate_bits(im) / (im.shape[0] * im.shape[1]) for _, im in images]
    summary = {"dataset": args.dataset, "num_images": len(images), "crop": args.crop, "T": codec.T,
               "curves": curves, "lossless_bpp": float(np.mean(sizes)), "nelbo_bpp_est": float(np.mean(est))}
    (out / "uqdm_rd.json").write_text(json.dumps(summary, indent=2))
    plot_rd(results, out / "uqdm_rd.png", metrics=["psnr-rgb"],
            title=f"UQDM progressive ({args.dataset}, {len(images)} images)")
    for r, cv in curves.items():
        print(r, "bpp", np.round(cv["bpp"], 3).tolist(), "psnr", np.round(cv["psnr-rgb"], 2).tolist())
    print("lossless bpp", summary["lossless_bpp"], "(one-sample NELBO estimate", summary["nelbo_bpp_est"], ")")
    print("wrote", out / "uqdm_rd.json", out / "uqdm_rd.png")


if __name__ == "__main__":
    main()
