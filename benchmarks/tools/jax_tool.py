"""JAX: jit(value_and_grad) on the CPU in float64, timed with block_until_ready;
the first call's trace and compile time is reported separately."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.problems import Problem
from benchmarks.tools import Prepared, missing

NAME = "jax"


def unavailable() -> str | None:
    return missing("jax", install="pip install jax jaxlib")


def _scan(step, state, xs):
    import jax

    return jax.lax.scan(step, state, xs)[1]


def prepare(problem: Problem, inputs: dict) -> Prepared:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    from benchmarks.tools.array_models import objectives

    f = objectives(jnp, _scan)[problem.name]
    names = list(inputs)
    args = tuple(jax.device_put(np.asarray(v)) if isinstance(v, np.ndarray) else v
                 for v in inputs.values())
    argnums = tuple(names.index(w) for w in problem.wrt)
    static = tuple(i for i, v in enumerate(inputs.values()) if not isinstance(v, np.ndarray))
    objective = jax.jit(f, static_argnums=static)
    gradient = jax.jit(jax.value_and_grad(f, argnums=argnums), static_argnums=static)
    start = time.perf_counter()
    jax.block_until_ready(gradient(*args))
    setup = time.perf_counter() - start
    jax.block_until_ready(objective(*args))
    return Prepared(lambda: jax.block_until_ready(objective(*args)),
                    lambda: jax.block_until_ready(gradient(*args)),
                    lambda r: (float(r[0]), tuple(np.asarray(g) for g in r[1])), setup)
