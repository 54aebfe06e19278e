"""HIPS autograd: value_and_grad of the NumPy-style objective, Python loops as written."""

from __future__ import annotations

import numpy as np

from benchmarks.problems import Problem
from benchmarks.tools import Prepared, missing

NAME = "autograd"


def unavailable() -> str | None:
    return missing("autograd", install="pip install autograd")


def _loop(step, state, xs):
    import autograd.numpy as anp

    outputs = []
    for t in range(xs.shape[0]):
        state, out = step(state, xs[t])
        outputs.append(out)
    return anp.stack(outputs)


def prepare(problem: Problem, inputs: dict) -> Prepared:
    import autograd
    import autograd.numpy as anp

    from benchmarks.tools.array_models import objectives

    f = objectives(anp, _loop)[problem.name]
    names = list(inputs)
    wrt_index = [names.index(w) for w in problem.wrt]

    def packed(params, rest):
        args = list(rest)
        for i, p in zip(wrt_index, params):
            args[i] = p
        return f(*args)

    args = tuple(inputs.values())
    params = tuple(args[i] for i in wrt_index)
    value_and_grad = autograd.value_and_grad(packed)
    return Prepared(lambda: f(*args), lambda: value_and_grad(params, args),
                    lambda r: (float(r[0]), tuple(np.asarray(g) for g in r[1])))
