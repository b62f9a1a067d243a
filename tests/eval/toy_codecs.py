"""Tiny deterministic codecs for testing the evaluation path and the CLI (not test files themselves).

BitplaneCodec, registered as "bitplane" (container codec id 241): progressive. Segment k holds
bit-plane 7-k of the image (zlib); decompress(steps=k) uses the first k planes and fills the missing
bits with their midpoint. rate_points() = one point per number of planes, truncate() =
bitstream.prefix: a textbook progressive code with known sizes. `bitplane_workdir` writes a training
workdir for it (config.json + checkpoint, the way training does), so `gencomp --checkpoint` loads it
for real. OnePointCodec: the same code as a single-rate codec (no options, no truncate).
"""

import zlib

import ml_collections
import numpy as np

from gencomp_jax.codecs import base, bitstream

HASH = b"toycodec"
CODEC_ID = 241


class BitplaneCodec:
    name = "bitplane"
    decode_options = (base.STEPS_OPTION,)

    def __init__(self, planes: int = 3, fingerprint: bytes = HASH):
        self.planes = planes
        self.fingerprint = fingerprint

    def _segments(self, image):
        return [zlib.compress(np.packbits((image >> (7 - k)) & 1).tobytes(), 9) for k in range(self.planes)]

    def compress(self, image):
        header = bitstream.Header(codec=self.name, params_hash=self.fingerprint, image_shape=image.shape)
        return bitstream.pack(header, self._segments(image))

    def decompress(self, data, *, steps=None):
        header, segs = bitstream.unpack(data, codec=self.name, params_hash=self.fingerprint, allow_partial=True)
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

    def truncate(self, data, *, steps=None):
        return bitstream.prefix(data, bitstream.peek(data).num_segments if steps is None else steps)


class OnePointCodec(BitplaneCodec):
    """The same code as a single-rate codec: no decode options, one RD point, no truncate."""

    decode_options = ()

    def __getattribute__(self, item):
        if item == "truncate":
            raise AttributeError(item)
        return super().__getattribute__(item)

    def decompress(self, data):
        return super().decompress(data)

    def estimate_bits(self, image):
        return super().estimate_bits(image)

    def rate_points(self):
        return [{}]


def _no_training(config):
    raise NotImplementedError("the bit-plane test codec has nothing to train")


def make_bitplane_codec(config, params):
    return BitplaneCodec(planes=int(config.model.planes), fingerprint=bitstream.params_fingerprint(params))


base.register("bitplane", method=_no_training, codec=make_bitplane_codec, codec_id=CODEC_ID,
              decode_options=BitplaneCodec.decode_options)


def save_workdir(workdir, config, params):
    """Writes a training workdir (config.json + one checkpoint holding `params`) with the training
    package's own checkpoint code, so that `loading.load_codec(workdir)` reads it like a trained one."""
    from gencomp_jax.train import checkpoint

    checkpoint.save_config(config, workdir)
    ckpt = checkpoint.Checkpointer(workdir)
    try:
        ckpt.save(1, {"params": params, "ema_params": params}, {})
    finally:
        ckpt.close()


def bitplane_workdir(workdir, *, planes: int = 3, seed: int = 0):
    """A workdir of the bit-plane codec; returns the codec `load_codec(workdir)` must give."""
    config = ml_collections.ConfigDict({"method": "bitplane", "model": {"planes": planes}})
    params = {"params": {"seed": np.full((2,), seed, np.float32)}}
    save_workdir(workdir, config, params)
    return make_bitplane_codec(config, params)


def tiny_hyperprior_workdir(workdir, *, seed: int = 0, n: int = 8, m: int = 12):
    """A training workdir (config.json + one checkpoint) of a randomly initialised tiny hyperprior.

    Written with the training package's own checkpoint code, so `load_codec(workdir)` reads it like a
    trained one. Returns (config, params).
    """
    import jax
    import jax.numpy as jnp

    from configs import hyperprior as hp_config
    from gencomp_jax import registry

    config = hp_config.get_config("runlocal")
    config.model.N, config.model.M = n, m
    method = registry.make_method(config)
    params = jax.jit(method.init)(jax.random.PRNGKey(seed), {"image": jnp.zeros((1, 64, 64, 3), jnp.float32)})
    params = jax.tree.map(np.asarray, params)
    save_workdir(workdir, config, params)
    return config, params
