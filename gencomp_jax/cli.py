"""`gencomp`: compress / decompress / evaluate / plot / bd / info from the command line.

    gencomp compress   --checkpoint WORKDIR IN.png OUT.gcz
    gencomp decompress --checkpoint WORKDIR IN.gcz OUT.png [--steps K] [--option NAME=VALUE ...]
    gencomp evaluate   --checkpoint WORKDIR [--checkpoint WORKDIR2 ...] --dataset kodak|PATH --out RESULTS.json
                       [--option NAME=V1,V2,... ...]
                       [--metrics psnr-rgb,ms-ssim-rgb,lpips-alex] [--realism] [--realism-features inception]
                       [--inception-weights PATH] [--patch-size 256] [--limit N] [--name NAME]
                       [--description TEXT] [--files-dir DIR] [--plot rd.png] [--reference balle2018]
                       [--no-progress]
                       (several --checkpoint: a rate sweep, evaluated per workdir and merged into one curve)
    gencomp plot       A.json [B.json ...] -o rd.png [--reference NAME[,NAME...] ...] [--metrics ...] [--title T]
    gencomp plot       --list-references             (the bundled published curves, with their sources)
    gencomp bd         ANCHOR.json TEST.json [TEST2.json ...] [--metric psnr-rgb] [--method pchip|akima|cubic]
                       (BD-rate in % and BD-quality of each TEST against ANCHOR; a bundled reference
                       name, e.g. balle2018, works in place of a file)
    gencomp info       FILE.gcz

Decode options (`--option`, `--steps`) are the ones the file's codec declares (`decode_options`, a
tuple of gencomp_jax.codecs.base.DecodeOption, registered with the codec); `gencomp info FILE` lists
them. `--steps K` is `--option steps=K` (progressive codecs). `evaluate --option NAME=V1,V2` sweeps
every combination of the given values over the codec's rate points (eval.evaluate.rate_points).

User errors (missing files, bad images, files made by another model, truncated files, undeclared
options, ...) are the library's ValueError subclasses (BitstreamError, OptionError, RegistryError,
ImageError, CodingError, ...) and OSError; they print one line `gencomp <command>: error: <message>`
and exit with status 2; set GENCOMP_DEBUG=1 to get the traceback instead. Only argument parsing lives
here; everything else is library calls.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import warnings

EXIT_USER_ERROR = 2


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _load_codec(workdir):
    from gencomp_jax.eval import loading

    return loading.load_codec(workdir)


def _load_eval_set(dataset: str, limit):
    from gencomp_jax.eval import loading

    return loading.load_eval_set(dataset, limit=limit)


def _decode_options(entry, pairs, steps) -> dict:
    """--option NAME=VALUE texts (+ --steps) parsed with the codec's declared DecodeOptions (OptionError
    names the codec's options)."""
    from gencomp_jax.codecs import base
    from gencomp_jax.eval import evaluate

    given = evaluate.parse_option_args(pairs)
    if steps is not None:
        if "steps" in given:
            raise base.OptionError("give the number of steps once: --steps K or --option steps=K")
        given["steps"] = [str(steps)]
    base.check_options(entry, dict.fromkeys(given), fill_defaults=False)  # undeclared names
    declared = {o.name: o for o in entry.decode_options}
    for k, v in given.items():
        if len(v) != 1:
            raise base.OptionError(f"--option {k}: decompress takes one value, got {v}")
    return {k: declared[k].parse(v[0]) for k, v in given.items()}


def cmd_compress(args) -> int:
    from gencomp_jax.data import images

    image = images.read_image(args.input)
    codec = _load_codec(args.checkpoint)
    data = codec.compress(image)
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    h, w = image.shape[:2]
    print(f"{args.input} -> {out}: {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp ({w}x{h})")
    return 0


def cmd_decompress(args) -> int:
    from gencomp_jax import registry
    from gencomp_jax.codecs import bitstream
    from gencomp_jax.data import images

    data = pathlib.Path(args.input).read_bytes()
    registry.discover()  # built-in codec ids resolve
    header = bitstream.peek(data)  # fail fast (before loading a model) on a non-gencomp file
    # a typo in an option fails before the model loads
    options = _decode_options(registry.get(header.codec), args.option, args.steps)
    codec = _load_codec(args.checkpoint)
    rec = codec.decompress(data, **options)
    path = images.write_png(args.output, rec)
    h, w = header.image_shape[:2]
    shown = "".join(f", {k}={v}" for k, v in options.items())
    print(f"{args.input} -> {path}: {w}x{h} ({header.codec}{shown})")
    return 0


def cmd_evaluate(args) -> int:
    from gencomp_jax.eval import evaluate, plot, sweep

    metrics = _csv_list(args.metrics)
    realism = None
    if args.realism:
        realism = {"features": args.realism_features, "patch_size": args.patch_size or None}
        if args.inception_weights:
            realism["inception_weights"] = args.inception_weights
    options = evaluate.parse_option_args(args.option) or None
    items = _load_eval_set(args.dataset, args.limit)
    if len(args.checkpoint) > 1:  # a rate sweep: one point (or more) per workdir, merged into one curve
        res = sweep.evaluate_sweep(args.checkpoint, out_json=args.out, name=args.name, description=args.description or "",
                                   dataset=args.dataset, images=items, metrics=metrics, realism=realism,
                                   options=options, plot_path=args.plot, reference=_references(args.reference), progress=not args.no_progress)
        written = [args.out] + [str(pathlib.Path(args.out).with_name(f"{pathlib.Path(args.out).stem}_"
                                                                     f"{pathlib.Path(w).resolve().name}.json"))
                                for w in args.checkpoint]
    else:
        codec = _load_codec(args.checkpoint[0])
        name = args.name or pathlib.Path(args.checkpoint[0]).resolve().name
        description = args.description or f"{name} on {args.dataset} ({len(items)} images), real files"
        res = evaluate.evaluate_codec(codec, items, name=name, description=description, metrics=metrics,
                                      realism=realism, options=options, out_json=args.out, workdir_for_files=args.files_dir,
                                      progress=not args.no_progress)
        written = [args.out, str(evaluate.per_image_csv_path(args.out))]
        if args.plot:
            plot.plot_rd([res], args.plot, reference=_references(args.reference))
    r = res["results"]
    keys = list(r)
    print("  ".join(f"{k:>13s}" for k in ["point", *keys]))
    for i in range(len(r["bpp"])):
        print("  ".join([f"{i:>13d}"] + [f"{r[k][i]:13.4f}" for k in keys]))
    print("wrote " + ", ".join(written + ([args.plot] if args.plot else [])))
    return 0


def _references(values) -> list[str]:
    """--reference values (repeatable, comma-separated; "none" = no overlay) -> names."""
    return [n for v in values or () for n in _csv_list(v) if n != "none"]


def cmd_plot(args) -> int:
    from gencomp_jax.eval import plot, results

    if args.list_references:
        for name in results.reference_names():
            ref = results.load_reference(name)
            print(f"{name:<44s} {len(ref['results']['bpp']):>3d} points  {', '.join(ref['results'])}")
            print(f"    {ref['description']}")
        return 0
    if not args.results or not args.output:
        raise ValueError("give results JSON files and -o OUTPUT (or --list-references)")
    loaded = [results.load_results(p) for p in args.results]
    metrics = _csv_list(args.metrics) if args.metrics else None
    path = plot.plot_rd(loaded, args.output, metrics=metrics, reference=_references(args.reference),
                        title=args.title)
    print(f"wrote {path}")
    return 0


def cmd_bd(args) -> int:
    from gencomp_jax.eval import results

    anchor = results.load_results_or_reference(args.anchor)
    metric = results.canonical_key(args.metric)
    unit = " dB" if metric in ("psnr-rgb", "ms-ssim-rgb") else ""
    scale = " (on -10 log10(1 - MS-SSIM))" if metric == "ms-ssim-rgb" else ""
    print(f"anchor: {anchor['name']} ({args.anchor}); metric {metric}{scale}, {args.method} interpolation")
    for spec in args.test:
        test = results.load_results_or_reference(spec)
        with warnings.catch_warnings(record=True) as caught:  # small overlap: a note under the line
            warnings.simplefilter("always")
            bd = results.bd_from_results(anchor, test, metric=metric, method=args.method)
        print(f"{test['name']} ({spec}): BD-rate {bd['bd_rate']:+.2f} %  BD-{metric} {bd['bd_quality']:+.4f}{unit}"
              + (f"  ({bd['dropped']} point(s) at 0 bpp or non-finite {metric} left out)" if bd["dropped"] else ""))
        for w in caught:
            print(f"    note: {w.message}")
    print("BD-rate < 0: the test needs fewer bits for the same quality; BD-quality: test minus anchor.")
    return 0


def cmd_info(args) -> int:
    from gencomp_jax import registry
    from gencomp_jax.codecs import bitstream

    data = pathlib.Path(args.input).read_bytes()
    registry.discover()  # built-in codec ids resolve
    header, segments = bitstream.unpack(data, allow_partial=True)
    entry = registry.get(header.codec)
    h, w, c = header.image_shape
    print(f"file:        {args.input} ({len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp)")
    print(f"codec:       {header.codec} (id {entry.codec_id}, format version {header.format_version})")
    print(f"model:       {header.params_hash.hex()}")
    print(f"image:       {w}x{h}x{c}")
    print(f"seed:        {header.seed if header.seed else 'none'}")
    print(f"meta:        {len(header.meta)} bytes")
    print(f"segments:    {len(segments)} of {header.num_segments} complete, sizes {[len(s) for s in segments]}")
    print("options:     " + ("none" if not entry.decode_options else
                             "(gencomp decompress --option NAME=VALUE)"))
    for o in entry.decode_options:
        print(f"  {o.describe()}" + ("  (also --steps K)" if o.name == "steps" else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gencomp", description="Generative image compression with gencomp_jax.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="compress a PNG/JPEG image to a .gcz file")
    c.add_argument("--checkpoint", required=True, help="training workdir of the codec")
    c.add_argument("input", help="input image (PNG/JPEG)")
    c.add_argument("output", help="output .gcz file")
    c.set_defaults(fn=cmd_compress)

    d = sub.add_parser("decompress", help="decompress a .gcz file to a PNG image",
                       epilog="The decode options are those the file's codec declares: `gencomp info FILE` lists "
                              "them (e.g. uqdm: steps, reconstruction).")
    d.add_argument("--checkpoint", required=True, help="training workdir of the codec that wrote the file")
    d.add_argument("--steps", type=int, default=None,
                   help="progressive codecs: decode with the first K steps only (0 = none); = --option steps=K")
    d.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a decode option the file's codec declares (repeatable); `gencomp info FILE` lists them")
    d.add_argument("input", help="input .gcz file")
    d.add_argument("output", help="output PNG")
    d.set_defaults(fn=cmd_decompress)

    e = sub.add_parser("evaluate", help="evaluate a codec on a data set with real files (results JSON + CSV)")
    e.add_argument("--checkpoint", required=True, action="append",
                   help="training workdir of the codec; repeat it for a rate sweep (one curve, merged)")
    e.add_argument("--dataset", default="kodak",
                   help="'kodak' (the 24 bundled Kodak images), 'skimage' (bundled photographs), "
                        "'tfds:NAME[:SPLIT]' (a built TensorFlow Datasets set, split 'test' by default, e.g. "
                        "tfds:clic:validation), or a folder of images in any format Pillow reads (PNG, JPEG, "
                        "TIFF, ...; e.g. CLIC professional/mobile, Tecnick, McMaster after download), several "
                        "comma-separated, optionally ending in ':SPLIT' to read split sub-folders (DIR:val)")
    e.add_argument("--option", action="append", default=[], metavar="NAME=V1[,V2,...]",
                   help="decode option to sweep (repeatable): every combination of the given values is applied "
                        "to the codec's rate points, e.g. --option reconstruction=flow,denoise")
    e.add_argument("--out", required=True, help="results JSON to write (per-image CSV goes beside it)")
    e.add_argument("--metrics", default="psnr-rgb,ms-ssim-rgb,lpips-alex",
                   help="comma-separated per-image metrics: psnr-rgb, ms-ssim-rgb, lpips-alex, lpips-vgg (older "
                        "spellings psnr, ms-ssim are read too)")
    e.add_argument("--realism", action="store_true", help="also compute FID/KID over the data set (patches)")
    e.add_argument("--realism-features", default="inception",
                   help="feature network for --realism: inception (fid/kid) or vgg16/alex (fd-vgg16, ...)")
    e.add_argument("--inception-weights", default=None, help="path of the FID Inception weights file")
    e.add_argument("--patch-size", type=int, default=256, help="patch side for --realism (0 = whole images)")
    e.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    e.add_argument("--name", default=None, help="method name in the results (default: workdir name)")
    e.add_argument("--description", default=None)
    e.add_argument("--files-dir", default=None, help="keep the compressed files here (default: temporary)")
    e.add_argument("--plot", default=None, help="also write an RD plot of the results here")
    e.add_argument("--reference", action="append", default=[], metavar="NAME[,NAME...]",
                   help="published curve(s) to overlay in --plot (`gencomp plot --list-references`)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(fn=cmd_evaluate)

    pl = sub.add_parser("plot", help="plot RD(P) curves from results JSON files")
    pl.add_argument("results", nargs="*", help="results JSON files (gencomp evaluate --out, or CompressAI's)")
    pl.add_argument("-o", "--output", default=None, help="output image (PNG/PDF/SVG)")
    pl.add_argument("--reference", action="append", default=[], metavar="NAME[,NAME...]",
                    help="overlay bundled published curves (repeatable; e.g. balle2018, kodak-compressai-mbt2018-mean, "
                         "imagenet64-uqdm-flow): see --list-references")
    pl.add_argument("--list-references", action="store_true",
                    help="list the bundled published curves with their sources and exit")
    pl.add_argument("--metrics", default=None, help="comma-separated panels (default: all metrics present)")
    pl.add_argument("--title", default=None)
    pl.set_defaults(fn=cmd_plot)

    b = sub.add_parser("bd", help="Bjøntegaard deltas (BD-rate %%, BD-PSNR, ...) of results files against an anchor")
    b.add_argument("anchor", help="anchor results JSON (or a bundled reference name, e.g. balle2018)")
    b.add_argument("test", nargs="+", help="results JSON file(s) to compare with the anchor (or reference names)")
    b.add_argument("--metric", default="psnr-rgb",
                   help="quality metric: psnr-rgb (default), ms-ssim-rgb (on its dB scale), lpips-alex, fid, ...")
    b.add_argument("--method", default="pchip", choices=["pchip", "akima", "cubic"],
                   help="interpolation: pchip (JVET/JCT-VC CTC, default), akima, or the original cubic fit")
    b.set_defaults(fn=cmd_bd)

    i = sub.add_parser("info", help="print the header of a .gcz file")
    i.add_argument("input")
    i.set_defaults(fn=cmd_info)
    return p


def _is_user_error(e: BaseException) -> bool:
    """The library's error classes (BitstreamError, OptionError, RegistryError, ImageError, DataError,
    CodingError, ResultsError, ...) are ValueError subclasses; missing files and weights are OSError."""
    return isinstance(e, (ValueError, OSError))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    try:
        return args.fn(args)
    except Exception as e:  # noqa: BLE001 -- only user errors are caught, everything else re-raised
        if not _is_user_error(e) or os.environ.get("GENCOMP_DEBUG"):
            raise
        msg = str(e) or type(e).__name__
        if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
        print(f"gencomp {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"gencomp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
