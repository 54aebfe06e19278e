"""The tools a benchmark compares, one module each. Every module has `NAME`,
`unavailable() -> str | None` (why it cannot run here) and
`prepare(problem, inputs) -> Prepared | str` (a string says why this problem or
size is skipped)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Prepared:
    """Closures over one problem's inputs, already converted to the tool's arrays."""
    objective: Callable[[], object]          # one evaluation, finished when it returns
    gradient: Callable[[], object]           # value and gradients, finished when it returns
    to_numpy: Callable[[object], tuple[float, tuple[np.ndarray, ...]]]  # gradient()'s result
    setup_s: float | None = None             # compile or trace time spent in prepare


def missing(*modules: str, install: str = "pip install '.[bench]'") -> str | None:
    """Why a tool cannot run here: the first of `modules` that does not import."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return f"{name} is not installed ({install})"
    return None


def tool_modules():
    """The tool modules in report order: catad first, the reference second."""
    from benchmarks.tools import (autograd_tool, catad_dask_tool, catad_jax_tool, catad_tool, catad_torch_tool,
                                  jax_tool, manual_tool, sympy_tool, torch_tool)

    return (catad_tool, manual_tool, jax_tool, torch_tool, autograd_tool, sympy_tool, catad_torch_tool,
            catad_jax_tool, catad_dask_tool)
