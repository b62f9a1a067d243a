"""Variational diffusion model (method "vdm", gencomp_jax/objectives/vdm.py): trained on its ELBO in bits/dim.

Presets (comma-separated, e.g. `configs/vdm.py:runlocal`):
  runlocal     CPU-sized: 32x32 crops of the bundled scikit-image photographs (held-out: coffee, rocket),
               small multi-resolution UNet, batch 16, 300 steps
  cifar10      TFDS cifar10 (32x32), VDM-paper-like UNet, batch 128 (GPU)
  imagenet64   TFDS imagenet_resized/64x64, batch 64 (GPU)
  uqdm_tiny / uqdm_small   the UQDM reference's single-resolution VDM network (167 K / 2.24 M params)
  schedule=s   linear | cosine | learned_linear | learned_nnet
  steps=n      override train.num_steps
"""

from gencomp_jax.config_utils import base_config, cpu_run, gpu_run, parse_arg

RUNLOCAL_TRAIN = "astronaut,chelsea,motorcycle_left,motorcycle_right,hubble_deep_field,immunohistochemistry,retina"
RUNLOCAL_HELDOUT = "coffee,rocket"


def get_config(arg=None):
    args = parse_arg(arg, runlocal=False, cifar10=False, imagenet64=False, uqdm_tiny=False, uqdm_small=False,
                     schedule="learned_linear", steps=0)
    config = base_config()
    config.method = "vdm"
    m = config.model
    m.net = dict(arch="unet", ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_levels=(1, 2),
                 dropout=0.0, norm_groups=16)
    m.schedule = args.schedule
    m.gamma_min = -13.3
    m.gamma_max = 5.0
    m.timesteps = 0
    m.prediction = "eps"
    m.sampler = "ode_heun"
    m.sample_steps = 100
    m.num_samples = 16
    m.sample_size = 0
    config.optim.learning_rate = 2e-4
    config.optim.warmup_steps = 1000  # clipping: base_config's 1.0
    config.train.ema_decay = 0.9999

    if args.runlocal:
        m.net = dict(arch="unet", ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), norm_groups=8)
        m.sample_steps = 50
        cpu_run(config, num_steps=300, crop_size=32, batch_size=16, warmup_steps=20, log_every=50,
                checkpoint_every=300)
        config.data.path = RUNLOCAL_TRAIN
        config.data.eval_source = "skimage"
        config.data.eval_path = RUNLOCAL_HELDOUT
        config.data.eval_num_batches = 4
        config.train.eval_every = 100
    if args.cifar10 or args.imagenet64:
        gpu_run(config, name="cifar10" if args.cifar10 else "imagenet_resized/64x64",
                crop_size=32 if args.cifar10 else 64, batch_size=128 if args.cifar10 else 64,
                eval_split="test" if args.cifar10 else "validation")
        config.data.eval_num_batches = 20
        m.net = dict(arch="unet", ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_levels=(1, 2, 3),
                     dropout=0.1, norm_groups=32)
    if args.uqdm_tiny or args.uqdm_small:
        m.net = dict(arch="vdm_unet", preset="tiny" if args.uqdm_tiny else "small")
        m.gamma_min, m.gamma_max = -12.3, 6.0
    if args.steps:
        config.train.num_steps = int(args.steps)
    return config
