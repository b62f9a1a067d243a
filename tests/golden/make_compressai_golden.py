"""Makes tests/golden/compressai_*: CompressAI 1.2.8's own outputs, to check a state-dict converter against.

PyTorch and CompressAI are needed only here, in a throwaway venv (see ../shared/reference/PEERS.md:
torch 2.13.0 CPU, `pip install --no-deps compressai==1.2.8`); the modules CompressAI imports only to
fill its registries are stubbed by `reference_stubs.py`.

    <venv>/bin/python tests/golden/make_compressai_golden.py

1. Random-initialised state dicts (torch seed 0, N=8, M=12) of `ScaleHyperprior` (bmshj2018-hyperprior)
   and `MeanScaleHyperprior` (mbt2018-mean), written as `compressai_{bmshj2018,mbt2018mean}_N8M12.pth`
   with `torch.save(model.state_dict())` (the zip format CompressAI's own checkpoints use). Default
   initialisation leaves the entropy bottleneck's factors at zero and GDN at (beta = 1, gamma = 0.1 I),
   which would hide a wrong mapping of those tensors, so every parameter except the quantiles is
   perturbed with seeded Gaussian noise (GDN's reparametrised beta/gamma stay valid: the noise is added
   before `NonNegativeParametrizer`'s square root, on the stored tensors, and kept above the pedestal).
   The quantiles are then fitted as CompressAI does (its aux loss, Adam, 2000 steps), so `_get_medians`
   is meaningful. The CDF buffers are left empty (`update()` not called): a converter must not need them.
2. `compressai_forward_golden.npz`: both models' eval-mode forward (`model.eval()`: z_hat = round(z -
   median) + median, y_hat = round(y - mean) + mean) on x = a 128x64 (H x W, not square, so that a
   transposed axis shows) crop of kodim23 / 255, NCHW transposed to NHWC: y, z, z_hat, scales (after
   the 0.11 lower bound), means (mean-scale only), y_hat, y_likelihoods, z_likelihoods, x_hat; and the
   same with training-mode noise on y and z fixed (NumPy RandomState(1) uniforms fed in place of
   torch's `uniform_` draws): *_noisy_* keys, plus the noise itself.
3. `compressai_bsds4k_kodak.json`: the trained `bmshj2018-hyperprior-N128-M192-bsds4k.pth`
   (../shared/reference/compressai/, NOT copied here) run through CompressAI's own `update(force=True)`
   -> `compress` -> `decompress` on the 24 Kodak images: bytes per image (sum of the y and z strings),
   bpp, PSNR of the float reconstruction clamped to [0, 1] and of its 8-bit rounding, and the
   forward's estimated bits (-log2 of the likelihoods) per image.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
N, M = 8, 12
ARCHS = {"bmshj2018": "ScaleHyperprior", "mbt2018mean": "MeanScaleHyperprior"}
FORWARD_NPZ = HERE / "compressai_forward_golden.npz"
KODAK_JSON = HERE / "compressai_bsds4k_kodak.json"
TRAINED = REPO.parent / "shared" / "reference" / "compressai" / "bmshj2018-hyperprior-N128-M192-bsds4k.pth"
CROP = ("kodim23", 180, 300, 128, 64)  # image, top, left, height, width


def state_dict_path(arch: str) -> pathlib.Path:
    return HERE / f"compressai_{arch}_N{N}M{M}.pth"


def read_kodak(name: str) -> np.ndarray:
    with Image.open(REPO / "data" / "kodak" / f"{name}.png") as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def forward_input() -> np.ndarray:
    """uint8 [1, 128, 64, 3]."""
    name, r, c, h, w = CROP
    return read_kodak(name)[None, r:r + h, c:c + w]


def forward_noise(shape_y, shape_z):
    """U(-1/2, 1/2) noise for y then z (NHWC float32), NumPy RandomState(1)."""
    rs = np.random.RandomState(1)
    ny = (rs.random_sample(shape_y) - 0.5).astype(np.float32)
    nz = (rs.random_sample(shape_z) - 0.5).astype(np.float32)
    return ny, nz


# ----------------------------------------------------------------------------------- reference side


def _import_compressai():
    sys.path.insert(0, str(HERE))
    import reference_stubs  # noqa: PLC0415  (golden script only)
    reference_stubs.install()
    import compressai  # noqa: PLC0415
    import compressai.models  # noqa: PLC0415
    import torch  # noqa: PLC0415
    return torch, compressai


def _nhwc(t):
    return np.ascontiguousarray(np.transpose(t.detach().cpu().numpy(), (0, 2, 3, 1)))


def _nchw(a):
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))


def _make_random_model(torch, cls):
    torch.manual_seed(0)
    model = cls(N, M)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("quantiles"):
                continue
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(".beta") or name.endswith(".gamma"):
                # stored as sqrt(value + pedestal); keep it a valid, non-trivial positive parameter
                p.copy_(torch.sqrt(p ** 2 + 0.05 * noise.abs()))
            elif "entropy_bottleneck" in name:
                p.add_(0.3 * noise)
            else:
                p.add_(0.02 * noise)
    # fit the quantiles (CompressAI's aux loss), as its training does, so the medians are meaningful
    opt = torch.optim.Adam([model.entropy_bottleneck.quantiles], lr=1e-2)
    for _ in range(2000):
        opt.zero_grad()
        loss = model.aux_loss()
        loss.backward()
        opt.step()
    model.eval()
    return model


def _fixed_noise_quantize(noise):
    def quantize(inputs, mode, means=None):
        assert mode == "noise" and tuple(inputs.shape) == tuple(noise.shape), (mode, inputs.shape)
        return inputs + noise
    return quantize


def _forward(torch, model, x_u8, arch, noise=None):
    x = torch.from_numpy(_nchw(x_u8)).float() / 255.0
    out = {}
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(y if arch == "mbt2018mean" else torch.abs(y))
        eb, gc = model.entropy_bottleneck, model.gaussian_conditional
        if noise is None:
            z_hat, z_lik = eb(z, training=False)
        else:  # the modules' own training-mode forward, with our noise in place of uniform_()
            nz = torch.from_numpy(_nchw(noise[1]))
            eb.quantize = _fixed_noise_quantize(nz.permute(1, 0, 2, 3).reshape(nz.shape[1], 1, -1))
            try:
                z_hat, z_lik = eb(z, training=True)
            finally:
                del eb.quantize
        params = model.h_s(z_hat)
        means = None
        if arch == "mbt2018mean":
            scales, means = params.chunk(2, 1)
        else:
            scales = params
        if noise is None:
            y_hat, y_lik = gc(y, scales, means=means, training=False)
        else:
            gc.quantize = _fixed_noise_quantize(torch.from_numpy(_nchw(noise[0])))
            try:
                y_hat, y_lik = gc(y, scales, means=means, training=True)
            finally:
                del gc.quantize
        x_hat = model.g_s(y_hat)
        # the whole model's own forward must agree with the pieces above (eval mode)
        if noise is None:
            full = model(x)
            assert torch.equal(full["x_hat"], x_hat)
            assert torch.equal(full["likelihoods"]["y"], y_lik)
            assert torch.equal(full["likelihoods"]["z"], z_lik)
    out.update(y=y, z=z, z_hat=z_hat, scales=gc.lower_bound_scale(scales), y_hat=y_hat,
               y_likelihoods=y_lik, z_likelihoods=z_lik, x_hat=x_hat)
    if means is not None:
        out["means"] = means
    return {k: _nhwc(v) for k, v in out.items()}


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(1.0 / mse))


def _kodak(torch, compressai):
    sd = torch.load(TRAINED, map_location="cpu")
    model = compressai.models.ScaleHyperprior(128, 192)
    model.load_state_dict(sd)
    model.eval()
    model.update(force=True)
    rows = []
    for k in range(1, 25):
        name = f"kodim{k:02d}"
        u8 = read_kodak(name)
        x = torch.from_numpy(_nchw(u8[None])).float() / 255.0
        with torch.no_grad():
            t0 = time.perf_counter()
            enc = model.compress(x)
            t1 = time.perf_counter()
            dec = model.decompress(enc["strings"], enc["shape"])
            t2 = time.perf_counter()
            fwd = model(x)
        nbytes = sum(len(s[0]) for s in enc["strings"])
        xh = dec["x_hat"][0].permute(1, 2, 0).numpy()
        xh8 = np.clip(np.round(xh * 255.0), 0, 255).astype(np.uint8)
        est_bits = sum(float(-torch.log2(v).sum()) for v in fwd["likelihoods"].values())
        rows.append(dict(image=name, height=u8.shape[0], width=u8.shape[1], bytes=nbytes,
                         y_bytes=len(enc["strings"][0][0]), z_bytes=len(enc["strings"][1][0]),
                         bpp=nbytes * 8 / (u8.shape[0] * u8.shape[1]),
                         psnr_float=_psnr(xh, u8 / 255.0), psnr_uint8=_psnr(xh8 / 255.0, u8 / 255.0),
                         estimated_bits=est_bits, encode_s=t1 - t0, decode_s=t2 - t1))
        print(rows[-1])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip_kodak", action="store_true")
    args = ap.parse_args()
    torch, compressai = _import_compressai()
    torch.set_num_threads(2)
    x = forward_input()
    arrays = {"x": x}
    for arch, cls_name in ARCHS.items():
        model = _make_random_model(torch, getattr(compressai.models, cls_name))
        torch.save(model.state_dict(), state_dict_path(arch))
        out = _forward(torch, model, x, arch)
        arrays.update({f"{arch}_{k}": v for k, v in out.items()})
        noise = forward_noise(out["y"].shape, out["z"].shape)
        arrays[f"{arch}_noise_y"], arrays[f"{arch}_noise_z"] = noise
        out_n = _forward(torch, model, x, arch, noise=noise)
        arrays.update({f"{arch}_noisy_{k}": v for k, v in out_n.items()})
        print(arch, {k: v.shape for k, v in out.items()}, "medians",
              model.entropy_bottleneck._get_medians().flatten()[:4])
    np.savez_compressed(FORWARD_NPZ, **arrays)
    if not args.skip_kodak:
        rows = _kodak(torch, compressai)
        KODAK_JSON.write_text(json.dumps({
            "source": f"compressai {compressai.__version__} (torch {torch.__version__}) ScaleHyperprior(128, 192) "
                      f"{TRAINED.name}: update(force=True), compress, decompress",
            "images": rows,
            "mean_bpp": float(np.mean([r["bpp"] for r in rows])),
            "mean_psnr_uint8": float(np.mean([r["psnr_uint8"] for r in rows])),
        }, indent=1) + "\n")
    print("wrote", FORWARD_NPZ, KODAK_JSON)


if __name__ == "__main__":
    main()
