"""flax.linen building blocks (channels-last)."""

from gencomp_jax.nn.layers import (GDN, IGDN, StridedConv, SubpixelConv, depth_to_space, lower_bound,  # noqa: F401
                                   nonneg_param, polyphase_kernels)
