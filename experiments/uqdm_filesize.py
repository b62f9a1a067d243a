"""UQDM: real lossless file size vs the model's NELBO, and per-step rates vs per-step KL terms.

    python experiments/uqdm_filesize.py --params p.msgpack [--config_arg runlocal] [--crop 128] [--limit 6]
    python experiments/uqdm_filesize.py --workdir /tmp/uqdm

Held-out images: centre crops of Kodak (never used for training). NELBO = mean over --mc Monte-Carlo
samples of the training loss terms, both as trained (z_T ~ q(z_T | x) + its KL, the reference's
objective) and on the codec's path (z_T ~ N(0, I) at zero rate). Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

import numpy as np  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="")
    ap.add_argument("--params", default="")
    ap.add_argument("--config_arg", default="runlocal")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--mc", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "experiments" / "results" / "uqdm_filesize.json"))
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from gencomp_jax.codecs import bitstream
    from gencomp_jax.data.images import to_model
    from gencomp_jax.eval.loading import load_eval_set
    from uqdm_rd import load_codec

    codec = load_codec(args)
    model, params = codec.model, codec.params
    c = args.crop
    images = [im[(im.shape[0] - c) // 2:(im.shape[0] - c) // 2 + c, (im.shape[1] - c) // 2:(im.shape[1] - c) // 2 + c]
              for _, im in load_eval_set("kodak", limit=args.limit)]
    # NELBO terms: tiles of the crops, as the codec sees them
    tile = codec.tile
    tiles = np.concatenate([codec.layout(im.shape).to_tiles(codec.layout(im.shape).pad(im)) for im in images])
    x = to_model(tiles, grid=codec.grid)
    f = jax.jit(lambda p, k, src: model.apply(p, x, k, False, src), static_argnums=2)
    out = {}
    for src in ("posterior", "prior"):
        t = [f(params, jax.random.PRNGKey(s), src) for s in range(args.mc)]
        steps = np.mean([np.asarray(a["steps"]).sum(1) for a in t], 0) / np.log(2) / len(images)
        recon = np.mean([np.asarray(a["recon"]).sum() for a in t]) / np.log(2) / len(images)
        prior = np.mean([np.asarray(a["prior"]).sum() for a in t]) / np.log(2) / len(images)
        out[src] = {"per_step_bits": steps.tolist(), "recon_bits": float(recon), "prior_bits": float(prior),
                    "nelbo_bits": float(steps.sum() + recon + prior)}
    files = [codec.compress(im, seed=1000 + i) for i, im in enumerate(images)]
    for im, d in zip(images, files):
        assert np.array_equal(codec.decompress(d), im)
    seg_bits = np.mean([[8 * len(s) for s in bitstream.unpack(d)[1]] for d in files], 0)
    ideal = np.mean([codec.step_bits(im, seed=1000 + i) for i, im in enumerate(images)], 0)
    file_bits = float(np.mean([8 * len(d) for d in files]))
    dims = c * c * 3
    res = {"images": len(images), "crop": c, "tile": tile, "mc_samples": args.mc,
           "file_bits": file_bits, "file_bpd": file_bits / dims,
           "nelbo_bpd_trained_objective": out["posterior"]["nelbo_bits"] / dims,
           "nelbo_bpd_codec_path": out["prior"]["nelbo_bits"] / dims,
           "file_over_nelbo_trained_objective": file_bits / out["posterior"]["nelbo_bits"] - 1,
           "file_over_nelbo_codec_path": file_bits / out["prior"]["nelbo_bits"] - 1,
           "segment_payload_bits": seg_bits.tolist(), "segment_ideal_bits": ideal.tolist(),
           "kl_bits_codec_path": out["prior"]["per_step_bits"] + [out["prior"]["recon_bits"]],
           "kl_bits_trained_objective": out["posterior"]["per_step_bits"] + [out["posterior"]["recon_bits"]],
           "nelbo_terms": out}
    res["rate_over_kl_per_step"] = (np.array(ideal) / np.array(res["kl_bits_codec_path"]) - 1).tolist()
    print(json.dumps({k: v for k, v in res.items() if k != "nelbo_terms"}, indent=1))
    p = pathlib.Path(args.out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
