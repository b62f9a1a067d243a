"""Flow matching (method "flow", gencomp_jax/objectives/flow.py): alpha = 1 - t, sigma = t, velocity network.

Same presets as configs/vdm.py (runlocal, cifar10, imagenet64, uqdm_tiny, uqdm_small, steps=n); held-out
evaluation reports the flow-matching loss and the VDM bound in bits/dim of the same network.
"""

import pathlib

from gencomp_jax.config_utils import load_config


def get_config(arg=None):
    vdm_file = pathlib.Path(__file__).with_name("vdm.py")
    config = load_config(f"{vdm_file}:{arg or ''}")
    config.method = "flow"
    config.model.sampler = "ode_euler"
    config.model.schedule = "linear"
    net = dict(config.model.net)
    if net.get("arch") == "vdm_unet":
        net["residual_input"] = False
    config.model.net = net
    return config
