"""Makes tests/golden/uqdm_tiny_reference.{json,npz}: the UQDM reference's numbers on its own weights.

What it runs: `uqdm.py` of github.com/mandt-lab/uqdm at commit 88c77b4 (the authors' PyTorch code; not
in this repository, it states no license) with the released `uqdm-tiny` checkpoint
(`../shared/reference/uqdm-tiny/`, see SOURCE.md there; not in this repository either). PyTorch is
needed only here, in a throwaway venv (torch 2.13.0 CPU + numpy + ml_collections + tqdm + pillow):

    git -C <mirror of mandt-lab/uqdm> show 88c77b4:uqdm.py > /tmp/uqdm_ref/uqdm.py
    <venv>/bin/python tests/golden/make_uqdm_reference_golden.py \
        --uqdm_py /tmp/uqdm_ref/uqdm.py --checkpoint ../shared/reference/uqdm-tiny --mc_seeds 6

(35 minutes on the loaded 2-core machine; the stored values were made exactly so.)

Weights: the reference's own `load_checkpoint` loads the checkpoint's `model` entry (65 tensors, the
score network only) into the network. The learned noise schedule is NOT in that entry: the
reference's schedule parameter `w` (gamma(t) = |w| (t - 1) + gamma_max) keeps its initial value
gamma_max - gamma_min = 18.3, so gamma(0) = -12.3. The trained `w` survives only in the EMA entry
(66 shadow tensors, the last one w = 17.9658) and the optimizer state. Golden values marked
"model" are what `load_checkpoint` + `forward` compute (the reference's evaluation and coding path);
the "ema" values load all 66 EMA tensors (network and schedule), which is what its trainer evaluates.

Images: 64x64 crops of the bundled Kodak images (`kodak_crops()`, imported by the tests so both
sides use the same pixels); uint8 k -> x = 2 (k + 1/2) / 256 - 1 inside the reference.

Noise: the reference draws with torch's global generator. To compare term by term, the noise is made
here with NumPy's legacy `RandomState` (its streams are frozen forever; `fixed_noise()` is imported by
the tests) and fed to the reference by replacing `torch.normal` (what `Normal.sample` calls) and
`torch.rand` (what `Uniform.rsample` and the universal-quantization dither call) while its `forward`
runs; every draw's shape is checked and all draws must be consumed.

Written (all rates in bits per dimension, per image, dims = 64 * 64 * 3):
- `fixed_noise`: for noise seeds 0 and 1, the training-mode forward (z_T ~ q(z_T | x), z_s ~ U):
  prior, per-step rates, recon, total; and for seed 0 the inference-mode forward (z_T ~ N(0, I),
  dithered quantization with u = noise - 1/2: what the codec's file size estimates);
- `mc`: the reference's own RNG (`forward(x, seed=s)`), seeds 0..5, training and inference mode: the
  NELBO per seed and image, for "agrees within Monte-Carlo error";
- `kodak24`: one centre 64x64 crop of each Kodak image, seed 0: NELBO and the inference estimate
  ("model" and "ema" weights) to put next to the authors' 17.19 / 17.18 bits per pixel on ImageNet-64;
- npz: for a fixed z [2, 16, 16, 3] (NumPy seed 100) and each step i (t = 1 - i/4, s = t - 1/4): the
  network's eps_hat and scale factors, the reverse kernel's loc and std (the reference's `p_scale`,
  before the logistic conversion scale = std sqrt(3) / pi), the flow (DDIM) loc, and the posterior
  q(z_s | z_t, x) loc and std for x = the first crop's top-left 16x16 block; plus gamma(t_i).
All arrays NHWC (the reference's NCHW transposed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import pathlib
import sys

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOLDEN_JSON = HERE / "uqdm_tiny_reference.json"
GOLDEN_NPZ = HERE / "uqdm_tiny_reference.npz"
NUM_STEPS = 4
# (Kodak image, top row, left column) of the 64x64 crops used for term-by-term comparison.
CROPS = (("kodim01", 200, 300), ("kodim05", 100, 400), ("kodim15", 180, 260), ("kodim23", 200, 300))
KERNEL_Z_SHAPE = (2, 16, 16, 3)
KERNEL_Z_SEED = 100


def _read(name: str) -> np.ndarray:
    with Image.open(REPO / "data" / "kodak" / f"{name}.png") as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def kodak_crops() -> np.ndarray:
    """uint8 [4, 64, 64, 3]: the crops listed in CROPS."""
    return np.stack([_read(n)[r:r + 64, c:c + 64] for n, r, c in CROPS])


def kodak_center_crops() -> np.ndarray:
    """uint8 [24, 64, 64, 3]: the centre 64x64 crop of each Kodak image."""
    out = []
    for k in range(1, 25):
        im = _read(f"kodim{k:02d}")
        r, c = (im.shape[0] - 64) // 2, (im.shape[1] - 64) // 2
        out.append(im[r:r + 64, c:c + 64])
    return np.stack(out)


def fixed_noise(seed: int, shape_nhwc, num_steps: int = NUM_STEPS):
    """(eps [shape] standard normal, [u_1..u_T] each [shape] uniform [0, 1)) as float32, NHWC.

    NumPy's legacy RandomState: eps first, then one uniform array per step, in this order.
    """
    rs = np.random.RandomState(seed)
    eps = rs.standard_normal(shape_nhwc).astype(np.float32)
    us = [rs.random_sample(shape_nhwc).astype(np.float32) for _ in range(num_steps)]
    return eps, us


def kernel_z() -> np.ndarray:
    return np.random.RandomState(KERNEL_Z_SEED).standard_normal(KERNEL_Z_SHAPE).astype(np.float32)


# ----------------------------------------------------------------------------------- reference side


def _load_reference(uqdm_py: str):
    sys.path.insert(0, str(HERE))
    import reference_stubs  # noqa: PLC0415  (golden script only)
    reference_stubs.install()
    spec = importlib.util.spec_from_file_location("uqdm_reference", uqdm_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def _feed_noise(torch, normals, uniforms):
    """Replace torch.normal / torch.rand by draws from the given NCHW arrays (in order)."""
    normals, uniforms = list(normals), list(uniforms)
    real_normal, real_rand = torch.normal, torch.rand

    def fake_normal(mean, std, *a, **k):
        eps = torch.from_numpy(normals.pop(0))
        assert tuple(eps.shape) == tuple(mean.shape), (eps.shape, mean.shape)
        return mean + std * eps

    def fake_rand(*size, **k):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        u = torch.from_numpy(uniforms.pop(0))
        assert tuple(u.shape) == shape, (u.shape, shape)
        return u

    torch.normal, torch.rand = fake_normal, fake_rand
    try:
        yield
    finally:
        torch.normal, torch.rand = real_normal, real_rand
    assert not normals and not uniforms, "not every fixed draw was used"


def _nchw(a):
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))


def _nhwc(t):
    return np.ascontiguousarray(np.transpose(t.detach().cpu().numpy(), (0, 2, 3, 1)))


def _terms(ref, model, x_u8, *, inference: bool, seed=None, noise=None):
    """One reference forward on x_u8 [1, H, W, 3]: dict(prior, steps [T], recon, total) in bits/dim."""
    torch = ref.torch
    assert x_u8.shape[0] == 1, "one image per forward, so that its batch means are per-image terms"
    x = torch.from_numpy(_nchw(x_u8)).to(torch.float32)
    scale = 1.0 / (np.prod(x_u8.shape[1:]) * np.log(2.0))
    steps = []
    real_rec = type(model).relative_entropy_coding

    def rec(self, q, p, compress_mode=None):  # records each step's rate on its way out
        z_s, rate = real_rec(self, q, p, compress_mode)
        steps.append(float(rate[0]) * scale)
        return z_s, rate

    type(model).relative_entropy_coding = rec
    try:
        ctx = torch.inference_mode() if inference else torch.no_grad()
        feed = contextlib.nullcontext()
        if noise is not None:
            eps, us = noise
            feed = _feed_noise(torch, [_nchw(eps)], [_nchw(u) for u in us])
        with ctx, feed:
            loss, metrics = model(x, seed=seed)
    finally:
        type(model).relative_entropy_coding = real_rec
    assert len(steps) == NUM_STEPS and abs(float(metrics["bpd_diff"]) - sum(steps)) < 1e-5
    return dict(prior=float(metrics["bpd_latent"]), steps=steps, recon=float(metrics["bpd_recon"]),
                total=float(loss))


def _per_image(ref, model, x_u8, *, inference: bool, seed=None, noise=None):
    """The forward once per image (batch 1) so that every term is per image; list of _terms dicts."""
    rows = []
    for b in range(x_u8.shape[0]):
        nz = None
        if noise is not None:
            eps, us = noise
            nz = (eps[b:b + 1], [u[b:b + 1] for u in us])
        rows.append(_terms(ref, model, x_u8[b:b + 1], inference=inference, seed=seed, noise=nz))
        print(f"  forward {'inference' if inference else 'train'} seed={seed} image {b}: "
              f"{rows[-1]['total']:.4f} bits/dim", flush=True)
    return rows


def _kernels(ref, model, x_u8):
    torch = ref.torch
    z = torch.from_numpy(_nchw(kernel_z()))
    x_raw = torch.from_numpy(_nchw(x_u8[:1, :16, :16])).to(torch.float32).expand(z.shape[0], -1, -1, -1)
    x = 2 * ((x_raw + 0.5) / 256) - 1
    times = torch.linspace(1, 0, NUM_STEPS + 1)
    out = {"gamma": model.gamma(times).detach().numpy(), "z": kernel_z()}
    with torch.no_grad():
        for i in range(NUM_STEPS):
            t, s = times[i], times[i + 1]
            eps_hat, f = model.score_net(z, model.gamma(t))
            loc, std = model.get_s_t_params(z, t, s)
            floc, _ = model.get_s_t_params(z, t, s, deterministic=True, clip_denoised=False)
            qloc, qstd = model.get_s_t_params(z, t, s, x=x)
            out[f"eps_hat_{i}"] = _nhwc(eps_hat)
            out[f"scale_factor_{i}"] = _nhwc(f)
            out[f"p_loc_{i}"] = _nhwc(loc)
            out[f"p_std_{i}"] = _nhwc(std)
            out[f"flow_loc_{i}"] = _nhwc(floc)
            out[f"q_loc_{i}"] = _nhwc(qloc)
            out[f"q_std_{i}"] = np.asarray(qstd.detach().numpy(), np.float32)
    out["kernel_x_u8"] = x_u8[:1, :16, :16]
    return out


def _use_ema(ref, model, ckpt):
    torch = ref.torch
    cp = torch.load(ckpt, map_location="cpu", weights_only=False)
    shadow = cp["ema"]["shadow_params"]
    params = [p for p in model.parameters() if p.requires_grad]
    assert len(shadow) == len(params) == 66, (len(shadow), len(params))
    with torch.no_grad():
        for s, p in zip(shadow, params):
            assert s.shape == p.shape, (s.shape, p.shape)
            p.copy_(s)
    return float(model.gamma.w.detach())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uqdm_py", required=True, help="uqdm.py of mandt-lab/uqdm at commit 88c77b4")
    ap.add_argument("--checkpoint", default=str(REPO.parent / "shared" / "reference" / "uqdm-tiny"))
    ap.add_argument("--mc_seeds", type=int, default=8)
    args = ap.parse_args()

    ref = _load_reference(args.uqdm_py)
    torch = ref.torch
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    model = ref.load_checkpoint(args.checkpoint)
    model.eval()
    w_model = float(model.gamma.w.detach())
    crops = kodak_crops()
    kodak24 = kodak_center_crops()

    golden = {
        "source": "mandt-lab/uqdm@88c77b44032bd3e26a72b8d92cfcee62c6542187 uqdm.py, "
                  "checkpoints/uqdm-tiny (load_checkpoint: 'model' state dict, schedule w untrained)",
        "torch": torch.__version__, "units": "bits per dimension, per image",
        "crops": [list(c) for c in CROPS], "num_steps": NUM_STEPS,
        "schedule_w": {"model": w_model},
        "fixed_noise": {}, "mc": {}, "kodak24": {},
    }
    for seed in (0, 1):
        noise = fixed_noise(seed, crops.shape)
        golden["fixed_noise"][f"train_seed{seed}"] = _per_image(ref, model, crops, inference=False, noise=noise)
    golden["fixed_noise"]["inference_seed0"] = _per_image(ref, model, crops, inference=True,
                                                          noise=fixed_noise(0, crops.shape))
    for mode in ("train", "inference"):
        golden["mc"][mode] = [
            [r["total"] for r in _per_image(ref, model, crops, inference=mode == "inference", seed=s)]
            for s in range(args.mc_seeds)]
    arrays = _kernels(ref, model, crops)

    def k24(inference):
        return [r["total"] for r in _per_image(ref, model, kodak24, inference=inference, seed=0)]

    golden["kodak24"]["model"] = {"nelbo": k24(False), "inference": k24(True)}
    golden["schedule_w"]["ema"] = _use_ema(ref, model, pathlib.Path(args.checkpoint) / "checkpoint.pt")
    golden["kodak24"]["ema"] = {"nelbo": k24(False), "inference": k24(True)}
    golden["fixed_noise"]["ema_train_seed0"] = _per_image(ref, model, crops, inference=False,
                                                          noise=fixed_noise(0, crops.shape))

    GOLDEN_JSON.write_text(json.dumps(golden, indent=1) + "\n")
    np.savez_compressed(GOLDEN_NPZ, **arrays)
    for k, v in golden["kodak24"].items():
        print(k, "kodak24 bpp nelbo %.3f inference %.3f" % (3 * np.mean(v["nelbo"]), 3 * np.mean(v["inference"])))
    mc = np.asarray(golden["mc"]["train"])
    print("mc train bpd per image", mc.mean(0), "+-", mc.std(0) / np.sqrt(mc.shape[0]))
    print("wrote", GOLDEN_JSON, GOLDEN_NPZ)


if __name__ == "__main__":
    main()
