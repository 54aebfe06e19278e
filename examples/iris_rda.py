"""Wilson & Zanasi's Iris experiments: a look-up-table circuit learnt by reverse
derivative ascent, with the reverse derivative over Z2 that catad derives.

    pip install -e ".[examples]"
    python examples/iris_rda.py            # the paper's protocol, then 10 seeds

The four features are min-max normalised over the data set of the experiment
and thresholded at 0.5 (4 bits); 25 examples of each class train, the rest
test. The table starts at zero and sees each training example once. The
paper's protocol takes the first 25 of each class, in the data set's order,
class after class; a seed draws the 25 at random and shuffles their order.
Labels are binary (the class index in bits, least significant first) or
one-hot. The model is examples/iris_circuit.catad; the optimiser catad/rda.py.

scikit-learn's copy of Iris is Fisher's; the UCI copy the paper read differs
in two rows (35 and 38). `uci=True` puts UCI's rows back.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris

import catad
from catad import rda

MODEL = Path(__file__).resolve().parent / "iris_circuit.catad"
PAPER = {"two-class": 0.980, "three-class": 0.733}  # Wilson & Zanasi, as summarised
UCI_ROWS = {34: (4.9, 3.1, 1.5, 0.1), 37: (4.9, 3.1, 1.5, 0.1)}  # UCI's iris.data, rows 35, 38


@dataclass(frozen=True)
class Experiment:
    name: str                    # "two-class" or "three-class"
    classes: tuple[int, ...]     # the Iris classes used
    one_hot: bool


EXPERIMENTS = tuple(Experiment(name, classes, one_hot)
                    for name, classes in (("two-class", (0, 1)), ("three-class", (0, 1, 2)))
                    for one_hot in (False, True))


def features(X: np.ndarray) -> np.ndarray:
    """Each column min-max normalised, then thresholded at 0.5: bool[n, 4]."""
    low, high = X.min(axis=0), X.max(axis=0)
    return (X - low) / (high - low) > 0.5


def labels(y: np.ndarray, classes: int, one_hot: bool) -> np.ndarray:
    """bool[n, c]: the class one-hot, or its index in ceil(log2(classes)) bits."""
    if one_hot:
        return np.eye(classes, dtype=bool)[y]
    width = max(1, int(np.ceil(np.log2(classes))))
    return (y[:, None] >> np.arange(width)) & 1 == 1


def split(y: np.ndarray, per_class: int, rng: np.random.Generator | None):
    """Training and test indices: `per_class` of each class train, in class order
    (without `rng`: the first ones; with it: random ones, shuffled)."""
    train, test = [], []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if rng is not None:
            members = rng.permutation(members)
        train.extend(members[:per_class])
        test.extend(members[per_class:])
    train = np.array(train)
    return (rng.permutation(train) if rng is not None else train), np.array(test)


def iris(uci: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's Iris (features, classes); with `uci`, UCI's two differing rows."""
    X, y = load_iris(return_X_y=True)
    if uci:
        X = X.copy()
        for row, values in UCI_ROWS.items():
            X[row] = values
    return X, y


def run(model, experiment: Experiment, seed: int | None, per_class: int = 25,
        uci: bool = False) -> float:
    """Test accuracy of the table learnt in one pass (seed None: the paper's split)."""
    X, y = iris(uci)
    chosen = np.isin(y, experiment.classes)
    bits = features(X[chosen])
    Y = labels(y[chosen], len(experiment.classes), experiment.one_hot)
    rng = None if seed is None else np.random.default_rng(seed)
    train, test = split(y[chosen], per_class, rng)
    table = np.zeros((Y.shape[1], 16), dtype=bool)
    learnt = rda.train(model.lut, model.lut_vjp, table, bits[train], Y[train])
    return rda.accuracy(model.predict, learnt.params, bits[test], Y[test])


def main(seeds: int = 10) -> dict[str, tuple[float, list[float]]]:
    model = catad.load(MODEL)
    results = {}
    print(f"{'experiment':<12} {'labels':<8} {'paper split':>11} {'UCI rows':>9} "
          f"{f'{seeds} seeds: mean ± sd':>22} {'min':>6} {'max':>6}   paper")
    for e in EXPERIMENTS:
        ordered, uci = run(model, e, None), run(model, e, None, uci=True)
        accs = [run(model, e, s) for s in range(seeds)]
        kind = "one-hot" if e.one_hot else "binary"
        results[f"{e.name} {kind}"] = (ordered, accs)
        print(f"{e.name:<12} {kind:<8} {ordered:>11.1%} {uci:>9.1%} {np.mean(accs):>14.1%} ± "
              f"{np.std(accs):.1%} {min(accs):>6.1%} {max(accs):>6.1%}   {PAPER[e.name]:.1%}")
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
