"""Reverse derivative ascent: learning the parameters of a Boolean circuit.

Wilson & Zanasi (2021) train circuits over Z2 with the reverse derivative
alone. For a model `f(p, x) -> y` of bools, and an example (x, y):

    dy = y xor f(p, x)                 the output bits that are wrong
    p  = p xor R[f]((p, x), dy)_p      flip the parameter bits the derivative blames

catad derives R[f] from the model's source: declare
`fn f_vjp = vjp(f, wrt = p);` over bool parameters and the vjp is the reverse
derivative over Z2 (addition xor, multiplication and), compiled to NumPy.
This optimiser works on any such pair of compiled functions:

    f(*params, *inputs) -> y
    f_vjp(*params, *inputs, y_bar) -> (y, params_bar)

`params` is one bool array or a tuple of them (then `wrt` names them all, in
order); `inputs` one array or a tuple of arrays, examples along axis 0. Steps
run one example at a time, in order, as the paper's `scanl` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Training", "accuracy", "step", "train"]

Params = np.ndarray | tuple[np.ndarray, ...]
Inputs = np.ndarray | tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Training:
    """What `train` did."""

    params: Params                 # after the last step
    best: Params                   # the best by `score` (ties: the later); `params` without it
    steps: int                     # examples seen
    updates: int                   # steps that flipped at least one bit
    scores: tuple[float, ...]      # score of the initial params, then after each step


def step(f: Callable, f_vjp: Callable, params: Params, x: Inputs, y: np.ndarray) -> Params:
    """One step of reverse derivative ascent on one example `(x, y)`."""
    several = isinstance(params, (tuple, list))
    ps, xs = _items(params), _items(x)
    dy = np.logical_xor(np.asarray(y, dtype=bool), f(*ps, *xs))
    _, bars = f_vjp(*ps, *xs, dy)
    bars = _items(bars) if several else (bars,)
    for p, bar in zip(ps, bars):
        if np.asarray(bar).dtype != np.bool_ or np.shape(bar) != np.shape(p):
            raise TypeError(f"{getattr(f_vjp, '__name__', 'the vjp')} is not a reverse derivative "
                            f"over Z2 of these parameters: it returned {np.asarray(bar).dtype} "
                            f"{np.shape(bar)} for bool {np.shape(p)}; declare "
                            "`fn f_vjp = vjp(f, wrt = p);` with p bool")
    flipped = tuple(np.logical_xor(p, bar) for p, bar in zip(ps, bars))
    return flipped if several else flipped[0]


def train(f: Callable, f_vjp: Callable, params: Params, xs: Inputs, ys: np.ndarray, *,
          epochs: int = 1, rng: np.random.Generator | None = None,
          score: Callable[[Params], float] | None = None) -> Training:
    """`epochs` passes of `step` over the examples, in their order (or shuffled by
    `rng` each pass). With `score` (e.g. accuracy on a validation set), every
    params seen is scored and the best kept, as the paper does for MNIST."""
    inputs = _items(xs)
    count = len(ys)
    if any(len(x) != count for x in inputs):
        raise ValueError(f"train: {count} labels but inputs of lengths {[len(x) for x in inputs]}")
    params = _as_bool(params)
    best, updates = params, 0
    scores = [score(params)] if score else []
    best_score = scores[0] if score else 0.0
    for _ in range(epochs):
        order = rng.permutation(count) if rng is not None else range(count)
        for i in order:
            x = tuple(a[i] for a in inputs) if isinstance(xs, tuple) else inputs[0][i]
            new = step(f, f_vjp, params, x, ys[i])
            updates += any(np.any(a != b) for a, b in zip(_items(new), _items(params)))
            params = new
            if score:
                scores.append(score(params))
                if scores[-1] >= best_score:
                    best, best_score = params, scores[-1]
    return Training(params, best if score else params, epochs * count, updates, tuple(scores))


def accuracy(predict: Callable, params: Params, xs: Inputs, ys: np.ndarray) -> float:
    """The fraction of examples whose every output bit `predict(*params, *xs)` (a
    model over a batch, examples along axis 0) gets right."""
    got = np.asarray(predict(*_items(params), *_items(xs)))
    want = np.asarray(ys, dtype=bool)
    right = got == want
    return float(np.mean(np.all(right, axis=tuple(range(1, right.ndim))))) if right.ndim else float(right)


def _items(v: Params | Inputs) -> tuple[np.ndarray, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _as_bool(params: Params) -> Params:
    items = tuple(np.asarray(p, dtype=bool) for p in _items(params))
    return items if isinstance(params, (tuple, list)) else items[0]
