"""Shared helpers: latency recording, percentiles, medians, RSS and scratch folders."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

Params = Mapping[str, Any]
"""The parameters of one benchmark case (sizes, concurrency...), JSON-compatible."""

Metrics = dict[str, float]
"""What one run of a case measured: metric name -> number."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values (nearest rank)."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(round(q * len(sorted_values) / 100, 9))  # round: no float fuzz
    k = max(0, min(len(sorted_values) - 1, rank - 1))
    return float(sorted_values[k])


def latency_metrics(latencies_ns: Sequence[int]) -> Metrics:
    """p50 / p99 / p99.9 in milliseconds from latencies in nanoseconds."""
    s = sorted(latencies_ns)
    return {
        "p50_ms": percentile(s, 50) / 1e6,
        "p99_ms": percentile(s, 99) / 1e6,
        "p999_ms": percentile(s, 99.9) / 1e6,
    }


def median_metrics(runs: Sequence[Metrics]) -> Metrics:
    """The median of each metric over runs (each metric on its own)."""
    keys: dict[str, None] = {}
    for r in runs:
        keys.update(dict.fromkeys(r))
    out: Metrics = {}
    for k in keys:
        vals = [r[k] for r in runs if k in r]
        out[k] = float(statistics.median(vals))
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident set size now, in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def remove_db(path: Path) -> None:
    """Remove a SQLite file with its WAL, shared-memory and lock companions."""
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


@contextlib.contextmanager
def scratch_dir(prefix: str = "bench-") -> Iterator[Path]:
    """A fresh temporary folder, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Stopwatch:
    """Wall time of a block: ``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


class Skip(Exception):
    """Raised by a case that cannot run here (a peer missing or unable to run)."""
