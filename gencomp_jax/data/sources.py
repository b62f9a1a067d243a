"""Image sources: random-access collections of uint8 [H, W, 3] images.

- `FolderSource`: image files (every format Pillow reads: PNG, JPEG, TIFF, WebP, BMP, ...; see
  `image_extensions()`) under one or more folders (searched recursively). `path` may hold
  several comma-separated folders or files; a `split` such as "train" or "train+test" selects
  sub-folders of each folder that has them (so path=".../bsds500", split="train+test" reads
  bsds500/train and bsds500/test; the default split "train" never touches val/).
- `skimage_source()`: scikit-image's bundled colour photographs, the offline demo training set.
- `tfds_source()`: a TFDS data set by name through `tfds.data_source` (array_record files, read
  without TensorFlow).
- `kodak_dir()`, `verify_manifest()`, `load_kodak()`: the bundled Kodak set (evaluation only),
  verified against data/kodak/MANIFEST.txt (sha256) every time it is loaded.

Kodak is never a training source: `open_source(..., training=True)` refuses source "kodak", any path
inside the bundled Kodak folder or a folder whose MANIFEST.txt says Kodak, and any file whose bytes
are a Kodak image (size + sha256 match against the manifest).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import functools
import threading
from typing import Sequence

import numpy as np
from PIL import Image

from gencomp_jax.data.images import ImageError, MIN_SIDE, read_image

KODAK_ENV = "GENCOMP_KODAK_DIR"
DEFAULT_CACHE_BYTES = 1 << 30
# Pillow formats that only identify a file (stubs needing an external handler) or need an external
# program (Ghostscript): a folder's .h5 or .eps file is not taken for an image.
_NOT_DECODABLE = {"BUFR", "GRIB", "HDF5", "WMF", "EPS", "MPEG"}


@functools.cache
def image_extensions() -> tuple[str, ...]:
    """Lower-case file extensions of every format Pillow can decode here (".png", ".tif", ".webp", ...)."""
    Image.init()
    return tuple(sorted(e for e, fmt in Image.registered_extensions().items()
                        if fmt in Image.OPEN and fmt not in _NOT_DECODABLE))

# scikit-image's bundled colour photographs (files shipped inside the wheel, no download).
SKIMAGE_COLOR_PHOTOS = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg",
}
# Grayscale photographs: not in the default set; converted to RGB (channel repeated) when named.
SKIMAGE_GRAY_PHOTOS = {
    "camera": "camera.png",
    "coins": "coins.png",
    "moon": "moon.png",
    "page": "page.png",
    "text": "text.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "brick": "brick.png",
    "clock": "clock_motion.png",
    "cell": "cell.png",
}


class DataError(ValueError):
    """A data source that cannot be used as configured (message says what to do)."""


class KodakIntegrityError(DataError):
    """The bundled Kodak files do not match data/kodak/MANIFEST.txt."""


# ---------------------------------------------------------------------------------------------
# Sources


class ImageSource:
    """Random access to images: len(src), src[i] -> uint8 [H, W, 3], src.name(i)."""

    description = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"{index:06d}"

    def fingerprint(self) -> str:
        """Short string identifying the contents (kind + number of images), stored in iterator state."""
        return f"{type(self).__name__}:{len(self)}"


class ArraySource(ImageSource):
    """Images already in memory: a list of (name, uint8 [H, W, 3])."""

    def __init__(self, items: Sequence[tuple[str, np.ndarray]], *, description: str = "arrays"):
        if not items:
            raise DataError(f"{description}: no images.")
        self._names = [n for n, _ in items]
        self._images = [np.asarray(a) for _, a in items]
        self.description = description

    def __len__(self):
        return len(self._images)

    def __getitem__(self, index):
        return self._images[index]

    def name(self, index):
        return self._names[index]


class FolderSource(ImageSource):
    """Image files, decoded on access with `read_image`; decoded images are cached up to a byte budget.

    The cache lives in the process that reads (each grain worker has its own; a pickled source
    starts with an empty one). cache_bytes=0 turns it off. Names are paths relative to the folder
    given (without extension), prefixed by that folder's name when several folders are given and
    names would collide.
    """

    def __init__(self, files: Sequence[tuple[str, str]], *, description: str = "folder",
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        if not files:
            raise DataError(f"{description}: no images.")
        self._names = [n for n, _ in files]
        self._paths = [p for _, p in files]
        self.description = description
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, np.ndarray] = {}
        self._cache_left = self.cache_bytes
        self._lock = threading.Lock()

    def __getstate__(self):  # to grain's worker processes: paths only (no lock, no decoded images)
        return {"_names": self._names, "_paths": self._paths, "description": self.description,
                "cache_bytes": self.cache_bytes}

    def __setstate__(self, state):
        self.__init__(list(zip(state["_names"], state["_paths"])), description=state["description"],
                      cache_bytes=state["cache_bytes"])

    @property
    def paths(self) -> list[str]:
        return list(self._paths)

    def __len__(self):
        return len(self._paths)

    def __getitem__(self, index):
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        image = read_image(self._paths[index])
        with self._lock:
            if image.nbytes <= self._cache_left:
                self._cache[index] = image
                self._cache_left -= image.nbytes
        return image

    def name(self, index):
        return self._names[index]


class TfdsSource(ImageSource):
    """A TFDS random-access data source; examples decoded by TFDS, converted to uint8 [H, W, 3]."""

    def __init__(self, data_source, *, image_key: str, description: str):
        self._ds = data_source
        self._key = image_key
        self.description = description
        if len(self._ds) == 0:
            raise DataError(f"{description}: the split is empty.")

    def __len__(self):
        return len(self._ds)

    def __getitem__(self, index):
        example = self._ds[int(index)]
        return _tfds_image_to_rgb(example[self._key], f"{self.description}[{index}]")

    def fingerprint(self):
        return f"TfdsSource:{self.description}:{len(self)}"


def _tfds_image_to_rgb(a, where: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ImageError(f"{where}: image has shape {a.shape}; expected [H, W, C].")
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.dtype != np.uint8:
        raise ImageError(f"{where}: image dtype {a.dtype} is not supported (expected uint8).")
    c = a.shape[-1]
    if c == 1:
        a = np.repeat(a, 3, axis=-1)
    elif c == 4:
        a = a[..., :3]
    elif c != 3:
        raise ImageError(f"{where}: image has {c} channels; expected 1, 3 or 4.")
    if min(a.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{where}: image is {a.shape[0]}x{a.shape[1]}; need at least {MIN_SIDE} px per side.")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# Folders


def _split_list(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def list_image_files(path: str, *, split: str = "") -> list[tuple[str, str]]:
    """(name, file) pairs, sorted, for the image files under `path` (see module doc for `split`).

    Image files are those with an extension of a format Pillow decodes (`image_extensions()`:
    PNG, JPEG, TIFF, WebP, BMP, PPM, ...), in any letter case.

    Args:
      path: a folder or file, or several separated by commas. Folders are searched recursively
        (hidden files and folders are skipped).
      split: "" or e.g. "train" / "train+test": for each folder that has sub-folders with these
        names, only those sub-folders are read; a folder with none of them is read whole.
    """
    roots = _split_list(path)
    if not roots:
        raise DataError("No image folder given: set data.path (e.g. data.path='/data/bsds500', "
                        "several folders separated by commas).")
    parts = [s.strip() for s in str(split).split("+") if s.strip()] if split else []
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for root in roots:
        root_path = pathlib.Path(os.path.expanduser(root))
        if not root_path.exists():
            raise DataError(f"Image folder {root} does not exist.")
        if root_path.is_file():
            groups.append((root_path.parent.name, [(root_path.stem, str(root_path))]))
            continue
        dirs = [root_path]
        if parts:
            present = [p for p in parts if (root_path / p).is_dir()]
            if present and len(present) != len(parts):
                missing = sorted(set(parts) - set(present))
                raise DataError(f"{root}: has split folder(s) {present} but not {missing}; "
                                f"available: {sorted(d.name for d in root_path.iterdir() if d.is_dir())}.")
            if present:
                dirs = [root_path / p for p in parts]
        files = []
        for d in dirs:
            for f in _walk_images(d):
                files.append((f.relative_to(root_path).with_suffix("").as_posix(), str(f)))
        if not files:
            raise DataError(f"{root}: no image files found (searched recursively"
                            f"{' in ' + '+'.join(parts) if parts and dirs[0] != root_path else ''} for PNG, "
                            "JPEG, TIFF, WebP, BMP and every other format Pillow reads).")
        groups.append((root_path.name, files))
    all_names = [n for _, fs in groups for n, _ in fs]
    collide = len(set(all_names)) != len(all_names)
    out = []
    for prefix, fs in groups:
        out.extend(((f"{prefix}/{n}" if collide else n), p) for n, p in fs)
    return out


def _walk_images(folder: pathlib.Path):
    found, extensions = [], image_extensions()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if not fn.startswith(".") and fn.lower().endswith(extensions):
                found.append(pathlib.Path(dirpath) / fn)
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# scikit-image photographs


def skimage_source(names: str | Sequence[str] = "") -> ArraySource:
    """scikit-image's bundled photographs as an ArraySource (read from the installed package, no network).

    Args:
      names: "" = all colour photographs (SKIMAGE_COLOR_PHOTOS: astronaut, coffee, chelsea, rocket,
        motorcycle_left/right, hubble_deep_field, immunohistochemistry, retina; 9 images). Otherwise
        a comma-separated string or list of names from SKIMAGE_COLOR_PHOTOS or SKIMAGE_GRAY_PHOTOS;
        grayscale ones are converted to RGB by repeating the channel. Synthetic images (logo,
        colorwheel, checkerboards, binary masks) are not offered.
    """
    import skimage.data

    data_dir = pathlib.Path(skimage.data.__file__).parent
    if isinstance(names, str):
        names = _split_list(names)
    names = list(names) or list(SKIMAGE_COLOR_PHOTOS)
    known = {**SKIMAGE_COLOR_PHOTOS, **SKIMAGE_GRAY_PHOTOS}
    items = []
    for n in names:
        if n not in known:
            raise DataError(f"Unknown scikit-image photograph {n!r}. Colour: {sorted(SKIMAGE_COLOR_PHOTOS)}; "
                            f"grayscale (converted to RGB): {sorted(SKIMAGE_GRAY_PHOTOS)}.")
        f = data_dir / known[n]
        if not f.exists():
            raise DataError(f"scikit-image photograph {n!r} is not bundled with this scikit-image "
                            f"installation ({f} missing); pick others, or use source='folder'.")
        items.append((n, read_image(f)))
    return ArraySource(items, description="skimage:" + ",".join(names))


# ---------------------------------------------------------------------------------------------
# TFDS


def _tfds_build_command(name: str, data_dir: str) -> str:
    cmd = f"tfds build {name.split('/')[0]}"
    if "/" in name:
        cmd += f" --config {name.split('/', 1)[1].split(':')[0]}"
    cmd += " --file_format=array_record"
    if data_dir:
        cmd += f" --data_dir={data_dir}"
    return cmd


def tfds_source(name: str, *, split: str = "train", data_dir: str = "", image_key: str = "") -> TfdsSource:
    """A TFDS data set read through `tfds.data_source` (array_record; TensorFlow not needed to read).

    Args:
      name: TFDS name, optionally with config/version, e.g. "clic", "div2k/bicubic_x2",
        "imagenet_resized/64x64". A data set prepared under `data_dir` works even if its builder is
        not registered (it is read from its dataset_info.json).
      split: TFDS split string ("train", "validation", "train[:90%]", "train+test", ...).
      data_dir: TFDS data_dir ("" = TFDS default, ~/tensorflow_datasets or $TFDS_DATA_DIR).
      image_key: feature holding the image; "" picks "image", then "hr" (DIV2K), then the only
        Image feature.

    Raises:
      DataError with the exact `tfds build ... --file_format=array_record` command when the data
      set is not prepared or was prepared as TFRecord.
    """
    if not name:
        raise DataError("source='tfds' needs data.name, e.g. 'clic', 'div2k', 'imagenet_resized/64x64'.")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - it is a dependency
        raise DataError("source='tfds' needs tensorflow-datasets: pip install tensorflow-datasets array-record") from e
    cmd = _tfds_build_command(name, data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # DatasetNotFoundError, bad config/version, ...
        raise DataError(f"TFDS data set {name!r} not found ({type(e).__name__}: {str(e).splitlines()[0]}). "
                        f"Check the name, or prepare it with: {cmd}") from e
    if not builder.is_prepared():
        raise DataError(
            f"TFDS data set {name!r} is not prepared in {builder.data_dir}. Prepare it once with:\n  {cmd}\n"
            "(building needs TensorFlow in the environment that builds, e.g. `pip install tensorflow`; some data "
            "sets need a manual download, see their TFDS catalog page; reading afterwards needs only "
            "tensorflow-datasets + array-record). Then set data.data_dir to the same folder.")
    file_format = str(getattr(builder.info, "file_format", "") or "")
    if "array_record" not in file_format.lower():
        raise DataError(
            f"TFDS data set {name!r} in {builder.data_dir} is stored as {file_format or 'unknown format'}; random "
            f"access needs array_record. Rebuild it with:\n  {cmd}\n(in another data_dir, or delete the old one).")
    try:
        ds = builder.as_data_source(split=split)
    except Exception as e:
        splits = sorted(builder.info.splits.keys()) if builder.info.splits else []
        raise DataError(f"TFDS data set {name!r}: cannot open split {split!r} ({e}). Available splits: {splits}.") from e
    key = image_key or _pick_image_key(builder.info.features, name)
    return TfdsSource(ds, image_key=key, description=f"tfds:{name}:{split}")


def _pick_image_key(features, name: str) -> str:
    import tensorflow_datasets as tfds

    keys = list(features.keys())
    image_keys = [k for k in keys if isinstance(features[k], tfds.features.Image)]
    for k in ("image", "hr"):
        if k in image_keys:
            return k
    if len(image_keys) == 1:
        return image_keys[0]
    raise DataError(f"TFDS data set {name!r}: cannot tell which feature is the image; features {keys}, "
                    f"image features {image_keys}. Set image_key.")


# ---------------------------------------------------------------------------------------------
# Kodak


def repo_root() -> pathlib.Path:
    """The source checkout's root (gencomp_jax/data/sources.py -> ../../..)."""
    return pathlib.Path(__file__).resolve().parents[2]


def kodak_dir() -> pathlib.Path:
    """The bundled Kodak folder: $GENCOMP_KODAK_DIR if set, else <repo>/data/kodak."""
    env = os.environ.get(KODAK_ENV, "")
    d = pathlib.Path(os.path.expanduser(env)) if env else repo_root() / "data" / "kodak"
    if not (d / "MANIFEST.txt").is_file():
        raise DataError(
            f"Kodak set not found at {d} (no MANIFEST.txt). It ships in the source checkout as data/kodak/; "
            f"when the package is installed elsewhere, set {KODAK_ENV} to that folder.")
    return d


def read_manifest(folder) -> dict[str, dict]:
    """Parses MANIFEST.txt rows `file<TAB>WxH<TAB>mode<TAB>format<TAB>bytes<TAB>sha256` (after '# file')."""
    folder = pathlib.Path(folder)
    lines = (folder / "MANIFEST.txt").read_text(encoding="utf-8").splitlines()
    entries: dict[str, dict] = {}
    in_table = False
    for line in lines:
        if line.startswith("# file"):
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 6:
            raise KodakIntegrityError(f"{folder}/MANIFEST.txt: malformed row {line!r}.")
        fname, size, mode, fmt, nbytes, sha = cols
        entries[fname] = {"size": size, "mode": mode, "format": fmt, "bytes": int(nbytes), "sha256": sha.lower()}
    if not entries:
        raise KodakIntegrityError(f"{folder}/MANIFEST.txt: no file table (expected a '# file' header).")
    return entries


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_manifest(folder) -> list[pathlib.Path]:
    """Checks every file in MANIFEST.txt exists with the listed byte count and sha256.

    Returns the files in manifest order; raises KodakIntegrityError naming each bad file.
    """
    folder = pathlib.Path(folder)
    entries = read_manifest(folder)
    problems, files = [], []
    for fname, e in entries.items():
        p = folder / fname
        files.append(p)
        if not p.is_file():
            problems.append(f"{fname}: missing")
            continue
        if p.stat().st_size != e["bytes"]:
            problems.append(f"{fname}: {p.stat().st_size} bytes, manifest says {e['bytes']}")
            continue
        digest = _sha256(p)
        if digest != e["sha256"]:
            problems.append(f"{fname}: sha256 {digest[:16]}..., manifest says {e['sha256'][:16]}...")
    if problems:
        raise KodakIntegrityError(
            f"{folder} does not match its MANIFEST.txt:\n  " + "\n  ".join(problems) +
            "\nRestore the original files (e.g. `git checkout -- data/kodak` in the source checkout, or copy "
            "them again from the source named in MANIFEST.txt); results on modified files are not comparable.")
    return files


def load_kodak(*, limit: int | None = None, folder=None) -> list[tuple[str, np.ndarray]]:
    """The 24 Kodak images as [(\"kodim01\", uint8 [512|768, 768|512, 3]), ...] after sha256 verification."""
    folder = pathlib.Path(folder) if folder is not None else kodak_dir()
    files = verify_manifest(folder)
    if limit is not None:
        files = files[: int(limit)]
    return [(p.stem, read_image(p)) for p in files]


def _kodak_fingerprints() -> dict[int, set[str]]:
    try:
        entries = read_manifest(kodak_dir())
    except (DataError, OSError):
        return {}
    out: dict[int, set[str]] = {}
    for e in entries.values():
        out.setdefault(e["bytes"], set()).add(e["sha256"])
    return out


def _is_kodak_folder(path: pathlib.Path) -> bool:
    try:
        kd = kodak_dir().resolve()
    except DataError:
        kd = None
    p = path.resolve()
    if kd is not None and (p == kd or kd in p.parents or p in kd.parents):
        return True
    for d in [p] + list(p.parents)[:1]:
        m = d / "MANIFEST.txt"
        if m.is_file():
            try:
                first = m.read_text(encoding="utf-8", errors="replace").lstrip()[:200].lower()
            except OSError:
                continue
            if first.startswith("kodak"):
                return True
    return False


def assert_not_kodak(files: Sequence[str], roots: Sequence[str] = ()) -> None:
    """Raises DataError if any root is (in/above) a Kodak folder or any file is byte-identical to a Kodak image."""
    msg = ("Kodak is the evaluation set and is never used for training; point data.path at other images "
           "(e.g. BSDS500 train+test, or source='skimage').")
    for r in roots:
        if _is_kodak_folder(pathlib.Path(os.path.expanduser(r))):
            raise DataError(f"Training source {r} is (or contains) the Kodak set. {msg}")
    prints = _kodak_fingerprints()
    if not prints:
        return
    for f in files:
        try:
            size = os.stat(f).st_size
        except OSError:
            continue
        if size in prints and _sha256(f) in prints[size]:
            raise DataError(f"Training file {f} is a Kodak image (sha256 matches data/kodak/MANIFEST.txt). {msg}")


# ---------------------------------------------------------------------------------------------
# Dispatch


def open_source(source: str, *, path: str = "", name: str = "", split: str = "", data_dir: str = "",
                training: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES) -> ImageSource:
    """Opens a source by kind: "skimage" | "folder" | "tfds" | "kodak" (evaluation only).

    For "skimage", `path` may name a subset (see `skimage_source`). For "folder", `path` and
    `split` as in `list_image_files` (decoded images cached up to `cache_bytes` per reading
    process). For "tfds", `name`, `split`, `data_dir`.
    """
    source = (source or "").strip().lower()
    if source == "kodak" or (source == "tfds" and name.strip().lower().startswith("kodak")):
        if training:
            raise DataError("Kodak is the evaluation set and is never used for training; use source='skimage', "
                            "'folder' (e.g. BSDS500 train+test) or 'tfds'.")
        return ArraySource(load_kodak(), description="kodak")
    if source == "skimage":
        return skimage_source(path)
    if source == "folder":
        files = list_image_files(path, split=split)
        if training:
            assert_not_kodak([p for _, p in files], _split_list(path))
        return FolderSource(files, description=f"folder:{path}" + (f":{split}" if split else ""),
                            cache_bytes=cache_bytes)
    if source == "tfds":
        return tfds_source(name, split=split or "train", data_dir=data_dir)
    raise DataError(f"Unknown data source {source!r}; use 'skimage', 'folder' (data.path) or 'tfds' (data.name)"
                    + ("" if training else " or 'kodak'") + ".")
