"""Golden chunked-PFR codes (tests/golden/pfr_golden_format2.npz), written by the code of 7828c4d, whose
candidates came from JAX's threefry2x32 primitive: three channels (Renyi default, max_chunk_bits 12, DiffC's
2-bit rule), their means, the encoder's samples and the serialised codes.  The test decodes the codes with
today's code and must get the samples bit for bit, and re-encode the means to the same bytes.

    PYTHONPATH=. python tests/golden/make_pfr_golden.py tests/golden/pfr_golden_format2.npz
"""

import math
import sys

import numpy as np

from gencomp_jax.channel import index_coding, pfr
from gencomp_jax.channel.randomness import SharedRandomness

CASES = [(2**40 + 3, 0, 257, 6.3, {}), (7, 5, 1000, 30.0, dict(max_chunk_bits=12)),
         (99, 2, 600, 20.0, dict(padding_bits=2))]  # (seed, step, dims, KL bits, plan settings)


def main(path):
    rng = np.random.default_rng(12)
    out = {}
    for n, (seed, step, dim, kl, kw) in enumerate(CASES):
        mu = rng.normal(0, 1, dim).astype(np.float32)
        mu *= math.sqrt(2 * kl * math.log(2)) / np.linalg.norm(mu)
        sample, code = pfr.gaussian_channel_encode(mu, 0.0, 1.0, randomness=SharedRandomness(seed), step=step, **kw)
        out[f"mu{n}"], out[f"sample{n}"] = mu, np.asarray(sample)
        out[f"bytes{n}"] = np.frombuffer(index_coding.encode_gaussian_codes([code], [dim], **kw), np.uint8)
    np.savez(path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
