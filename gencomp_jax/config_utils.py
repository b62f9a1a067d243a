"""Shared config schema and preset parsing for configs/<method>.py.

Every config file does

    def get_config(arg=None):
        config = base_config()
        config.method = "..."
        config.model = ...           # method-specific
        ... apply presets from parse_arg(arg) ...
        return config

and is launched as `--config configs/<method>.py:runlocal,lmbda=0.01`.
"""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses a big_vision-style config argument "runlocal,lmbda=0.01,quality=3".

    Bare words become True flags; `k=v` pairs are parsed as int, float, bool or str. Keys not in
    `defaults` raise a ValueError that lists the valid keys.
    """
    out = dict(defaults)
    if arg:
        for item in arg.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" in item:
                key, value = item.split("=", 1)
                parsed = parse_value(value)
            else:
                key, parsed = item, True
            if key not in defaults:
                raise ValueError(
                    f"Unknown config preset {key!r} in {arg!r}. Valid presets: {sorted(defaults)}."
                )
            out[key] = parsed
    return ml_collections.ConfigDict(out)


def parse_value(value: str):
    """'true'/'false' -> bool, then int, then float, else the string itself (preset and sweep values)."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def base_config() -> ml_collections.ConfigDict:
    """The sections shared by every method (data, optim, train, eval, mesh) with every default.

    Code that reads these sections uses plain attribute access (`config.data.prefetch`), never a
    default of its own: a method's config file changes only what differs from here.
    """
    c = ml_collections.ConfigDict()
    c.method = ""
    c.seed = 0
    c.model = ml_collections.ConfigDict()

    # Training data. source: "skimage" (bundled photos), "folder" (path), "tfds" (name/split).
    c.data = ml_collections.ConfigDict()
    c.data.source = "skimage"
    c.data.path = ""            # for source="folder": a directory (searched recursively) of PNG/JPEG
    c.data.name = ""            # for source="tfds": e.g. "clic", "div2k", "imagenet_resized/64x64"
    c.data.split = "train"
    c.data.data_dir = ""        # for source="tfds": TFDS data_dir ("" = TFDS default)
    c.data.crop_size = 64
    c.data.batch_size = 8       # global batch size, across all devices and hosts
    c.data.eval_source = ""     # held-out data for periodic evaluation ("" = none); same syntax as source
    c.data.eval_path = ""
    c.data.eval_split = ""
    c.data.eval_crop_size = 0   # 0 = same as crop_size
    c.data.eval_num_batches = 4
    c.data.random_flip = True   # horizontal flips of training crops
    c.data.small_images = "pad" # images smaller than the crop: "pad" (mirror) or "upscale" (bicubic)
    c.data.prefetch = 2         # batches read ahead per process (0 = none); values unaffected
    c.data.workers = -1         # grain worker processes; -1 = sized to this host, 0 = read in this process
    c.data.image_key = ""       # for source="tfds": feature name ("" = "image", then "hr", then the only image)

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-4
    c.optim.warmup_steps = 100
    c.optim.decay = "cosine"    # "cosine" | "constant"
    c.optim.end_factor = 0.1    # final lr = learning_rate * end_factor (cosine)
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8          # Adam(W) epsilon
    c.optim.momentum = 0.0      # for optimizer "sgd"
    c.optim.weight_decay = 0.0
    c.optim.clip_norm = 1.0     # global-norm gradient clipping; 0 disables

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.log_every = 50
    c.train.eval_every = 0      # 0 = only at the end
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 2
    c.train.ema_decay = 0.999   # 0 disables EMA; checkpoints hold both params and EMA params
    c.train.progress_bar = True

    c.eval = ml_collections.ConfigDict()
    c.eval.dataset = "kodak"

    # Device mesh: shape with -1 = all remaining devices; batch is sharded along "data".
    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1,)
    c.mesh.axes = ("data",)
    c.mesh.fsdp_min_size = 0    # >0: parameters with at least this many elements are sharded along "fsdp"
    return c


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads `configs/<name>.py:<presets>` the way the launchers' --config flag does.

    spec: a path to a config file or a bare method name (resolved to the repository's
    configs/<name>.py), optionally followed by ":<presets>", e.g. "uqdm:runlocal" or
    "configs/hyperprior.py:runlocal,lmbda=0.01".
    """
    import importlib.util
    import pathlib

    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if file.suffix != ".py":
        file = pathlib.Path(__file__).resolve().parents[1] / "configs" / f"{path}.py"
    if not file.exists():
        raise FileNotFoundError(f"No config file {file} (from {spec!r}); pass a path to configs/<method>.py "
                                "or a method name with a config in the repository's configs/ folder.")
    module_spec = importlib.util.spec_from_file_location(f"gencomp_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def cpu_run(config: ml_collections.ConfigDict, *, num_steps: int, crop_size: int = 64, batch_size: int = 8,
            learning_rate: float = 1e-3, warmup_steps: int = 50, log_every: int = 100,
            checkpoint_every: int = 1000, ema_decay: float = 0.99) -> ml_collections.ConfigDict:
    """Sizes a `runlocal` run for a CPU: crops of the bundled scikit-image photos, a high learning rate with a
    short warm-up, a short EMA; the run's length, log and checkpoint cadence. The one place the `runlocal`
    presets of the config files share."""
    config.data.source = "skimage"
    config.data.crop_size = crop_size
    config.data.batch_size = batch_size
    config.optim.learning_rate = learning_rate
    config.optim.warmup_steps = warmup_steps
    config.train.num_steps = num_steps
    config.train.log_every = log_every
    config.train.checkpoint_every = checkpoint_every
    config.train.ema_decay = ema_decay
    return config


def gpu_run(config: ml_collections.ConfigDict, *, name: str, crop_size: int, batch_size: int,
            num_steps: int = 1_000_000, eval_split: str | None = None) -> ml_collections.ConfigDict:
    """Sizes an accelerator run on the TFDS dataset `name`: crops, global batch, `num_steps` training steps
    logged every 1000 and evaluated and checkpointed every 10 000. With `eval_split`, held-out evaluation
    reads that split of the same dataset. The one place the GPU presets of the config files share."""
    config.data.source = "tfds"
    config.data.name = name
    config.data.crop_size = crop_size
    config.data.batch_size = batch_size
    if eval_split is not None:
        config.data.eval_source = "tfds"
        config.data.eval_split = eval_split
    config.train.num_steps = num_steps
    config.train.log_every = 1000
    config.train.eval_every = 10_000
    config.train.checkpoint_every = 10_000
    return config
