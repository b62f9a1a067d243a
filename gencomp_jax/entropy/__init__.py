"""Entropy models and coding (pure functions of parameters; rates in bits).

  densities             discretized / uniform-convolved Gaussian and logistic bin probabilities (jnp)
  coder                 integer tables (quantize_pmf) and ANS coding via constriction (numpy)
  factorized            Ballé's learned factorized prior (linen) and its coding tables
  gaussian_conditional  Gaussian conditional with a scale table (likelihood, tables, indexes)
"""
