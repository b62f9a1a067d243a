"""One-off script that wrote tests/golden/coder_golden.npz with the two entropy coders of commit 44b2816.

Before the merge, `gencomp_jax/entropy/coder.py` (integer tables, escape lengths n < 66, escape chunks
escape by escape) and `gencomp_jax/entropy/fast.py` (streams of segments for DQ, n < 64, chunks
ordered chunk 0 of every escape first) each had their own escape code. Files written with both exist
(hyperprior: encode_indexed; UQDM: DQ streams and encode_per_symbol), so the merged coder must write
and read the same bytes. This script takes the two modules exactly as they were at 44b2816 (read with
`git show`, imported under other names) and codes random inputs full of escapes: values at every
escape bit length 0..64 on both sides of the range, +-2^63 ends, int64 offsets near both ends,
several segments with and without escapes. tests/entropy/test_coder.py re-encodes the stored inputs
with today's coder, compares the bytes, and decodes the stored bytes.

Run from the repository root (needs the git history):  .venv/bin/python tests/golden/make_coder_golden.py
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMMIT = "44b2816"
OUT = HERE / "coder_golden.npz"
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def old_modules():
    """(coder, fast) as they were at COMMIT; fast's import of coder is pointed at the old coder."""
    tmp = pathlib.Path(tempfile.mkdtemp())
    mods = {}
    for name in ("coder", "fast"):
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{COMMIT}:gencomp_jax/entropy/{name}.py"],
                             check=True, capture_output=True, text=True).stdout
        src = src.replace("from gencomp_jax.entropy.coder import CodingError", "from old_coder import CodingError")
        (tmp / f"old_{name}.py").write_text(src)
    sys.path.insert(0, str(tmp))
    for name in ("coder", "fast"):
        spec = importlib.util.spec_from_file_location(f"old_{name}", tmp / f"old_{name}.py")
        mods[name] = importlib.util.module_from_spec(spec)
        sys.modules[f"old_{name}"] = mods[name]
        spec.loader.exec_module(mods[name])
    return mods["coder"], mods["fast"]


def escapes_around(rng, lo, hi, n):
    """n int64 values outside [lo, hi): distance 2^b - 1 + r for b in 0..64, clipped to int64."""
    out = []
    for _ in range(n):
        b = int(rng.integers(0, 65))
        d = (1 << b) - 1 + int(rng.integers(0, 3))
        v = lo - 1 - d if rng.random() < 0.5 else hi + d
        out.append(min(max(v, I64_MIN), I64_MAX))
    return np.array(out, np.int64)


def main():
    old_coder, old_fast = old_modules()
    rng = np.random.default_rng(20261202)
    g = {}

    # encode_indexed: 5 tables of varying length (offsets near both int64 ends too)
    m, k, n = 5, 12, 3000
    lengths = np.array([12, 3, 7, 12, 2])
    tables = np.zeros((m, k), np.int64)
    for j, L in enumerate(lengths):
        tables[j, :L] = old_coder.quantize_pmf(rng.random(L) + 0.05)
    offsets = np.array([-5, 0, I64_MIN, I64_MAX - 11, 1000], np.int64)
    ti = rng.integers(0, m, n)
    vals = offsets[ti] + rng.integers(0, lengths[ti] - 1)
    pos = rng.choice(n, 600, replace=False)
    for i in pos:
        lo, hi = int(offsets[ti[i]]), int(offsets[ti[i]]) + int(lengths[ti[i]]) - 1
        vals[i] = escapes_around(rng, lo, hi, 1)[0] if not (lo == I64_MIN and rng.random() < 0.5) else I64_MAX
    vals[:4] = [I64_MIN, I64_MAX, I64_MIN, I64_MAX]
    ti[:4] = [2, 2, 3, 0]
    g.update(ix_values=vals, ix_tables=tables, ix_offsets=offsets, ix_index=ti, ix_lengths=lengths,
             ix_bytes=np.frombuffer(old_coder.encode_indexed(vals, tables, offsets, ti, lengths=lengths), np.uint8))

    # encode_per_symbol: own table per symbol, int64 offsets anywhere
    n, k = 1000, 6
    pmfs = old_coder.quantize_pmf(rng.random((n, k)) ** 2 + 1e-3)
    offs = rng.integers(-10, 10, n)
    offs[::25] = rng.integers(I64_MIN, I64_MAX, len(offs[::25]), dtype=np.int64)
    offs[7], offs[8] = I64_MIN, I64_MAX - k
    vals = offs + rng.integers(0, k - 1, n)
    for i in rng.choice(n, 200, replace=False):
        vals[i] = escapes_around(rng, int(offs[i]), int(offs[i]) + k - 1, 1)[0]
    vals[7], vals[8] = I64_MAX, I64_MIN
    g.update(ps_values=vals, ps_pmfs=pmfs, ps_offsets=offs,
             ps_bytes=np.frombuffer(old_coder.encode_per_symbol(vals, pmfs, offs), np.uint8))

    # streams (DQ): quantized Gaussian and categorical segments, escapes of up to 61 bits
    enc = old_fast.StreamEncoder()
    segs = []
    for i, h in enumerate([4, 64, 2, 1 << 10]):
        n = 300
        mean = rng.uniform(-0.5, 0.5, n)
        std = np.exp(rng.uniform(-2, np.log(h / 6), n))
        s = np.round(mean + std * rng.standard_normal(n)).astype(np.int64)
        if i != 1:  # one segment without escapes
            sel = rng.choice(n, 40, replace=False)
            s[sel] = [int(v) if abs(int(v)) < 2**61 else int(np.sign(v)) * (2**61 - 1)
                      for v in escapes_around(rng, -h + 1, h, 40)]
        enc.quantized_gaussian(s, mean, std, half_width=h)
        segs.append(("qg", h, s, np.stack([mean, std], 1)))
    for i, (kk, off) in enumerate([(9, -4), (33, -16), (17, 0)]):
        n = 200
        probs = (rng.random((n, kk)) ** 3 + 1e-4).astype(np.float32 if i % 2 else np.float64)
        s = off + rng.integers(0, kk - 1, n)
        sel = rng.choice(n, 50, replace=False)
        s[sel] = [int(v) if abs(int(v)) < 2**61 else int(np.sign(v)) * (2**61 - 1)
                  for v in escapes_around(rng, off, off + kk - 1, 50)]
        enc.categorical(s, probs, offset=off)
        segs.append(("cat", off, s, probs))  # float32 or float64, as coded
    g["st_bytes"] = np.frombuffer(enc.finish(), np.uint8)
    for i, (kind, arg, s, model) in enumerate(segs):
        g[f"st{i}_{kind}"] = np.array([arg], np.int64)
        g[f"st{i}_symbols"] = s
        g[f"st{i}_model"] = model
    np.savez_compressed(OUT, **g)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): indexed {len(g['ix_bytes'])} B, per-symbol "
          f"{len(g['ps_bytes'])} B, stream {len(g['st_bytes'])} B")


if __name__ == "__main__":
    main()
