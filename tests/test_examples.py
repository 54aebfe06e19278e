"""Every example: the compiled module, the UNF reference evaluator (before and
after vectorisation) and an independent NumPy implementation agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import catad
from catad.compiler.lower import load_module
from catad.compiler.unary_eval import evaluate

from examples_reference import inputs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CASES = sorted(inputs(np.random.default_rng(0)))


@pytest.fixture(scope="module")
def compiled():
    return {p.stem: catad.stages(p.read_text(), str(p)) for p in sorted(EXAMPLES.glob("*.catad"))}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_example_agrees_with_numpy(compiled, case, seed):
    args, expected = inputs(np.random.default_rng(seed))[case]
    file, fn = case.split(".")
    stages = compiled[file]
    module = load_module(stages.python, file)
    got = getattr(module, fn)(*args)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    for program in (stages.unary, stages.vectorised):
        reference = evaluate(program.function(fn), args)
        np.testing.assert_allclose(reference, expected, rtol=1e-10, atol=1e-12)


def test_every_example_is_covered():
    names = {p.stem for p in EXAMPLES.glob("*.catad")}
    assert names == {case.split(".")[0] for case in CASES}


def _derived(file: str, fn: str, kind: str):
    """The example `file` compiled with `kind(fn)` declared (all real parameters)."""
    source = (EXAMPLES / f"{file}.catad").read_text()
    return catad.compile(source + f"\nfn derived = {kind}({fn});\n")


def _real(args) -> list[int]:
    return [i for i, a in enumerate(args) if np.asarray(a).dtype.kind == "f"]


@pytest.mark.parametrize("case", CASES)
def test_example_derivatives_agree_with_finite_differences(case):
    """vjp and jvp of every example function, against central differences of the
    compiled primal along a random direction (an independent reference)."""
    args, expected = inputs(np.random.default_rng(3))[case]
    file, fn = case.split(".")
    args = [np.asarray(a, dtype=float) if np.asarray(a).dtype.kind == "f" else a for a in args]
    real = _real(args)
    if not real:
        pytest.skip("a circuit of bools: its derivatives over Z2 are tested in tests/test_rda.py")
    rng = np.random.default_rng(4)
    v = [rng.standard_normal(np.shape(args[i])) for i in real]
    w = rng.standard_normal(np.shape(expected))
    primal = getattr(catad.compile((EXAMPLES / f"{file}.catad").read_text()), fn)

    def along(t):
        moved = list(args)
        for i, d in zip(real, v):
            moved[i] = args[i] + t * d
        return np.asarray(primal(*moved))

    eps = 1e-6
    numeric = (along(eps) - along(-eps)) / (2 * eps)
    value, tangent = _derived(file, fn, "jvp").derived(*args, *v)
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12)
    if not catad.stages((EXAMPLES / f"{file}.catad").read_text()).typed.rules:
        # with a derivative rule (a straight-through estimator) the derivative is the rule's
        np.testing.assert_allclose(tangent, numeric, rtol=1e-5, atol=1e-7)
    value, cotangents = _derived(file, fn, "vjp").derived(*args, w)
    cotangents = cotangents if len(real) > 1 else (cotangents,)
    # the adjoint law <J v, w> = <v, J^T w> ties reverse mode to the forward tangent
    np.testing.assert_allclose(np.sum(tangent * w), sum(np.sum(a * b) for a, b in zip(v, cotangents)),
                               rtol=1e-9, atol=1e-10)
