"""One rate-distortion-perception comparison of every method on identical data (gencomp_jax/eval/compare.py).

Launch: `python experiments/compare.py --config configs/compare.py:runlocal --workdir runs/compare`.

Presets (one of; default runlocal):
  tiny         the test suite's setting: a few training steps of very small networks per method, 2 Kodak
               64x64 crops; the whole run is ~45 s of CPU on a warm compilation cache. Numbers are meaningless,
               the files and the pipeline are real.
  runlocal     CPU: small models on 64x64 crops of BSDS500 train (/work/shared/data/bsds500 or GENCOMP_BSDS500,
               else scikit-image's photographs), evaluated on 64x64 centre crops of held-out images (BSDS500 val
               when present, else Kodak, which is evaluation-only); about an hour on an idle 2-core machine.
  imagenet64   GPU, the protocol of the UQDM paper: 64x64 ImageNet (TFDS imagenet_resized/64x64) for training,
               its validation images for testing (10 000), FID/KID on Inception features of whole images.
               Use `--emit slurm` to write job arrays (experiments/sweep.py) instead of training here.

config.methods: one entry per method, run in the order of config.order; config.anchor ("hyperprior") is the BD-rate
anchor; config.only (e.g. "hyperprior,jpeg") runs a subset. Each entry:
  kind         "train" (the one training loop, gencomp_jax.train), "pretrained" (a published checkpoint through
               eval/pretrained.py) or "classical" (JPEG / WebP through Pillow, no network)
  label        name in the table and figure
  config       config spec of the method, "<name>:<presets>" (configs/<name>.py)
  overrides    nested dict merged into that config (after config.data's training-data settings)
  sweep_key, sweep_values   a dotted config key and its values: one training run per value (a rate sweep)
  stage1_from  name of an earlier NTC entry: one run per run of it, with model.stage1.workdir = that run (HFD);
               stage1_runs > 0 uses only its first stage1_runs runs
  options      decode options to evaluate, {name: values} (evaluate.rate_points)
  split        a decode option whose values are separate curves (e.g. reconstruction), "" for one curve
  path         (pretrained) the checkpoint; absent -> the row says so
  format, qualities   (classical) "jpeg" or "webp" and the quality settings
"""

import os
import pathlib

import ml_collections

from gencomp_jax.config_utils import parse_arg

REPO = pathlib.Path(__file__).resolve().parents[1]
UQDM_TINY = os.environ.get("GENCOMP_UQDM_TINY", str(REPO.parent / "shared" / "reference" / "uqdm-tiny"))
BSDS500 = os.environ.get("GENCOMP_BSDS500", str(REPO.parent / "shared" / "data" / "bsds500"))

# very small networks (the sizes of the codec tests)
_TINY_NET = dict(arch="unet", ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_levels=(), mid_attention=False,
                 norm_groups=4)
_TINY_TRAIN = dict(num_steps=2, log_every=1, checkpoint_every=0, ema_decay=0.0, progress_bar=False)


def _entry(kind, label, **kw):
    base = dict(kind=kind, label=label, config="", overrides={}, sweep_key="", sweep_values=(), stage1_from="", stage1_runs=0,
                options={}, split="", path="", format="", qualities=())
    base.update(kw)
    return base


def _methods(preset: str) -> dict:
    """The method list of a preset (see the module docstring)."""
    tiny, gpu = preset == "tiny", preset == "imagenet64"
    ntc_preset = "gpu" if gpu else "runlocal"
    lmbdas = (0.003, 0.03) if tiny else ((0.0018, 0.0067, 0.025, 0.0932) if gpu else (0.002, 0.006, 0.02))
    if tiny:
        ntc_over = dict(model=dict(N=8, M=12), train=_TINY_TRAIN)
        cdc_over = dict(model=dict(N=8, M=12, context_features=(8, 8, 8, 8), context_norm_groups=4, net=_TINY_NET,
                                   sample_steps=2), train=_TINY_TRAIN)
        hfd_over = dict(model=dict(net=_TINY_NET, sample_steps=2), train=_TINY_TRAIN)
        vdm_over = dict(model=dict(net=_TINY_NET, prediction="x0", num_samples=1, sample_steps=2,
                                   diffc=dict(num_steps=1, end=840, segments=1, max_chunk_bits=10, first_bpp=0.02,
                                              reconstruction_steps=2)),
                        train=dict(_TINY_TRAIN, eval_every=0), data=dict(eval_source="", crop_size=32))
        uqdm_over = dict(train=_TINY_TRAIN, data=dict(crop_size=32))
    elif gpu:   # the methods' own imagenet64 / gpu presets
        ntc_over = cdc_over = hfd_over = vdm_over = uqdm_over = {}
    else:       # runlocal: about an hour of training on an idle 2-core CPU in all (steps below), plus evaluation
        ntc_over = dict(train=dict(num_steps=1500))
        cdc_over = dict(train=dict(num_steps=150))
        hfd_over = dict(train=dict(num_steps=100))
        # 12-bit chunks: a 64x64 crop encodes in seconds instead of minutes at 16 bits (BENCHMARKS.md, DiffC)
        vdm_over = dict(train=dict(num_steps=300, eval_every=0), data=dict(crop_size=32, eval_source=""),
                        model=dict(num_samples=4, diffc=dict(max_chunk_bits=12)))
        uqdm_over = dict(train=dict(num_steps=600), data=dict(crop_size=32))
    betas = (0.02,) if tiny else ((0.005, 0.05) if not gpu else (0.0016, 0.0064, 0.0256, 0.1024))
    qualities = (10, 50) if tiny else (5, 10, 20, 35, 50, 75, 90)
    p = "imagenet64" if gpu else "runlocal"
    recon3 = dict(reconstruction=("denoise", "flow", "ancestral"))
    if tiny:   # two prefixes of each file (steps 1, 2) instead of all T + 2
        recon3["steps"] = (1, 2)
    return {
        "hyperprior": _entry("train", "NTC hyperprior (Ballé 2018)", config=f"hyperprior:{ntc_preset}",
                             overrides=ntc_over, sweep_key="model.lmbda", sweep_values=lmbdas),
        "mean_scale": _entry("train", "NTC mean-scale (Minnen 2018)", config=f"mean_scale:{ntc_preset}",
                             overrides=ntc_over, sweep_key="model.lmbda", sweep_values=lmbdas[:1] if tiny else lmbdas),
        "cdc_rho0": _entry("train", "CDC rho=0", config=f"cdc:{p},rho=0", overrides=cdc_over,
                           sweep_key="model.beta", sweep_values=betas, options=dict(realism=(1.0,))),
        "cdc_rho09": _entry("train", "CDC rho=0.9", config=f"cdc:{p},rho=0.9", overrides=cdc_over,
                             sweep_key="model.beta", sweep_values=betas, options=dict(realism=(1.0,))),
        "hfd_diffusion": _entry("train", "HFD diffusion", config=f"hfd:{p}", overrides=hfd_over,
                                stage1_from="hyperprior", stage1_runs=1 if tiny else 0,
                                options=dict(realism=(0.0, 0.5, 1.0)), split="realism"),
        "hfd_flow": _entry("train", "HFD flow", config=f"hfd:{p},flow", overrides=hfd_over,
                           stage1_from="hyperprior", stage1_runs=1 if tiny else 0,
                           options=dict(realism=(0.0, 0.5, 1.0)), split="realism"),
        "diffc": _entry("train", "DiffC (VDM)", config=f"diffc:{p}", overrides=vdm_over,
                        options=dict(reconstruction=("flow", "ancestral")), split="reconstruction"),
        "uqdm": _entry("train", "UQDM (ours)", config=f"uqdm:{p}", overrides=uqdm_over, options=recon3,
                       split="reconstruction"),
        "uqdm_official": _entry("pretrained", "UQDM official tiny", path=UQDM_TINY,
                                options=dict(recon3, reconstruction=("denoise",)) if tiny else recon3,
                                split="reconstruction"),
        "jpeg": _entry("classical", "JPEG (Pillow)", format="jpeg", qualities=qualities),
        "webp": _entry("classical", "WebP (Pillow)", format="webp", qualities=qualities),
    }


def get_config(arg=None):
    a = parse_arg(arg, tiny=False, runlocal=False, imagenet64=False)
    presets = [k for k in ("tiny", "runlocal", "imagenet64") if a[k]] or ["runlocal"]
    if len(presets) != 1:
        raise ValueError(f"configs/compare.py takes one preset of tiny, runlocal, imagenet64 (got {arg!r}).")
    preset = presets[0]
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.anchor = "hyperprior"        # BD-rate of every curve is against this entry's curve
    c.only = ""                    # comma-separated entry names to run (default: all)

    # Training data of every trained method (merged into each method's config before its overrides).
    c.data = ml_collections.ConfigDict()
    bsds = pathlib.Path(BSDS500)
    if preset == "imagenet64":
        c.data.source, c.data.name, c.data.path, c.data.split = "tfds", "imagenet_resized/64x64", "", "train"
        c.data.crop_size = 64
    elif preset == "runlocal" and (bsds / "train").is_dir():
        c.data.source, c.data.path, c.data.split = "folder", str(bsds), "train"
        c.data.crop_size = 64
    else:
        c.data.source, c.data.path = "skimage", ""
        c.data.crop_size = 64
    c.data.workers = 0 if preset == "tiny" else -1
    if preset == "tiny":
        c.data.batch_size = 2

    # Evaluation: identical images for every method.
    c.eval = ml_collections.ConfigDict()
    if preset == "imagenet64":
        c.eval.dataset, c.eval.num_images, c.eval.crop = "tfds:imagenet_resized/64x64:validation", 10_000, 0
    elif preset == "runlocal" and (bsds / "val").is_dir():
        c.eval.dataset, c.eval.num_images, c.eval.crop = str(bsds / "val"), 24, 64
    else:
        c.eval.dataset, c.eval.num_images, c.eval.crop = "kodak", (2 if preset == "tiny" else 24), 64
    c.eval.metrics = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex")
    c.eval.warmup = preset != "tiny"   # tiny: coding seconds include compilation (each file is coded once)
    c.eval.realism = ml_collections.ConfigDict()
    c.eval.realism.features = "inception" if preset == "imagenet64" else "alex"
    c.eval.realism.inception_weights = ""
    c.eval.realism.patch_size = 0 if preset == "imagenet64" else 32   # 0 = whole images
    c.eval.realism.kid_subsets = 100 if preset != "tiny" else 10
    # bpp needed to reach these qualities (interpolated on each curve; "—" outside its range)
    c.eval.targets = ml_collections.ConfigDict(
        {"psnr-rgb": 9.0 if preset == "tiny" else 26.0, "lpips-alex": 0.25 if preset == "tiny" else 0.15,
         "kid": 0.01 if preset == "imagenet64" else 1.0})   # KID's scale depends on the features (alex: ~0..50)

    methods = _methods(preset)
    c.methods = ml_collections.ConfigDict(methods)
    c.order = tuple(methods)       # evaluation / table order (a ConfigDict sorts its keys)
    return c
