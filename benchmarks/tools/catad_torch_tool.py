"""catad's array API module (`--backend array-api`) run on PyTorch CPU tensors:
the same generated code as the `catad` row, on another array library."""

from __future__ import annotations

import numpy as np

from benchmarks.problems import Problem
from benchmarks.tools import Prepared
from benchmarks.tools.catad_tool import prepared

NAME = "catad-torch"


def unavailable() -> str | None:
    try:
        import array_api_compat  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed (pip install '.[bench]')"
    return None


def to_numpy(value):
    if isinstance(value, tuple):
        return tuple(to_numpy(v) for v in value)
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def prepare(problem: Problem, inputs: dict) -> Prepared:
    import torch

    args = tuple(torch.asarray(np.array(v)) for v in inputs.values())
    return prepared(problem, "array-api", args, to_numpy=to_numpy)
