"""Hand-written NumPy gradients (benchmarks/manual.py): the reference every tool is checked against."""

from __future__ import annotations

import numpy as np

from benchmarks.problems import Problem
from benchmarks.tools import Prepared

NAME = "manual"


def unavailable() -> str | None:
    return None


def prepare(problem: Problem, inputs: dict) -> Prepared:
    args = tuple(inputs.values())
    return Prepared(lambda: problem.manual_objective(*args),
                    lambda: problem.manual_gradient(*args),
                    lambda result: (float(result[0]), tuple(np.asarray(g) for g in result[1])))
