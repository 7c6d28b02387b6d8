"""Timing and memory helpers: medians of repeats, latency percentiles, peak memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call takes, and what it returned."""
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def repeat(function: Callable[[], Any], times: int) -> list[float]:
    """Seconds of each of ``times`` calls."""
    return [timed(function)[0] for _ in range(times)]


def summary(seconds: list[float]) -> dict[str, Any]:
    """Median and all runs, for the report."""
    return {"median": float(np.median(seconds)), "runs": [round(s, 6) for s in seconds]}


def latency(seconds: list[float]) -> dict[str, Any]:
    """p50/p99 in milliseconds of single-query latencies."""
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "queries": len(ms)}


def _used_bytes() -> int:
    info = {}
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            name, value = line.split(":", 1)
            info[name] = int(value.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


@contextmanager
def system_memory() -> Iterator[dict[str, int]]:
    """Peak rise of the machine's used memory (MemTotal - MemAvailable) while the block runs,
    sampled every 0.2 s: covers the worker and the PostgreSQL backends (and, on a shared
    machine, anyone else)."""
    found = {"baseline_bytes": _used_bytes(), "peak_rise_bytes": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            found["peak_rise_bytes"] = max(found["peak_rise_bytes"],
                                           _used_bytes() - found["baseline_bytes"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        stop.set()
        sampler.join()
