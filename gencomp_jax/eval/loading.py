"""Loads a trained codec from a training workdir (config.json + latest checkpoint), and evaluation sets."""

from __future__ import annotations

import pathlib


def load_codec(workdir, *, ema: bool = True, step: int | None = None):
    """Codec (codecs/base.py) of the latest (or given) checkpoint in `workdir`.

    `workdir` may also be a checkpoint published by the anchors' code (eval/pretrained.py): a UQDM
    reference folder (config.json + checkpoint.pt) or a CompressAI state-dict file (.pth / .pth.tar).

    = gencomp_jax.train.checkpoint.load_params(workdir) + gencomp_jax.registry.make_codec(config, params).
    ema=True uses the EMA parameters (what evaluation should use). Raises FileNotFoundError with a
    clear message if `workdir` is not a training workdir.
    """
    path = pathlib.Path(workdir)
    from gencomp_jax.eval import pretrained

    if pretrained.is_pretrained(path):  # the anchors' published checkpoints (UQDM folder, CompressAI .pth)
        from gencomp_jax import registry

        return registry.make_codec(*pretrained.load(path))
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint workdir {str(path)!r} does not exist (pass the --workdir used for "
                                "training)")
    from gencomp_jax import registry
    from gencomp_jax.train import checkpoint

    kwargs = {"ema": ema} if step is None else {"ema": ema, "step": step}
    config, params = checkpoint.load_params(path, **kwargs)
    return registry.make_codec(config, params)


def load_eval_set(name_or_path: str, *, limit: int | None = None):
    """[(name, uint8 [H, W, 3])] of an evaluation set (gencomp_jax.data.load_eval_set): "kodak",
    "skimage", "tfds:<name>[:<split>]" or a folder."""
    from gencomp_jax import data

    return data.load_eval_set(name_or_path, limit=limit)
