"""Classical image codecs with no network, as codec-like objects for the one evaluation path.

    codec = PillowCodec("jpeg", quality=75)
    data = codec.compress(image)          # the bytes of a real .jpg file (Pillow / libjpeg)
    rec = codec.decompress(data)          # uint8 [H, W, 3]

`gencomp_jax.eval.evaluate.evaluate_codec` runs them like any codec (files written, read back, bpp from their
bytes). They write plain JPEG / WebP files, not .gcz containers, so they are NOT registered in the container's
codec table (codecs/base.register): `gencomp decompress` cannot read them, Pillow (or any viewer) can.

estimate_bits(image) is the size of the file itself (a classical codec has no model likelihood): bpp_est equals
bpp for these rows. Baselines of generative-compression papers (the UQDM repository's `eval/*.yml`, HiFiC) are
the same libjpeg / libwebp encoders at several qualities, 4:2:0 chroma subsampling (Pillow's default).
"""

from __future__ import annotations

import io

import numpy as np

from gencomp_jax.data import images as images_lib

FORMATS = {"jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}


class PillowCodec:
    """A JPEG or WebP encoder at one quality (1..100), with the Codec protocol's methods (codecs/base.py)."""

    decode_options: tuple = ()

    def __init__(self, fmt: str, *, quality: int):
        fmt = str(fmt).lower()
        if fmt not in FORMATS:
            raise ValueError(f"classical codec format {fmt!r}: use one of {sorted(FORMATS)}")
        quality = int(quality)
        if not 1 <= quality <= 100:
            raise ValueError(f"{fmt} quality must be in 1..100, got {quality}")
        from PIL import features

        if fmt == "webp" and not features.check("webp"):
            raise RuntimeError("This Pillow was built without WebP support; install a Pillow wheel with libwebp "
                               "(the PyPI wheels have it) or drop 'webp' from the comparison.")
        self.name, self.quality = fmt, quality
        self.pillow_format, self.suffix = FORMATS[fmt]

    def compress(self, image) -> bytes:
        """uint8 [H, W, 3] -> the bytes of a .jpg / .webp file."""
        from PIL import Image

        image = images_lib.check_image(image)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format=self.pillow_format, quality=self.quality)
        return buf.getvalue()

    def decompress(self, data: bytes, **options) -> np.ndarray:
        if options:
            raise ValueError(f"the {self.name} codec has no decode options, got {sorted(options)}")
        from PIL import Image

        with Image.open(io.BytesIO(bytes(data))) as im:
            if im.format != self.pillow_format:
                raise ValueError(f"not a {self.pillow_format} file (Pillow reads it as {im.format})")
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))

    def estimate_bits(self, image, **options) -> float:
        """Bits of the file itself: a classical codec has no model estimate."""
        return 8.0 * len(self.compress(image))

    def rate_points(self) -> list[dict]:
        return [{}]
