"""Channel simulation with shared randomness: dithered quantization (dq), Poisson functional
representation and chunked Gaussian simulation (pfr), Zipf index codes (index_coding)."""

from gencomp_jax.channel.randomness import SharedRandomness  # noqa: F401
