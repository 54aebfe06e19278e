"""Derivatives through piecewise-constant operations are refused at the user's
line, never returned as a silent zero; choosing with them is fine, but a value
chosen (by `if` or `where`) between values free of the parameters depends on
them only through the condition. A Hessian is judged like the jvp of the
gradient it is; Hessians and Jacobians with respect to a scalar."""

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
    assert_gradient_matches_finite_differences(body)


def assert_gradient_matches_finite_differences(body: str) -> None:
    module = compile_with(body)
    x, y = np.array([0.5, -1.5, 2.0]), np.array([1.0, 2.0, 3.0])
    eps = 1e-6
    numeric = [(module.f(x + eps * e, y) - module.f(x - eps * e, y)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(module.g(x, y), numeric, rtol=1e-6, atol=1e-8)


# ---- a value chosen by a condition on the parameters depends on them ------------------------

@pytest.mark.parametrize("body, column", [
    ("if sum(x) < 0.0 { 0.5 } else { 1.5 }", 8),
    ("where(sum(x) < 0.0, 0.5, 1.5)", 11),
    ("sum(for i in 0..n { if x[i] < 0.0 { 0.5 } else { 1.5 } })", 28),  # vectorised: a where
    ("if x[0] > 0.0 { sum(y) } else { 2.0 * sum(y) }", 8),  # y is not differentiated
    ("let (a, b) = if x[0] > 0.0 { (y[0], 1.0) } else { (0.5, y[1]) };\n    a * b", 21),
])
def test_a_step_function_is_refused_however_it_is_written(body, column):
    """`if c { a } else { b }` means where(c, a, b): with a and b free of x and c
    testing x, the result depends on x only through the comparison."""
    with pytest.raises(DerivativeError) as info:
        compile_with(body)
    err = info.value
    assert "only through a comparison" in err.message
    assert (err.span.line, err.span.column) == (2, column)


@pytest.mark.parametrize("body", [
    "if x[0] > 0.0 { 0.5 } else { x[1] }",                             # one smooth piece
    "let s = if x[0] > 0.0 { 1.0 } else { -1.0 };\n    s * sum(x * y)",  # a chosen sign
    "sum(for i in 0..n { if x[i] < 0.0 { 0.5 * x[i] } else { x[i] } })",
])
def test_choosing_between_pieces_that_depend_on_x_differentiates(body):
    assert_gradient_matches_finite_differences(body)


def test_a_dependence_that_takes_many_steps_around_a_loop_is_found():
    """The state's dependence is iterated to its fixpoint: here x's smooth
    dependence reaches `e` only after five steps around the fold (four were
    once taken, and the gradient was refused as depending on x only through
    the comparison that starts `e`)."""
    module = catad.compile(
        "fn f(x: f64[n]) -> f64 {\n"
        "    let (a, b, c, d, e) = fold((0.0, 0.0, 0.0, 0.0, f64(x[0] > 0.0)), x, |s, p| {\n"
        "        let (a, b, c, d, e) = s;\n"
        "        (p * p, a, b, c, d + e)\n"
        "    });\n"
        "    e\n}\nfn g = grad(f);\n")
    x = np.array([0.5, -0.3, 0.2, 0.7, 0.4, 0.9])
    eps = 1e-6
    numeric = [(module.f(x + eps * e) - module.f(x - eps * e)) / (2 * eps) for e in np.eye(6)]
    np.testing.assert_allclose(module.g(x), numeric, rtol=1e-6, atol=1e-8)
    assert np.any(module.g(x) != 0.0)


# ---- second derivatives: the Hessian is judged like jvp(grad(f)) ------------------------------

HVP = "fn g = jvp(grad(f, wrt = x), wrt = x);"


@pytest.mark.parametrize("body", ["max(x) + sum(y)", "sum(abs(x - y))", "sum(relu(x) * y)",
                                  "if x[0] > 0.0 { sum(x) } else { 2.0 * sum(x) }"])
def test_the_hessian_of_a_piecewise_linear_function_is_refused(body):
    for decl in ("fn g = hessian(f, wrt = x);", HVP):
        with pytest.raises(DerivativeError) as info:
            compile_with(body, decl)
        assert "only through" in info.value.message and info.value.span.line == 2
    with pytest.raises(DerivativeError) as info:
        compile_with(body, "fn g = hessian(f, wrt = x);")
    assert info.value.message.startswith("cannot take the hessian of f with respect to x: "
                                         "its gradient depends on the parameters differentiated")


def test_the_hessian_of_a_linear_function_is_zero():
    """No comparison: the gradient does not depend on x, and zero is the right answer."""
    module = compile_with("sum(x * y) + 2.0 * sum(x)", "fn g = hessian(f, wrt = x);")
    np.testing.assert_array_equal(module.g(np.ones(3), np.ones(3)), np.zeros((3, 3)))


def test_the_hessian_of_a_piecewise_quadratic_function_differentiates():
    module = compile_with("sum(relu(x) * relu(x) * y)", "fn g = hessian(f, wrt = x);")
    x, y = np.array([0.5, -1.5, 2.0]), np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(module.g(x, y), np.diag(2.0 * y * (x > 0)))


# ---- with respect to a scalar ------------------------------------------------------------------

SCALAR = """fn f(x: f64, y: f64[n]) -> f64 {
    sin(x) * sum(y * y) + x * x * x + sum(exp(x * y))
}
fn f_gx = grad(f, wrt = x);
fn f_hx = hessian(f, wrt = x);
fn f_gg = grad(grad(f, wrt = x), wrt = x);
fn f_hvp = jvp(grad(f, wrt = x), wrt = x);

fn v(x: f64, y: f64[n]) -> f64[n] {
    sin(x * y) + x * x
}
fn v_jx = jacobian(v, wrt = x);

fn h(x: f32) -> f32 {
    x * x * x
}
fn h_hx = hessian(h, wrt = x);
"""


@pytest.mark.parametrize("x", [0.4, -1.3])
def test_second_derivatives_with_respect_to_a_scalar_match_finite_differences(x):
    module = catad.compile(SCALAR)
    y = np.array([0.3, -1.2, 0.7])
    step = 1e-4
    second = (module.f(x + step, y) - 2 * module.f(x, y) + module.f(x - step, y)) / step ** 2
    of_gradient = (module.f_gx(x + 1e-6, y) - module.f_gx(x - 1e-6, y)) / 2e-6
    hessian = module.f_hx(x, y)
    assert np.shape(hessian) == ()
    np.testing.assert_allclose(hessian, second, rtol=1e-5)
    np.testing.assert_allclose(hessian, of_gradient, rtol=1e-7)
    np.testing.assert_allclose(module.f_gg(x, y), hessian, rtol=1e-12)
    np.testing.assert_allclose(module.f_hvp(x, y, 1.0)[1], hessian, rtol=1e-12)


def test_a_jacobian_with_respect_to_a_scalar_is_a_vector():
    module = catad.compile(SCALAR)
    x, y = 0.4, np.array([0.3, -1.2, 0.7])
    numeric = (module.v(x + 1e-6, y) - module.v(x - 1e-6, y)) / 2e-6
    jacobian = module.v_jx(x, y)
    assert jacobian.shape == (3,)
    np.testing.assert_allclose(jacobian, numeric, rtol=1e-7)


def test_a_hessian_with_respect_to_an_f32_scalar_is_f32():
    value = catad.compile(SCALAR).h_hx(np.float32(2.0))
    assert value.dtype == np.float32 and value == np.float32(12.0)
