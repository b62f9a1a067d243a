"""Training steps and crop sampling for the NTC benchmarks (benchmarks/ntc.py, benchmarks/peers/).

Benchmarks own these (they do not import test helpers):

    random_crops(images, rng, num, size, *, flip=False) -> uint8 [num, size, size, 3]
    train_step(method, tx, *, aux_tx=None) -> (init(params) -> opt_state, step)
        step(params, opt_state, x, key) -> (params, opt_state, metrics): one jitted step of
        `method.loss` (train=True) on a model-float batch x with the optax transformation `tx`.
        With `aux_tx` (CompressAI's examples/train.py loop): `tx` updates every parameter but the
        stored medians of the hyper-latent prior (compat="compressai"), and `aux_tx` updates those
        medians with CompressAI's aux loss restricted to them, sum_c |logit CDF_c(median_c)|, the
        density's own parameters held fixed (stop_gradient, as CompressAI's `aux_loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gencomp_jax.entropy.factorized import FactorizedPrior
from gencomp_jax.models.hyperprior import factorized_prior


def random_crops(images, rng, num: int, size: int, *, flip: bool = False) -> np.ndarray:
    """uint8 [num, size, size, 3]: crops of `images` (uint8 [H, W, 3] arrays), a random image and
    position per crop from `rng` (np.random.Generator); with flip, half are mirrored left-right."""
    out = np.empty((num, size, size, 3), np.uint8)
    for n in range(num):
        img = images[rng.integers(len(images))]
        i, j = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        crop = img[i:i + size, j:j + size]
        out[n] = crop[:, ::-1] if flip and rng.random() < 0.5 else crop
    return out


def _median_aux_loss(prior: FactorizedPrior, prior_params) -> jax.Array:
    """CompressAI's aux loss on the median quantile: sum_c |logit CDF_c(median_c)| (target 0)."""
    fixed = {k: (v if k == "medians" else jax.lax.stop_gradient(v)) for k, v in prior_params.items()}
    logits = prior.apply({"params": fixed}, fixed["medians"][:, None, None],
                         method=lambda m, x: m._logits_cdf(x))
    return jnp.sum(jnp.abs(logits))


def train_step(method, tx, *, aux_tx=None):
    """See the module docstring."""
    if aux_tx is None:
        def init(params):
            return tx.init(params)

        @jax.jit
        def step(params, opt, x, key):
            (loss, metrics), g = jax.value_and_grad(method.loss, has_aux=True)(params, {"image": x}, key, True)
            upd, opt = tx.update(g, opt, params)
            return optax.apply_updates(params, upd), opt, metrics

        return init, step

    if method.model.compat != "compressai":
        raise ValueError("aux_tx trains stored medians: build the method with model.compat='compressai'.")
    prior_module = factorized_prior(int(method.model.N), method.model.compat)

    def split(params):
        prior = dict(params["params"]["prior"])
        medians = prior.pop("medians")
        main = {**params, "params": {**params["params"], "prior": prior}}
        return main, medians

    def merge(main, medians):
        return {**main, "params": {**main["params"], "prior": {**main["params"]["prior"], "medians": medians}}}

    def init(params):
        main, medians = split(params)
        return tx.init(main), aux_tx.init(medians)

    @jax.jit
    def step(params, opt, x, key):
        main, medians = split(params)
        opt_main, opt_aux = opt

        def loss_fn(main):
            return method.loss(merge(main, medians), {"image": x}, key, True)

        (_, metrics), g = jax.value_and_grad(loss_fn, has_aux=True)(main)
        upd, opt_main = tx.update(g, opt_main, main)
        main = optax.apply_updates(main, upd)
        prior = {**main["params"]["prior"], "medians": medians}
        aux, g_med = jax.value_and_grad(lambda m: _median_aux_loss(prior_module, {**prior, "medians": m}))(medians)
        upd, opt_aux = aux_tx.update(g_med, opt_aux, medians)
        medians = optax.apply_updates(medians, upd)
        return merge(main, medians), (opt_main, opt_aux), {**metrics, "aux": aux}

    return init, step
