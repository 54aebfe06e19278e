"""A Gaussian mixture (examples/gmm.catad, ADBench's GMM objective) fitted by
gradient ascent on the log-likelihood of data drawn from a known mixture;
the gradient is catad's (`catad compile examples/gmm.catad --grad gmm`).

    python examples/train_gmm.py [--steps N] [--out DIR]

The Wishart prior is switched off (gamma = 0, wm = 0), so the fit is the
maximum-likelihood one. The parameters: `alphas` (the mixture's log-weights,
up to a constant), `means`, and `icf`, the log-diagonal and the lower part of
each component's inverse covariance factor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gallery import Adam, arguments, compile_model, plot_losses, progress

TRUE_MEANS = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])


def sample(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points from a mixture of three 2-d Gaussians with correlated covariances."""
    components = rng.choice(len(TRUE_WEIGHTS), size=n, p=TRUE_WEIGHTS)
    factors = np.array([[[0.6, 0.0], [0.3, 0.4]], [[0.5, 0.0], [-0.2, 0.7]], [[0.8, 0.0], [0.0, 0.3]]])
    noise = rng.standard_normal((n, 2))
    return TRUE_MEANS[components] + np.einsum("nij,nj->ni", factors[components], noise)


def plot_fit(path: Path, x: np.ndarray, means: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.0), dpi=120)
    ax.scatter(x[:, 0], x[:, 1], s=4, alpha=0.4, color="#4a7ab0", label="data")
    ax.scatter(TRUE_MEANS[:, 0], TRUE_MEANS[:, 1], s=90, facecolors="none",
               edgecolors="black", label="true means")
    ax.scatter(means[:, 0], means[:, 1], s=60, marker="x", color="#b0584a", label="fitted means")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Gaussian mixture fitted by gradient ascent")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], steps=300, argv=argv)
    model = compile_model("gmm.catad", args.out, "--grad", "gmm", "--wrt", "alphas,means,icf")
    rng = np.random.default_rng(0)
    x = sample(600, rng)
    n, d = x.shape
    k = len(TRUE_WEIGHTS)
    alphas = np.zeros(k)
    means = x[rng.choice(n, size=k, replace=False)].copy()
    icf = np.zeros((k, d + d * (d - 1) // 2))
    adam = Adam([alphas, means, icf], rate=0.05)
    losses = []
    with progress("GMM fit", args.steps) as advance:
        for _ in range(args.steps):
            loglik, grads = model.gmm_grad(alphas, means, icf, x, 0.0, 0)
            adam.step([-g / n for g in grads])  # minimise the mean negative log-likelihood
            losses.append(float(-loglik / n))
            advance(-loglik / n)
    weights = np.exp(alphas - alphas.max())
    weights /= weights.sum()
    order = np.argsort(weights)[::-1]
    print(f"fitted weights {np.round(weights[order], 3).tolist()}, true {TRUE_WEIGHTS.tolist()}")
    print(f"fitted means {np.round(means[order], 2).tolist()}, true {TRUE_MEANS.tolist()}")
    plot = plot_losses(args.out / "gmm_loss.png", {"negative log-likelihood per point": losses},
                       "Gaussian mixture, maximum likelihood")
    fit = plot_fit(args.out / "gmm_fit.png", x, means)
    return {"losses": losses, "means": means, "weights": weights, "plot": plot, "fit": fit}


if __name__ == "__main__":
    main()
