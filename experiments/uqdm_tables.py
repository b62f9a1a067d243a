"""UQDM quantized coding tables: rate cost and table-change rate of each grid, and decodes under perturbation.

    python experiments/uqdm_tables.py [--images 8] [--variants default,1_thread,fast_math] [--out F.json]

With the authors' uqdm-tiny weights (../shared/reference/uqdm-tiny, `model` weights) on the centre 64x64
crops of Kodak (tests/golden/make_uqdm_reference_golden.kodak_center_crops):
1. grid sweep: on the exact encoder path of each image, per step, the ideal bits of the coded symbols under
   the float (loc, scale) and under each grid (uqdm.table_grid with loc_bits, scale_bits), i.e. the rate
   cost of the grid in bits/dim; and the fraction of elements whose grid index moves when loc and scale
   are nudged by +-1 and +-4 ulps (codecs/perturb.nudge), with the implied probability that a 64x64 file
   has at least one changed table.
2. decodes with +-1 / +-4 ulps injected into every loc and scale (codecs/perturb.perturbed_uqdm), files
   with float tables (CODING_FLOAT) and quantized tables (CODING_GRID): same / detected / silent_wrong.
3. the same files decoded in fresh processes under the XLA settings of experiments/perturb_decode.py.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "golden"))
sys.path.insert(0, str(REPO / "experiments"))

import numpy as np  # noqa: E402

CHECKPOINT = REPO.parent / "shared" / "reference" / "uqdm-tiny"
GRIDS = ((2, 3), (3, 4), (4, 5), (5, 6))


def _codec(coding):
    from gencomp_jax import registry
    from gencomp_jax.eval import pretrained

    return registry.make_codec(*pretrained.load_uqdm_reference(CHECKPOINT), coding=coding)


def _crops(n):
    import make_uqdm_reference_golden as ref_golden

    return ref_golden.kodak_center_crops()[:n]


def step_inputs(codec, image, seed=None):
    """Per step of the encoder path: (loc, scale, width, y) at the coded elements (float loc/scale)."""
    seen = []
    original = codec._coding_params

    def grab(loc, scale, width):
        seen.append((np.asarray(loc), np.asarray(scale), np.float32(width)))
        return original(loc, scale, width)

    codec._coding_params = grab
    try:
        ctx = codec._context(image.shape, codec.seed if seed is None else seed, codec.full_meta(), image)
        z = codec._initial_state(ctx)
        ys = []
        for i in range(codec.T):
            _, z, _ = codec._encode_step(ctx, i, z, code=False)
            ys.append(np.asarray(z)[ctx.valid])
    finally:
        del codec._coding_params
    return [(loc[ctx.valid], scale[ctx.valid], w, y) for (loc, scale, w), y in zip(seen, ys)]


def grid_sweep(codec, crops):
    from gencomp_jax.channel import dq
    from gencomp_jax.codecs import perturb, uqdm

    rng = np.random.default_rng(0)
    dims = crops[0].size
    rows = {f"{lb},{sb}": {"bits": np.zeros(codec.T), "moved_1ulp": np.zeros(codec.T), "moved_4ulp": np.zeros(codec.T)}
            for lb, sb in GRIDS}
    float_bits, n_el = np.zeros(codec.T), 0
    for x in crops:
        for i, (loc, scale, w, y) in enumerate(step_inputs(codec, x)):
            float_bits[i] += float(np.sum(np.asarray(dq.dq_rate_proxy_bits(y, loc, scale, w, family=codec.family),
                                                     np.float64)))
            if i == 0:
                n_el += loc.size
            for lb, sb in GRIDS:
                r = rows[f"{lb},{sb}"]
                kt, ks = uqdm.table_grid(loc, scale, w, loc_bits=lb, scale_bits=sb)
                lq, sq = uqdm.grid_values(kt, ks, w, loc_bits=lb, scale_bits=sb)
                r["bits"][i] += float(np.sum(np.asarray(dq.dq_rate_proxy_bits(y, lq, sq, w, family=codec.family),
                                                        np.float64)))
                for u in (1, 4):
                    kt2, ks2 = uqdm.table_grid(perturb.nudge(loc, rng, u), perturb.nudge(scale, rng, u), w,
                                               loc_bits=lb, scale_bits=sb)
                    r[f"moved_{u}ulp"][i] += int(np.sum((kt2 != kt) | (ks2 != ks)))
    out = {"images": len(crops), "float_bpd_per_step": (float_bits / len(crops) / dims).tolist(), "grids": {}}
    for key, r in rows.items():
        extra = (r["bits"].sum() - float_bits.sum()) / len(crops) / dims
        g = {"bpd_per_step": (r["bits"] / len(crops) / dims).tolist(),
             "rate_cost_bpd": float(extra), "rate_cost_percent": float(100 * extra * len(crops) * dims / float_bits.sum())}
        for u in (1, 4):
            p = r[f"moved_{u}ulp"] / n_el  # per element, per step
            g[f"table_change_per_element_{u}ulp"] = p.tolist()
            g[f"p_file_64x64_changed_{u}ulp"] = float(1 - np.prod((1 - p) ** dims))
        out["grids"][key] = g
        print("grid loc_bits,scale_bits =", key, json.dumps(g), flush=True)
    return out


def injected(crops, ulps_list=(1, 4)):
    from gencomp_jax.codecs import perturb, uqdm

    out = {}
    for coding in uqdm.CODINGS:
        codec = _codec(coding)
        files = [codec.compress(x) for x in crops]
        for u in ulps_list:
            counts, el, ch = {"same": 0, "detected": 0, "other_error": 0, "silent_wrong": 0}, 0, 0
            for k, (x, d) in enumerate(zip(crops, files)):
                with perturb.perturbed_uqdm(codec, ulps=u, seed=k) as st:
                    counts[perturb.classify(codec, d, x)] += 1
                el, ch = el + st.elements, ch + st.changed
            out[f"coding{coding}_{u}ulp"] = {**counts, "tables_changed": ch, "elements": el}
            print(f"coding {coding} +-{u} ulp", json.dumps(out[f"coding{coding}_{u}ulp"]), flush=True)
    return out


def _child(workdir, n):
    from gencomp_jax.codecs import perturb, uqdm

    res = {}
    for coding in uqdm.CODINGS:
        codec = _codec(coding)
        counts = {"same": 0, "detected": 0, "other_error": 0, "silent_wrong": 0}
        for k in range(n):
            data = (pathlib.Path(workdir) / f"{coding}_{k}.gcz").read_bytes()
            counts[perturb.classify(codec, data, np.load(pathlib.Path(workdir) / f"{k}.npy"))] += 1
        res[f"coding{coding}"] = counts
    return res


def xla_variants(crops, variants):
    from gencomp_jax.codecs import uqdm
    from perturb_decode import VARIANTS

    workdir = tempfile.mkdtemp(prefix="uqdm_tables_")
    for coding in uqdm.CODINGS:
        codec = _codec(coding)
        for k, x in enumerate(crops):
            (pathlib.Path(workdir) / f"{coding}_{k}.gcz").write_bytes(codec.compress(x))
            np.save(pathlib.Path(workdir) / f"{k}.npy", x)
    out = {}
    for v in variants:
        env = {**os.environ, **VARIANTS[v]}
        r = subprocess.run([sys.executable, __file__, "--child", workdir, "--images", str(len(crops))],
                           capture_output=True, text=True, env=env)
        out[v] = ({"settings": VARIANTS[v], **json.loads(r.stdout.strip().splitlines()[-1])} if r.returncode == 0
                  else {"error": r.stderr[-2000:]})
        print(v, json.dumps(out[v]), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--variants", default="default,1_thread,fast_math,matmul_bf16")
    ap.add_argument("--parts", default="sweep,inject,xla")
    ap.add_argument("--out", default=str(REPO / "experiments" / "results" / "uqdm_tables.json"))
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.images)))
        return
    from gencomp_jax.codecs import uqdm

    crops = _crops(args.images)
    res = {"checkpoint": str(CHECKPOINT), "weights": "model", "crops": "Kodak centre 64x64",
           "chosen_grid": {"loc_bits": uqdm.LOC_GRID_BITS, "scale_bits": uqdm.SCALE_GRID_BITS}}
    parts = args.parts.split(",")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if "sweep" in parts:
        res["grid_sweep"] = grid_sweep(_codec(uqdm.CODING_GRID), crops)
        out.write_text(json.dumps(res, indent=1))
    if "inject" in parts:
        res["injected"] = injected(crops)
        out.write_text(json.dumps(res, indent=1))
    if "xla" in parts:
        res["xla_variants"] = xla_variants(crops, args.variants.split(","))
        out.write_text(json.dumps(res, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
