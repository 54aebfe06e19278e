"""The digits MLP of train_digits_mlp.py trained twice from the same start:
with reverse-mode gradients (`loss_grad`), and with forward gradients
(Baydin et al., "Gradients without backpropagation", 2022): one forward-mode
Jacobian-vector product (`loss_jvp`) along a random tangent v gives the
directional derivative (grad . v), and (grad . v) v is an unbiased estimate
of the gradient, with no reverse sweep at all. Both loss curves go in one plot.

    python examples/train_forward_gradient.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from gallery import arguments, compile_model, plot_losses, progress
from train_digits_mlp import WRT, accuracy, digits, initial_params


def main(argv: Sequence[str] | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], steps=600, argv=argv)
    model = compile_model("mlp.catad", args.out, "--grad", "loss", "--jvp", "loss", "--wrt", WRT)
    X_train, X_test, Y_train, Y_test = digits()
    d, c = X_train.shape[1], Y_train.shape[1]
    rng = np.random.default_rng(1)

    def reverse(params: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        loss, grads = model.loss_grad(*params, X_train, Y_train)
        return loss, list(grads)

    def forward(params: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        tangent = [rng.standard_normal(p.shape) for p in params]
        loss, slope = model.loss_jvp(*params, X_train, Y_train, *tangent)
        return loss, [slope * v for v in tangent]

    curves, accuracies, legend = {}, {}, {}
    # plain gradient descent from the same start; a forward gradient's variance
    # grows with the number of parameters (2410 here), so it takes a smaller rate
    for label, gradient, rate in (("reverse mode", reverse, 1.0),
                                  ("forward gradient", forward, 0.03)):
        params = initial_params(d, c)
        losses = []
        start = time.perf_counter()
        with progress(label, args.steps) as advance:
            for _ in range(args.steps):
                loss, grads = gradient(params)
                for p, g in zip(params, grads):
                    p -= rate * g
                losses.append(float(loss))
                advance(loss)
        per_step = (time.perf_counter() - start) / max(args.steps, 1)
        curves[label] = losses
        accuracies[label] = accuracy(model, params, X_test, Y_test)
        legend[f"{label} ({1000 * per_step:.1f} ms/step)"] = losses
        print(f"{label}: test accuracy {accuracies[label]:.3f}, {1000 * per_step:.1f} ms per step")
    plot = plot_losses(args.out / "forward_gradient_loss.png", legend,
                       "digits MLP: reverse mode vs forward gradients", log_scale=True)
    return {"curves": curves, "test_accuracy": accuracies, "plot": plot}


if __name__ == "__main__":
    main()
