"""The FID Inception-v3 network (pool3, 2048-d features) in flax linen.

Architecture and preprocessing follow pytorch-fid's `InceptionV3([3])` (the network of the original
TF FID code, 2015-12-05 graph): torchvision's Inception-v3 with the FID patches (avg-pools that do not
count padding in Mixed_5b..6e and 7b, a max-pool branch in Mixed_7c), BatchNorm eps 1e-3, input uint8
-> [0, 1] -> bilinear resize to 299x299 (half-pixel centres, no antialiasing, = torch
F.interpolate(align_corners=False)) -> 2x - 1, global average pool after Mixed_7c.

Weights: the widely used pytorch-fid file
    pt_inception-2015-12-05-6726825d.pth
    sha256 6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2  (95.6 MB)
    https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
It is read WITHOUT torch: a torch .pth file is a pickle (legacy format) or a zip of a pickle plus raw
storages (torch >= 1.6); a restricted unpickler maps storages to numpy and refuses any other global.
A ``.npz`` with the same keys (state-dict names) is accepted too (``convert`` command below).

Getting the file (once, on a machine that is online):
    python -m gencomp_jax.metrics.inception download            # -> default path, sha256 checked
    python -m gencomp_jax.metrics.inception download --dest PATH
    python -m gencomp_jax.metrics.inception convert IN.pth OUT.npz   # optional
Lookup order when no path is given: $GENCOMP_INCEPTION_WEIGHTS, then DEFAULT_PATH
(~/.cache/gencomp_jax/pt_inception-2015-12-05-6726825d.pth). Absent -> InceptionWeightsError with these
instructions; the realism metrics never fall back to another network silently.
"""

from __future__ import annotations

import codecs
import collections
import functools
import hashlib
import io
import os
import pickle
import struct
import sys
import zipfile
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gencomp_jax.metrics.features import batched, check_images

__all__ = ["FIDInceptionV3", "InceptionFeatureExtractor", "InceptionWeightsError", "load_torch_state_dict",
           "save_torch_state_dict", "state_dict_to_variables", "resolve_weights_path", "download_weights",
           "FILENAME", "SHA256", "URL", "DEFAULT_PATH"]

FILENAME = "pt_inception-2015-12-05-6726825d.pth"
SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FILENAME
DEFAULT_PATH = os.path.join(os.path.expanduser("~"), ".cache", "gencomp_jax", FILENAME)
ENV_VAR = "GENCOMP_INCEPTION_WEIGHTS"


class InceptionWeightsError(FileNotFoundError):
    """The FID Inception weights file is missing or unreadable."""


# ----------------------------------------------------------------------------- network

def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm(eps=1e-3, running stats) + ReLU; submodules named like torchvision."""
    features: int
    kernel: Any
    stride: int = 1
    padding: Any = 0

    @nn.compact
    def __call__(self, x):
        ph, pw = _pair(self.padding)
        x = nn.Conv(self.features, _pair(self.kernel), strides=_pair(self.stride),
                    padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg3(x):  # TF-style average pool: padding not counted
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max3s2(x):
    return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, 1, name="branch1x1")(x)
        b5 = BasicConv2d(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv2d(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, 1, name="branch_pool")(_avg3(x))
        return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, 3, stride=2, name="branch3x3")(x)
        bd = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max3s2(x)], -1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        b1 = BasicConv2d(192, 1, name="branch1x1")(x)
        b7 = BasicConv2d(c, 1, name="branch7x7_1")(x)
        b7 = BasicConv2d(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, 1, name="branch_pool")(_avg3(x))
        return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv2d(320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, 3, stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max3s2(x)], -1)


class InceptionE(nn.Module):
    max_pool_branch: bool = False   # FID patch: Mixed_7c uses a 3x3/1 max-pool in its pool branch

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, 1, name="branch1x1")(x)
        b3 = BasicConv2d(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
        bd = BasicConv2d(448, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
        if self.max_pool_branch:
            p = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
        else:
            p = _avg3(x)
        bp = BasicConv2d(192, 1, name="branch_pool")(p)
        return jnp.concatenate([b1, b3, bd, bp], -1)


class FIDInceptionV3(nn.Module):
    """x: float32 [N, H, W, 3] in [0, 1] (any H, W) -> pool3 features float32 [N, 2048]."""

    @nn.compact
    def __call__(self, x):
        n = x.shape[0]
        if x.shape[1:3] != (299, 299):
            x = jax.image.resize(x, (n, 299, 299, x.shape[-1]), "bilinear", antialias=False)
        x = 2.0 * x - 1.0
        x = BasicConv2d(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, 3, name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = _max3s2(x)
        x = BasicConv2d(80, 1, name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, 3, name="Conv2d_4a_3x3")(x)
        x = _max3s2(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(False, name="Mixed_7b")(x)
        x = InceptionE(True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


# ----------------------------------------------------------------------------- torch file reading

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *unused):
    size, stride = tuple(size), tuple(stride)
    if len(size) == 0:
        return storage[offset].copy()
    it = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * it for s in stride)).copy()


def _numpy_scalar(dtype, data):
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _rebuild_parameter(data, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into numpy arrays; refuses every global it does not know."""

    def __init__(self, f, load_storage):
        super().__init__(f)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        # numpy scalars inside training checkpoints (optimizer / step entries): plain data
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return _numpy_scalar
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":  # how protocol-2 pickles store bytes
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file "
                                     "(only tensors and dicts are allowed)")

    def persistent_load(self, pid):
        return self._load_storage(pid)


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Read a torch ``state_dict`` file (zip format of torch >= 1.6, or the legacy format) without torch.

    Returns {name: np.ndarray}. Only tensors, (Ordered)dicts and plain values are accepted.
    """
    obj = load_torch_checkpoint(path)
    if not isinstance(obj, dict):
        raise InceptionWeightsError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {k: np.asarray(v) for k, v in obj.items()}


def load_torch_checkpoint(path: str):
    """Read any ``torch.save`` file of tensors, numbers, strings, lists, tuples and (nested) dicts without
    torch (e.g. a training checkpoint {"model": state_dict, "ema": ..., "step": ...}); tensors become
    np.ndarray. Every other global is refused. The legacy (pre-1.6) format is read for flat state dicts.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = [n for n in names if n.endswith("data.pkl")]
            if len(pkl) != 1:
                raise InceptionWeightsError(f"{path}: not a torch state-dict zip (no single data.pkl)")
            prefix = pkl[0][: -len("data.pkl")]

            def load_storage(pid):
                _, stype, key, _location, numel = pid[:5]
                raw = z.read(f"{prefix}data/{key}")
                return np.frombuffer(raw, dtype=stype.dtype, count=numel)

            obj = _RestrictedUnpickler(io.BytesIO(z.read(pkl[0])), load_storage).load()
    else:
        with open(path, "rb") as f:
            storages: dict[str, tuple] = {}

            def load_storage(pid):
                _, stype, key, _location, numel, view = pid
                if key not in storages:
                    storages[key] = (stype.dtype, numel, [])
                holder = storages[key]
                cell = {"key": key}
                if view is not None:
                    _vkey, voff, vsize = view
                    cell["view"] = (voff, vsize)
                holder[2].append(cell)
                return cell

            try:
                magic = pickle.load(f)
            except Exception as e:  # noqa: BLE001
                raise InceptionWeightsError(f"{path}: not a torch weights file ({e})") from e
            if magic != _LEGACY_MAGIC:
                raise InceptionWeightsError(f"{path}: not a torch weights file (bad magic number)")
            pickle.load(f)  # protocol version
            pickle.load(f)  # sys info
            # Tensors are rebuilt after the raw storages are read: unpickle with placeholders first.
            placeholders = []

            def rebuild_later(storage, offset, size, stride, *unused):
                t = {"storage": storage, "offset": offset, "size": size, "stride": stride}
                placeholders.append(t)
                return ("__tensor__", len(placeholders) - 1)

            class U(_RestrictedUnpickler):
                def find_class(self, module, name):
                    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                        return rebuild_later
                    return super().find_class(module, name)

            obj = U(f, load_storage).load()
            keys = pickle.load(f)
            data = {}
            for key in keys:
                (n_elem,) = struct.unpack("<q", f.read(8))
                dtype = storages[key][0]
                buf = f.read(n_elem * dtype.itemsize)
                if len(buf) != n_elem * dtype.itemsize:
                    raise InceptionWeightsError(f"{path}: truncated file")
                data[key] = np.frombuffer(buf, dtype=dtype)

            def resolve(v):
                if isinstance(v, tuple) and len(v) == 2 and v[0] == "__tensor__":
                    t = placeholders[v[1]]
                    st = data[t["storage"]["key"]]
                    if "view" in t["storage"]:
                        voff, vsize = t["storage"]["view"]
                        st = st[voff:voff + vsize]
                    return _rebuild_tensor(st, t["offset"], t["size"], t["stride"])
                return v

            obj = collections.OrderedDict((k, resolve(v)) for k, v in obj.items())
    return obj


def save_torch_state_dict(path: str, state: dict[str, np.ndarray]) -> None:
    """Write {name: array} as a torch zip-format state dict (what ``torch.save(state_dict)`` writes;
    ``torch.load`` reads it). Used by tests to make standard-format files without torch."""
    inv = {np.dtype(v): k for k, v in _DTYPES.items()}
    out = io.BytesIO()
    w = out.write

    def uni(s):
        b = s.encode("utf-8")
        w(b"X" + struct.pack("<I", len(b)) + b)

    def intop(i):
        w(b"J" + struct.pack("<i", i))

    def int_tuple(t):
        w(b"(")
        for i in t:
            intop(int(i))
        w(b"t")

    w(b"\x80\x02")
    w(b"ccollections\nOrderedDict\nq\x00)R")          # OrderedDict()
    storages = []
    w(b"(")
    for name, arr in state.items():
        a = np.ascontiguousarray(arr)
        if a.dtype not in inv:
            raise TypeError(f"dtype {a.dtype} of {name} not supported")
        key = str(len(storages))
        storages.append(a)
        uni(name)
        w(b"ctorch._utils\n_rebuild_tensor_v2\n")
        w(b"(")
        w(b"(")                                       # persistent id tuple
        uni("storage")
        w(f"ctorch\n{inv[a.dtype]}\n".encode())
        uni(key)
        uni("cpu")
        intop(a.size)
        w(b"tQ")
        intop(0)
        int_tuple(a.shape)
        strides = [s // a.itemsize for s in a.strides] if a.ndim else []
        int_tuple(strides)
        w(b"\x89")                                    # requires_grad False
        w(b"ccollections\nOrderedDict\n)R")           # backward hooks
        w(b"tR")
    w(b"u.")
    stem = "archive"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{stem}/data.pkl", out.getvalue())
        z.writestr(f"{stem}/byteorder", "little")
        for i, a in enumerate(storages):
            z.writestr(f"{stem}/data/{i}", a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        z.writestr(f"{stem}/version", "3\n")


def load_weights_file(path: str) -> dict[str, np.ndarray]:
    """A .pth (torch state dict) or .npz with the same keys -> {name: np.ndarray}."""
    if not os.path.exists(path):
        raise InceptionWeightsError(f"Inception weights file {path} does not exist. " + _HOWTO)
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    return load_torch_state_dict(path)


# ----------------------------------------------------------------------------- variables mapping

def _variable_shapes() -> dict:
    model = FIDInceptionV3()
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 299, 299, 3), jnp.float32))


def expected_state_dict_shapes() -> dict[str, tuple]:
    """{torch key: torch shape} of every tensor the network needs (fc.* and AuxLogits.* are ignored)."""
    out = {}
    shapes = _variable_shapes()
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    for path, leaf in flat:
        keys = [p.key for p in path]
        coll, mods, leafname = keys[0], keys[1:-1], keys[-1]
        prefix = ".".join(mods)
        if coll == "params" and leafname == "kernel":
            kh, kw, cin, cout = leaf.shape
            out[prefix + ".weight"] = (cout, cin, kh, kw)
        elif coll == "params":
            out[prefix + {"scale": ".weight", "bias": ".bias"}[leafname]] = leaf.shape
        else:
            out[prefix + {"mean": ".running_mean", "var": ".running_var"}[leafname]] = leaf.shape
    return out


def state_dict_to_variables(sd: dict[str, np.ndarray]) -> dict:
    """torch-named state dict -> flax variables {"params": ..., "batch_stats": ...} for FIDInceptionV3.

    Raises InceptionWeightsError naming missing keys or wrong shapes."""
    shapes = _variable_shapes()
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    leaves, missing, bad = [], [], []
    for path, leaf in flat:
        keys = [p.key for p in path]
        coll, mods, leafname = keys[0], keys[1:-1], keys[-1]
        prefix = ".".join(mods)
        if coll == "params" and leafname == "kernel":
            key = prefix + ".weight"
        elif coll == "params":
            key = prefix + {"scale": ".weight", "bias": ".bias"}[leafname]
        else:
            key = prefix + {"mean": ".running_mean", "var": ".running_var"}[leafname]
        if key not in sd:
            missing.append(key)
            leaves.append(None)
            continue
        v = np.asarray(sd[key], np.float32)
        if leafname == "kernel" and v.ndim == 4:
            v = v.transpose(2, 3, 1, 0)   # OIHW -> HWIO
        if v.shape != leaf.shape:
            bad.append(f"{key}: {v.shape} vs expected {leaf.shape}")
        leaves.append(jnp.asarray(v))
    if missing or bad:
        raise InceptionWeightsError(
            "not an FID Inception-v3 state dict: " + (f"{len(missing)} missing keys (e.g. {missing[:3]}) "
                                                      if missing else "") + (f"wrong shapes: {bad[:3]}" if bad else ""))
    treedef = jax.tree_util.tree_structure(shapes)
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ----------------------------------------------------------------------------- files, extractor

_HOWTO = (f"FID needs the standard FID Inception weights {FILENAME} (sha256 {SHA256[:16]}...). Get it with "
          f"`python -m gencomp_jax.metrics.inception download` on a machine that is online (saves to "
          f"{DEFAULT_PATH}), or download {URL} yourself and pass --inception_weights PATH (or set "
          f"${ENV_VAR}). To compare on another fixed network instead, ask explicitly for features='vgg16' "
          "(results are then named fd-vgg16 / kid-vgg16, not fid/kid).")


def resolve_weights_path(path: str | None = None) -> str:
    """Explicit path > $GENCOMP_INCEPTION_WEIGHTS > DEFAULT_PATH; raises InceptionWeightsError if absent."""
    for p in (path, os.environ.get(ENV_VAR), DEFAULT_PATH):
        if p:
            if os.path.exists(p):
                return p
            if p is path or p == os.environ.get(ENV_VAR):
                raise InceptionWeightsError(f"Inception weights file {p} does not exist. " + _HOWTO)
    raise InceptionWeightsError("FID Inception weights not found. " + _HOWTO)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_weights(dest: str = DEFAULT_PATH) -> str:
    """Download the FID weights file to dest and check its sha256 (needs network access)."""
    import urllib.request

    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    tmp = dest + ".part"
    urllib.request.urlretrieve(URL, tmp)
    digest = sha256_file(tmp)
    if digest != SHA256:
        os.remove(tmp)
        raise InceptionWeightsError(f"downloaded file has sha256 {digest}, expected {SHA256}; not saved")
    os.replace(tmp, dest)
    return dest


@functools.lru_cache(maxsize=2)
def _load_variables(path: str):
    return state_dict_to_variables(load_weights_file(path))


class InceptionFeatureExtractor:
    """uint8 [N, H, W, 3] -> float32 [N, 2048] pool3 features of the FID Inception-v3."""

    name = "inception"
    dim = 2048
    metric_names = {"fd": "fid", "kid": "kid", "kid_std": "kid_std"}

    def __init__(self, weights: str | None = None, *, batch_size: int = 8):
        self.path = resolve_weights_path(weights)
        self.variables = _load_variables(os.path.abspath(self.path))
        self.batch_size = batch_size
        model = FIDInceptionV3()
        self._fn = jax.jit(lambda v, x: model.apply(v, jnp.asarray(x, jnp.float32) / 255.0))

    def __call__(self, images) -> np.ndarray:
        return batched(lambda b: self._fn(self.variables, b), check_images(images), self.batch_size)


def _main(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gencomp_jax.metrics.inception")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help=f"download {FILENAME} and check its sha256")
    d.add_argument("--dest", default=DEFAULT_PATH)
    c = sub.add_parser("convert", help="convert a .pth state dict to .npz (same keys)")
    c.add_argument("src")
    c.add_argument("dst")
    s = sub.add_parser("check", help="print the sha256 of a weights file and verify it loads")
    s.add_argument("path")
    a = ap.parse_args(argv)
    if a.cmd == "download":
        print(download_weights(a.dest))
    elif a.cmd == "convert":
        np.savez(a.dst, **load_weights_file(a.src))
        print(a.dst)
    else:
        digest = sha256_file(a.path)
        state_dict_to_variables(load_weights_file(a.path))
        print(f"{a.path}: sha256 {digest} ({'the standard FID file' if digest == SHA256 else 'NOT the standard file'}); loads OK")


if __name__ == "__main__":
    _main(sys.argv[1:])
