"""Metric writers: workdir/metrics.jsonl, TensorBoard events (tensorboardX), a tqdm bar on a terminal.

Only process 0 writes; on other processes every method is a no-op.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from typing import Mapping

import numpy as np


def _scalar(v):
    v = np.asarray(v)
    return float(v) if v.size == 1 else None


class MetricWriter:
    """Appends {"step", "split", "time", **metrics} lines to metrics.jsonl and TensorBoard scalars."""

    def __init__(self, workdir, *, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter
                self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, float], *, split: str = "train") -> None:
        if not self.enabled:
            return
        clean = {k: s for k, v in metrics.items() if (s := _scalar(v)) is not None}
        line = {"step": int(step), "split": split, "time": time.time()}
        line.update({k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()})
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(f"{split}/{k}", v, int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir, *, split: str | None = None) -> list[dict]:
    """The lines of workdir/metrics.jsonl (optionally one split), in order."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


class ProgressBar:
    """tqdm bar, shown only on process 0 when stderr is a terminal and enabled in the config."""

    def __init__(self, *, total: int, initial: int, enabled: bool):
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, initial=initial, dynamic_ncols=True, unit="step")

    def update(self, n: int = 1, **postfix) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
