"""CDC: conditional diffusion decoder on a mean-scale hyperprior latent, trained end to end (method "cdc",
gencomp_jax/codecs/cdc.py; Yang & Mandt 2023, review Eq. 22).

Presets (comma-separated, e.g. `configs/cdc.py:runlocal,beta=0.02`):
  runlocal     CPU-sized: N=64, M=96, context maps (16, 32, 32, 64), UNet ch 32 with 3 levels; 64x64 crops, batch 8;
               beta=0.002 (0.02 settled at 0.07-0.1 bpp, far below the ~0.85-1 bpp runlocal NTC it is compared
               with; after 50 steps on BSDS500 crops: 0.60 bpp at 0.002 vs 0.20 at 0.02). Needs far more than the
               400 steps tried so far: its decoder learns to use the latent as slowly as an NTC synthesis learns
               (after 50 steps the one-call x0 at t=1 is 13 dB at every beta, also at beta=0)
  beta=x       rate weight: loss = beta * bpp + (1 - rho) * w(t) * MSE(x0) + rho * LPIPS, w(t) = min(SNR, 5)
               (model.loss_weight = "min_snr", the paper's) or 1 ("uniform", runlocal's: trains the decoder's use of
               the latent at high noise within CPU step counts)
  rho=x        LPIPS weight (the paper's models use 0 and 0.9)
  gpu          N=128, M=192 (the paper's ~ 2 levels wider), UNet ch 64 x (1, 2, 3, 4), 256x256 crops of a TFDS/folder
               source, batch 8
  imagenet64   TFDS imagenet_resized/64x64 (the ImageNet-64 points of the UQDM repository)
  steps=n      override train.num_steps
"""

from gencomp_jax.config_utils import base_config, cpu_run, gpu_run, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, runlocal=False, gpu=False, imagenet64=False, beta=0.0, rho=-1.0, steps=0)
    config = base_config()
    config.method = "cdc"
    m = config.model
    m.N, m.M = 128, 192
    m.context_features = (64, 64, 128, 128)
    m.context_norm_groups = 16
    m.net = dict(arch="unet", ch=64, ch_mult=(1, 2, 3, 4), num_res_blocks=2, attn_levels=(3,), norm_groups=16)
    m.beta = 0.02
    m.rho = 0.0
    m.max_snr = 5.0
    m.loss_weight = "min_snr"     # w(t) = min(SNR, max_snr); "uniform": w = 1 (runlocal)
    m.gamma_min = -13.3
    m.gamma_max = 5.0
    m.sample_steps = 65           # DDIM steps (the paper's default)
    m.noise_scale = 0.8           # temperature of the initial noise (the reference's 0.8)
    m.realism = 1.0
    config.optim.warmup_steps = 1000  # learning rate, clipping and EMA: base_config's 1e-4, 1.0, 0.999

    if args.runlocal:
        m.N, m.M = 64, 96
        m.context_features = (16, 32, 32, 64)
        m.context_norm_groups = 8
        m.net = dict(arch="unet", ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(2,), norm_groups=8)
        m.sample_steps = 20
        m.beta = 0.002
        # w(t) = 1: with min(SNR, 5) 2,500 steps leave the decoder ignoring the latent at high noise (ρ=0: samples
        # 15.2 dB, X* 14.6 dB); with w = 1 the same run gives X* 24.4 dB, samples 23.4 dB (BENCHMARKS.md)
        m.loss_weight = "uniform"
        cpu_run(config, num_steps=3000)
    if args.gpu or args.imagenet64:
        gpu_run(config, name="clic" if args.gpu else "imagenet_resized/64x64", crop_size=256 if args.gpu else 64,
                batch_size=8 if args.gpu else 64)
    if args.beta:
        m.beta = float(args.beta)
    if args.rho >= 0:
        m.rho = float(args.rho)
    if args.steps:
        config.train.num_steps = int(args.steps)
    return config
