"""grain training/eval streams (determinism, resume, workers, process slices), sources, Kodak verification, TFDS."""

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from gencomp_jax import data
from gencomp_jax.config_utils import base_config
from gencomp_jax.data import ArraySource, DataError, ImageError, KodakIntegrityError, TrainIterator, write_png

KODAK = data.kodak_dir()


def _images(n=7, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(20, 24), (24, 20), (31, 17), (5, 30), (16, 16), (40, 12), (12, 12)]
    return [(f"im{i}", rng.integers(0, 256, shapes[i % len(shapes)] + (3,), dtype=np.uint8)) for i in range(n)]


def _it(seed=0, *, batch=4, crop=8, pi=0, pc=1, prefetch=0, workers=0, **kw):
    return TrainIterator(ArraySource(_images()), seed=seed, batch_size=batch, crop_size=crop,
                         process_index=pi, process_count=pc, prefetch=prefetch, workers=workers, **kw)


def _take(it, n):
    return [next(it)["image"] for _ in range(n)]


def test_stream_is_deterministic_and_seeded():
    a, b = _take(_it(3), 6), _take(_it(3, prefetch=3), 6)  # grain's reading thread: same values
    for x, y in zip(a, b):
        assert x.shape == (4, 8, 8, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, y)
    for s in (0, 5):  # the stream is a function of (seed, step): random access equals iteration
        np.testing.assert_array_equal(_it(3).batch_at(s)["image"], a[s])
    c = _take(_it(4), 6)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_each_epoch_visits_every_image_once_and_reshuffles():
    it = _it(1, batch=7)  # N = 7: one epoch per step
    perms = [it.indices_at(s) for s in range(3)]
    for p in perms:
        assert sorted(p.tolist()) == list(range(7))
    assert not all(np.array_equal(perms[0], p) for p in perms[1:])
    it5 = _it(1, batch=5)  # batches straddle epoch boundaries: examples 0..13 = two full epochs
    g = np.concatenate([it5.indices_at(s) for s in range(3)])[:14]
    assert sorted(g[:7].tolist()) == list(range(7)) and sorted(g[7:].tolist()) == list(range(7))


def _find_window(img, crop):
    """All (y, x, flipped) where crop is a window of img (or its horizontal mirror)."""
    c = crop.shape[0]
    hits = []
    for flipped, src in ((False, img), (True, img[:, ::-1])):
        for y in range(img.shape[0] - c + 1):
            for x in range(img.shape[1] - c + 1):
                if np.array_equal(src[y:y + c, x:x + c], crop):
                    hits.append((y, x, flipped))
    return hits


def test_crops_are_windows_of_the_right_images_and_flips_are_fair():
    imgs = [im for _, im in _images()]
    flips, n = 0, 0
    for flip in (False, True):
        it = _it(2, batch=8, random_flip=flip)
        for s in range(8):
            idx, batch = it.indices_at(s), it.batch_at(s)["image"]
            for j in range(8):
                img = imgs[idx[j]]
                if min(img.shape[:2]) < 8:  # padded by mirroring up to the crop size
                    img = np.pad(img, [(0, max(0, 8 - img.shape[0])), (0, max(0, 8 - img.shape[1])), (0, 0)],
                                 mode="symmetric")
                hits = _find_window(img, batch[j])
                assert hits, (s, j)
                if flip:
                    n += 1
                    flips += all(h[2] for h in hits)
                else:
                    assert any(not h[2] for h in hits)
    # 64 fair coin flips: P(outside [16, 48]) < 1e-4
    assert 16 <= flips <= 48, flips


def test_resume_from_json_state_continues_exact_stream():
    ref = _it(5, batch=4, prefetch=2)
    _take(ref, 3)
    state = json.loads(json.dumps(ref.get_state()))
    expected = _take(ref, 4)
    resumed = _it(5, batch=4, prefetch=2)
    resumed.set_state(state)
    for x, y in zip(expected, _take(resumed, 4)):
        np.testing.assert_array_equal(x, y)
    # set_state on a running iterator rewinds it
    ref.set_state(state)
    np.testing.assert_array_equal(next(ref)["image"], expected[0])
    ref.close()
    with pytest.raises(ValueError, match="seed"):
        _it(6).set_state(state)
    with pytest.raises(ValueError, match="batch_size"):
        _it(5, batch=8).set_state(state)
    with pytest.raises(ValueError, match="newer"):
        _it(5).set_state({**state, "version": 99})
    with pytest.warns(UserWarning, match="before grain"):  # a checkpoint of the old pipeline: same step
        _it(5).set_state({k: v for k, v in state.items() if k != "version"} | {"version": 1})


def test_process_slices_partition_the_global_batch():
    """Process p of P holds rows p, p + P, ... of the batch one process sees at the same step."""
    full = _take(_it(7, batch=8), 3)
    parts = [_take(_it(7, batch=8, pi=p, pc=4), 3) for p in range(4)]
    for s in range(3):
        assert parts[0][s].shape == (2, 8, 8, 3)
        interleaved = np.stack([parts[p][s] for p in range(4)], axis=1).reshape(full[s].shape)
        np.testing.assert_array_equal(interleaved, full[s])
    with pytest.raises(ValueError, match="multiple"):
        _it(batch=6, pc=4)
    with pytest.raises(ValueError, match="process_index"):
        _it(batch=8, pi=4, pc=4)


def test_default_workers_sized_to_the_host():
    assert [data.default_workers(n) for n in (1, 2, 4, 8, 16, 96)] == [0, 0, 0, 6, 14, 32]
    cfg = base_config().data
    cfg.crop_size, cfg.batch_size = 16, 2
    assert data.make_train_iterator(cfg, seed=0).workers == data.default_workers()
    with pytest.raises(ValueError, match="data.workers"):
        _it(workers=-2)


def test_small_images_pad_or_upscale():
    src = ArraySource([("thin", np.arange(5 * 30 * 3, dtype=np.uint8).reshape(5, 30, 3))])
    for policy in ("pad", "upscale"):
        b = TrainIterator(src, seed=0, batch_size=2, crop_size=16, small_images=policy, prefetch=0).batch_at(0)
        assert b["image"].shape == (2, 16, 16, 3)
    with pytest.raises(DataError, match="small_images"):
        TrainIterator(src, seed=0, batch_size=2, crop_size=16, small_images="stretch")


def test_make_train_iterator_skimage_default():
    cfg = base_config().data
    cfg.crop_size, cfg.batch_size = 32, 4
    it = data.make_train_iterator(cfg, seed=0)
    assert len(it.source) == len(data.SKIMAGE_COLOR_PHOTOS)
    assert next(it)["image"].shape == (4, 32, 32, 3)
    assert data.skimage_source("camera,astronaut")[0].shape[-1] == 3  # grayscale converted when named
    with pytest.raises(DataError, match="Unknown scikit-image"):
        data.skimage_source("logo")


def test_folder_splits_commas_and_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        for i in range(n):
            write_png(tmp_path / "ds" / split / f"{split}{i}.png", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    write_png(tmp_path / "other" / "deep" / "x.png", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    names = lambda **kw: [n for n, _ in data.list_image_files(**kw)]  # noqa: E731
    assert names(path=str(tmp_path / "ds"), split="train") == ["train/train0", "train/train1", "train/train2"]
    assert len(names(path=str(tmp_path / "ds"), split="train+test")) == 5
    assert len(names(path=str(tmp_path / "ds"), split="")) == 7
    assert names(path=f"{tmp_path / 'ds'},{tmp_path / 'other'}", split="val") == ["val/val0", "val/val1", "deep/x"]
    with pytest.raises(DataError, match="not \\['nope'\\]"):
        data.list_image_files(str(tmp_path / "ds"), split="train+nope")
    with pytest.raises(DataError, match="does not exist"):
        data.list_image_files(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no image files"):
        data.list_image_files(str(tmp_path / "empty"))

    cfg = base_config().data
    cfg.source, cfg.path, cfg.split, cfg.crop_size, cfg.batch_size = "folder", str(tmp_path / "ds"), "train", 8, 3
    assert next(data.make_train_iterator(cfg, seed=0))["image"].shape == (3, 8, 8, 3)
    (tmp_path / "ds" / "train" / "train1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    it = data.make_train_iterator(cfg, seed=0)  # grain reading thread: the error surfaces in next()
    with pytest.raises(ImageError, match="train1.png"):
        next(it)

    cfg.eval_source, cfg.eval_split, cfg.eval_num_batches = "folder", "val", 3
    ev = data.make_eval_iterator(cfg)
    first, second = [b["image"] for b in ev], [b["image"] for b in ev]
    assert len(first) == 3 and first[0].shape == (3, 8, 8, 3)
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    val0 = data.read_image(tmp_path / "ds" / "val" / "val0.png")
    np.testing.assert_array_equal(first[0][0], val0[2:10, 2:10])  # center crop
    cfg.eval_source = ""
    assert data.make_eval_iterator(cfg) is None
    ev_set = data.load_eval_set(f"{tmp_path / 'ds'}:val")
    assert [n for n, _ in ev_set] == ["val/val0", "val/val1"]
    np.testing.assert_array_equal(ev_set[0][1], val0)


def test_folders_read_every_format_pillow_reads(tmp_path):
    """A TIFF folder (and WebP, BMP, PPM, upper-case extensions) is a training and evaluation set."""
    rng = np.random.default_rng(1)
    formats = {"a.tif": "TIFF", "b.TIFF": "TIFF", "c.webp": "WEBP", "d.bmp": "BMP", "e.ppm": "PPM", "f.png": "PNG"}
    arrays = {}
    for fname, fmt in formats.items():
        arrays[fname] = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(arrays[fname]).save(tmp_path / fname, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n")  # Pillow only identifies HDF5 (stub): not an image
    (tmp_path / "readme.txt").write_text("not an image")
    assert {".tif", ".tiff", ".webp", ".bmp", ".ppm", ".png", ".jpg"} <= set(data.image_extensions())
    ev = data.load_eval_set(str(tmp_path))  # what `gencomp evaluate --dataset DIR` reads
    assert [n for n, _ in ev] == ["a", "b", "c", "d", "e", "f"]
    for (name, image), fname in zip(ev, formats):
        np.testing.assert_array_equal(image, arrays[fname])
    cfg = base_config().data
    cfg.source, cfg.path, cfg.split, cfg.crop_size, cfg.batch_size = "folder", str(tmp_path), "", 8, 6
    assert len(data.make_train_iterator(cfg, seed=0).source) == 6


def test_kodak_loads_verified_and_catches_modified_file(tmp_path, monkeypatch):
    imgs = data.load_eval_set("kodak", limit=2)
    assert [n for n, _ in imgs] == ["kodim01", "kodim02"] and imgs[0][1].shape == (512, 768, 3)
    copy = tmp_path / "kodak"
    shutil.copytree(KODAK, copy)
    monkeypatch.setenv("GENCOMP_KODAK_DIR", str(copy))
    assert data.kodak_dir() == copy
    assert len(data.load_eval_set("kodak", limit=1)) == 1
    target = copy / "kodim07.png"
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit, same size
    target.write_bytes(bytes(raw))
    with pytest.raises(KodakIntegrityError, match="kodim07.png: sha256"):
        data.load_eval_set("kodak")
    (copy / "kodim09.png").unlink()
    with pytest.raises(KodakIntegrityError, match="kodim09.png: missing"):
        data.load_kodak()


def test_kodak_is_never_a_training_source(tmp_path):
    cfg = base_config().data
    cfg.source = "kodak"
    with pytest.raises(DataError, match="never used for training"):
        data.make_train_iterator(cfg, seed=0)
    cfg.source = "folder"
    write_png(tmp_path / "mine" / "a.png", np.zeros((16, 16, 3), np.uint8))
    for p in (str(KODAK), str(KODAK.parent), f"{tmp_path},{KODAK / 'kodim01.png'}"):
        cfg.path = p
        with pytest.raises(DataError, match="Kodak"):
            data.make_train_iterator(cfg, seed=0)
    # a renamed copy of a Kodak file hidden among other images is found by its sha256
    shutil.copy(KODAK / "kodim03.png", tmp_path / "mine" / "holiday.png")
    cfg.path = str(tmp_path / "mine")
    with pytest.raises(DataError, match="holiday.png is a Kodak image"):
        data.make_train_iterator(cfg, seed=0)
    # but it is a fine evaluation set
    assert len(data.load_eval_set(str(tmp_path / "mine"))) == 2


# --- TFDS through tfds.data_source, on a tiny array_record data set built locally (no network, no TF) ---

tfds = pytest.importorskip("tensorflow_datasets")


class GencompTinyImages(tfds.core.GeneratorBasedBuilder):
    """6 train + 2 test PNG-encoded images (bytes are stored as-is: building needs no TensorFlow)."""

    VERSION = tfds.core.Version("1.0.0")
    url_infos = None  # nothing to download (avoids TFDS looking up a checksums file next to this module)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=(None, None, 3)), "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6, 0), "test": self._generate_examples(2, 1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
            yield i, {"image": buf.getvalue(), "label": i % 2}


def test_tfds_data_source_train_and_eval(tmp_path):
    GencompTinyImages(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    cfg = base_config().data
    cfg.source, cfg.name, cfg.data_dir, cfg.crop_size, cfg.batch_size = "tfds", "gencomp_tiny_images", str(tmp_path), 16, 4
    it = data.make_train_iterator(cfg, seed=0)
    assert len(it.source) == 6
    a = _take(it, 3)
    b = _take(data.make_train_iterator(cfg, seed=0), 3)
    for x, y in zip(a, b):
        assert x.shape == (4, 16, 16, 3)
        np.testing.assert_array_equal(x, y)
    cfg.eval_source, cfg.eval_split, cfg.eval_num_batches = "tfds", "test", 1
    assert next(iter(data.make_eval_iterator(cfg)))["image"].shape == (4, 16, 16, 3)
    with pytest.raises(DataError, match="Available splits"):
        data.tfds_source("gencomp_tiny_images", split="validation", data_dir=str(tmp_path))


def test_tfds_not_prepared_says_how_to_build(tmp_path):
    with pytest.raises(DataError, match=r"tfds build div2k --config bicubic_x2 --file_format=array_record --data_dir="):
        data.tfds_source("div2k/bicubic_x2", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="not found"):
        data.tfds_source("no_such_dataset_xyz", data_dir=str(tmp_path))
