"""Rate-distortion results files (CompressAI-style JSON) and Bjøntegaard deltas.

A results file is

    {"name": "hyperprior-q3", "description": "...",
     "results": {"bpp": [...], "bpp_est": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...},
     ...optional extra keys ("rate_points", "num_images", "dataset")}

with one entry per rate point in every list of "results" (means over the images of the data set).
`load_results` reads and checks one; `merge_results` joins several files of one method (e.g. one
file per λ of a sweep) into one curve sorted by bpp.

CompressAI's files load as they are: other spellings of a key are renamed to the one this library
writes, CompressAI's current "psnr-rgb" and "ms-ssim-rgb" (KEY_ALIASES: its older "psnr" and "ms-ssim",
which this library also wrote before), and MS-SSIM given only in dB ("ms-ssim-db-rgb" =
-10 log10(1 - MS-SSIM)) is converted back (DB_KEYS).

Bjøntegaard deltas live in bd.py (bd_rate, bd_quality = bd_psnr, pure numpy/scipy; re-exported here);
bd_from_results applies them to two results dicts. For MS-SSIM the deltas are computed on
ms_ssim_db(x) = -10 log10(1 - x), the usual convention.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from gencomp_jax.eval.bd import bd_psnr, bd_quality, bd_rate  # noqa: F401 -- re-exported

RATE_KEYS = ("bpp", "bpp_est")
TIME_KEYS = ("encoding_time", "decoding_time")
# Other spellings of a results key -> the key this library writes (and metrics.PER_IMAGE names).
KEY_ALIASES = {"psnr": "psnr-rgb", "ms-ssim": "ms-ssim-rgb"}
# MS-SSIM in dB, -10 log10(1 - x) -> the plain MS-SSIM key (converted when only the dB values are given).
DB_KEYS = {"ms-ssim-db-rgb": "ms-ssim-rgb", "ms-ssim-db": "ms-ssim-rgb"}


# Published curves bundled with the package (results files with their source in "description" and
# "source"; tests/golden/make_references.py copied them from the anchors' repositories).
REFERENCES_DIR = pathlib.Path(__file__).resolve().with_name("references")


class ResultsError(ValueError):
    """A results file that cannot be read or used."""


def validate_results(res: Mapping[str, Any], *, source: str = "results") -> dict:
    """Checks the results structure; returns it as a dict (lists of floats, equal lengths)."""
    if not isinstance(res, Mapping) or "results" not in res or not isinstance(res["results"], Mapping):
        raise ResultsError(f"{source}: not a results file (expected a JSON object with a 'results' mapping, "
                           "as written by `gencomp evaluate`)")
    results = res["results"]
    if "bpp" not in results:
        raise ResultsError(f"{source}: 'results' has no 'bpp' list")
    lengths = {k: len(v) for k, v in results.items() if isinstance(v, (list, tuple))}
    bad = [k for k, v in results.items() if not isinstance(v, (list, tuple))]
    if bad:
        raise ResultsError(f"{source}: results entries must be lists, not {bad}")
    if len(set(lengths.values())) > 1:
        raise ResultsError(f"{source}: results lists have different lengths: {lengths}")
    out = dict(res)
    out["results"] = canonical_keys({k: [float(x) if x is not None else math.nan for x in v]
                                     for k, v in results.items()})
    out.setdefault("name", pathlib.Path(source).stem if source != "results" else "unnamed")
    out.setdefault("description", "")
    return out


def canonical_key(key: str) -> str:
    """The key this library uses for a metric spelled `key` (e.g. "ms-ssim" -> "ms-ssim-rgb")."""
    return KEY_ALIASES.get(key, key)


def canonical_keys(results: Mapping[str, list]) -> dict[str, list]:
    """A "results" mapping with KEY_ALIASES renamed and DB_KEYS converted, order kept; a key already
    present under the library's own name wins over its alias."""
    present = {canonical_key(k) for k in results if k not in DB_KEYS}
    out: dict[str, list] = {}
    for k, v in results.items():
        if k in DB_KEYS:
            if DB_KEYS[k] not in present:
                out[DB_KEYS[k]] = [1.0 - 10.0 ** (-x / 10.0) for x in v]
            continue
        target = canonical_key(k)
        if target == k or target not in results:
            out[target] = v
    return out


def load_results(path) -> dict:
    """Reads a results JSON file (see module docstring)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ResultsError(f"results file {str(path)!r} does not exist")
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from None
    return validate_results(res, source=str(path))


def reference_names() -> list[str]:
    """Names of the bundled published curves (`gencomp plot --list-references`), sorted."""
    return sorted(p.stem for p in REFERENCES_DIR.glob("*.json"))


def load_reference(name: str) -> dict:
    """A bundled published curve by name (e.g. "balle2018", "imagenet64-uqdm-flow"), as load_results reads it."""
    if name not in reference_names():
        raise ResultsError(f"unknown reference {name!r}; the bundled ones are: {', '.join(reference_names())} "
                           "(`gencomp plot --list-references` describes them)")
    return load_results(REFERENCES_DIR / f"{name}.json")


def save_results(res: Mapping[str, Any], path) -> None:
    """Writes a results dict as indented JSON (inf/nan written as the JSON extensions Infinity/NaN)."""
    res = validate_results(res)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n")


def merge_results(items: Sequence[Mapping[str, Any]], *, name: str | None = None,
                  description: str | None = None) -> dict:
    """Joins the points of several results (one method) into one curve sorted by bpp.

    Only the metrics present in every item are kept. name/description default to the first item's.
    """
    items = [validate_results(r) for r in items]
    if not items:
        raise ResultsError("merge_results needs at least one results dict")
    keys = [k for k in items[0]["results"] if all(k in r["results"] for r in items)]
    merged = {k: [x for r in items for x in r["results"][k]] for k in keys}
    order = np.argsort(merged["bpp"], kind="stable")
    merged = {k: [v[i] for i in order] for k, v in merged.items()}
    return {"name": name if name is not None else items[0]["name"],
            "description": description if description is not None else items[0]["description"],
            "results": merged}


def ms_ssim_db(x):
    """MS-SSIM in dB, -10 log10(1 - x), the scale on which BD deltas of MS-SSIM are usually computed."""
    return -10.0 * np.log10(1.0 - np.asarray(x, dtype=np.float64))


def bd_from_results(anchor: Mapping[str, Any], test: Mapping[str, Any], *, metric: str = "psnr-rgb",
                    method: str = "pchip") -> dict[str, float]:
    """BD-rate (%) and BD-quality of results `test` against results `anchor` for `metric` (bd.py).

    For "ms-ssim-rgb" both are computed on ms_ssim_db. Points no log-rate curve holds are left out and
    counted: 0 bpp (nothing sent) and a non-finite quality (e.g. PSNR = inf of a lossless point, as in
    the UQDM paper's curves). Returns {"bd_rate": ..., "bd_quality": ..., "dropped": n}.
    """
    anchor, test = validate_results(anchor), validate_results(test)
    metric = canonical_key(metric)
    curves, dropped = [], 0
    for r in (anchor, test):
        if metric not in r["results"]:
            raise ResultsError(f"results {r['name']!r} have no {metric!r} (available: {sorted(r['results'])})")
        rate = np.asarray(r["results"]["bpp"], np.float64)
        with np.errstate(divide="ignore"):
            q = ms_ssim_db(r["results"][metric]) if metric == "ms-ssim-rgb" else np.asarray(r["results"][metric],
                                                                                              np.float64)
        keep = (rate > 0) & np.isfinite(q)
        dropped += int(np.sum(~keep))
        curves += [rate[keep], q[keep]]
    return {"bd_rate": bd_rate(*curves, method=method), "bd_quality": bd_quality(*curves, method=method),
            "dropped": dropped}


def load_results_or_reference(spec: str) -> dict:
    """load_results(spec) for a file; a bundled reference (load_reference) for a name that is not a file."""
    if not pathlib.Path(spec).exists() and spec in reference_names():
        return load_reference(spec)
    try:
        return load_results(spec)
    except ResultsError as e:
        if "does not exist" in str(e):
            raise ResultsError(f"{e}, and it is not a bundled reference name (`gencomp plot --list-references`)") from None
        raise


def metric_keys(results_list: Iterable[Mapping[str, Any]]) -> list[str]:
    """The quality/realism metrics (not rates, times or standard errors) present in any of the results,
    under the library's names (canonical_key)."""
    seen: list[str] = []
    for r in results_list:
        for k in r["results"]:
            k = DB_KEYS.get(k, canonical_key(k))
            if (k in RATE_KEYS or k in TIME_KEYS or "_std" in k or "_stderr" in k or k.startswith("num_")
                    or k in seen):
                continue
            seen.append(k)
    return seen


def format_table(rows: Sequence[tuple[str, Mapping[str, Any]]], *,
                 keys: Sequence[str] = ("bpp", "bpp_est", "psnr-rgb", "ms-ssim-rgb", "lpips-alex",
                                        "encoding_time", "decoding_time")) -> str:
    """A plain-text table of results, one line per (label, results dict) and rate point.

    Columns are the `keys` present in any of the results; missing values print as "-".
    """
    present = [k for k in keys if any(k in r["results"] for _, r in rows)]
    header = f"{'run':<28}" + "".join(f"{k:>15}" for k in present)
    lines = [header, "-" * len(header)]
    for label, res in rows:
        n = len(res["results"]["bpp"])
        for i in range(n):
            cells = []
            for k in present:
                v = res["results"].get(k, [None] * n)[i]
                cells.append(f"{'-':>15}" if v is None or (isinstance(v, float) and math.isnan(v))
                             else f"{v:>15.4f}")
            name = label if n == 1 else f"{label}[{i}]"
            lines.append(f"{name:<28}" + "".join(cells))
    return "\n".join(lines)
