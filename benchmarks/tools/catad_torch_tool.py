"""catad's array API module (`--backend array-api`) run on PyTorch CPU tensors:
the same generated code as the `catad` row, on another array library."""

from __future__ import annotations

import numpy as np

from benchmarks.problems import Problem
from benchmarks.tools import Prepared, missing
from benchmarks.tools.catad_tool import prepared, to_numpy

NAME = "catad-torch"


def unavailable() -> str | None:
    return missing("array_api_compat", "torch")


def prepare(problem: Problem, inputs: dict) -> Prepared:
    import torch

    args = tuple(torch.asarray(np.array(v)) for v in inputs.values())
    return prepared(problem, "array-api", args, to_numpy=to_numpy)
