"""gencomp_jax: diffusion-based generative image compression in JAX/Flax.

Map of the package (dependencies point one way, top to bottom):
  nn, diffusion, entropy, channel, theory, metrics, data   -- building blocks, pure jnp / linen
                                                              (data.images: the one uint8 <-> model-float
                                                              conversion; entropy.varint: the one varint)
  models                                                   -- linen networks built from nn
  objectives                                               -- training objectives of generative models
                                                              (VDM, flow matching, conditional denoising)
  codecs                                                   -- base.py: the contract and register(), the one
                                                              table of methods / codec ids / decode options;
                                                              bitstream.py: the container; latent.py: stage-1
                                                              latent codecs; progressive.py: the base of
                                                              per-step codecs; one module per method
  registry                                                 -- discover(): finds the registered methods by name
  train, eval                                              -- drive codecs and models
  cli                                                      -- argument parsing only
Adding a method: gencomp_jax/codecs/README.md.
"""

__version__ = "0.1.0"
