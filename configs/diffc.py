"""DiffC (method "diffc", gencomp_jax/codecs/diffc.py): a VDM (configs/vdm.py) trained on its ELBO, coded
progressively by chunked Gaussian channel simulation (review Sec. IV-B, Algorithm 1).

Training is the VDM's (`python experiments/train.py --config configs/diffc.py:runlocal --workdir runs/diffc`);
config.model.diffc holds the codec's settings (used by `gencomp compress/decompress/evaluate`):

  base_steps, num_steps, start, end, power   transmitted times on the grid j / base_steps (StepSchedule):
                   uniform = power 1, start = base_steps; practical = a skip near t = 1 (start < base_steps)
                   and power > 1 (coarse near t = 1, every base step near t = 0)
  chunking         "renyi" (default, unbiased: N = 2^ceil(2 B + 8)) | "diffc" (N = 2^ceil(B + 2), biased)
  max_chunk_bits   log2 of the most candidates per chunk (encoder cost per step ~ 2^max_chunk_bits x pixels x 3);
                   16 (chunks of <= 4 bits) by default, 14 (chunks of <= 3 bits, the same margin and bias, 4x fewer
                   candidates, files ~4% larger: benchmarks/diffc.py) in the CPU preset runlocal
  margin_bits      "renyi" only: N = 2^ceil(2 B + margin_bits) (default 8: bias of a chunk's sample along its
                   mean ~|mu| x 2^-margin sigma, <~ 0.02 sigma; 4: ~0.05-0.09 sigma, 16x fewer candidates)
  segments, first_bpp, segment_ratio   container segments (rate points): segment i ends once the KL sent
                   reaches first_bpp * segment_ratio^i bits per pixel; the last one takes the rest
  reconstruction_steps   network calls of the flow / ancestral reconstruction
  tile_size, tile_batch  0 = whole image in one piece (padded to the UNet's stride); > 0 = tiles

Presets (comma-separated): the VDM presets runlocal, cifar10, imagenet64, uqdm_tiny, uqdm_small, schedule=,
steps= (training steps), and
  practical        practical step schedule (skip 1000 -> 973, 161 steps, power 2: 155 steps on the grid), the
                   default of the GPU presets; runlocal codes 15 uniform steps from t = 1 to 0.4 (CPU speed)
  diffc_steps=K    transmitted diffusion steps (before merging on the base grid)
  chunking=renyi|diffc, max_chunk_bits=n, margin=n, segments=n, tile=n
"""

import importlib.util
import pathlib

import ml_collections

from gencomp_jax.config_utils import parse_arg

_spec = importlib.util.spec_from_file_location("_vdm_config", pathlib.Path(__file__).with_name("vdm.py"))
_vdm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_vdm)

_OWN = dict(practical=False, diffc_steps=0, chunking="renyi", max_chunk_bits=0, margin=8, segments=0, tile=0)
CPU_MAX_CHUNK_BITS = 14  # runlocal: < 10 s to encode a 64x64 image at ~1 bpp on 2 CPU cores (BENCHMARKS.md)


def get_config(arg=None):
    items = [s.strip() for s in (arg or "").split(",") if s.strip()]
    own = [s for s in items if s.split("=", 1)[0] in _OWN]
    a = parse_arg(",".join(own), **_OWN)
    config = _vdm.get_config(",".join(s for s in items if s not in own) or None)
    config.method = "diffc"
    big = config.data.source == "tfds"
    d = ml_collections.ConfigDict(dict(
        base_steps=1000, num_steps=100, start=1000, end=0, power=1.0, chunking=a.chunking,
        max_chunk_bits=int(a.max_chunk_bits) or 16, margin_bits=int(a.margin), segments=12, first_bpp=0.02,
        segment_ratio=1.6,
        reconstruction_steps=100 if big else 50, tile_size=int(a.tile), tile_batch=8 if (big and a.tile) else 1))
    if big or a.practical:   # GPU presets: JeremyIV/diffc's practical schedule, the whole chain to t = 0
        d.start, d.num_steps, d.power = 973, 161, 2.0
    elif "runlocal" in items:  # CPU: 15 uniform steps 1 -> 0.4 (~2 bpp on 64x64 after a few minutes of training)
        d.num_steps, d.end, d.segments, d.first_bpp = 15, 400, 8, 0.05
        d.max_chunk_bits = int(a.max_chunk_bits) or CPU_MAX_CHUNK_BITS
    if a.diffc_steps:
        d.num_steps = int(a.diffc_steps)
    if a.segments:
        d.segments = int(a.segments)
    config.model.diffc = d
    return config
