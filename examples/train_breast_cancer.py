"""Logistic regression on scikit-learn's breast-cancer data (569 tumours, 30
features), trained by gradient descent with the gradient catad derives from
examples/logistic.catad (`fn loss_grad = value_and_grad(loss, wrt = (w, b));`).

    python examples/train_breast_cancer.py [--steps N] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gallery import arguments, compile_model, plot_losses, progress


def main(argv: Sequence[str] | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], steps=300, argv=argv)
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    model = compile_model("logistic.catad", args.out)
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y.astype(float), test_size=0.25,
                                                        random_state=0, stratify=y)
    mean, scale = X_train.mean(axis=0), X_train.std(axis=0)
    X_train, X_test = (X_train - mean) / scale, (X_test - mean) / scale

    w, b, rate = np.zeros(X.shape[1]), 0.0, 0.5
    losses = []
    with progress("logistic regression", args.steps) as advance:
        for _ in range(args.steps):
            loss, (w_bar, b_bar) = model.loss_grad(w, b, X_train, y_train)
            w, b = w - rate * w_bar, b - rate * b_bar
            losses.append(float(loss))
            advance(loss)
    accuracy = float(np.mean((model.predict(w, b, X_test) > 0.5) == (y_test > 0.5)))
    print(f"test accuracy {accuracy:.3f} on {len(y_test)} held-out tumours")
    plot = plot_losses(args.out / "breast_cancer_loss.png", {"training loss": losses},
                       "logistic regression, breast-cancer data")
    return {"losses": losses, "test_accuracy": accuracy, "plot": plot}


if __name__ == "__main__":
    main()
