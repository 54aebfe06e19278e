"""Wilson & Zanasi's two-class MNIST experiment on scikit-learn's 8x8 digits (MNIST
cannot be downloaded here): the pseudo-linear circuit learnt by reverse
derivative ascent, with the reverse derivative over Z2 that catad derives.

    pip install -e ".[examples]"
    python examples/digits_rda.py          # 10 seeds
    python examples/digits_rda.py 10 2     # 10 seeds, k = 2

The digits 0 and 1; a pixel is on when it is above the mean pixel value of the
data set (the paper: 32, MNIST's mean). Each seed shuffles the 360 images:
30% test, and of the rest 10% validation, the rest train (the paper: 11400
train, 1265 validation). The mask starts at zero and sees each training
image once; as in the paper, the mask with the best validation accuracy seen
is the one tested. The model is examples/digits_circuit.catad; the optimiser
catad/rda.py. `k` varies the paper's ratio: a one is at most 1/k of the mask lit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import catad
from catad import rda

MODEL = Path(__file__).resolve().parent / "digits_circuit.catad"
PAPER = 0.992  # two-class MNIST, Wilson & Zanasi, as summarised


@dataclass(frozen=True)
class Result:
    best: float      # test accuracy of the mask with the best validation accuracy
    last: float      # test accuracy of the mask after the last step
    updates: int     # steps whose derivative flipped a bit
    mask_bits: int   # bits set in the tested mask


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 0s and 1s as bits (bool[n, 64]) and labels (bool[n]: a one)."""
    data = load_digits()
    chosen = data.target <= 1
    return data.data[chosen] > data.data.mean(), data.target[chosen] == 1


def compiled(k: int = 4):
    """The model with the ratio 1/k (the file's is the paper's, k = 4)."""
    source = MODEL.read_text()
    assert source.count("scale = 3") == 2, "the model's threshold gates changed"
    return catad.compile(source.replace("scale = 3", f"scale = {k - 1}"), str(MODEL))


def run(model, seed: int, test: float = 0.3, validation: float = 0.1) -> Result:
    bits, ones = digits()
    order = np.random.default_rng(seed).permutation(len(ones))
    n_test = round(test * len(order))
    rest = order[n_test:]
    n_val = round(validation * len(rest))
    test_set, val_set, train_set = order[:n_test], rest[:n_val], rest[n_val:]
    learnt = rda.train(
        model.pseudo_linear, model.pseudo_linear_vjp, np.zeros(bits.shape[1], dtype=bool),
        bits[train_set], ones[train_set],
        score=lambda p: rda.accuracy(model.predict, p, bits[val_set], ones[val_set]))
    return Result(rda.accuracy(model.predict, learnt.best, bits[test_set], ones[test_set]),
                  rda.accuracy(model.predict, learnt.params, bits[test_set], ones[test_set]),
                  learnt.updates, int(np.sum(learnt.best)))


def main(seeds: int = 10, k: int = 4) -> list[Result]:
    model = compiled(k)
    results = [run(model, s) for s in range(seeds)]
    print(f"pseudo-linear model, k = {k}: one when popcount(p and x) <= popcount(p) / {k}")
    print(f"{'seed':>4} {'test (best on validation)':>26} {'test (last)':>12} {'updates':>8} {'mask bits':>10}")
    for s, r in enumerate(results):
        print(f"{s:>4} {r.best:>26.1%} {r.last:>12.1%} {r.updates:>8} {r.mask_bits:>10}")
    best = [r.best for r in results]
    print(f"mean {np.mean(best):.1%} ± {np.std(best):.1%} (min {min(best):.1%}, max {max(best):.1%});"
          f" the paper, on MNIST: {PAPER:.1%}")
    return results


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
