"""Writes gencomp_jax/eval/references/*.json: published RD(P) curves, copied from their source files.

Sources (git snapshots of the public repositories; the commit goes into every description):
  mandt-lab/uqdm            eval/imagenet.yml, eval/cifar.yml (Yang et al. 2025, "Progressive Compression
                            with Universally Quantized Diffusion Models": bpp, PSNR and FID of every
                            baseline on 10,000 images of the de-duplicated ImageNet 64x64 / CIFAR-10
                            evaluation sets; the file says "rounded to 4 digits")
  InterDigitalInc/CompressAI results/image/kodak/*.json (its own Kodak results; copied unchanged apart
                            from the description, which gets the source prepended)

Nothing is computed: values are copied (YAML `.inf`, a lossless point, stays Infinity). Run

    python tests/golden/make_references.py /work/.mirror/mandt-lab+uqdm/repo \
        /work/.mirror/InterDigitalInc+CompressAI/repo

with the two git directories (`fetch` mirrors are bare); it reads the files at their HEAD with `git show`.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import yaml

OUT = pathlib.Path(__file__).resolve().parents[2] / "gencomp_jax" / "eval" / "references"

UQDM_PAPER = "Yang, Will & Mandt 2025, 'Progressive Compression with Universally Quantized Diffusion Models' (ICLR)"
DATASETS = {  # yml file -> (name prefix, data set description)
    "eval/imagenet.yml": ("imagenet64", "ImageNet 64x64, 10,000 images of the de-duplicated evaluation set"),
    "eval/cifar.yml": ("cifar10", "CIFAR-10 32x32, 10,000 images of the de-duplicated evaluation set"),
}
# key in the yml -> (our name, what the curve is; the source's plot label in quotes)
UQDM_KEYS = {
    "jpeg": ("jpeg", "JPEG ('JPEG')"),
    "jpeg2000": ("jpeg2000", "JPEG2000 ('JPEG2000')"),
    "bpg": ("bpg", "BPG ('BPG')"),
    "ctc": ("ctc", "CTC, progressive neural codec of Jeon et al. 2023 ('CTC')"),
    "cdc-0": ("cdc-rho0", "CDC (Yang & Mandt 2023), rho = 0 ('CDC (p=0)')"),
    "cdc-p": ("cdc-rho0.9", "CDC (Yang & Mandt 2023), rho = 0.9 ('CDC (p=0.9)')"),
    "vae-b": ("balle2018", "Ballé et al. 2018 scale hyperprior ('VAE (Ballé 2018)')"),
    "vae-m": ("minnen2020", "Minnen & Singh 2020 ('VAE (Minnen 2020)')"),
    "vdm-d": ("diffc-ideal-denoise", "ideal DiffC: Gaussian diffusion (VDM, T=20) at its KL rate, denoised "
                                     "reconstruction ('VDM T=20, denoise')"),
    "vdm-a": ("diffc-ideal-ancestral", "ideal DiffC: Gaussian diffusion (VDM, T=20) at its KL rate, ancestral "
                                       "sampling ('VDM T=20, ancestral')"),
    "vdm-f": ("diffc-ideal-flow", "ideal DiffC: Gaussian diffusion (VDM, T=20) at its KL rate, probability-flow "
                                  "reconstruction ('VDM T=20, flow-based')"),
    "vdm-1000d": ("diffc-ideal-t1000-denoise", "ideal DiffC: Gaussian diffusion (VDM, T=1000) at its KL rate, "
                                               "denoised reconstruction ('VDM T=1000, denoise')"),
    "uqdm-d": ("uqdm-denoise", "UQDM T=4, denoised reconstruction ('UQDM T=4, denoise')"),
    "uqdm-a": ("uqdm-ancestral", "UQDM T=4, ancestral sampling ('UQDM T=4, ancestral')"),
    "uqdm-f": ("uqdm-flow", "UQDM T=4, flow-based reconstruction ('UQDM T=4, flow-based')"),
}
COMPRESSAI_FILES = {  # file under results/image/kodak/ -> (our name, what it is)
    "compressai-bmshj2018-hyperprior_mse_cpu.json": (
        "kodak-compressai-bmshj2018-hyperprior", "CompressAI's bmshj2018-hyperprior (MSE, qualities 1-8), real "
                                                 "bitstreams on CPU"),
    "compressai-mbt2018-mean_mse_cpu.json": (
        "kodak-compressai-mbt2018-mean", "CompressAI's mbt2018-mean (MSE, qualities 1-8), real bitstreams on CPU"),
    "paper-bmshj2018-hyperprior.json": (
        "balle2018", "Ballé, Minnen, Singh, Hwang & Johnston 2018 (ICLR) scale hyperprior (MSE), the paper's own "
                     "figures"),
}


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True).stdout


def _write(name: str, res: dict) -> None:
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(OUT.parents[2])}: {len(res['results']['bpp'])} points")


def uqdm(repo: str) -> None:
    commit = _git(repo, "rev-parse", "HEAD").strip()
    for path, (prefix, dataset) in DATASETS.items():
        data = yaml.safe_load(_git(repo, "show", f"HEAD:{path}"))
        for key, (name, what) in UQDM_KEYS.items():
            if key not in data:
                continue
            curve = data[key]
            _write(f"{prefix}-{name}", {
                "name": f"{what.split(' (')[0]} [{prefix}, published]",
                "description": f"Published: {what}, {dataset}; bpp, PSNR (dB) and FID as listed in "
                               f"github.com/mandt-lab/uqdm {path} @ {commit[:7]}, key '{key}' (rounded to 4 "
                               f"digits there; .inf = lossless). Source paper: {UQDM_PAPER}. Not measured by "
                               "gencomp_jax.",
                "dataset": prefix,
                "source": {"repository": "mandt-lab/uqdm", "path": path, "commit": commit, "key": key},
                "results": {"bpp": curve["bpp"], "psnr-rgb": curve["psnr"], "fid": curve["fid"]},
            })


def compressai(repo: str) -> None:
    commit = _git(repo, "rev-parse", "HEAD").strip()
    for fname, (name, what) in COMPRESSAI_FILES.items():
        path = f"results/image/kodak/{fname}"
        res = json.loads(_git(repo, "show", f"HEAD:{path}"))
        res["description"] = (f"Published: {what}, Kodak (24 images), as listed in github.com/InterDigitalInc/"
                              f"CompressAI {path} @ {commit[:7]}, copied unchanged (its description: "
                              f"{res.get('description', '')!r}). "
                              "Not measured by gencomp_jax.")
        res["name"] = f"{res['name']} [kodak, published]"
        res["dataset"] = "kodak"
        res["source"] = {"repository": "InterDigitalInc/CompressAI", "path": path, "commit": commit}
        _write(name, res)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    OUT.mkdir(parents=True, exist_ok=True)
    uqdm(sys.argv[1])
    compressai(sys.argv[2])
