"""Which machine a benchmark ran on: the one helper every benchmark's JSON writer calls.

Speeds on these hosts differ 2-3x between CPU types (an Intel Xeon and AMD EPYCs with and without
AVX-512 have been seen, DESIGN.md), so every figure carries the CPU model, its vector extensions, the
cores this process may use and the load when the benchmark started.

    from _machine import machine_info          # benchmarks/ is sys.path[0] for `python benchmarks/x.py`
    result["machine"] = machine_info()
"""

from __future__ import annotations

import os
import platform
import subprocess

# Vector extensions that decide XLA:CPU's and Pillow's speed, as /proc/cpuinfo (x86) or
# /proc/cpuinfo "Features" (ARM) name them.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
                "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm")


def _cpuinfo() -> dict[str, str]:
    """First processor's fields of /proc/cpuinfo ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def _lscpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return ""


def cpu_info() -> dict:
    """{"cpu_model", "cpu_vendor", "cpu_family", "cpu_model_number", "vector_extensions", "cores_usable",
    "cpu_count"}: model name from /proc/cpuinfo (else lscpu, else platform.processor())."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "cpu_model": info.get("model name") or _lscpu_model() or platform.processor() or platform.machine(),
        "cpu_vendor": info.get("vendor_id", ""),
        "cpu_family": info.get("cpu family", ""),
        "cpu_model_number": info.get("model", ""),
        "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
        "cores_usable": usable,
        "cpu_count": os.cpu_count(),
    }


def machine_info(*, jax: bool = True) -> dict:
    """cpu_info() plus the load average at the call, the platform, Python and (jax=True) JAX's version
    and devices."""
    out = cpu_info()
    try:
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        out["load_average"] = None
    out["platform"] = platform.platform()
    out["python"] = platform.python_version()
    if jax:
        import jax as _jax

        out["jax"] = _jax.__version__
        out["devices"] = [str(d) for d in _jax.devices()]
    return out


def describe(info: dict | None = None) -> str:
    """One line for BENCHMARKS.md and logs: 'AMD EPYC (2 cores; avx2, avx512f, ...; load 3.1)'."""
    info = info or machine_info(jax=False)
    ext = ", ".join(e for e in info["vector_extensions"] if e in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile",
                                                                  "asimd", "sve"))
    load = info.get("load_average")
    return (f"{info['cpu_model']} ({info['cores_usable']} cores; {ext or 'no AVX2'}"
            + (f"; load {load[0]:.1f}" if load else "") + ")")


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=1))
    print(describe())
