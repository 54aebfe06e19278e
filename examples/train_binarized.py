"""A binarised network (examples/binarized.catad) on scikit-learn's
breast-cancer data: its hidden layer computes with signs only (weights and
activations are +1 or -1), so its true gradient is zero almost everywhere.
It learns through the straight-through estimator the model declares with
`fn binarize_vjp = custom_vjp(binarize, |x, y_bar| ...);`, which catad's
reverse mode uses in `loss_grad`.

    python examples/train_binarized.py [--steps N] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gallery import Adam, arguments, compile_model, plot_losses, progress

HIDDEN = 32


def main(argv: Sequence[str] | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], steps=300, argv=argv)
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    model = compile_model("binarized.catad", args.out)
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y.astype(float), test_size=0.25,
                                                        random_state=0, stratify=y)
    mean, scale = X_train.mean(axis=0), X_train.std(axis=0)
    X_train, X_test = (X_train - mean) / scale, (X_test - mean) / scale

    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, size=(HIDDEN, X.shape[1]))  # real weights behind the signs
    v, b = rng.normal(size=HIDDEN) / np.sqrt(HIDDEN), np.zeros(())
    adam = Adam([W, v, b], rate=0.01)
    losses = []
    with progress("binarised network", args.steps) as advance:
        for _ in range(args.steps):
            loss = model.loss(W, v, b, X_train, y_train)
            adam.step(model.loss_grad(W, v, b, X_train, y_train))
            np.clip(W, -1.0, 1.0, out=W)  # BinaryConnect: keep the real weights where the STE passes
            losses.append(float(loss))
            advance(loss)
    accuracy = float(np.mean((model.predict(W, v, b, X_test) > 0.5) == (y_test > 0.5)))
    print(f"test accuracy {accuracy:.3f} on {len(y_test)} held-out tumours, "
          f"with {HIDDEN} binary hidden units and +-1 weights")
    plot = plot_losses(args.out / "binarized_loss.png", {"training loss": losses},
                       "binarised network (straight-through estimator)")
    return {"losses": losses, "test_accuracy": accuracy, "plot": plot}


if __name__ == "__main__":
    main()
