"""Temporary registration of the diffusion Methods while they move out of models/vdm.py."""

from gencomp_jax.codecs.base import register
from gencomp_jax.models import vdm as _vdm

register("vdm", method=_vdm.make_method)
register("flow", method=_vdm.make_method)
