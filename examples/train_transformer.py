"""A one-block transformer (examples/transformer.catad: attention, layer norm,
a GELU MLP) trained with Adam to reverse short sequences of tokens, with the
gradient catad derives (`fn loss_grad = value_and_grad(loss, wrt = ...);`).
This script compiles the model through the Python API, `catad.load`.

    python examples/train_transformer.py [--steps N] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import catad
from gallery import EXAMPLES, Adam, arguments, plot_losses, progress

VOCABULARY, LENGTH = 10, 8         # sequences of 8 tokens out of 10
WIDTH, HIDDEN, BATCH = 32, 64, 64  # embedding width, MLP width, sequences per step


def initial_params(rng: np.random.Generator) -> list[np.ndarray]:
    """E, P, Wq, Wk, Wv, Wo, g1, b1, g2, b2, W1, c1, W2, c2, U, in the model's order."""
    def dense(n_in: int, n_out: int) -> np.ndarray:
        return rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)

    e, h, v = WIDTH, HIDDEN, VOCABULARY
    return [rng.normal(size=(v, e)), rng.normal(size=(LENGTH, e)),
            dense(e, e), dense(e, e), dense(e, e), dense(e, e),
            np.ones(e), np.zeros(e), np.ones(e), np.zeros(e),
            dense(e, h), np.zeros(h), dense(h, e), np.zeros(e), dense(e, v)]


def batch(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """m random sequences and their reversals, one-hot: two f64[m, t, v]."""
    tokens = rng.integers(VOCABULARY, size=(m, LENGTH))
    one_hot = np.eye(VOCABULARY)[tokens]
    return one_hot, one_hot[:, ::-1]


def accuracy(model, params: list[np.ndarray], Xs: np.ndarray, Ys: np.ndarray) -> tuple[float, float]:
    """The fraction of tokens, and of whole sequences, reversed correctly."""
    guesses = np.stack([model.logits(*params, X).argmax(axis=1) for X in Xs])
    right = guesses == Ys.argmax(axis=2)
    return float(right.mean()), float(right.all(axis=1).mean())


def main(argv: Sequence[str] | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], steps=400, argv=argv)
    model = catad.load(EXAMPLES / "transformer.catad")
    rng = np.random.default_rng(0)
    params = initial_params(rng)
    adam = Adam(params, rate=0.003)
    losses = []
    with progress("transformer", args.steps) as advance:
        for _ in range(args.steps):
            loss, grads = model.loss_grad(*params, *batch(rng, BATCH))
            adam.step(grads)
            losses.append(float(loss))
            advance(loss)
    tokens, sequences = accuracy(model, params, *batch(np.random.default_rng(1), 500))
    print(f"reversed correctly: {tokens:.3f} of tokens, {sequences:.3f} of whole sequences "
          f"(500 fresh ones)")
    plot = plot_losses(args.out / "transformer_loss.png", {"training loss": losses},
                       "one-block transformer, reversing sequences", log_scale=True)
    return {"losses": losses, "token_accuracy": tokens, "sequence_accuracy": sequences,
            "plot": plot}


if __name__ == "__main__":
    main()
