"""Calls of derived functions from function bodies: `w - 0.1 * loss_grad(w, x)`.

The derived function is made first (declarations are processed in dependency
order) and its vectorised unary form is inlined at the call, so its value is
the one Python gets calling it; a call inside a comprehension is batched; and a
derived function of the caller differentiates through the derivative (second
order), checked against central finite differences and the SymPy oracle."""

from __future__ import annotations

import re

import numpy as np
import pytest

import catad
from catad.compiler.check import check_source
from catad.compiler.errors import CatadError, TypeMismatchError, UnsupportedError

LOGISTIC = """\
fn loss(w: f64[d], X: f64[n, d], y: f64[n]) -> f64 {
    let p = sigmoid(X @ w);
    -sum(y * log(p) + (1.0 - y) * log(1.0 - p)) + 0.1 * sum(w * w * w * w)
}
fn loss_grad = grad(loss, wrt = w);

fn step(w: f64[d], X: f64[n, d], y: f64[n]) -> f64[d] {
    w - 0.1 * loss_grad(w, X, y)
}

fn after_step(w: f64[d], X: f64[n, d], y: f64[n]) -> f64 {
    loss(step(w, X, y), X, y)
}
fn after_step_grad = grad(after_step, wrt = w);
fn after_step_hessian = hessian(after_step, wrt = w);
fn after_step_jvp = jvp(after_step, wrt = (w, X));
fn after_step_data_grad = grad(after_step, wrt = X);

fn per_model(W: f64[m, d], X: f64[n, d], y: f64[n]) -> f64[m, d] {
    for i in 0..m { loss_grad(W[i], X, y) }
}
fn per_model_norm(W: f64[m, d], X: f64[n, d], y: f64[n]) -> f64 {
    sum(for i in 0..m { sum(loss_grad(W[i], X, y) * W[i]) } * sum(W, axis = 1))
}
fn per_model_norm_grad = grad(per_model_norm, wrt = W);
"""


@pytest.fixture(scope="module")
def logistic():
    return catad.compile(LOGISTIC, "logistic.catad")


def _data(seed: int = 0, n: int = 4, d: int = 3, m: int = 2):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=d) * 0.5, rng.normal(size=(n, d)), (rng.random(n) > 0.5) * 1.0,
            rng.normal(size=(m, d)) * 0.5)


def _fd_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar (or array) function f at x."""
    x = np.asarray(x, dtype=np.float64)
    rows = []
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = h
        rows.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.moveaxis(np.array(rows), 0, -1).reshape(np.shape(f(x)) + x.shape)


def test_the_value_is_that_of_calling_the_derived_function_from_python(logistic):
    w, X, y, _ = _data()
    expected = w - 0.1 * logistic.loss_grad(w, X, y)
    np.testing.assert_allclose(logistic.step(w, X, y), expected, rtol=1e-14, atol=1e-14)


def test_a_training_step_lowers_the_loss(logistic):
    w, X, y, _ = _data(1)
    losses = [logistic.loss(w, X, y)]
    for _ in range(20):
        w = logistic.step(w, X, y)
        losses.append(logistic.loss(w, X, y))
    assert all(b < a for a, b in zip(losses, losses[1:]))
    np.testing.assert_allclose(logistic.after_step(w, X, y), logistic.loss(logistic.step(w, X, y), X, y))


def test_a_call_in_a_comprehension_is_batched(logistic):
    w, X, y, W = _data(2, m=4)
    expected = np.stack([logistic.loss_grad(W[i], X, y) for i in range(4)])
    np.testing.assert_allclose(logistic.per_model(W, X, y), expected, rtol=1e-13, atol=1e-13)
    assert logistic.per_model(W[:0], X, y).shape == (0, 3)
    code = catad.to_python(LOGISTIC, "logistic.catad")
    body = code.split("def per_model(")[1].split("\ndef ")[0]
    assert not re.search(r"^\s*for ", body, re.M), body  # whole-array code, no Python loop


def test_second_order_derivatives_through_a_gradient_match_finite_differences(logistic):
    w, X, y, W = _data(3)
    f = lambda w_: logistic.after_step(w_, X, y)  # noqa: E731
    np.testing.assert_allclose(logistic.after_step_grad(w, X, y), _fd_grad(f, w), rtol=1e-6, atol=1e-7)
    g = lambda w_: logistic.after_step_grad(w_, X, y)  # noqa: E731
    hessian = logistic.after_step_hessian(w, X, y)
    np.testing.assert_allclose(hessian, _fd_grad(g, w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-12, atol=1e-12)
    fX = lambda X_: logistic.after_step(w, X_, y)  # noqa: E731
    np.testing.assert_allclose(logistic.after_step_data_grad(w, X, y), _fd_grad(fX, X),
                               rtol=1e-6, atol=1e-7)
    w_dot, X_dot = np.ones_like(w), np.full_like(X, 0.5)
    value, tangent = logistic.after_step_jvp(w, X, y, w_dot, X_dot)
    np.testing.assert_allclose(value, logistic.after_step(w, X, y))
    expected = (logistic.after_step(w + 1e-6 * w_dot, X + 1e-6 * X_dot, y)
                - logistic.after_step(w - 1e-6 * w_dot, X - 1e-6 * X_dot, y)) / 2e-6
    np.testing.assert_allclose(tangent, expected, rtol=1e-6, atol=1e-7)
    fW = lambda W_: logistic.per_model_norm(W_, X, y)  # noqa: E731
    np.testing.assert_allclose(logistic.per_model_norm_grad(W, X, y), _fd_grad(fW, W),
                               rtol=1e-6, atol=1e-7)


NESTED = """\
fn f(x: f64[n], a: f64) -> f64 { sum(sin(a * x) * x) + a * a * a }
fn f_grad = grad(f, wrt = x);
fn f_hvp = jvp(grad(f, wrt = x), wrt = x);
fn g(x: f64[n], a: f64) -> f64 {
    let (gx, hv) = f_hvp(x, a, f_grad(x, a));
    sum(gx * hv) + sum(exp(0.1 * f_grad(x, a)))
}
fn g_grad = grad(g, wrt = (x, a));
fn g_hessian = hessian(g, wrt = a);
fn h(x: f64[n], a: f64) -> f64 { g(x, a) * g_grad_x(x, a)[0] }
fn g_grad_x = grad(g, wrt = x);
fn h_grad = grad(h, wrt = x);
"""


def test_nested_derived_calls_against_finite_differences():
    """g calls a gradient and a Hessian-vector product; g_grad is third order in f,
    h calls a gradient of g (declared after h) and h_grad is fourth order."""
    m = catad.compile(NESTED)
    rng = np.random.default_rng(5)
    x, a = rng.normal(size=3), 0.7
    gx, ga = m.g_grad(x, a)
    np.testing.assert_allclose(gx, _fd_grad(lambda x_: m.g(x_, a), x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ga, _fd_grad(lambda a_: m.g(x, a_), np.float64(a)), rtol=1e-6)
    np.testing.assert_allclose(m.g_hessian(x, a), _fd_grad(lambda a_: m.g_grad(x, a_)[1], np.float64(a)),
                               rtol=1e-5)
    np.testing.assert_allclose(m.h_grad(x, a), _fd_grad(lambda x_: m.h(x_, a), x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.g_grad_x(x, a), gx)


def test_the_sympy_oracle_agrees_with_derivatives_through_derived_calls():
    report = catad.check(NESTED, {"n": 2}, points=1)
    assert report.passed, report.format()
    generated = {(r.function, r.argument) for r in report.rows if r.mode == "generated"}
    assert {("g_grad", "x"), ("g_grad", "a"), ("g_hessian", "a"), ("h_grad", "x")} <= generated
    assert all(r.sympy_error is not None for r in report.rows if r.function in ("g", "g_grad", "h"))


def test_a_rule_in_the_derived_function_is_followed_through_the_call():
    """A straight-through rule inside the gradient: the caller's derivatives follow it,
    so the check compares forward with reverse mode instead of SymPy."""
    source = """\
fn clip(x: f64[n]) -> f64[n] { minimum(maximum(x, -1.0), 1.0) }
fn clip_vjp = custom_vjp(clip, |x, y_bar| y_bar);
fn loss(w: f64[n], x: f64[n]) -> f64 { sum(sin(clip(w * x)) * w) }
fn loss_grad = grad(loss, wrt = w);
fn batch(W: f64[m, n], x: f64[n]) -> f64 { sum(for i in 0..m { loss_grad(W[i], x) * W[i] }) }
fn batch_grad = grad(batch, wrt = W);
"""
    report = catad.check(source, {"n": 3, "m": 2}, points=1)
    assert report.passed, report.format()
    assert any("batch: its derivatives follow the rule clip_vjp" in note for note in report.notes)
    m = catad.compile(source)
    W, x = np.array([[0.3, -2.0, 0.5], [1.5, 0.2, -0.1]]), np.array([1.0, 0.5, 2.0])
    expected = sum(m.loss_grad(W[i], x) @ W[i] for i in range(2))
    np.testing.assert_allclose(m.batch(W, x), expected)


def test_order_of_declarations_does_not_matter_and_output_keeps_source_order():
    source = """\
fn step(w: f64[n]) -> f64[n] { w - 0.5 * loss_grad(w) }
fn loss_grad = grad(loss);
fn loss(w: f64[n]) -> f64 { sum(w * w) }
"""
    m = catad.compile(source)
    np.testing.assert_allclose(m.step(np.array([1.0, 2.0])), [0.0, 0.0])
    stages = catad.stages(source)
    assert [fn.name for fn in stages.vectorised.functions] == ["step", "loss_grad", "loss"]
    assert [fn.name for fn in stages.typed.functions] == ["step", "loss"]
    assert [fn.name for fn in check_source(source).functions] == ["step", "loss"]
    assert re.findall(r"^def (\w+)", stages.python, re.M) == ["step", "loss_grad", "loss"]


def test_size_variables_are_the_callers():
    """The derived function's sizes (n) become the caller's (k + 1, a slice)."""
    source = """\
fn loss(w: f64[n], x: f64[n]) -> f64 { sum(exp(w) * x) }
fn loss_grad = grad(loss, wrt = w);
fn f(v: f64[k]) -> f64[k - 1] { loss_grad(v[1:], v[:-1]) }
"""
    m = catad.compile(source)
    v = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(m.f(v), m.loss_grad(v[1:], v[:-1]))


@pytest.mark.parametrize("body, error, message", [
    ("w - 0.1 * loss_grad(w)", TypeMismatchError, "`loss_grad` takes 2 arguments, got 1"),
    ("w - 0.1 * loss_grad(w, (x, x))", TypeMismatchError, "argument 2 (`x`) of `loss_grad` must have type f64[n]"),
    ("loss_grad", TypeMismatchError, "`loss_grad` is a function, not a value"),
    ("w - loss_grad(w, x = x)", TypeMismatchError, "`loss_grad` takes positional arguments only"),
])
def test_mistakes_in_a_call_are_checked_errors_at_the_call(body, error, message):
    source = ("fn loss(w: f64[n], x: f64[n]) -> f64 { sum((w - x) * (w - x)) }\n"
              "fn loss_grad = grad(loss, wrt = w);\n"
              f"fn step(w: f64[n], x: f64[n]) -> f64[n] {{\n    {body}\n}}\n")
    with pytest.raises(error) as caught:
        catad.to_python(source, "step.catad")
    assert message in caught.value.message
    assert caught.value.span.line == 4


@pytest.mark.parametrize("source, chain", [
    ("fn f(x: f64) -> f64 { g_grad(x) * x }\nfn g(x: f64) -> f64 { f(x) * x }\n"
     "fn g_grad = grad(g, wrt = x);\n", "the chain f -> g_grad -> g -> f is a cycle"),
    ("fn f(x: f64) -> f64 { f_hvp(x, 1.0)[1] }\nfn f_hvp = jvp(grad(f, wrt = x), wrt = x);\n",
     "the chain f -> f_hvp -> f is a cycle"),
    ("fn f(x: f64) -> f64 { x }\nfn a = grad(b, wrt = x);\nfn b = grad(a, wrt = x);\n",
     "recursive derived function: the chain a -> b -> a is a cycle"),
])
def test_recursion_through_a_derived_function_is_refused(source, chain):
    with pytest.raises(UnsupportedError) as caught:
        catad.to_python(source)
    assert chain in caught.value.message


def test_a_derived_function_that_cannot_be_made_is_reported_at_its_declaration():
    source = ("fn f(x: f64) -> f64 { x * x }\nfn g = grad(f, wrt = y);\n"
              "fn h(x: f64) -> f64 { g(x) }\n")
    with pytest.raises(CatadError) as caught:
        catad.to_python(source)
    assert "`f` has no parameter `y`" in caught.value.message and caught.value.span.line == 2


def test_a_derivative_rule_and_a_bool_function_may_call_derived_functions():
    source = """\
fn cube(x: f64) -> f64 { x * x * x }
fn cube_grad = grad(cube, wrt = x);
fn sq(x: f64) -> f64 { x * x * x }
fn sq_vjp = custom_vjp(sq, |x, y_bar| y_bar * cube_grad(x));
fn use_sq(x: f64[n]) -> f64 { sum(map(x, |v| sq(v))) }
fn use_sq_grad = grad(use_sq, wrt = x);
fn gate(a: bool, b: bool) -> bool { a and not b }
fn gate_grad = grad(gate, wrt = (a, b));
fn uses_gate(a: bool, b: bool) -> bool { let (da, db) = gate_grad(a, b); da xor db }
"""
    m = catad.compile(source)
    np.testing.assert_allclose(m.use_sq_grad(np.array([1.0, -2.0])), [3.0, 12.0])
    for a in (False, True):
        for b in (False, True):
            da, db = m.gate_grad(a, b)
            assert bool(m.uses_gate(a, b)) == (bool(da) != bool(db))
    with pytest.raises(UnsupportedError, match="the chain sq_vjp -> sq_grad -> sq_vjp is a cycle"):
        catad.to_python(source.replace("cube_grad(x)", "sq_grad(x)")
                        + "fn sq_grad = grad(sq, wrt = x);\n")


def test_a_body_calling_a_derived_function_keeps_the_rules_of_its_other_callees():
    source = """\
fn clip(x: f64[n]) -> f64[n] { minimum(maximum(x, -1.0), 1.0) }
fn clip_vjp = custom_vjp(clip, |x, y_bar| y_bar);
fn loss(w: f64[n]) -> f64 { sum(w * w) }
fn loss_grad = grad(loss, wrt = w);
fn f(w: f64[n]) -> f64 { sum(clip(w) * loss_grad(w)) }
fn f_grad = grad(f, wrt = w);
"""
    m = catad.compile(source)
    w = np.array([2.0, 0.5, -3.0])
    # the straight-through rule: clip's derivative is taken as 1, also where it clips
    np.testing.assert_allclose(m.f_grad(w), 2 * w + 2 * np.clip(w, -1.0, 1.0))
