"""Checkpoints published by the anchors' own code, loaded into this library's codecs without PyTorch.

`gencomp compress --checkpoint PATH` accepts both (eval/loading.load_codec -> `load`):

- UQDM reference (github.com/mandt-lab/uqdm, `load_checkpoint` layout): a folder with `config.json` and
  the torch file it names (`restore_ckpt`, e.g. `checkpoint.pt`), as released for uqdm-tiny/small/
  medium/big. `is_uqdm_reference_dir(path)`, `uqdm_reference_config(ref_config)`,
  `convert_uqdm_state(state, config, weights=)`, `load_uqdm_reference(path, weights=)`.
- CompressAI (github.com/InterDigitalInc/CompressAI) `bmshj2018-hyperprior` and `mbt2018-mean` state
  dicts (any quality; the zoo's .pth.tar files or `torch.save(model.state_dict())`):
  `convert_compressai_state(state)`, `load_compressai(path)`. The converted codec is NTC with
  `model.compat = "compressai"`: CompressAI's convolution geometry, [0, 1] images inside the transforms,
  its 4-layer entropy bottleneck with its learned medians, and its 64-scale table for coding, so that
  PSNR and file sizes match CompressAI's own (tests/eval/test_pretrained_compressai.py).

Which weights: the reference's `load_checkpoint` loads the checkpoint's `model` entry (the score
network's 65 tensors for tiny) into the network. Its learned noise schedule is *not* in that entry
(`Diffusion.gamma` is not part of `score_net`), so the reference evaluates and codes with the schedule's
initial value gamma(0) = gamma_min; the trained schedule survives only as the last EMA tensor.
`weights="model"` (default) reproduces the reference's numbers; `weights="ema"` loads every EMA tensor
(network and schedule: gamma(0) = gamma_max - |w_ema|), what the reference's trainer evaluated.

Layout differences handled by the conversion (NCHW torch -> NHWC linen): conv kernels [O, I, kh, kw]
-> [kh, kw, I, O]; Linear / 1x1 conv [O, I] -> Dense [I, O]; the input Fourier features are ordered
(frequency, channel) by the reference and (channel, frequency) here, so `conv_in`'s input channels are
permuted. GroupNorm epsilon is torch's 1e-5 (`net.norm_epsilon`), the data grid VDM's bin centres
(`model.data_grid = "center"`).
"""

from __future__ import annotations

import json
import pathlib

import ml_collections
import numpy as np

WEIGHTS = ("model", "ema")
_TORCH_NORM_EPSILON = 1e-5


class PretrainedError(ValueError):
    """A checkpoint of another code base that cannot be converted (the message says why)."""


# ------------------------------------------------------------------------------------- UQDM reference


def is_uqdm_reference_dir(path) -> bool:
    """True for a folder in the UQDM reference's layout: config.json naming a torch checkpoint file."""
    p = pathlib.Path(path)
    cfg = p / "config.json"
    if not (p.is_dir() and cfg.is_file()):
        return False
    try:
        ref = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(ref, dict) and "restore_ckpt" in ref and "n_timesteps" in ref.get("model", {})


def uqdm_reference_config(ref: dict, *, tile_size: int = 64) -> ml_collections.ConfigDict:
    """This library's config (method "uqdm") for the reference's config.json dict.

    tile_size: images are coded in tiles of this size (the network's attention is global over a tile;
    the released models were trained on 64x64 ImageNet crops).
    """
    from gencomp_jax import config_utils
    from gencomp_jax.models import uqdm

    m = ref.get("model", {})

    def need(key):
        if key not in m:
            raise PretrainedError(f"UQDM reference config has no model.{key}; is this a config.json of "
                                  "github.com/mandt-lab/uqdm?")
        return m[key]

    if int(m.get("n_channels", 3)) != 3 or int(m.get("vocab_size", 256)) != 256:
        raise PretrainedError("only RGB 8-bit UQDM models (n_channels 3, vocab_size 256) can be converted.")
    schedule = need("noise_schedule")
    if schedule == "learned_linear" and not m.get("fix_gamma_max"):
        raise PretrainedError("UQDM reference with a learned gamma_max (fix_gamma_max false) is not supported: "
                              "this library's UQDM keeps gamma_max fixed.")
    if schedule not in ("learned_linear", "fixed_linear"):
        raise PretrainedError(f"unknown UQDM noise_schedule {schedule!r}.")
    family = {"logistic": "logistic", "normal": "gaussian", "gaussian": "gaussian"}.get(need("prior_type"))
    if family is None:
        raise PretrainedError(f"UQDM prior_type {m['prior_type']!r} has no counterpart here (logistic, normal).")

    c = config_utils.base_config()
    c.method = "uqdm"
    c.model = uqdm.default_model_config()
    mc = c.model
    mc.diffusion_steps = int(need("n_timesteps"))
    mc.family = family
    mc.base_scale = "forward_kernel" if m.get("base_prior_scale", "forward_kernel") == "forward_kernel" \
        else "posterior"
    mc.learned_scale = bool(m.get("learned_prior_scale", False))
    mc.gamma_min = float(need("gamma_min"))
    mc.gamma_max = float(need("gamma_max"))
    mc.learn_gamma = schedule == "learned_linear"
    mc.data_grid = "center"
    mc.net = ml_collections.ConfigDict(dict(
        arch="vdm_unet", embedding_dim=int(need("embedding_dim")), n_blocks=int(need("n_blocks")),
        norm_groups=int(need("norm_groups")), num_heads=int(m.get("n_attention_heads", 1)),
        attention_everywhere=bool(m.get("attention_everywhere", False)),
        fourier_exponents=(5.0, 6.0) if m.get("use_fourier_features", True) else (),
        dropout=float(m.get("dropout_prob", 0.0)), norm_epsilon=_TORCH_NORM_EPSILON))
    mc.tile_size = int(tile_size)
    c.data.crop_size = int(tile_size)
    c.model.pretrained = ml_collections.ConfigDict({"source": "mandt-lab/uqdm", "weights": "model"})
    return c


def _conv(w):
    return np.ascontiguousarray(np.transpose(np.asarray(w, np.float32), (2, 3, 1, 0)))


def _dense(w):
    w = np.asarray(w, np.float32)
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)


def _group_norm(state, key):
    return {"scale": np.asarray(state[f"{key}.weight"], np.float32),
            "bias": np.asarray(state[f"{key}.bias"], np.float32)}


def _resblock(state, key):
    p = {"GroupNorm_0": _group_norm(state, f"{key}.net1.0"),
         "Conv_0": {"kernel": _conv(state[f"{key}.net1.2.weight"]), "bias": state[f"{key}.net1.2.bias"]},
         "Dense_0": {"kernel": _dense(state[f"{key}.cond_proj.weight"])},
         "GroupNorm_1": _group_norm(state, f"{key}.net2.0"),
         "Conv_1": {"kernel": _conv(state[f"{key}.net2.2.weight"]), "bias": state[f"{key}.net2.2.bias"]}}
    if f"{key}.skip_conv.weight" in state:
        p["skip"] = {"kernel": _dense(state[f"{key}.skip_conv.weight"]), "bias": state[f"{key}.skip_conv.bias"]}
    return p


def _fourier_permutation(channels: int, n_freqs: int) -> np.ndarray:
    """perm with ours[j] = reference[perm[j]] for the input channels [z, sin, cos] of conv_in."""
    perm = list(range(channels))
    for part in range(2):  # sin, cos
        base = channels + part * channels * n_freqs
        for c in range(channels):
            for f in range(n_freqs):
                perm.append(base + f * channels + c)  # reference (freq, channel) -> ours (channel, freq)
    return np.asarray(perm)


def convert_uqdm_state(state: dict, config, *, weights: str = "model", ema=None) -> dict:
    """Reference `score_net` state dict {name: array} (+ the EMA list for weights="ema") -> {"params": ...}.

    state: the checkpoint's `model` entry. ema: the checkpoint's `ema["shadow_params"]` (a list, network
    tensors in `state` order then the schedule's w), needed for weights="ema".
    """
    if weights not in WEIGHTS:
        raise PretrainedError(f"weights={weights!r}; use one of {WEIGHTS}.")
    state = {k: np.asarray(v) for k, v in state.items()}
    schedule_w = None
    if weights == "ema":
        if ema is None or len(ema) != len(state) + 1:
            raise PretrainedError(f"weights='ema' needs the EMA list with {len(state) + 1} tensors (network + "
                                  f"schedule), got {None if ema is None else len(ema)}.")
        for (k, v), e in zip(list(state.items()), ema):
            if np.shape(e) != v.shape:
                raise PretrainedError(f"EMA tensor for {k} has shape {np.shape(e)}, expected {v.shape}.")
            state[k] = np.asarray(e)
        schedule_w = float(np.asarray(ema[-1]).reshape(()))
    m = config.model
    net_cfg = m.net
    n_blocks = int(net_cfg.n_blocks)
    if any(k.startswith("down_blocks.") and ".attention_block." in k for k in state) \
            or net_cfg.get("attention_everywhere", False):
        raise PretrainedError("attention_everywhere UQDM networks are not supported by this converter yet.")
    net = {}
    # time embedding MLP
    net["_TimeEmbed_0"] = {
        "Dense_0": {"kernel": _dense(state["embed_conditioning.0.weight"]), "bias": state["embed_conditioning.0.bias"]},
        "Dense_1": {"kernel": _dense(state["embed_conditioning.2.weight"]), "bias": state["embed_conditioning.2.bias"]}}
    k_in = _conv(state["conv_in.weight"])
    n_freqs = len(net_cfg.get("fourier_exponents", ()))
    if n_freqs:
        k_in = k_in[:, :, _fourier_permutation(3, n_freqs)]
    net["conv_in"] = {"kernel": k_in, "bias": state["conv_in.bias"]}
    # linen numbers blocks in creation order: down blocks, mid 1, mid 2, up blocks
    blocks = [f"down_blocks.{i}.resnet_block" for i in range(n_blocks)]
    blocks += ["mid_resnet_block_1", "mid_resnet_block_2"]
    blocks += [f"up_blocks.{i}.resnet_block" for i in range(n_blocks + 1)]
    for j, key in enumerate(blocks):
        net[f"ResBlock_{j}"] = _resblock(state, key)
    net["AttnBlock_0"] = {
        "GroupNorm_0": _group_norm(state, "mid_attn_block.layers.0"),
        "qkv": {"kernel": _dense(state["mid_attn_block.layers.1.weight"]),
                "bias": state["mid_attn_block.layers.1.bias"]},
        "proj_out": {"kernel": _dense(state["mid_attn_block.layers.3.weight"]),
                     "bias": state["mid_attn_block.layers.3.bias"]}}
    net["GroupNorm_0"] = _group_norm(state, "conv_out.0")
    net["conv_out"] = {"kernel": _conv(state["conv_out.2.weight"]), "bias": state["conv_out.2.bias"]}
    used = {k for k in state}
    gamma_0 = float(m.gamma_min) if schedule_w is None else float(m.gamma_max) - abs(schedule_w)
    params = {"net": net, "schedule": {"gamma_0": np.asarray(gamma_0, np.float32)}}
    leaves = _count(net)
    if leaves != len(used):
        raise PretrainedError(f"converted {leaves} tensors but the state dict has {len(used)}: the architecture "
                              "in config.json does not match the checkpoint.")
    return {"params": _as_f32(params)}


def _count(tree) -> int:
    return sum(_count(v) for v in tree.values()) if isinstance(tree, dict) else 1


def _as_f32(tree):
    if isinstance(tree, dict):
        return {k: _as_f32(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


def load_uqdm_reference(path, *, weights: str = "model", tile_size: int = 64):
    """(config, variables) of a UQDM reference checkpoint folder (config.json + checkpoint.pt)."""
    from gencomp_jax.metrics.inception import load_torch_checkpoint

    p = pathlib.Path(path)
    if not is_uqdm_reference_dir(p):
        raise PretrainedError(f"{p}: not a UQDM reference checkpoint folder (config.json with 'restore_ckpt' "
                              "and a 'model' section, as in github.com/mandt-lab/uqdm/checkpoints/uqdm-tiny).")
    ref = json.loads((p / "config.json").read_text())
    ckpt = p / ref["restore_ckpt"]
    if not ckpt.is_file():
        raise PretrainedError(f"{ckpt}: missing. Download it from the authors' page (uqdm-tiny is in the GitHub "
                              "repository mandt-lab/uqdm; small/medium/big on Hugging Face justuswill/UQDM).")
    raw = load_torch_checkpoint(str(ckpt))
    if not isinstance(raw, dict) or "model" not in raw:
        raise PretrainedError(f"{ckpt}: expected a dict with a 'model' state dict (the reference's save()).")
    config = uqdm_reference_config(ref, tile_size=tile_size)
    config.model.pretrained.weights = weights
    ema = raw.get("ema", {}).get("shadow_params") if weights == "ema" else None
    return config, convert_uqdm_state(raw["model"], config, weights=weights, ema=ema)


# ------------------------------------------------------------------------------------------- CompressAI

COMPRESSAI_ARCHS = {"bmshj2018-hyperprior": "hyperprior", "mbt2018-mean": "mean_scale"}


def _deconv(w):
    """ConvTranspose2d weight [Cin, Cout, k, k] -> this library's [k, k, Cin, Cout] (flipped: nn/layers.py
    SubpixelConv with geometry="torch")."""
    w = np.asarray(w, np.float32)
    return np.ascontiguousarray(np.transpose(w, (2, 3, 0, 1))[::-1, ::-1])


def _layer(state, key, fn):
    return {"kernel": fn(state[f"{key}.weight"]), "bias": np.asarray(state[f"{key}.bias"], np.float32)}


def _gdn(state, key):
    return {"beta": np.asarray(state[f"{key}.beta"], np.float32),
            "gamma": np.asarray(state[f"{key}.gamma"], np.float32)}


def compressai_arch(state: dict) -> str:
    """"bmshj2018-hyperprior" or "mbt2018-mean" from a state dict's tensors (h_s's output channels)."""
    if "g_a.0.weight" not in state or "h_s.4.weight" not in state:
        raise PretrainedError("not a CompressAI bmshj2018-hyperprior / mbt2018-mean state dict (no g_a.0 / h_s.4); "
                              "other CompressAI architectures are not supported.")
    m = state["g_a.6.weight"].shape[0]
    out = state["h_s.4.weight"].shape[0]
    if out == m:
        return "bmshj2018-hyperprior"
    if out == 2 * m:
        return "mbt2018-mean"
    raise PretrainedError(f"h_s outputs {out} channels for M={m}: neither bmshj2018-hyperprior nor mbt2018-mean.")


def convert_compressai_state(state: dict) -> tuple[str, int, int, dict]:
    """CompressAI ScaleHyperprior / MeanScaleHyperprior state dict -> (method, N, M, {"params": ...}).

    The params are for models/hyperprior.NTCModel(N, M, variant=method, compat="compressai"). The
    entropy models' integer CDF buffers (`_quantized_cdf`, ...) are not needed (tables here are a pure
    function of the parameters) and are ignored; the entropy bottleneck's medians are its quantiles[:, 0, 1].
    """
    state = {k: np.asarray(v) for k, v in state.items()}
    method = COMPRESSAI_ARCHS[compressai_arch(state)]
    n, m = state["g_a.0.weight"].shape[0], state["g_a.6.weight"].shape[0]
    g_a = {f"conv{i}": _layer(state, f"g_a.{2 * i}", _conv) for i in range(4)}
    g_a.update({f"gdn{i}": _gdn(state, f"g_a.{2 * i + 1}") for i in range(3)})
    g_s = {f"up{i}": _layer(state, f"g_s.{2 * i}", _deconv) for i in range(4)}
    g_s.update({f"igdn{i}": _gdn(state, f"g_s.{2 * i + 1}") for i in range(3)})
    h_a = {f"conv{i}": _layer(state, f"h_a.{2 * i}", _conv) for i in range(3)}
    h_s = {"up0": _layer(state, "h_s.0", _deconv), "up1": _layer(state, "h_s.2", _deconv),
           "conv2": _layer(state, "h_s.4", _conv)}
    eb = "entropy_bottleneck"
    n_layers = len([k for k in state if k.startswith(f"{eb}.matrices.")])
    if n_layers != 5:
        raise PretrainedError(f"entropy bottleneck with {n_layers - 1} hidden layers; CompressAI's default (4) "
                              "is supported.")
    prior = {"medians": np.asarray(state[f"{eb}.quantiles"][:, 0, 1], np.float32)}
    for i in range(n_layers):
        prior[f"matrix{i}"] = np.asarray(state[f"{eb}.matrices.{i}"], np.float32)
        prior[f"bias{i}"] = np.asarray(state[f"{eb}.biases.{i}"], np.float32)
        if i < n_layers - 1:
            prior[f"factor{i}"] = np.asarray(state[f"{eb}.factors.{i}"], np.float32)
    return method, n, m, {"params": {"g_a": g_a, "g_s": g_s, "h_a": h_a, "h_s": h_s, "prior": prior}}


def compressai_config(method: str, n: int, m: int) -> ml_collections.ConfigDict:
    """This library's config for a converted CompressAI model (method "hyperprior" or "mean_scale")."""
    from gencomp_jax import config_utils

    c = config_utils.base_config()
    c.method = method
    c.model = ml_collections.ConfigDict({"N": int(n), "M": int(m), "lmbda": 0.0, "compat": "compressai"})
    return c


def load_compressai(path):
    """(config, variables) of a CompressAI state-dict file (.pth.tar / .pth, torch zip or legacy format)."""
    from gencomp_jax.metrics.inception import load_torch_checkpoint

    raw = load_torch_checkpoint(str(path))
    if isinstance(raw, dict) and "state_dict" in raw:  # CompressAI's training checkpoints wrap it
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise PretrainedError(f"{path}: expected a state dict, got {type(raw).__name__}.")
    method, n, m, variables = convert_compressai_state(raw)
    return compressai_config(method, n, m), variables


# ------------------------------------------------------------------------------------------ dispatch

_COMPRESSAI_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tar")


def is_pretrained(path) -> bool:
    """Whether `path` is a checkpoint of the anchors' code that `load` converts."""
    p = pathlib.Path(path)
    return is_uqdm_reference_dir(p) or (p.is_file() and p.name.endswith(_COMPRESSAI_SUFFIXES))


def load(path):
    """(config, variables) of a UQDM reference folder or a CompressAI state-dict file."""
    p = pathlib.Path(path)
    if is_uqdm_reference_dir(p):
        return load_uqdm_reference(p)
    if p.is_file() and p.name.endswith(_COMPRESSAI_SUFFIXES):
        return load_compressai(p)
    raise PretrainedError(f"{p}: neither a UQDM reference folder (config.json + checkpoint.pt) nor a CompressAI "
                          f"state-dict file ({', '.join(_COMPRESSAI_SUFFIXES)}).")
