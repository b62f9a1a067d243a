"""HFD: MSE-trained NTC stage 1 + conditional diffusion (or flow) decoder (method "hfd", gencomp_jax/codecs/hfd.py).

Presets (comma-separated, e.g. `configs/hfd.py:runlocal,stage1=runs/hp`):
  runlocal     CPU-sized: stage 1 N=64, M=96; small UNet (ch 32, 3 levels); 64x64 crops, batch 8
  stage1=DIR   an NTC (`configs/hyperprior.py`) training workdir: stage 1 loaded from it and frozen. Without it,
               stage 1 is trained in the same run by its own MSE rate-distortion loss (stop-gradient into stage 2)
  lmbda=x      stage-1 rate-distortion trade-off (when trained here): bpp + lmbda * 255^2 * MSE
  flow         flow-matching decoder (Euler ODE) instead of the diffusion decoder (DDIM)
  residual=b   model X - Y (DIRAC, default) or X itself
  shift=s      log-SNR shift of the cosine schedule towards less noise (nats; default 2, runlocal 5: the residual
               X - Y of a ~0.8 bpp stage 1 has variance ~e^-5 in model space, so without the shift only 5% of the
               sampler's steps (13% at s=2, 48% at s=5) fall where the residual is above the noise)
  gpu          N=128, M=192, ch 128 UNet (4 levels), 256x256 crops of a TFDS/folder source, batch 16
  imagenet64   TFDS imagenet_resized/64x64 (the ImageNet-64 points of the UQDM repository)
  steps=n      override train.num_steps
"""

from gencomp_jax.config_utils import base_config, cpu_run, gpu_run, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, runlocal=False, gpu=False, imagenet64=False, stage1="", lmbda=0.0, flow=False,
                     residual=True, shift=None, steps=0)
    config = base_config()
    config.method = "hfd"
    m = config.model
    m.stage1 = dict(variant="hyperprior", N=128, M=192, lmbda=0.0130, workdir=str(args.stage1))
    m.decoder = "flow" if args.flow else "diffusion"
    m.residual = bool(args.residual)
    m.net = dict(arch="unet", ch=64, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_levels=(3,), norm_groups=16)
    m.prediction = "x0"
    m.max_snr = 5.0
    m.gamma_min = -13.3
    m.gamma_max = 5.0
    m.logsnr_shift = 2.0
    m.sampler = "ode_euler" if args.flow else "ddim"
    m.sample_steps = 20 if args.flow else 50
    m.noise_scale = 1.0
    m.realism = 1.0
    m.num_samples = 1
    m.sample_size = 0
    config.optim.learning_rate = 2e-4
    config.optim.warmup_steps = 1000  # clipping and EMA: base_config's 1.0, 0.999

    if args.runlocal:
        m.stage1 = dict(variant="hyperprior", N=64, M=96, lmbda=0.0130, workdir=str(args.stage1))
        m.net = dict(arch="unet", ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(2,), norm_groups=8)
        m.logsnr_shift = 5.0
        cpu_run(config, num_steps=3000)
    if args.gpu or args.imagenet64:
        m.stage1 = dict(variant="hyperprior", N=128, M=192, lmbda=0.0130, workdir=str(args.stage1))
        m.net = dict(arch="unet", ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_levels=(3,), norm_groups=32)
        gpu_run(config, name="clic" if args.gpu else "imagenet_resized/64x64", crop_size=256 if args.gpu else 64,
                batch_size=16 if args.gpu else 64)
    if args.shift is not None:
        m.logsnr_shift = float(args.shift)
    if args.lmbda:
        m.stage1.lmbda = float(args.lmbda)
    if args.steps:
        config.train.num_steps = int(args.steps)
    return config
