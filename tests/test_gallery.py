"""The gallery's training scripts (examples/train_*.py), each run at a tiny size
in a temporary directory: it finishes, its loss goes down, its plot is a PNG.
They need the `examples` extra (scikit-learn, rich, matplotlib)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

for _module in ("sklearn", "rich", "matplotlib"):
    pytest.importorskip(_module, reason="the gallery needs the examples extra: "
                                        "pip install -e '.[examples]'")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# script -> steps for a tiny run (enough for the loss to fall)
TINY = {
    "train_breast_cancer": 10,
    "train_digits_mlp": 15,
    "train_forward_gradient": 15,
    "train_gmm": 10,
    "train_transformer": 8,
    "train_binarized": 10,
}


@pytest.fixture(autouse=True)
def one_thread():
    """BLAS on one thread: the matrices are small, and the suite runs on 2 cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def run(script: str, tmp_path: Path, *args: str) -> dict:
    """Import examples/<script>.py (beside its helper, gallery.py) and run its main."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"gallery_{script}", EXAMPLES / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main([*args, "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(EXAMPLES))


def test_every_script_is_run_here():
    assert {p.stem for p in EXAMPLES.glob("train_*.py")} - {"train_logistic"} == set(TINY)


@pytest.mark.parametrize("script", sorted(TINY))
def test_script_trains_and_plots(script, tmp_path):
    result = run(script, tmp_path, "--steps", str(TINY[script]))
    curves = result["curves"] if "curves" in result else {"loss": result["losses"]}
    for label, losses in curves.items():
        assert len(losses) == TINY[script], label
        assert np.all(np.isfinite(losses)), label
        assert losses[-1] < losses[0], (label, losses)
    plot = Path(result["plot"])
    assert plot.parent == tmp_path
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.glob("*.png"))


def test_digits_mlp_reaches_95_percent(tmp_path):
    """The default run (400 Adam steps) classifies held-out digits as the gallery says."""
    assert run("train_digits_mlp", tmp_path)["test_accuracy"] >= 0.95

