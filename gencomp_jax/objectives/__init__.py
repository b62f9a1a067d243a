"""Training objectives of generative models (VDM ELBO, flow matching, conditional variants).

One small class per objective; each registers itself (codecs/base.py `register`) so that
`config.method` finds it through gencomp_jax.registry.
"""
