"""Training objectives of generative models: one small class per objective.

  base.py        DiffusionObjective (network call, conditioning on batch["cond"], sampling),
                 VPObjective (log-SNR schedule, fixed or learned), LogSNRSchedule
  vdm.py         VDM: negative ELBO in bits/dim, typed per-example ELBOTerms     (method "vdm")
  flow.py        FlowMatching: Eq. 8, and its bits/dim as a VP diffusion on eval  (method "flow")
  denoising.py   X0Denoising: min(SNR, 5)-weighted x0 regression on a cosine schedule, the decoder
                 objective of CDC / HFD (conditional; DenoisingTerms with x0_hat for LPIPS)

Each registered objective registers itself next to its class (codecs/base.py `register`), so that
`config.method` finds it through gencomp_jax.registry.
"""
