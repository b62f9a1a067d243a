"""gencomp_jax: diffusion-based generative image compression in JAX/Flax.

Map of the package (dependencies point one way, top to bottom):
  nn, diffusion, entropy, channel, theory, metrics, data   -- building blocks, pure jnp / linen
  models                                                   -- linen models built from nn
  codecs                                                   -- Codec/Method implementations per method
  train, eval                                              -- drive codecs and models
  cli                                                      -- argument parsing only
"""

__version__ = "0.1.0"
