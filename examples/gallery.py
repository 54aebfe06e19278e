"""What the gallery's training scripts share: their command line (`--steps N`,
`--out DIR`), compiling a model with catad, the Adam update, a progress bar
that shows the loss, and the loss-curve plot.

The scripts need the `examples` extra (`pip install "catad[examples]"`:
scikit-learn, rich, matplotlib). The models they train are compiled by catad
to plain NumPy modules; those compiled with the `catad compile` command are
written to DIR, so you can read them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent


def arguments(description: str, steps: int, argv: Sequence[str] | None) -> argparse.Namespace:
    """`--steps N` (default `steps`) and `--out DIR` (default `gallery-out`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps, help=f"training steps (default {steps})")
    parser.add_argument("--out", type=Path, default=Path("gallery-out"),
                        help="where the compiled model and the plot go (default gallery-out)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def compile_model(model: str, out: Path, *flags: str) -> types.ModuleType:
    """Compile examples/`model` with the `catad compile` command (plus `flags`,
    such as `--grad loss`) to DIR/<model>_model.py and import that module."""
    from catad.cli import main as catad_command

    target = out / f"{Path(model).stem}_model.py"
    command = ["compile", os.path.relpath(EXAMPLES / model), *flags, "-o", str(target)]
    print("$ catad " + " ".join(command))
    if catad_command(command) != 0:
        raise SystemExit(f"catad could not compile {model}")
    spec = importlib.util.spec_from_file_location(target.stem, target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Adam:
    """Adam (Kingma & Ba) over a list of NumPy arrays, updated in place."""

    def __init__(self, params: list[np.ndarray], rate: float,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.params, self.rate = params, rate
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: Sequence[np.ndarray]) -> None:
        self.t += 1
        correction1, correction2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= self.rate * (m / correction1) / (np.sqrt(v / correction2) + self.eps)


@contextmanager
def progress(description: str, steps: int) -> Iterator:
    """A rich progress bar over `steps` steps; yields `advance(loss)`."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=steps, loss=float("nan"))
        yield lambda loss: bar.update(task, advance=1, loss=float(loss))


def plot_losses(path: Path, curves: dict[str, Sequence[float]], title: str,
                log_scale: bool = False, xlabel: str = "step") -> Path:
    """Save the loss curves (label -> losses per step) as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, losses in curves.items():
        ax.plot(np.arange(len(losses)), losses, label=label, linewidth=1.5)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"loss curve: {path}")
    return path
