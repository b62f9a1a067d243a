"""Empty stand-ins for modules the PyTorch reference codes import but never use on our paths.

Only the golden-value scripts (`make_uqdm_reference_golden.py`, `make_compressai_golden.py`) import
this, and only in a throwaway venv with torch (never the project's venv; torch is no dependency):

- CompressAI 1.2.8's package `__init__` imports torchvision, torch_geometric, requests, pandas and
  matplotlib only to fill its dataset/transform registries;
- the UQDM reference `uqdm.py` imports tensorflow and tensorflow_compression at module level for its
  range coder, which the golden values do not use (they are the model's terms, not its files).

`install()` puts a finder first on `sys.meta_path` that returns an empty module for those names (any
attribute is a do-nothing class, so `class X(torch_geometric.transforms.BaseTransform)` and decorators
still work). Code that really *calls* them fails loudly instead of giving numbers.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

STUB_ROOTS = ("torchvision", "torch_geometric", "requests", "pandas", "matplotlib", "tensorflow",
              "tensorflow_compression")


class _Unavailable:
    """Stand-in for any attribute of a stubbed module: subclassable, usable as a no-op decorator."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], type):
            return args[0]  # decorator use
        raise RuntimeError("a stubbed module (reference_stubs.STUB_ROOTS) was called for real")


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in STUB_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
