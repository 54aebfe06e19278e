"""Timing (minimum over repeats after a warm-up), peak memory and gradient agreement."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Callable

import numpy as np

TOLERANCE = 1e-8


def min_time(fn: Callable[[], object], *, min_runs: int = 3, max_runs: int = 50,
             budget_s: float = 1.0) -> tuple[float, int]:
    """(fastest run in seconds, number of runs) after one warm-up call: at least
    `min_runs`, then more until `budget_s` is spent or `max_runs` are done."""
    fn()
    best, runs, spent = float("inf"), 0, 0.0
    while runs < min_runs or (spent < budget_s and runs < max_runs):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, runs, spent = min(best, elapsed), runs + 1, spent + elapsed
    return best, runs


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak memory traced while `fn` runs (NumPy reports its buffers to tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def relative_error(value: float, grads: tuple[np.ndarray, ...],
                   ref_value: float, ref_grads: tuple[np.ndarray, ...]) -> float:
    """The largest of |value - ref| / max(1, |ref|) and, for each gradient,
    max|g - ref| / max|ref| (an all-zero reference compares absolutely)."""
    errors = [abs(value - ref_value) / max(1.0, abs(ref_value))]
    if len(grads) != len(ref_grads):
        return float("inf")
    for g, r in zip(grads, ref_grads):
        g, r = np.asarray(g, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if g.shape != r.shape:
            return float("inf")
        scale = float(np.max(np.abs(r), initial=0.0)) or 1.0
        errors.append(float(np.max(np.abs(g - r), initial=0.0)) / scale)
    return max(errors)
