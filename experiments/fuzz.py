"""Long fuzzing campaigns (issue 16): every registered codec's decompress and data.read_image.

    python experiments/fuzz.py --cases 100000 --out fuzz_results.json
    python experiments/fuzz.py --targets hyperprior,uqdm --cases 2000 --timeout 20

Each target runs in a child process (gencomp_jax.codecs.fuzz.Worker): a case over --timeout seconds
is a hang, a killed child is a death, both recorded and the child restarted. Writes one JSON object:
per target the counts per status and mutation kind, cases per second, the slowest case, the child's
peak RSS and the first failures (with tracebacks); exits 1 if any target has a failure.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gencomp_jax import registry  # noqa: E402
from gencomp_jax.codecs import fuzz  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="", help="comma-separated codec names and/or read_image "
                   "(default: every registered codec and read_image)")
    p.add_argument("--cases", type=int, default=1000, help="cases per target")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it is a hang")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fuzz_results.json")
    p.add_argument("--progress", type=int, default=5000, help="print a line every N cases")
    args = p.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t] or registry.codec_names() + ["read_image"]
    report = {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
              "cases_per_target": args.cases, "timeout_s": args.timeout, "targets": {}}
    if os.path.exists("/proc/cpuinfo"):
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        report["cpu"] = names[0] if names else report["cpu"]
    failed = False
    for t in targets:
        worker = fuzz.Worker(t, timeout_s=args.timeout, hard_timeout_s=3 * args.timeout)
        t0 = time.time()
        files = worker.start()
        setup = time.time() - t0
        outcomes = []
        t1 = time.time()
        for i, (kind, data) in enumerate(fuzz.cases(files, args.cases, seed=args.seed, png=t == "read_image")):
            outcomes.append(worker.run_one(kind, data))
            if args.progress and (i + 1) % args.progress == 0:
                s = fuzz.summarize(outcomes)
                print(f"{t}: {i + 1} cases, {s['status']}, {time.time() - t1:.0f} s", flush=True)
        worker.close()
        s = fuzz.summarize(outcomes)
        s.update(setup_s=round(setup, 1), run_s=round(time.time() - t1, 1), restarts=worker.restarts,
                 cases_per_s=round(len(outcomes) / max(time.time() - t1, 1e-9), 1))
        report["targets"][t] = s
        failed |= s["num_failures"] > 0
        print(f"{t}: {s['cases']} cases in {s['run_s']} s, {s['status']}, slowest {s['max_seconds']:.2f} s, "
              f"peak RSS {s['peak_rss_mb']:.0f} MB", flush=True)
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
