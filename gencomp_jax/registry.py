"""Method registry: `config.method` name -> Method / Codec, discovered by name.

Methods register themselves next to their class with `gencomp_jax.codecs.base.register` (name,
container codec id, constructors; decode options from the codec class). This module only finds them:
`discover()` imports every module of the packages in PACKAGES once (big_vision-style discovery by
name), so a new method is one new module there and no edit here, in the container or in the CLI.
A method defined elsewhere (a test, a user's package) registers by being imported.

  make_method(config) -> Method          (what the training loop optimises; see codecs/base.py)
  make_codec(config, params) -> Codec    (compress / decompress real files; see codecs/base.py)
  get(name) -> MethodEntry; names(); codec_names()
"""

from __future__ import annotations

import importlib
import pkgutil

from gencomp_jax.codecs import base

PACKAGES = ("gencomp_jax.codecs", "gencomp_jax.objectives")
_discovered = False


def discover() -> dict[str, base.MethodEntry]:
    """Imports the built-in method modules (once) and returns every registered method."""
    global _discovered
    if not _discovered:
        for pkg_name in PACKAGES:
            pkg = importlib.import_module(pkg_name)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{pkg_name}.{info.name}")
        _discovered = True
    return base.registered()


def names() -> list[str]:
    """Every registered method name."""
    return sorted(discover())


def codec_names() -> list[str]:
    """Names of the registered methods that write files."""
    return sorted(n for n, e in discover().items() if e.is_codec)


def get(name: str) -> base.MethodEntry:
    """The registration of method `name`; RegistryError (a ValueError) with the known names if none."""
    entries = base.registered()
    if name not in entries:
        entries = discover()
    if name not in entries:
        raise base.RegistryError(f"Unknown method {name!r}. Known methods: {sorted(entries)}. "
                                 "Set config.method to one of them (see configs/).")
    return entries[name]


def make_method(config):
    """Builds the trainable Method for `config.method`."""
    return get(config.method).make_method(config)


def make_codec(config, params, **kwargs):
    """Builds the Codec for `config.method` from trained parameters."""
    entry = get(config.method)
    if not entry.is_codec:
        raise base.RegistryError(
            f"Method {config.method!r} is a generative model, not a codec: it cannot compress files. "
            f"Codecs: {codec_names()}")
    return entry.make_codec(config, params, **kwargs)
