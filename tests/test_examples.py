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
