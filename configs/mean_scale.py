"""Minnen et al. 2018 mean-scale hyperprior (method "mean_scale", gencomp_jax/codecs/ntc.py).

The keys and presets of configs/hyperprior.py (runlocal, quality=q, lmbda=x, gpu, steps=n; this
file starts from it), e.g. `configs/mean_scale.py:runlocal,lmbda=0.0067`, except that quality=q
takes CompressAI's mbt2018-mean table (N, M = 128, 192 for q <= 4; 192, 320 above).
"""

import pathlib

from gencomp_jax.config_utils import load_config, parse_arg

# CompressAI mbt2018-mean, MSE: quality -> (lambda, N, M)
QUALITIES = {
    1: (0.0018, 128, 192), 2: (0.0035, 128, 192), 3: (0.0067, 128, 192), 4: (0.0130, 128, 192),
    5: (0.0250, 192, 320), 6: (0.0483, 192, 320), 7: (0.0932, 192, 320), 8: (0.1800, 192, 320),
}


def get_config(arg=None):
    args = parse_arg(arg, runlocal=False, gpu=False, quality=0, lmbda=0.0, steps=0)
    config = load_config(f"{pathlib.Path(__file__).with_name('hyperprior.py')}:{arg or ''}")
    config.method = "mean_scale"
    if args.quality:
        config.model.lmbda, config.model.N, config.model.M = QUALITIES[args.quality]
        if args.runlocal:
            config.model.N, config.model.M = 64, 96
        if args.lmbda:
            config.model.lmbda = float(args.lmbda)
    return config
