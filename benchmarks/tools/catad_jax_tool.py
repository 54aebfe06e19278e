"""catad's array API module (`--backend array-api`) run on JAX CPU arrays in
float64, each function compiled by `jax.jit` (XLA): the same generated code as
the `catad` row, traced once: sizes, and what they alone decide, are Python
numbers in it, static under jax.jit. Timed with block_until_ready; the setup
time is catad's compile and the gradient's first call (its trace and XLA
compile)."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.problems import Problem, catad_module
from benchmarks.tools import Prepared, missing
from benchmarks.tools.catad_tool import gradients, to_numpy

NAME = "catad-jax"


def unavailable() -> str | None:
    return missing("array_api_compat", "jax")


def prepare(problem: Problem, inputs: dict) -> Prepared | str:
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    start = time.perf_counter()
    module = catad_module(problem.model, backend="array-api")
    # arrays are traced; Python numbers (GMM's gamma and wm) are static, as in the jax tool
    args = tuple(jax.device_put(np.asarray(v)) if isinstance(v, np.ndarray) else v
                 for v in inputs.values())
    static = tuple(i for i, v in enumerate(inputs.values()) if not isinstance(v, np.ndarray))
    objective = jax.jit(getattr(module, problem.objective), static_argnums=static)
    gradient = jax.jit(getattr(module, problem.gradient), static_argnums=static)
    jax.block_until_ready(gradient(*args))
    setup = time.perf_counter() - start
    jax.block_until_ready(objective(*args))
    return Prepared(lambda: jax.block_until_ready(objective(*args)),
                    lambda: jax.block_until_ready(gradient(*args)),
                    lambda result: gradients(problem, to_numpy(result)), setup)
