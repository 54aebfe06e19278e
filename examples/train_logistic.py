"""Train logistic regression with the gradient catad generated.

    catad compile examples/logistic.catad -o logistic_model.py
    python examples/train_logistic.py logistic_model.py

The generated module needs only NumPy: this script does not import catad.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np


def load(path: str):
    spec = importlib.util.spec_from_file_location("logistic_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(path: str, steps: int = 200, rate: float = 0.5) -> float:
    model = load(path)
    rng = np.random.default_rng(0)
    n, d = 500, 5
    true_w, true_b = rng.normal(size=d), 0.5
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ true_w + true_b)))).astype(float)

    w, b = np.zeros(d), 0.0
    for step in range(steps + 1):
        loss, (w_bar, b_bar) = model.loss_grad(w, b, X, y)
        if step % 50 == 0:
            print(f"step {step:4d}  loss {loss:.4f}")
        w, b = w - rate * w_bar, b - rate * b_bar
    accuracy = np.mean((model.predict(w, b, X) > 0.5) == (y > 0.5))
    print(f"train accuracy {accuracy:.3f}")
    return float(loss)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "logistic_model.py")
