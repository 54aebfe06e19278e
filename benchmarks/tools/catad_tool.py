"""catad: the compiled model's objective and value_and_grad functions."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.problems import Problem, catad_module
from benchmarks.tools import Prepared

NAME = "catad"


def unavailable() -> str | None:
    return None


def gradients(problem: Problem, result) -> tuple[float, tuple[np.ndarray, ...]]:
    """(value, gradients) from a value_and_grad result; one `wrt` gives a bare array."""
    value, grads = result
    grads = (grads,) if len(problem.wrt) == 1 else tuple(grads)
    return float(value), tuple(np.asarray(g, dtype=np.float64) for g in grads)


def prepare(problem: Problem, inputs: dict) -> Prepared:
    return prepared(problem, "numpy", tuple(inputs.values()))


def to_numpy(value):
    """A result of another array library (tuples item by item) as NumPy arrays."""
    if isinstance(value, tuple):
        return tuple(to_numpy(v) for v in value)
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def prepared(problem: Problem, backend: str, args: tuple,
             run=lambda result: result, to_numpy=lambda result: result) -> Prepared:
    """The problem's objective and gradient compiled for `backend`, on `args`; `run`
    finishes a call's result (Dask: computes it), `to_numpy` converts it back."""
    start = time.perf_counter()
    module = catad_module(problem.model, backend=backend)
    setup = time.perf_counter() - start
    objective = getattr(module, problem.objective)
    gradient = getattr(module, problem.gradient)
    return Prepared(lambda: run(objective(*args)), lambda: run(gradient(*args)),
                    lambda result: gradients(problem, to_numpy(result)), setup)
