"""Training-input throughput: random crops per second through the grain pipeline, by worker count.

    .venv/bin/python benchmarks/input.py [--seconds 20] [--pngs 16] [--workers 0,1,2,all]
        [--sources bsds_jpeg,png_2k] [--crops 64,256] [--bsds /work/shared/data/bsds500]

Sources (decoded-image cache off, so every crop decodes its image as on a data set larger than the
cache): (a) the 500 BSDS500 JPEGs (481x321), (b) 2048x1365 PNGs made by upscaling the first --pngs
BSDS500 images (Lanczos, orientation kept) into a temporary folder. For each source, crop size (64,
256; batch 16) and worker count (0 = read in the training process with grain's one reading thread,
else grain worker processes), the real `data.TrainIterator` runs; once its read-ahead buffers are
full (worker start-up is reported separately) it counts batches for --seconds (and at least
--min_batches per worker).

Reported per case: crops/s (wall clock); CPU milliseconds per crop in the training process and in
the worker processes (steady state, from /proc: a load-independent cost, where the wall figure on a
shared machine depends on the other jobs) and the crops/s they project for an idle host (workers on
their own cores, the training process on one more; marked as a projection); the start-up time; the
load average; the machine (CPU model, vector extensions) from benchmarks/_machine.py. Writes
benchmarks/results/input.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import describe, machine_info  # noqa: E402

from gencomp_jax.data import TrainIterator, list_image_files, open_source  # noqa: E402

BATCH = 16
PNG_SIZE = (2048, 1365)  # W x H (landscape; portrait sources become 1365 x 2048)


def make_pngs(bsds: str, count: int, folder: pathlib.Path) -> float:
    """Writes `count` 2048x1365 PNGs upscaled from BSDS500; returns the mean PNG size in MB."""
    files = list_image_files(bsds, split="")[:count]
    sizes = []
    for name, path in files:
        with Image.open(path) as im:
            im = im.convert("RGB")
            size = PNG_SIZE if im.width >= im.height else PNG_SIZE[::-1]
            out = folder / (name.replace("/", "_") + ".png")
            im.resize(size, Image.LANCZOS).save(out, format="PNG")
        sizes.append(out.stat().st_size)
    return float(np.mean(sizes)) / 1e6


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc/<pid>/stat."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_cpu() -> float:
    """CPU seconds of the live child processes (grain's workers) so far."""
    return sum(_proc_cpu(c.pid) for c in multiprocessing.active_children())


def _cpu() -> tuple[float, float]:
    """(CPU seconds of this process, all threads; of its live worker processes)."""
    return time.process_time(), _worker_cpu()


def _settle(timeout: float = 120.0) -> tuple[float, float]:
    """Waits until the pipeline stops working (its read-ahead buffers are full); returns _cpu()."""
    last, t0 = _cpu(), time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        time.sleep(0.5)
        now = _cpu()
        if sum(now) - sum(last) < 0.02:
            return now
        last = now
    return last


def measure(path: str, *, crop: int, workers: int, seconds: float, min_batches: int) -> dict:
    source = open_source("folder", path=path, split="", training=True, cache_bytes=0)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    it = TrainIterator(source, seed=0, batch_size=BATCH, crop_size=crop, workers=workers, prefetch=2)
    next(it)
    startup = time.perf_counter() - t0
    # Steady state: buffers full at both ends of the window, so the CPU spent in it is the cost of
    # exactly the batches consumed in it. Wall time counts from the first next() after the settle.
    # The batches read ahead are drained before the clock starts (else they would count as made in it).
    main0, work0 = _settle()
    ahead = 3 * max(1, workers)  # grain's read-ahead: 2 batches per worker + 1 in its reading thread
    for _ in range(ahead):
        next(it)
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < seconds or n < min_batches * max(1, workers):
        batch = next(it)["image"]
        assert batch.shape == (BATCH, crop, crop, 3) and batch.dtype == np.uint8
        n += 1
    wall = time.perf_counter() - t1
    main1, work1 = _settle()
    it.close()
    del it
    crops, cpu_crops = n * BATCH, (n + ahead) * BATCH
    main_ms, worker_ms = 1e3 * (main1 - main0) / cpu_crops, 1e3 * (work1 - work0) / cpu_crops
    # What this pipeline delivers on an idle host with `workers` cores for the workers and one for the
    # training process: each side's CPU cost per crop, measured here (a projection, not a measurement).
    if workers:
        idle = min(1e3 * workers / max(worker_ms, 1e-9), 1e3 / max(main_ms, 1e-9))
    else:
        idle = 1e3 / max(main_ms, 1e-9)
    return {"crop": crop, "workers": workers, "batch": BATCH, "crops_per_s": crops / wall,
            "batches": n, "seconds": wall, "startup_s": startup,
            "main_cpu_ms_per_crop": main_ms, "worker_cpu_ms_per_crop": worker_ms,
            "projected_idle_crops_per_s": idle,
            "load_average_start": load0, "load_average_end": os.getloadavg()[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsds", default="/work/shared/data/bsds500")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pngs", type=int, default=16)
    ap.add_argument("--min_batches", type=int, default=4, help="per worker, at least")
    ap.add_argument("--workers", default="0,1,2,all")
    ap.add_argument("--sources", default="bsds_jpeg,png_2k")
    ap.add_argument("--crops", default="64,256")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "input.json"))
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    workers = sorted({cores if w == "all" else int(w) for w in a.workers.split(",")})
    crops = [int(c) for c in a.crops.split(",")]
    res = {"machine": machine_info(jax=False), "description": __doc__.split("\n\n")[2].replace("\n", " "),
           "results": {}}
    print("machine:", describe(res["machine"]))
    with tempfile.TemporaryDirectory(prefix="gencomp_input_bench_") as tmp:
        paths = {"bsds_jpeg": a.bsds}
        if "png_2k" in a.sources:
            t = time.perf_counter()
            mb = make_pngs(a.bsds, a.pngs, pathlib.Path(tmp))
            res["png_2k"] = {"count": a.pngs, "size": list(PNG_SIZE), "mean_mb": mb}
            print(f"made {a.pngs} PNGs of {PNG_SIZE[0]}x{PNG_SIZE[1]} ({mb:.1f} MB each) in "
                  f"{time.perf_counter() - t:.0f} s")
            paths["png_2k"] = tmp
        for name in a.sources.split(","):
            rows = []
            for crop in crops:
                for w in workers:
                    r = measure(paths[name], crop=crop, workers=w, seconds=a.seconds, min_batches=a.min_batches)
                    rows.append(r)
                    print(f"{name:10s} crop {crop:4d} workers {w:2d}: {r['crops_per_s']:8.1f} crops/s  "
                          f"CPU ms/crop main {r['main_cpu_ms_per_crop']:5.1f} workers {r['worker_cpu_ms_per_crop']:5.1f}  "
                          f"(idle projection {r['projected_idle_crops_per_s']:7.1f}/s)  start-up {r['startup_s']:.1f} s  "
                          f"load {r['load_average_start']:.1f}->{r['load_average_end']:.1f}", flush=True)
                by_w = {r["workers"]: r["crops_per_s"] for r in rows if r["crop"] == crop}
                if 1 in by_w and 2 in by_w:
                    print(f"{name:10s} crop {crop:4d}: 1 -> 2 workers x{by_w[2] / by_w[1]:.2f}")
            res["results"][name] = rows
    res["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print("wrote", out)


if __name__ == "__main__":  # grain's workers are spawned: they import this module without running it
    main()
