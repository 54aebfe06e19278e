"""The benchmark problems: their catad models, sizes and random inputs.

A problem's inputs are a dict of named arguments in the order of the catad
function's parameters; `wrt` names those differentiated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks import manual

MODELS = Path(__file__).parent / "models"


@dataclass(frozen=True)
class Problem:
    name: str
    model: str                      # file in benchmarks/models
    objective: str                  # the catad function
    gradient: str                   # its value_and_grad
    wrt: tuple[str, ...]
    sizes: dict[str, tuple[dict[str, int], ...]]   # "small" / "full" -> size parameters
    make_inputs: Callable[[dict[str, int], np.random.Generator], dict[str, object]]
    manual_objective: Callable[..., float]
    manual_gradient: Callable[..., tuple[float, tuple[np.ndarray, ...]]]

    def label(self, size: dict[str, int]) -> str:
        return ",".join(f"{key}={value}" for key, value in size.items())


def _gmm_inputs(size, rng):
    d, k, n = size["d"], size["k"], size["n"]
    m = d + d * (d - 1) // 2
    return {"alphas": rng.standard_normal(k), "means": rng.uniform(size=(k, d)),
            "icf": rng.standard_normal((k, m)), "x": rng.standard_normal((n, d)),
            "gamma": 1.0, "wm": 0}


def _lstm_inputs(size, rng):
    """Random parameters in [0, 1) as GradBench draws them; the text is random
    14-bit characters (the ADBench text file is not shipped here)."""
    l, c, b = size["l"], size["c"], 14
    return {"main": rng.random((l, 2, 4, b)), "extra": rng.random((3, b)),
            "state": rng.random((l, 2, b)),
            "seq": rng.integers(0, 2, (c, b)).astype(np.float64)}


def _mlp_inputs(size, rng):
    d, h, n, c = 784, size["h"], size["batch"], 10
    return {"W1": rng.standard_normal((h, d)) / np.sqrt(d), "b1": 0.1 * rng.standard_normal(h),
            "W2": rng.standard_normal((c, h)) / np.sqrt(h), "b2": 0.1 * rng.standard_normal(c),
            "X": rng.random((n, d)), "Y": np.eye(c)[rng.integers(0, c, n)]}


def _lse_inputs(size, rng):
    return {"x": rng.uniform(-100.0, 100.0, size["n"])}


PROBLEMS: dict[str, Problem] = {
    "gmm": Problem(
        "gmm", "gmm.catad", "gmm", "gmm_grad", ("alphas", "means", "icf"),
        {"tiny": ({"d": 2, "k": 3, "n": 20},),
         "small": ({"d": 2, "k": 5, "n": 1000}, {"d": 10, "k": 25, "n": 1000}),
         "full": ({"d": 2, "k": 5, "n": 1000}, {"d": 10, "k": 5, "n": 1000},
                  {"d": 10, "k": 25, "n": 1000}, {"d": 20, "k": 25, "n": 1000},
                  {"d": 20, "k": 50, "n": 1000}, {"d": 32, "k": 50, "n": 1000},
                  {"d": 64, "k": 100, "n": 10000})},
        _gmm_inputs, manual.gmm_objective, manual.gmm_gradient),
    "lstm": Problem(
        "lstm", "lstm.catad", "lstm", "lstm_grad", ("main", "extra"),
        {"tiny": ({"l": 2, "c": 5},),
         "small": ({"l": 2, "c": 128}, {"l": 4, "c": 128}),
         "full": ({"l": 2, "c": 128}, {"l": 2, "c": 1024}, {"l": 4, "c": 1024}, {"l": 4, "c": 4096})},
        _lstm_inputs, manual.lstm_objective, manual.lstm_gradient),
    "mlp": Problem(
        "mlp", "mlp.catad", "mlp_loss", "mlp_grad", ("W1", "b1", "W2", "b2"),
        {"tiny": ({"h": 8, "batch": 4},),
         "small": ({"h": 256, "batch": 64}, {"h": 512, "batch": 256}),
         "full": ({"h": 256, "batch": 64}, {"h": 256, "batch": 1024},
                  {"h": 1024, "batch": 64}, {"h": 1024, "batch": 1024})},
        _mlp_inputs, manual.mlp_objective, manual.mlp_gradient),
    "lse": Problem(
        "lse", "lse.catad", "lse", "lse_grad", ("x",),
        {"tiny": ({"n": 10},),
         "small": ({"n": 100}, {"n": 1000}, {"n": 10000}, {"n": 100000}),
         "full": ({"n": 100}, {"n": 1000}, {"n": 10000}, {"n": 100000}, {"n": 1000000})},
        _lse_inputs, manual.lse_objective, manual.lse_gradient),
}


def model_source(problem: Problem) -> str:
    return (MODELS / problem.model).read_text(encoding="utf-8")


@cache
def catad_module(model: str, backend: str = "numpy"):
    """The compiled catad module of a model file (compiled once per process and backend)."""
    import catad

    return catad.load(MODELS / model, backend=backend)
