"""Derivatives through piecewise-constant operations are refused at the user's
line, never returned as a silent zero; choosing with them is fine."""

from __future__ import annotations

import numpy as np
import pytest

import catad
from catad.compiler.errors import DerivativeError


def compile_with(body: str, decl: str = "fn g = grad(f, wrt = x);") -> object:
    return catad.compile(f"fn f(x: f64[n], y: f64[n]) -> f64 {{\n    {body}\n}}\n{decl}\n")


@pytest.mark.parametrize("body, what, column", [
    ("sum(f64(x > 0.0)) * 2.0", "a comparison", 13),
    ("sum(sign(x) * y)", "`sign`", 9),
    ("sum(x // 1.0)", "`floordiv`", 9),
    ("sum(f64(i64(x)))", "a cast to an integer or bool", 13),
    ("sum(where(x > 0.0, 1.0, 2.0) * y)", "a comparison", 15),
])
def test_a_derivative_only_through_a_flat_operation_is_refused(body, what, column):
    with pytest.raises(DerivativeError) as info:
        compile_with(body)
    err = info.value
    assert what in err.message and "zero wherever it exists" in err.message
    assert (err.span.line, err.span.column) == (2, column)


@pytest.mark.parametrize("body", [
    "sum(where(x > 0.0, x, 0.5 * x))",       # choosing between smooth values
    "sum(f64(x > 0.0) * x)",                 # a locally constant factor of a smooth value
    "sum(sign(x) * x)",                      # |x|, written with sign
    "sum(y * y)",                            # no dependence on x: the zero is right
    "if sum(x) > 0.0 { sum(x * x) } else { sum(x) }",
])
def test_piecewise_smooth_functions_differentiate(body):
    module = compile_with(body)
    x, y = np.array([0.5, -1.5, 2.0]), np.array([1.0, 2.0, 3.0])
    eps = 1e-6
    numeric = [(module.f(x + eps * e, y) - module.f(x - eps * e, y)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(module.g(x, y), numeric, rtol=1e-6, atol=1e-8)
