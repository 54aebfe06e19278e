"""catad's array API module (`--backend array-api`) run on JAX CPU arrays in
float64, each function compiled by `jax.jit` (XLA): the same generated code as
the `catad` row, traced once. Timed with block_until_ready; the setup time is
catad's compile and the gradient's first call (its trace and XLA compile)."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.problems import Problem, catad_module
from benchmarks.tools import Prepared, missing
from benchmarks.tools.catad_tool import gradients, to_numpy

NAME = "catad-jax"


def unavailable() -> str | None:
    return missing("array_api_compat", "jax")


def _folding(function):
    """`function` with what does not depend on its traced arguments computed while
    jax.jit traces it (`jax.ensure_compile_time_eval`): sizes and what is computed
    from them alone (outside loops: `jax.lax.scan` traces a step's index) are then
    known, so indices beside slices are Python ints and ifs on them Python ifs
    (the LSTM gradient at l = 2, c = 128: 2.0 ms, 2.9 ms without)."""
    import functools

    import jax

    @functools.wraps(function)
    def folding(*args):
        with jax.ensure_compile_time_eval():
            return function(*args)
    return folding


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
    objective = jax.jit(_folding(getattr(module, problem.objective)), static_argnums=static)
    gradient = jax.jit(_folding(getattr(module, problem.gradient)), static_argnums=static)
    jax.block_until_ready(gradient(*args))
    setup = time.perf_counter() - start
    jax.block_until_ready(objective(*args))
    return Prepared(lambda: jax.block_until_ready(objective(*args)),
                    lambda: jax.block_until_ready(gradient(*args)),
                    lambda result: gradients(problem, to_numpy(result)), setup)
