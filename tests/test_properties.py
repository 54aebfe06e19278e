"""Differential testing on random well-typed programs (tests/program_strategy.py).

* primal: the UNF reference evaluator on the unary form, the same on the
  vectorised form, and the compiled NumPy module agree;
* gradient: reverse mode (value_and_grad, and vjp seeded with 1), forward mode
  (jvp along random directions) and central finite differences agree, and the
  value returned with the gradient is the function's value;
* Hessian: `hessian(f, wrt = x)` is symmetric, equals forward-over-reverse
  Hessian-vector products, and matches finite differences of the gradient.

Finite differences are only compared where they are consistent at two step
sizes: a random point within a step of a kink (max, abs, relu, `if` on a
real comparison) is skipped, not failed. Printing and re-parsing the
programs is tested in tests/test_source_print.py.
"""

from __future__ import annotations

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st

from catad.compiler.errors import CatadError
from catad.compiler.unary_eval import evaluate

from program_strategy import compile_source, programs, scaled, size_values

SEEDS = st.integers(0, 2**32 - 1)
STEP = 1e-6


def central_difference(f, args, direction, step):
    plus = f(*(a + step * v for a, v in zip(args, direction)))
    minus = f(*(a - step * v for a, v in zip(args, direction)))
    return (np.asarray(plus) - np.asarray(minus)) / (2 * step)


def smooth_difference(f, args, direction, tolerance):
    """The central difference along `direction`, or None where steps STEP and
    2 STEP disagree (the point is within a step of a kink)."""
    near = central_difference(f, args, direction, STEP)
    far = central_difference(f, args, direction, 2 * STEP)
    if np.max(np.abs(near - far), initial=0.0) > tolerance:
        event("finite differences skipped near a kink")
        return None
    return near


def as_tuple(value, count):
    return value if count > 1 else (value,)


@scaled(0.3)
@given(programs(), size_values(), SEEDS)
def test_reference_vectorised_and_compiled_agree(program, sizes, seed):
    stages, module = compile_source(program.source)
    args = program.inputs(sizes, np.random.default_rng(seed))
    compiled = module.f(*args)
    assert np.all(np.isfinite(compiled))
    for form in (stages.unary, stages.vectorised):
        reference = evaluate(form.function("f"), args)
        np.testing.assert_allclose(reference, compiled, rtol=1e-9, atol=1e-9)


@scaled(0.4)
@given(programs(), size_values(), SEEDS)
def test_reverse_forward_and_finite_differences_agree(program, sizes, seed):
    _, module = compile_source(program.with_lines(
        "fn f_vg = value_and_grad(f);", "fn f_jvp = jvp(f);", "fn f_vjp = vjp(f);"))
    rng = np.random.default_rng(seed)
    args = program.inputs(sizes, rng)
    count = len(args)
    value, grads = module.f_vg(*args)
    grads = as_tuple(grads, count)
    np.testing.assert_allclose(value, module.f(*args), rtol=1e-12, atol=1e-12)
    _, seeded = module.f_vjp(*args, 1.0)
    for g, s in zip(grads, as_tuple(seeded, count)):
        np.testing.assert_allclose(s, g, rtol=1e-12, atol=1e-12)
    for _ in range(2):
        direction = tuple(rng.standard_normal(np.shape(a)) for a in args)
        along = sum(float(np.sum(g * v)) for g, v in zip(grads, direction))
        scale = 1.0 + sum(float(np.sum(np.abs(g * v))) for g, v in zip(grads, direction))
        _, tangent = module.f_jvp(*args, *direction)
        assert abs(tangent - along) <= 1e-9 * scale, (tangent, along)
        tolerance = 1e-5 * (scale + abs(value))
        difference = smooth_difference(module.f, args, direction, tolerance)
        if difference is not None:
            assert abs(difference - along) <= tolerance, (difference, along)


@scaled(0.3)
@given(programs(), size_values(), SEEDS)
def test_hessian_is_symmetric_and_matches_the_gradient(program, sizes, seed):
    _, module = compile_source(program.with_lines(
        "fn f_gx = grad(f, wrt = x);", "fn f_hess = hessian(f, wrt = x);"))
    rng = np.random.default_rng(seed)
    args = program.inputs(sizes, rng)
    hessian = module.f_hess(*args)
    n = sizes["n"]
    assert hessian.shape == (n, n)
    scale = 1.0 + np.max(np.abs(hessian))
    np.testing.assert_allclose(hessian, hessian.T, rtol=0, atol=1e-9 * scale)
    v = rng.standard_normal(n)
    try:  # refused when the gradient is piecewise constant: test_fuzz.py's known bugs
        _, hvp = compile_source(program.with_lines("fn f_hvp = jvp(grad(f, wrt = x), wrt = x);"))
    except CatadError as err:
        assert "only through" in err.message, err
        event("jvp(grad(f)) refused: the gradient is piecewise constant")
    else:
        _, hv = hvp.f_hvp(*args, v)
        np.testing.assert_allclose(hv, hessian @ v, rtol=0,
                                   atol=1e-9 * scale * (1 + np.abs(v).sum()))
    for i in range(n):
        direction = (np.eye(n)[i],) + tuple(np.zeros_like(a) for a in args[1:])
        tolerance = 1e-5 * (scale + np.max(np.abs(module.f_gx(*args))))
        column = smooth_difference(module.f_gx, args, direction, tolerance)
        if column is not None:
            np.testing.assert_allclose(column, hessian[:, i], rtol=0, atol=tolerance)


MATRIX_HESSIANS = """\
fn mlp(W: f64[p, q], x: f64[q]) -> f64 {
    sum(tanh(W @ x)) + sum(W * W * W)
}
fn quad(A: f64[p, q], B: f64[q, p]) -> f64 {
    sum((A @ B) * (A @ B)) + prod(A[0])
}
fn mlp_hessian = hessian(mlp, wrt = W);
fn mlp_grad = grad(mlp, wrt = W);
fn quad_hessian = hessian(quad, wrt = A);
fn quad_grad = grad(quad, wrt = A);
"""


def test_a_hessian_with_respect_to_a_matrix_is_the_derivative_of_its_gradient():
    """hessian(f, wrt = W) for W: f64[p, q] is f64[p, q, p, q]: H[i, j] is the
    derivative of the gradient along the unit matrix E_ij (central differences),
    and H[i, j, k, l] == H[k, l, i, j]."""
    import catad

    module = catad.compile(MATRIX_HESSIANS, "matrix_hessians.catad")
    rng = np.random.default_rng(3)
    W, x = rng.normal(size=(2, 3)), rng.normal(size=3)
    A, B = rng.normal(size=(3, 2)), rng.normal(size=(2, 3))
    for hess, grad, arg, rest in ((module.mlp_hessian, module.mlp_grad, W, (x,)),
                                  (module.quad_hessian, module.quad_grad, A, (B,))):
        H = hess(arg, *rest)
        assert H.shape == arg.shape * 2
        np.testing.assert_allclose(H, H.transpose(2, 3, 0, 1), atol=1e-12)
        for i in range(arg.shape[0]):
            for j in range(arg.shape[1]):
                E = np.zeros_like(arg)
                E[i, j] = 1e-6
                column = (grad(arg + E, *rest) - grad(arg - E, *rest)) / 2e-6
                np.testing.assert_allclose(H[i, j], column, atol=1e-6)


MATRIX_JACOBIANS = """\
fn f(X: f64[p, q], v: f64[q]) -> f64[p] {
    tanh(X @ v) * sum(X * X, axis = 1)
}
fn g(X: f64[2, 3], v: f64[3]) -> f64[8] {
    let y = X @ v;
    concat((y, exp(y), sin(y), y * y), axis = 0)
}
fn f_jac = jacobian(f, wrt = X);
fn g_jac = jacobian(g, wrt = X);
"""


def test_a_jacobian_with_respect_to_a_matrix_in_either_mode():
    """jacobian(f, wrt = X) for X: f64[p, q] and a result f64[m] is f64[m, p, q],
    J[:, i, j] the derivative along the unit matrix E_ij: f's sizes are symbolic, so
    reverse mode (one vjp per output); g's input (6) is smaller than its output (8),
    so forward mode (one jvp per unit matrix, then transposed)."""
    import catad

    module = catad.compile(MATRIX_JACOBIANS, "matrix_jacobians.catad")
    rng = np.random.default_rng(4)
    for fn, jac, shape in ((module.f, module.f_jac, (3, 4)), (module.g, module.g_jac, (2, 3))):
        X, v = rng.normal(size=shape), rng.normal(size=shape[1])
        J = jac(X, v)
        assert J.shape == (len(fn(X, v)), *shape)
        for i in range(shape[0]):
            for j in range(shape[1]):
                E = np.zeros(shape)
                E[i, j] = 1e-6
                np.testing.assert_allclose(J[:, i, j], (fn(X + E, v) - fn(X - E, v)) / 2e-6, atol=1e-6)
