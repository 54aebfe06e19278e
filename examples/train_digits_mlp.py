"""A two-layer perceptron (examples/mlp.catad) on scikit-learn's digits (8x8
images of handwritten digits), trained with Adam on the reverse-mode gradient
catad derives (`catad compile examples/mlp.catad --grad loss`).

    python examples/train_digits_mlp.py [--steps N] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from gallery import Adam, arguments, compile_model, plot_losses, progress

HIDDEN = 32
WRT = "W1,b1,W2,b2"


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and test images (pixels scaled to [0, 1]) and one-hot labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, labels = load_digits(return_X_y=True)
    Y = np.eye(10)[labels]
    X_train, X_test, Y_train, Y_test = train_test_split(X / 16.0, Y, test_size=0.2,
                                                        random_state=0, stratify=labels)
    return X_train, X_test, Y_train, Y_test


def initial_params(d: int, c: int, seed: int = 0) -> list[np.ndarray]:
    """W1, b1, W2, b2, the weights scaled by 1/sqrt(fan-in)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(HIDDEN, d)) / np.sqrt(d), np.zeros(HIDDEN),
            rng.normal(size=(c, HIDDEN)) / np.sqrt(HIDDEN), np.zeros(c)]


def accuracy(model: ModuleType, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray) -> float:
    return float(np.mean(model.mlp(*params, X).argmax(axis=1) == Y.argmax(axis=1)))


def main(argv: Sequence[str] | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], steps=400, argv=argv)
    model = compile_model("mlp.catad", args.out, "--grad", "loss", "--wrt", WRT)
    X_train, X_test, Y_train, Y_test = digits()
    params = initial_params(X_train.shape[1], Y_train.shape[1])
    adam = Adam(params, rate=0.01)
    losses = []
    with progress("MLP on digits", args.steps) as advance:
        for _ in range(args.steps):
            loss, grads = model.loss_grad(*params, X_train, Y_train)
            adam.step(grads)
            losses.append(float(loss))
            advance(loss)
    test = accuracy(model, params, X_test, Y_test)
    print(f"test accuracy {test:.3f} on {len(X_test)} held-out digits")
    plot = plot_losses(args.out / "digits_mlp_loss.png", {"training loss": losses},
                       "two-layer perceptron, digits", log_scale=True)
    return {"losses": losses, "test_accuracy": test, "plot": plot}


if __name__ == "__main__":
    main()
