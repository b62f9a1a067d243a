"""read_image conversions and errors, write_png round trip, pad_to_multiple."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gencomp_jax.data import ImageError, pad_to_multiple, padded_size, read_image, unpad, write_png


def _rng():
    return np.random.default_rng(0)


def _write_png16_rgb(path, a16):
    """Minimal 16-bit RGB PNG writer (Pillow cannot write 16-bit RGB)."""
    h, w, _ = a16.shape
    raw = b"".join(b"\x00" + a16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_png_round_trip_is_exact(tmp_path):
    x = _rng().integers(0, 256, (13, 21, 3), dtype=np.uint8)
    p = write_png(tmp_path / "sub" / "dir" / "x.png", x)  # parent folders created
    y = read_image(p)
    assert y.dtype == np.uint8 and y.shape == (13, 21, 3)
    np.testing.assert_array_equal(x, y)
    assert not [f for f in p.parent.iterdir() if f.name.endswith(".tmp")]


def test_grayscale_is_repeated_to_rgb(tmp_path):
    g = _rng().integers(0, 256, (10, 12), dtype=np.uint8)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    y = read_image(tmp_path / "g.png")
    assert y.shape == (10, 12, 3)
    for c in range(3):
        np.testing.assert_array_equal(y[..., c], g)


def test_16bit_grayscale_keeps_high_byte(tmp_path):
    g = _rng().integers(0, 65536, (9, 11)).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    y = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(y[..., 1], (g >> 8).astype(np.uint8))


def test_16bit_rgb_keeps_high_byte(tmp_path):
    a = _rng().integers(0, 65536, (9, 10, 3)).astype(np.uint16)
    _write_png16_rgb(tmp_path / "c16.png", a)
    y = read_image(tmp_path / "c16.png")
    np.testing.assert_array_equal(y, (a >> 8).astype(np.uint8))


def test_rgba_drops_alpha_without_compositing(tmp_path):
    a = _rng().integers(0, 256, (8, 9, 4), dtype=np.uint8)
    a[..., 3] = 0  # fully transparent: colours must still be the stored ones
    a[0, 0, 3] = 255
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), a[..., :3])


def test_gray_alpha_palette_and_cmyk(tmp_path):
    rng = _rng()
    la = rng.integers(0, 256, (8, 8, 2), dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), np.repeat(la[..., :1], 3, -1))

    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(colors=8)
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))

    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    y = read_image(tmp_path / "c.jpg")
    assert y.shape == (16, 16, 3) and y.dtype == np.uint8
    assert np.abs(y.astype(int) - rgb).mean() < 20  # lossy JPEG, but the same picture


def test_exif_orientation_is_applied(tmp_path):
    x = np.zeros((10, 20, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(x).save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (20, 10, 3)


@pytest.mark.parametrize("side", [(4, 40), (40, 7)])
def test_tiny_images_are_refused(tmp_path, side):
    write_png(tmp_path / "t.png", np.zeros(side + (3,), np.uint8))
    with pytest.raises(ImageError, match="at least 8 px"):
        read_image(tmp_path / "t.png")
    assert read_image(tmp_path / "t.png", min_side=1).shape == side + (3,)


def test_bad_files_give_image_error(tmp_path):
    x = _rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)
    write_png(tmp_path / "ok.png", x)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(x).save(tmp_path / "ok.jpg", quality=90)
    jd = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jd[: len(jd) // 2])
    (tmp_path / "notes.png").write_text("this is not an image")
    Image.fromarray(np.zeros((9, 9), np.float32), mode="F").save(tmp_path / "f.tif")
    frames = [Image.fromarray(np.full((9, 9, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])

    cases = {"trunc.png": "truncated or corrupt", "trunc.jpg": "truncated or corrupt",
             "notes.png": "not an image", "f.tif": "unsupported image mode", "anim.gif": "frames",
             "missing.png": "no such file", ".": "directory"}
    for name, msg in cases.items():
        with pytest.raises(ImageError, match=msg):
            read_image(tmp_path / name)


def test_write_png_refuses_wrong_arrays(tmp_path):
    with pytest.raises(ImageError, match="uint8"):
        write_png(tmp_path / "x.png", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageError, match=r"\[H, W, 3\]"):
        write_png(tmp_path / "x.png", np.zeros((8, 8), np.uint8))
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("mode", ["edge", "reflect", "symmetric", "constant"])
def test_pad_to_multiple_and_crop_back(mode):
    x = _rng().integers(0, 256, (13, 70, 3), dtype=np.uint8)
    p = pad_to_multiple(x, 64, mode=mode)
    assert p.shape == (64, 128, 3) and p.dtype == np.uint8
    assert padded_size(13, 70, 64) == (64, 128)
    np.testing.assert_array_equal(p[:13, :70], x)
    np.testing.assert_array_equal(unpad(p, x.shape), x)
    if mode == "edge":
        np.testing.assert_array_equal(p[40, :70], x[-1])
        np.testing.assert_array_equal(p[:13, 100], x[:, -1])
    if mode == "reflect":  # pad (51 rows) larger than the image (13 rows) still mirrors
        np.testing.assert_array_equal(p[13, :70], x[11])
        assert p[40:].std() > 0  # mirrored content, not a constant
    if mode == "constant":
        assert p[13:].max() == 0


def test_pad_to_multiple_batch_and_noop():
    x = _rng().integers(0, 256, (2, 16, 32, 3), dtype=np.uint8)
    assert pad_to_multiple(x, 16) is x or np.array_equal(pad_to_multiple(x, 16), x)
    p = pad_to_multiple(x, 12)
    assert p.shape == (2, 24, 36, 3)
    np.testing.assert_array_equal(p[:, :16, :32], x)
    with pytest.raises(ValueError, match="positive"):
        pad_to_multiple(x, 0)
