"""Flow matching (method "flow", gencomp_jax/models/vdm.py): alpha = 1 - t, sigma = t, velocity network.

Same presets as configs/vdm.py (runlocal, cifar10, imagenet64, uqdm_tiny, uqdm_small, steps=n); held-out
evaluation reports the flow-matching loss and the VDM bound in bits/dim of the same network.
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location("_vdm_config", pathlib.Path(__file__).with_name("vdm.py"))
_vdm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_vdm)


def get_config(arg=None):
    config = _vdm.get_config(arg, method="flow")
    config.model.schedule = "linear"
    net = dict(config.model.net)
    if net.get("arch") == "vdm_unet":
        net["residual_input"] = False
    config.model.net = net
    return config
