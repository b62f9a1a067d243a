"""One-off script that produced tests/golden/inception_golden.npz and the two small torch files
tests/golden/torch_{legacy,zip}_small.pth, with the INDEPENDENT reference implementation pytorch-fid
(0.3.0, InceptionV3([3]) = pool3 features, its own resize/normalisation) on torch 2.13 CPU.

The real FID weights cannot be downloaded here, so the network gets deterministic random weights
(tests/golden/inception_random_weights.py); the golden features therefore check architecture,
preprocessing and weight mapping, not the real weights' values.

    python3 -m venv /tmp/lpvenv && /tmp/lpvenv/bin/pip install torch==2.13.0 pytorch-fid
    /tmp/lpvenv/bin/python tests/golden/make_inception_golden.py
"""

import collections
import os
import sys

import numpy as np
import torch

torch.library.register_fake = lambda *a, **k: (lambda f: f)  # PyPI torchvision ops don't load on torch+cpu
import pytorch_fid.inception as pfi  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from inception_random_weights import golden_inputs, random_state_dict  # noqa: E402


def main():
    orig = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None      # skip the URL weights
    pfi.load_state_dict_from_url = lambda *a, **k: {}
    model = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
    torch.nn.Module.load_state_dict = orig
    # torch key -> shape, from the blocks (strip the "blocks.i.j." prefixes back to inception names)
    names = {}
    for mod_name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                     "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]:
        names[mod_name] = None
    # map module objects in blocks to inception attribute names by order of appearance
    mods = [m for blk in model.blocks for m in blk if not isinstance(m, (torch.nn.MaxPool2d, torch.nn.AdaptiveAvgPool2d))]
    assert len(mods) == len(names)
    shapes, owner = {}, {}
    for name, m in zip(names, mods):
        for k, v in m.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            shapes[f"{name}.{k}"] = tuple(v.shape)
            owner[f"{name}.{k}"] = (m, k)
    sd = random_state_dict(shapes)
    for full, (m, k) in owner.items():
        m.state_dict()[k].copy_(torch.from_numpy(sd[full]))
    model.eval()
    x = golden_inputs()
    with torch.no_grad():
        feats = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0)[0][:, :, 0, 0].numpy()
    print(feats.shape, feats[:, :5], len(shapes))
    np.savez(os.path.join(HERE, "inception_golden.npz"), features=feats.astype(np.float32),
             num_tensors=len(shapes), num_params=sum(int(np.prod(s)) for s in shapes.values()))

    # small files in both torch formats, for the weights-reader test
    small = collections.OrderedDict()
    small["a.weight"] = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    small["a.bias"] = torch.tensor([1.5, -2.0])
    small["b.running_mean"] = torch.arange(12, dtype=torch.float64).reshape(3, 4).t()  # non-contiguous
    small["b.count"] = torch.tensor(7, dtype=torch.int64)
    torch.save(small, os.path.join(HERE, "torch_legacy_small.pth"), _use_new_zipfile_serialization=False)
    torch.save(small, os.path.join(HERE, "torch_zip_small.pth"))


if __name__ == "__main__":
    main()
