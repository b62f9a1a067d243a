"""Method registry: `config.method` name -> module that implements it.

Each registered module exposes
  make_method(config) -> Method          (what the training loop optimises; see codecs/base.py)
and, if the method is a codec,
  make_codec(config, params) -> Codec    (compress / decompress real files; see codecs/base.py)

Modules are imported lazily so that importing the registry costs nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS: dict[str, str] = {
    "hyperprior": "gencomp_jax.codecs.ntc",
    "vdm": "gencomp_jax.models.vdm",
    "flow": "gencomp_jax.models.vdm",
    "uqdm": "gencomp_jax.codecs.uqdm",
}


def get_module(name: str) -> ModuleType:
    """Returns the module that implements method `name`."""
    if name not in METHODS:
        raise ValueError(
            f"Unknown method {name!r}. Known methods: {sorted(METHODS)}. "
            "Set config.method to one of them (see configs/)."
        )
    return importlib.import_module(METHODS[name])


def make_method(config):
    """Builds the trainable Method for `config.method`."""
    return get_module(config.method).make_method(config)


def make_codec(config, params):
    """Builds the Codec for `config.method` from trained parameters."""
    module = get_module(config.method)
    if not hasattr(module, "make_codec"):
        raise ValueError(
            f"Method {config.method!r} is a generative model, not a codec: it cannot compress files. "
            f"Codecs: {[k for k in METHODS if hasattr(importlib.import_module(METHODS[k]), 'make_codec')]}"
        )
    return module.make_codec(config, params)
