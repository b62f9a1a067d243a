"""UQDM (universally quantized diffusion model): progressive lossy-to-lossless compression.

Launch: `python experiments/train.py --config configs/uqdm.py:runlocal --workdir /tmp/uqdm`.

Presets (comma-separated, big_vision style):
  runlocal        CPU-sized: scikit-image photos, 32x32 crops, batch 8, 2000 steps, tiny network.
  net=tiny|small  the UQDM reference's VDM-style single-resolution network ("tiny": 167 K
                  parameters, embedding 32, 1 block; "small": 2.24 M, embedding 64, 8 blocks).
  cifar10         GPU: TFDS cifar10 (32x32), batch 128, small network, 500k steps.
  imagenet64      GPU: TFDS imagenet_resized/64x64, batch 64, small network, 500k steps, 64 tiles.
  diffusion_steps=T   number of diffusion steps T (default 4; = step segments of a file).
  family=logistic|gaussian      base density g of the reverse kernels.
  base=forward_kernel|posterior base std of g (reference code / paper text).
  learned_scale=True|False      learned per-element scale factor of g.
  steps=N         training steps (train.num_steps), as in configs/vdm.py.
"""

from __future__ import annotations

from gencomp_jax.config_utils import base_config, cpu_run, gpu_run, parse_arg
from gencomp_jax.models.uqdm import default_model_config


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, net="", cifar10=False, imagenet64=False, diffusion_steps=4,
                  family="logistic", base="forward_kernel", learned_scale=True, steps=0)
    c = base_config()
    c.method = "uqdm"
    c.model = default_model_config()
    c.model.diffusion_steps = int(a.diffusion_steps)
    c.model.family = a.family
    c.model.base_scale = a.base
    c.model.learned_scale = bool(a.learned_scale)

    # Reference optimisation: Adam lr 2e-4, warm-up 1000, clip 1.0, EMA 0.9999, no weight decay.
    c.optim.learning_rate = 2e-4
    c.optim.warmup_steps = 1000
    c.optim.decay = "constant"
    c.optim.clip_norm = 1.0
    c.train.ema_decay = 0.9999
    c.data.crop_size = 32
    c.model.tile_size = 32
    c.eval.dataset = "kodak"
    net = "tiny"

    if a.cifar10:
        gpu_run(c, name="cifar10", crop_size=32, batch_size=128, num_steps=500_000, eval_split="test")
        c.model.tile_size = 32
        c.model.tile_batch = 64          # GPU codec throughput (stored in each file)
        net = "small"
    if a.imagenet64:
        gpu_run(c, name="imagenet_resized/64x64", crop_size=64, batch_size=64, num_steps=500_000, eval_split="validation")
        c.model.tile_size = 64
        c.model.tile_batch = 16          # GPU codec throughput (stored in each file)
        net = "small"
    if a.runlocal:
        cpu_run(c, num_steps=2000, crop_size=32, warmup_steps=100)
        c.model.tile_size = 32
        c.optim.decay = "cosine"
        c.eval.dataset = "kodak"
        net = "tiny"
    if a.net:
        net = a.net
    if net not in ("tiny", "small"):
        raise ValueError(f"net={net!r}: use 'tiny' or 'small' (the UQDM reference presets).")
    c.model.net = {"arch": "vdm_unet", "preset": net}
    if a.steps:
        c.train.num_steps = int(a.steps)
    return c
