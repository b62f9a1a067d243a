"""Tiny deterministic codecs for testing the evaluation path (not test files themselves).

BitplaneCodec: progressive. Segment k holds bit-plane 7-k of the image (zlib); decompress(steps=k)
uses the first k planes and fills the missing bits with their midpoint. rate_points() = one point
per number of planes, truncate() = bitstream.prefix: a textbook progressive code with known sizes.
"""

import zlib

import numpy as np

from gencomp_jax.codecs import bitstream

HASH = b"toycodec"


class BitplaneCodec:
    name = "hyperprior"  # any registered codec id; this is a test double

    def __init__(self, planes: int = 3):
        self.planes = planes

    def _segments(self, image):
        return [zlib.compress(np.packbits((image >> (7 - k)) & 1).tobytes(), 9) for k in range(self.planes)]

    def compress(self, image):
        header = bitstream.Header(codec=self.name, params_hash=HASH, image_shape=image.shape)
        return bitstream.pack(header, self._segments(image))

    def decompress(self, data, *, steps=None):
        header, segs = bitstream.unpack(data, codec=self.name, params_hash=HASH, allow_partial=True)
        steps = len(segs) if steps is None else steps
        if steps > len(segs):
            raise ValueError(f"file holds {len(segs)} steps, {steps} requested")
        shape = header.image_shape
        out = np.zeros(shape, np.uint8)
        n = int(np.prod(shape))
        for k in range(steps):
            plane = np.unpackbits(np.frombuffer(zlib.decompress(segs[k]), np.uint8))[:n].reshape(shape)
            out |= (plane << (7 - k)).astype(np.uint8)
        if steps < 8:
            out |= np.uint8(1 << (7 - steps))  # midpoint of the missing bits
        return out

    def estimate_bits(self, image, *, steps=None):
        segs = self._segments(image)
        return 8.0 * sum(len(s) for s in segs[: (self.planes if steps is None else steps)])

    def rate_points(self):
        return [{"steps": k} for k in range(1, self.planes + 1)]

    def truncate(self, data, *, steps):
        return bitstream.prefix(data, steps)


class OnePointCodec(BitplaneCodec):
    """The same code, without the optional rate_points/truncate API: one RD point, whole file."""

    def __getattribute__(self, item):
        if item in ("rate_points", "truncate"):
            raise AttributeError(item)
        return super().__getattribute__(item)


def tiny_hyperprior_workdir(workdir, *, seed: int = 0, n: int = 8, m: int = 12):
    """A training workdir (config.json + one checkpoint) of a randomly initialised tiny hyperprior.

    Written with the training package's own checkpoint code, so `load_codec(workdir)` reads it like a
    trained one. Returns (config, params).
    """
    import jax
    import jax.numpy as jnp

    from configs import hyperprior as hp_config
    from gencomp_jax import registry
    from gencomp_jax.train import checkpoint

    config = hp_config.get_config("runlocal")
    config.model.N, config.model.M = n, m
    method = registry.make_method(config)
    params = jax.jit(method.init)(jax.random.PRNGKey(seed), {"image": jnp.zeros((1, 64, 64, 3), jnp.float32)})
    params = jax.tree.map(np.asarray, params)
    checkpoint.save_config(config, workdir)
    ckpt = checkpoint.Checkpointer(workdir)
    try:
        ckpt.save(1, {"params": params, "ema_params": params}, {})
    finally:
        ckpt.close()
    return config, params
