"""The contract every method implements, and the one table that registers them.

`Method` is what the one training loop (gencomp_jax.train) optimises. `Codec` is what evaluation and
the CLI use to write and read real files; `ProgressiveCodec` is a codec whose file holds one segment
per step, so that any prefix decodes. Methods register themselves next to their class with `register`
(name, container codec id, how to build the Method and the Codec); the decode options a codec accepts
are declared on its class as `decode_options` (a tuple of `DecodeOption`). The registry
(gencomp_jax.registry), the container's codec ids (codecs/bitstream.py) and the CLI's `--option` /
`--steps` all read this one table: adding a method is one module-level `register(...)` call.

This module is a leaf: it imports nothing from gencomp_jax, so every other module may import it.

Conventions (DESIGN.md): images at API boundaries are uint8 NHWC; models see float32 in [-1, 1];
rates are in bits in every public API.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

PyTree = Any


class OptionError(ValueError):
    """A decode option that the codec does not declare, or a value it does not accept."""


class RegistryError(ValueError):
    """An unknown method or codec id, or a registration that clashes with an existing one."""


# ---------------------------------------------------------------------------------------------------
# Protocols


@runtime_checkable
class Method(Protocol):
    """A trainable model.

    The training loop calls, with `batch = {"image": float32 [B, H, W, 3] in [-1, 1]}`:
      init(rng, batch) -> params                       (a flax variables pytree, e.g. {"params": ...})
      loss(params, batch, rng, train) -> (loss, metrics)
        loss: scalar float32 to minimise (for codecs: rate + lambda * distortion);
        metrics: dict of scalars to log (e.g. "bpp", "mse", "psnr", "bits_per_dim"); all rates in bits.
    Both must be jit-able pure functions of their arguments. `train=False` is the evaluation mode
    (e.g. rounding instead of additive noise).

    Optional hooks, called by the training loop on process 0 at each evaluation (plain Python, not jitted):
      eval_samples(params, rng) -> uint8 [n, H, W, 3] | None: samples the loop writes as a PNG grid
        (artifacts/samples_<step>.png, eval/artifacts.py) and summarises in the log;
      eval_artifacts(params, rng, outdir, step) -> dict: anything else to write to `outdir`; the returned
        scalars are logged.
    """

    def init(self, rng: Any, batch: Mapping[str, Any]) -> PyTree: ...

    def loss(self, params: PyTree, batch: Mapping[str, Any], rng: Any, train: bool
             ) -> tuple[Any, dict[str, Any]]: ...


@runtime_checkable
class Codec(Protocol):
    """Compresses uint8 images into self-describing files (codecs/bitstream.py container).

      name: str                                   the registered method name (also in the file header)
      decode_options: tuple[DecodeOption, ...]    keyword options of decompress / estimate_bits; () if none
      compress(image) -> bytes                    image: uint8 [H, W, 3], any H, W >= 1 (padded internally)
      decompress(data, **options) -> uint8 [H, W, 3]
      estimate_bits(image, **options) -> float    the model's own rate estimate in bits (for bpp_est) of
                                                  the file `compress(image)` decoded with `options`
      rate_points() -> list[dict]                 decode-option dicts, one per point of an RD sweep
                                                  that one file supports ([{}] for a single-rate codec)
    Options are validated with `check_options` against `decode_options`: an undeclared option or a
    bad value is an OptionError, never silently ignored.
    """

    name: str
    decode_options: ClassVar[tuple["DecodeOption", ...]]

    def compress(self, image: np.ndarray) -> bytes: ...

    def decompress(self, data: bytes, **options: Any) -> np.ndarray: ...

    def estimate_bits(self, image: np.ndarray, **options: Any) -> float: ...

    def rate_points(self) -> list[dict[str, Any]]: ...


@runtime_checkable
class ProgressiveCodec(Codec, Protocol):
    """A codec whose file holds one container segment per step (UQDM, DiffC).

    Declares the decode option `steps` (STEPS_OPTION): decompress(data, steps=k) uses the first k
    segments; a truncated file decodes its complete segments.
      truncate(data, *, steps) -> bytes   the prefix a receiver has after `steps` segments
                                          (bitstream.prefix); decompress(truncate(d, steps=k)) ==
                                          decompress(d, steps=k). Evaluation measures bpp of a rate
                                          point from these bytes.
    Optional pair (codecs/progressive.py has both), used by evaluation to estimate every rate point
    from one encoding pass instead of one estimate_bits forward pass per point:
      compress_with_bits(image) -> (bytes, step bits)   the file and the ideal bits of each step
      bits_at(step_bits, **options) -> float           the estimate of one rate point from them
    """

    def truncate(self, data: bytes, *, steps: int | None = None) -> bytes: ...


# ---------------------------------------------------------------------------------------------------
# Decode options


_KINDS = (int, float, str, bool)


@dataclasses.dataclass(frozen=True)
class DecodeOption:
    """One keyword option of a codec's `decompress` (and `estimate_bits`).

    name: keyword name (CLI: `--option name=value`; `steps` also as `--steps`).
    kind: int, float, str or bool: how a CLI string is parsed.
    default: the value used when the option is not given (None: "all" / codec decides).
    help: one line for `gencomp decompress --help` and error messages.
    choices: allowed values (str options), () for any.
    minimum / maximum: bounds for numbers (inclusive), None for none.
    rate: True if the option changes the bytes a decoder needs (e.g. steps); evaluation then
        measures the rate of the truncated file (ProgressiveCodec.truncate).
    """

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    rate: bool = False

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise TypeError(f"DecodeOption {self.name!r}: kind must be one of {_KINDS}, got {self.kind!r}")

    def parse(self, text: str) -> Any:
        """A CLI string -> a checked value."""
        text = str(text).strip()
        try:
            if self.kind is bool:
                low = text.lower()
                if low not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(text)
                value = low in ("1", "true", "yes")
            elif self.kind is int:
                value = int(text)
            elif self.kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise OptionError(f"option {self.name}={text!r}: expected {self.kind.__name__} "
                              f"({self.describe()})") from None
        return self.check(value)

    def check(self, value: Any) -> Any:
        """Validates a Python value (None means the default) and returns it converted to `kind`."""
        if value is None:
            return self.default
        if self.kind is bool:
            if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
                raise OptionError(f"option {self.name}={value!r}: expected a bool")
            value = bool(value)
        elif self.kind is int:
            if isinstance(value, bool) or not float(value).is_integer():
                raise OptionError(f"option {self.name}={value!r}: expected an integer")
            value = int(value)
        elif self.kind is float:
            value = float(value)
        else:
            value = str(value)
        if self.choices and value not in self.choices:
            raise OptionError(f"option {self.name}={value!r}: use one of {list(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise OptionError(f"option {self.name}={value!r}: must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise OptionError(f"option {self.name}={value!r}: must be <= {self.maximum}")
        return value

    def describe(self) -> str:
        extra = f"one of {list(self.choices)}" if self.choices else self.kind.__name__
        return f"{self.name}: {self.help} [{extra}, default {self.default!r}]"


STEPS_OPTION = DecodeOption(
    "steps", int, None, "decode with the first K segments (steps) only; default: all in the file",
    minimum=0, rate=True)


def check_options(codec_or_options: Any, options: Mapping[str, Any], *, fill_defaults: bool = True
                  ) -> dict[str, Any]:
    """Validates `options` against declared decode options; returns them checked (+ defaults).

    codec_or_options: a codec (class or instance) with `decode_options`, or a sequence of DecodeOption.
    Raises OptionError naming the codec's options when a key is not declared or a value is bad.
    """
    declared = getattr(codec_or_options, "decode_options", codec_or_options) or ()
    by_name = {o.name: o for o in declared}
    unknown = [k for k in options if k not in by_name]
    if unknown:
        name = getattr(codec_or_options, "name", "this codec")
        known = "; ".join(o.describe() for o in declared) or "none"
        raise OptionError(f"the {name!r} codec has no decode option {unknown[0]!r}. Its options: {known}")
    out = {k: by_name[k].check(v) for k, v in options.items()}
    if fill_defaults:
        for o in declared:
            out.setdefault(o.name, o.default)
    return out


# ---------------------------------------------------------------------------------------------------
# Registration: the one table


@dataclasses.dataclass(frozen=True)
class MethodEntry:
    """What `register` records for a method.

    name: config.method value and the codec name in file headers.
    make_method: config -> Method (what the training loop optimises).
    make_codec: (config, params) -> Codec, or None for a generative model that writes no files.
    codec_id: the container's one-byte codec id (1..255), None iff make_codec is None.
    decode_options: the codec's declared options (read from `make_codec.decode_options`).
    module: the module that registered it.
    """

    name: str
    make_method: Callable[[Any], Any]
    make_codec: Callable[..., Any] | None
    codec_id: int | None
    decode_options: tuple[DecodeOption, ...]
    module: str

    @property
    def is_codec(self) -> bool:
        return self.make_codec is not None

    @property
    def progressive(self) -> bool:
        return any(o.name == "steps" for o in self.decode_options)


_ENTRIES: dict[str, MethodEntry] = {}
_BY_ID: dict[int, str] = {}


def register(name: str, *, method: Callable[[Any], Any], codec: Callable[..., Any] | None = None,
             codec_id: int | None = None, decode_options: Sequence[DecodeOption] | None = None
             ) -> MethodEntry:
    """Registers a method (call it at module level, next to the class).

    method: config -> Method. codec: (config, params) -> Codec (usually the codec class), or None.
    codec_id: the file header's codec id, required with `codec`, unique, in 1..255.
    decode_options: defaults to `codec.decode_options`.
    Registering the same name again from the same module (a module reload) replaces the entry; a
    clash with another module's name or codec id is a RegistryError.
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise RegistryError(f"method name must be a non-empty identifier, got {name!r}")
    if (codec is None) != (codec_id is None):
        raise RegistryError(f"method {name!r}: pass codec and codec_id together (a codec needs a file id)")
    if codec_id is not None and not (isinstance(codec_id, int) and 1 <= codec_id <= 255):
        raise RegistryError(f"method {name!r}: codec_id must be an int in 1..255, got {codec_id!r}")
    module = getattr(method, "__module__", None) or "?"
    old = _ENTRIES.get(name)
    if old is not None and old.module != module:
        raise RegistryError(f"method {name!r} is already registered by {old.module}; pick another name")
    if codec_id is not None and _BY_ID.get(codec_id, name) != name:
        raise RegistryError(f"codec id {codec_id} of {name!r} is already used by {_BY_ID[codec_id]!r}; "
                            f"used ids: {sorted(_BY_ID)}")
    if decode_options is None:
        if codec is not None and not hasattr(codec, "decode_options"):
            raise RegistryError(
                f"method {name!r}: the codec {codec!r} declares no `decode_options`; register the codec class "
                "(which declares them, () for none) or pass decode_options= explicitly")
        decode_options = getattr(codec, "decode_options", ()) if codec is not None else ()
    names = [o.name for o in decode_options]
    if len(set(names)) != len(names):
        raise RegistryError(f"method {name!r}: duplicate decode options {names}")
    if old is not None and old.codec_id is not None:
        _BY_ID.pop(old.codec_id, None)
    entry = MethodEntry(name=name, make_method=method, make_codec=codec, codec_id=codec_id,
                        decode_options=tuple(decode_options), module=module)
    _ENTRIES[name] = entry
    if codec_id is not None:
        _BY_ID[codec_id] = name
    return entry


def registered() -> dict[str, MethodEntry]:
    """The methods registered so far (gencomp_jax.registry.discover() imports the built-in ones)."""
    return dict(_ENTRIES)


def codec_id(name: str) -> int:
    """Container codec id of codec `name`; RegistryError if no registered codec has that name."""
    entry = _ENTRIES.get(name)
    if entry is None or entry.codec_id is None:
        hint = ("no codec is registered yet: call gencomp_jax.registry.discover() first (it imports the "
                "built-in codecs; the CLI and registry.get do)" if not _BY_ID else
                "a codec registers with gencomp_jax.codecs.base.register(..., codec_id=)")
        raise RegistryError(f"unknown codec {name!r}; registered codecs: {sorted(_BY_ID.values())} ({hint})")
    return entry.codec_id


def codec_name(codec_id_: int) -> str | None:
    """Codec name of a container codec id, None if no registered codec has it."""
    return _BY_ID.get(int(codec_id_))
