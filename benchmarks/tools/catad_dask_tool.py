"""catad's array API module (`--backend array-api`) on Dask arrays: the data
(every input with the longest leading axis) chunked by rows into `CHUNKS`
pieces, the parameters in one chunk each; each evaluation builds the task
graph and computes it on Dask's threads (timed together: that is what a
user pays per call)."""

from __future__ import annotations

import math
import numpy as np

from benchmarks.problems import Problem
from benchmarks.tools import Prepared, missing
from benchmarks.tools.catad_tool import prepared

NAME = "catad-dask"
CHUNKS = 4
DATA_PARALLEL = ("gmm", "mlp", "lse")
"""The problems whose work is over rows of data, which Dask's chunks split. The LSTM
is a time loop over arrays of 14 numbers: tens of tiny tasks per step, and one
gradient took 4 minutes at l = 2, c = 128 (25 at l = 4) without telling anything."""


def unavailable() -> str | None:
    return missing("array_api_compat", "dask.array")


def chunked(inputs: dict) -> tuple:
    """The inputs as Dask arrays: the longest leading axis split into CHUNKS."""
    import dask.array as da

    arrays = [np.asarray(v) for v in inputs.values()]
    longest = max((a.shape[0] for a in arrays if a.ndim), default=0)
    out = []
    for a in arrays:
        rows = a.ndim and a.shape[0] == longest and longest >= CHUNKS
        out.append(da.from_array(a, chunks=(math.ceil(longest / CHUNKS), *a.shape[1:]) if rows else -1))
    return tuple(out)


def prepare(problem: Problem, inputs: dict) -> Prepared | str:
    if problem.name not in DATA_PARALLEL:
        return ("not a data-parallel problem: a time loop over tiny arrays is Dask's "
                "per-task overhead alone")
    import dask

    return prepared(problem, "array-api", chunked(inputs), run=lambda lazy: dask.compute(lazy)[0])
