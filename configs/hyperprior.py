"""Ballé et al. 2018 scale hyperprior (method "hyperprior", gencomp_jax/codecs/ntc.py).

Presets (comma-separated, e.g. `configs/hyperprior.py:runlocal,lmbda=0.0067`):
  runlocal     CPU-sized: N=64, M=96, 128x128 crops, batch 2, 5000 steps (~4.5 min on 2 cores). 128-px crops,
               not 64: with 64-px crops z is 1x1, so h_a/h_s never see a latent away from the zero padding and
               learn a prior that only fits 64-px images (measured: 0.72 bpp on Kodak 64-px crops but 2.73 on
               whole Kodak images; with 128-px crops, the same pixels per step: 0.76 and 0.93)
  quality=q    q in 1..8: CompressAI's lambda table and N, M (128/192 for q<=5, 192/320 above)
  lmbda=x      rate-distortion trade-off: loss = bpp + lmbda * 255^2 * MSE
  gpu          N=128/M=192 (or per quality), 256x256 crops, batch 16, 1M steps on a TFDS/folder source
  steps=n      override train.num_steps
"""

from gencomp_jax.config_utils import base_config, cpu_run, gpu_run, parse_arg

# CompressAI bmshj2018-hyperprior, MSE: quality -> (lambda, N, M)
QUALITIES = {
    1: (0.0018, 128, 192), 2: (0.0035, 128, 192), 3: (0.0067, 128, 192), 4: (0.0130, 128, 192),
    5: (0.0250, 128, 192), 6: (0.0483, 192, 320), 7: (0.0932, 192, 320), 8: (0.1800, 192, 320),
}


def get_config(arg=None):
    args = parse_arg(arg, runlocal=False, gpu=False, quality=0, lmbda=0.0, steps=0)
    config = base_config()
    config.method = "hyperprior"
    config.model.N = 128
    config.model.M = 192
    config.model.lmbda = 0.0130
    # entropy parameters of new files from an integer network (codecs/latent.py, entropy/integer.py): the
    # same scale indexes on every platform; False writes the float-path files of before (mean_scale ignores it)
    config.model.integer_entropy = True

    if args.quality:
        if args.quality not in QUALITIES:
            raise ValueError(f"quality must be one of 1..8, got {args.quality}.")
        config.model.lmbda, config.model.N, config.model.M = QUALITIES[args.quality]

    # optimisation: base_config's (Adam 1e-4, warm-up 100, clipping 1.0, EMA 0.999)

    if args.runlocal:
        config.model.N, config.model.M = 64, 96
        cpu_run(config, num_steps=5000, crop_size=128, batch_size=2)
    if args.gpu:
        gpu_run(config, name="clic", crop_size=256, batch_size=16)
        config.optim.learning_rate = 1e-4
        config.optim.warmup_steps = 1000
    if args.lmbda:
        config.model.lmbda = float(args.lmbda)
    if args.steps:
        config.train.num_steps = int(args.steps)
    return config
