"""cumsum and cumprod end to end, and the gradient of prod made of them.

* compiled gradients, jvps, Hessians and gradients of gradients against
  central differences at points with one zero, two zeros and all zeros
  (cumprod and prod are polynomials: central differences are exact up to
  rounding there), and at random points;
* `catad check`: every derivative against SymPy and finite differences;
* the array-API module on array_api_strict, PyTorch and under jax.jit gives the
  NumPy module's numbers; bools are counted, as by sum and NumPy;
* prod's gradient has no division and no selection, and the right shape for an
  empty group.
"""

from __future__ import annotations

import numpy as np
import pytest

import catad
from catad.checking import check

SOURCE = """
fn running(x: f64[n], A: f64[k, m]) -> f64 {
    sum(sin(cumsum(x)) * cumprod(x)) + sum(cos(cumprod(A, axis = 1)) * cumsum(A, axis = 0))
}
fn running_grad = grad(running, wrt = (x, A));
fn running_jvp = jvp(running, wrt = x);

fn p(x: f64[n]) -> f64 { prod(x) }
fn p_grad = grad(p);
fn p_hessian = hessian(p);
fn p_grad_norm(x: f64[n]) -> f64 { sum(p_grad(x) * p_grad(x)) }
fn p_grad_grad = grad(p_grad_norm);

fn q(A: f64[n, m]) -> f64 { prod(A) + sum(prod(A, axis = 0) * cumsum(prod(A, axis = 1))[0]) }
fn q_grad = grad(q);
fn q_hessian = hessian(q);

fn c(x: f64[n]) -> f64 { sum(cumprod(x) * cumprod(x)) }
fn c_hessian = hessian(c);
"""

COUNTS = """
fn counts(p: bool[n]) -> (i64[n], i64[n]) { (cumsum(p), cumprod(p)) }
fn weighted(p: bool[n], x: f64[n]) -> f64 { sum(cumsum(p) * x) }
fn weighted_grad = grad(weighted, wrt = x);
"""

X_POINTS = {"one zero": [1.5, 0.0, -2.0, 0.5], "two zeros": [0.0, 2.0, 0.0, -1.5],
            "all zeros": [0.0, 0.0, 0.0, 0.0], "no zero": [0.7, -1.2, 1.9, 0.4]}
A_POINTS = {"one zero": [[1.5, 0.5], [0.0, 2.0], [-1.0, 0.5]],
            "two zeros": [[0.0, 0.5], [1.5, 0.0], [-1.0, 2.0]],
            "all zeros": [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
            "no zero": [[0.9, -1.1], [1.3, 0.6], [-0.8, 1.7]]}


@pytest.fixture(scope="module")
def module():
    return catad.compile(SOURCE)


def central(f, x, h=1e-5):
    """∂f/∂x by central differences, with f's shape first and x's last."""
    x = np.asarray(x, dtype=float)
    columns = []
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        columns.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    out = np.stack(columns, axis=-1)
    return out.reshape(out.shape[:-1] + x.shape)


@pytest.mark.parametrize("point", sorted(X_POINTS))
def test_gradients_and_jvps_at_zeros(module, point):
    x, A = np.array(X_POINTS[point]), np.array(A_POINTS[point])
    gx, gA = module.running_grad(x, A)
    np.testing.assert_allclose(gx, central(lambda v: module.running(v, A), x), atol=1e-8)
    np.testing.assert_allclose(gA, central(lambda v: module.running(x, v), A), atol=1e-8)
    v = np.array([0.3, -1.0, 0.5, 2.0])
    _, tangent = module.running_jvp(x, A, v)
    assert tangent == pytest.approx(float(gx @ v), abs=1e-10)
    np.testing.assert_allclose(module.p_grad(x), central(module.p, x), atol=1e-9)
    np.testing.assert_allclose(module.q_grad(A), central(module.q, A), atol=1e-9)


@pytest.mark.parametrize("point", sorted(X_POINTS))
def test_second_derivatives_of_prod_and_cumprod_are_exact_at_zeros(module, point):
    x, A = np.array(X_POINTS[point]), np.array(A_POINTS[point])
    np.testing.assert_allclose(module.p_hessian(x), central(module.p_grad, x), atol=1e-8)
    np.testing.assert_allclose(module.p_grad_grad(x), central(module.p_grad_norm, x), atol=1e-7)
    np.testing.assert_allclose(module.q_hessian(A), central(module.q_grad, A), atol=1e-8)
    np.testing.assert_allclose(module.c_hessian(x), central(lambda v: central(module.c, v), x, 1e-3),
                               atol=1e-5)


def test_prod_at_zeros_by_hand(module):
    """∂prod/∂x_i is the product of the others: nonzero only at the one zero."""
    np.testing.assert_array_equal(module.p_grad(np.array([2.0, 0.0, 3.0, 0.5])), [0.0, 3.0, 0.0, 0.0])
    np.testing.assert_array_equal(module.p_grad(np.array([2.0, 0.0, 3.0, 0.0])), np.zeros(4))
    hessian = module.p_hessian(np.array([2.0, 0.0, 3.0, 0.0]))
    assert hessian[1, 3] == hessian[3, 1] == 6.0
    assert np.count_nonzero(hessian) == 2


def test_catad_check_proves_every_derivative():
    report = check(SOURCE, {"n": 3, "m": 2}, points=1)
    assert report.passed, report.format()
    checked = {r.function for r in report.rows if r.sympy_error is not None}
    assert {"running_grad", "running_jvp", "p_grad", "p_hessian", "p_grad_grad", "q_grad",
            "q_hessian", "c_hessian"} <= checked


def test_the_gradient_of_prod_divides_and_selects_nothing():
    text = catad.to_python("fn p(x: f64[n]) -> f64 { prod(x) }\nfn p_grad = grad(p);\n")
    body = text[text.index("def p_grad"):]
    assert "/" not in body.split('"""')[2] and "np.where" not in body
    assert "np.cumprod(_shifted(x, 0, 1), axis=0)" in body
    assert "np.flip(np.cumprod(_shifted(np.flip(x, axis=0), 0, 1), axis=0), axis=0)" in body


def test_empty_groups(module):
    assert module.p_grad(np.zeros(0)).shape == (0,)
    assert module.running_grad(np.zeros(0), np.zeros((0, 2)))[1].shape == (0, 2)
    assert module.q_grad(np.zeros((3, 0))).shape == (3, 0)


# ---- the array-API module ----------------------------------------------------------------

def _libraries():
    import array_api_strict
    torch = pytest.importorskip("torch")
    return {"array_api_strict": array_api_strict.asarray, "torch": lambda v: torch.asarray(np.array(v))}


def _numpy(value):
    if isinstance(value, tuple):
        return tuple(_numpy(v) for v in value)
    return np.asarray(value.detach().numpy() if hasattr(value, "detach") else value)


def _assert_close(got, expected, what: str) -> None:
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected), what
        for a, b in zip(got, expected):
            _assert_close(a, b, what)
        return
    np.testing.assert_allclose(_numpy(got), expected, rtol=1e-12, atol=1e-12, err_msg=what)


CALLS = [("running", ("x", "A")), ("running_grad", ("x", "A")), ("p_grad", ("x",)), ("q_grad", ("A",)),
         ("running_jvp", ("x", "A", "x")), ("p_hessian", ("x",)), ("c_hessian", ("x",))]


@pytest.mark.parametrize("point", ["two zeros", "no zero"])
def test_the_array_api_module_agrees_with_numpy(module, point):
    pytest.importorskip("array_api_compat")
    portable = catad.compile(SOURCE, backend="array-api")
    values = {"x": np.array(X_POINTS[point]), "A": np.array(A_POINTS[point])}
    for library, convert in _libraries().items():
        for name, args in CALLS:
            expected = getattr(module, name)(*(values[a] for a in args))
            got = getattr(portable, name)(*(convert(values[a]) for a in args))
            _assert_close(got, expected, f"{name} on {library}")


def test_the_array_api_module_runs_under_jax_jit(module):
    pytest.importorskip("array_api_compat")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    portable = catad.compile(SOURCE, backend="array-api")
    values = {"x": np.array(X_POINTS["one zero"]), "A": np.array(A_POINTS["two zeros"])}
    for name, args in CALLS[:4]:  # XLA compiles a scan's 63 guarded rounds slowly: one of them
        expected = getattr(module, name)(*(values[a] for a in args))
        got = jax.jit(getattr(portable, name))(*(jax.numpy.asarray(values[a]) for a in args))
        _assert_close(got, expected, f"{name} under jax.jit")


def test_bools_are_counted_on_every_backend():
    """cumsum and cumprod of bools are NumPy's: i64 running counts of trues, and
    1 while every item so far is true; as i64s, they weight a gradient."""
    pytest.importorskip("array_api_compat")
    jax = pytest.importorskip("jax")
    reference, portable = (catad.compile(COUNTS, backend=b) for b in ("numpy", "array-api"))
    p = np.array([True, True, False, True, False, True])
    x = np.linspace(-1.0, 1.0, 6)
    sums, prods = reference.counts(p)
    np.testing.assert_array_equal(sums, np.cumsum(p))
    np.testing.assert_array_equal(prods, np.cumprod(p))
    assert sums.dtype == prods.dtype == np.int64
    np.testing.assert_array_equal(reference.weighted_grad(p, x), np.cumsum(p).astype(float))
    for name, args in (("counts", (p,)), ("weighted_grad", (p, x))):
        expected = getattr(reference, name)(*args)
        for convert in [*_libraries().values(), jax.numpy.asarray]:
            _assert_close(getattr(portable, name)(*map(convert, args)), expected, name)
        _assert_close(jax.jit(getattr(portable, name))(*map(jax.numpy.asarray, args)), expected, name)
