"""SymPy: the objective as one scalar expression, `diff` for every input and
`lambdify(cse=True)`; only logsumexp is small enough to write this way, and only
sizes whose derivation fits in `BUDGET_S` are run."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.problems import Problem
from benchmarks.tools import Prepared, missing

NAME = "sympy"
BUDGET_S = 20.0
_build_times: dict[str, tuple[int, float]] = {}   # problem -> (size, seconds) of the last build


def unavailable() -> str | None:
    return missing("sympy", install="pip install sympy")


def derive_lse(n: int):
    """(objective, value_and_gradient) of log(sum(exp(x))) over n symbols, lambdified."""
    import sympy as sp

    xs = sp.symbols(f"x0:{n}")
    expr = sp.log(sp.Add(*(sp.exp(x) for x in xs)))
    grads = [sp.diff(expr, x) for x in xs]
    objective = sp.lambdify([xs], expr, modules="numpy", cse=True)
    gradient = sp.lambdify([xs], [expr, grads], modules="numpy", cse=True)
    return objective, gradient


def prepare(problem: Problem, inputs: dict) -> Prepared | str:
    if problem.name != "lse":
        return "not written for SymPy: the scalar expression grows with every array element"
    n = len(inputs["x"])
    if problem.name not in _build_times:
        calibration = min(n, 32)
        start = time.perf_counter()
        derive_lse(calibration)
        _build_times[problem.name] = (calibration, time.perf_counter() - start)
    last_n, last_s = _build_times[problem.name]
    estimate = last_s * (n / last_n) ** 2
    if estimate > BUDGET_S:
        return (f"skipped-too-slow: derivation estimated at {estimate:.0f} s (> {BUDGET_S:.0f} s "
                f"budget; {last_s:.2f} s at n={last_n}, growing quadratically)")
    start = time.perf_counter()
    objective, gradient = derive_lse(n)
    setup = time.perf_counter() - start
    _build_times[problem.name] = (n, setup)
    x = inputs["x"]
    return Prepared(lambda: objective(x), lambda: gradient(x),
                    lambda r: (float(r[0]), (np.asarray(r[1], dtype=np.float64),)), setup)
