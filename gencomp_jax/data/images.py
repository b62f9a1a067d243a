"""Reading, writing and padding 8-bit RGB images (uint8 [H, W, 3] at every boundary).

Conversions done by `read_image` (documented, never silent crashes later):

- grayscale (L, 1-bit) -> RGB by repeating the channel;
- palette (P, PA) -> RGB through the palette;
- RGBA / LA / PA -> RGB by *dropping* alpha (no compositing onto a background: the colour values of
  transparent pixels are kept as stored);
- CMYK, YCbCr, LAB, HSV -> RGB with Pillow's conversion;
- 16-bit (PNG/TIFF "I;16", "I") -> 8-bit by keeping the high byte (v >> 8), the same rule Pillow
  applies to 16-bit RGB PNGs (which it always reads as 8-bit RGB);
- the EXIF orientation tag (camera photos) is applied, so the array is the image as displayed.

Model space: networks see float32 in [-1, 1] on a data grid of 256 levels. `to_model`, `grid_index`,
`to_uint8` and `grid_values` are the one conversion between uint8 pixels and model floats (pure jnp,
jit-able), for every grid in GRIDS:
- "edge":   x = k / 127.5 - 1          (levels at the interval ends; what this library used first)
- "center": x = 2 (k + 1/2) / 256 - 1  (VDM and the UQDM reference: bin centres)

Refused with `ImageError` (a ValueError; the message names the file and says what to do): missing
files, non-images, truncated/corrupt files, float images (mode "F"), multi-frame files, and images
with a side smaller than `MIN_SIDE` pixels.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps

MIN_SIDE = 8
GRIDS = ("edge", "center")
DEFAULT_GRID = "edge"

# Modes Pillow converts to RGB correctly with Image.convert("RGB").
_CONVERTIBLE = {"RGB", "L", "1", "P", "PA", "LA", "RGBA", "RGBX", "RGBa", "La", "CMYK", "YCbCr", "LAB", "HSV"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class ImageError(ValueError):
    """An image that cannot be used: unreadable, not an image, truncated, unsupported or too small."""


def read_image(path, *, min_side: int = MIN_SIDE) -> np.ndarray:
    """Reads a PNG/JPEG/any Pillow-readable image as uint8 [H, W, 3] (see module doc for conversions).

    Args:
      path: file path (str or os.PathLike).
      min_side: smallest accepted height/width in pixels; smaller images raise ImageError.

    Returns:
      uint8 [H, W, 3], C-contiguous.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, expected an image file (PNG or JPEG).")
    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) > 1:
                raise ImageError(
                    f"{path}: has {img.n_frames} frames (animation or multi-page file); "
                    "extract one frame as PNG first.")
            img.load()  # decodes fully: truncated files fail here, not later
            img = ImageOps.exif_transpose(img)
            array = _to_rgb_uint8(img, path)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: image is too large for Pillow's decompression-bomb guard ({e}). "
                         "Downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file.") from e
    except Image.UnidentifiedImageError as e:
        raise ImageError(f"{path}: not an image file Pillow can read (expected PNG or JPEG).") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: cannot decode the image, the file is truncated or corrupt ({e}). "
                         "Re-export or re-download it.") from e
    h, w = array.shape[:2]
    if min(h, w) < min_side:
        raise ImageError(f"{path}: image is {h}x{w} (HxW); images need at least {min_side} px on each side.")
    return array


def _to_rgb_uint8(img: Image.Image, path: str) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        a = np.asarray(img)
        if a.dtype.kind not in "iu":
            raise ImageError(f"{path}: unsupported pixel type {a.dtype} in mode {mode}.")
        a = a.astype(np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise ImageError(f"{path}: mode {mode} pixel values outside 0..65535 are not supported; "
                             "convert the image to 8-bit or 16-bit PNG first.")
        g = (a >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=-1))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")  # un-premultiplies RGBa; alpha is then dropped
        return np.ascontiguousarray(np.asarray(img)[..., :3])
    if mode in _CONVERTIBLE:
        if mode != "RGB":
            img = img.convert("RGB")
        a = np.asarray(img)
        return np.ascontiguousarray(a, dtype=np.uint8)
    raise ImageError(f"{path}: unsupported image mode {mode!r} (e.g. float 'F'); "
                     "convert it to an 8-bit RGB PNG first.")


def check_image(image, *, name: str = "image", min_side: int = 1) -> np.ndarray:
    """Returns `image` as a numpy uint8 [H, W, 3] array or raises ImageError saying what is wrong."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ImageError(f"{name} has dtype {a.dtype}; expected uint8 [H, W, 3]. For floats in [0, 255] use "
                         "np.clip(np.round(x), 0, 255).astype(np.uint8); for [-1, 1] map with (x + 1) * 127.5 first.")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ImageError(f"{name} has shape {a.shape}; expected [H, W, 3] (RGB, channels last).")
    if min(a.shape[:2]) < min_side:
        raise ImageError(f"{name} is {a.shape[0]}x{a.shape[1]}; need at least {min_side} px per side.")
    return a


def write_png(path, image) -> pathlib.Path:
    """Writes uint8 [H, W, 3] as an RGB PNG (lossless). Creates parent folders; the write is atomic.

    Returns the path written.
    """
    a = check_image(image, name=f"image for {os.fspath(path)}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(a), mode="RGB").save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The (H', W') that `pad_to_multiple` produces: each side rounded up to a multiple of `multiple`."""
    if int(multiple) < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}.")
    m = int(multiple)
    return -(-int(height) // m) * m, -(-int(width) // m) * m


def pad_to_multiple(image, multiple: int, *, mode: str = "edge") -> np.ndarray:
    """Pads the bottom and right of an image so that H and W are multiples of `multiple`.

    Args:
      image: uint8 [..., H, W, C] (a single image [H, W, 3] or a batch NHWC).
      multiple: e.g. the codec's total stride (64 for the hyperprior).
      mode: "edge" (repeat the last row/column; cheapest to code), "reflect" (mirror without
        repeating the edge; works for any pad size) or "symmetric" or "constant" (zeros).

    Returns:
      uint8 [..., H', W', C]; crop back with `padded[..., :H, :W, :]` (or `unpad(padded, (H, W))`).
    """
    a = np.asarray(image)
    if a.ndim < 3:
        raise ImageError(f"image has shape {a.shape}; expected [H, W, C] or [N, H, W, C].")
    if mode not in ("edge", "reflect", "symmetric", "constant"):
        raise ValueError(f"mode must be 'edge', 'reflect', 'symmetric' or 'constant', got {mode!r}.")
    h, w = a.shape[-3], a.shape[-2]
    if h < 1 or w < 1:
        raise ImageError(f"image has an empty side: shape {a.shape}.")
    ph, pw = padded_size(h, w, multiple)
    if (ph, pw) == (h, w):
        return a
    pad = [(0, 0)] * (a.ndim - 3) + [(0, ph - h), (0, pw - w), (0, 0)]
    if mode == "reflect" and min(h, w) == 1:
        mode = "edge"  # reflect needs 2 pixels; a 1-pixel side has only one value to repeat
    return np.pad(a, pad, mode=mode)


def unpad(image, shape) -> np.ndarray:
    """Crops a padded [..., H', W', C] array back to `shape` = (H, W) (or an [H, W, C] shape)."""
    h, w = int(shape[0]), int(shape[1])
    return np.asarray(image)[..., :h, :w, :]


# ---------------------------------------------------------------------------------------------------
# uint8 <-> model floats (the one conversion)


def _grid_affine(grid: str) -> tuple[float, float]:
    """(scale, shift) with x = k * scale + shift for grid level k in {0..255}."""
    if grid == "edge":
        return 1.0 / 127.5, -1.0
    if grid == "center":
        return 2.0 / 256.0, 1.0 / 256.0 - 1.0
    raise ValueError(f"unknown data grid {grid!r}; use one of {GRIDS}")


def to_model(images_u8, *, grid: str = DEFAULT_GRID):
    """uint8 [...] -> float32 [...] in [-1, 1] on `grid` (jit-able)."""
    scale, shift = _grid_affine(grid)
    return jnp.asarray(images_u8, jnp.float32) * scale + shift


def grid_values(*, grid: str = DEFAULT_GRID, num_levels: int = 256):
    """float32 [num_levels]: the model-space value of each level k (to_model(arange(256)))."""
    return to_model(jnp.arange(num_levels), grid=grid)


def grid_index(x, *, grid: str = DEFAULT_GRID):
    """float [...] in model space -> int32 [...] level in [0, 255] nearest to x (jit-able)."""
    x = jnp.asarray(x, jnp.float32)
    # Multiply by the exact inverse step (a division by the inexact 1/127.5 moves rare values across a
    # rounding boundary, and these levels centre coding tables: old files must decode identically).
    if grid == "edge":
        k = (x + 1.0) * 127.5
    elif grid == "center":
        k = (x + 1.0) * 128.0 - 0.5
    else:
        _grid_affine(grid)  # raises the error naming the grids
    return jnp.clip(jnp.round(k), 0, 255).astype(jnp.int32)


def to_uint8(x, *, grid: str = DEFAULT_GRID) -> np.ndarray:
    """float [...] in model space -> numpy uint8 [...] (nearest level, clipped): what decoders return."""
    return np.asarray(grid_index(x, grid=grid)).astype(np.uint8)
