"""Derivatives of every order of folds and scans, against central differences.

Each program reads a sequence made from both parameters (so the loop's items
are owed cotangents, and its reverse loop stacks them), with scalar and tuple
states, a closure reading a parameter, and a loop nested in a loop's body.
Every derivative kind is checked at 0, 1 and 3 items: the gradient w.r.t.
the scalar and the vector, grad of grad (reverse over a reverse loop that
stacks some items and carries the rest), the Hessian and a jvp of the
gradient (forward over reverse). Once a known bug: grad of grad of a
tuple-state fold crashed while compiling (a tuple's cotangent carried item by
item); reverse mode of loops over 0 items read the state at index -1.
"""

from __future__ import annotations

import numpy as np
import pytest

import catad

BODIES = {
    "fold": "fold(0.5 * w, xs, |s, p| sin(s * w + p))",
    "fold-of-tuples": "{ let (a, b) = fold((0.5, w), xs, |s, p| { let (q, r) = s; "
                      "(sin(q * r + p), r * 0.9 + p * w) }); a * b }",
    "scan": "sum(scan(w, xs, |s, p| tanh(s * p + w)))",
    "scan-of-tuples": "{ let (a, b) = scan((w, 0.3), xs, |s, p| { let (q, r) = s; "
                      "(q * p + r, sin(r + w * p)) }); sum(a) + sum(b * b) }",
    "nested": "fold(w, xs, |s, p| s * 0.5 + sum(scan(p, xs, |t, q| sin(t * q * w))))",
    "vector-state": "sum(fold(xs * w, xs, |s, p| tanh(s * p + w)) ** 2)",
}

DERIVED = """
fn g = grad(f, wrt = w);
fn gx = grad(f, wrt = x);
fn h = grad(g, wrt = w);
fn hx = hessian(f, wrt = x);
fn jg = jvp(gx, wrt = w);
"""

STEP = 1e-5


@pytest.fixture(scope="module", params=sorted(BODIES))
def model(request):
    return catad.compile(f"fn f(w: f64, x: f64[n]) -> f64 {{\n    let xs = x * w + 0.1;\n"
                         f"    {BODIES[request.param]}\n}}\n{DERIVED}")


def along_w(fn, w, x):
    return (fn(w + STEP, x) - fn(w - STEP, x)) / (2 * STEP)


def along_x(fn, w, x):
    """The central difference of `fn` along each coordinate of x, stacked."""
    return np.array([(fn(w, x + STEP * d) - fn(w, x - STEP * d)) / (2 * STEP)
                     for d in np.eye(len(x))]).reshape((len(x),) + np.shape(fn(w, x)))


@pytest.mark.parametrize("n", [0, 1, 3])
def test_loop_derivatives_of_every_order_match_central_differences(model, n):
    w, x = 0.7, np.linspace(0.1, 0.5, n)
    np.testing.assert_allclose(model.g(w, x), along_w(model.f, w, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(model.gx(w, x), along_x(model.f, w, x).reshape(n), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(model.h(w, x), along_w(model.g, w, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.hx(w, x), along_x(model.gx, w, x), rtol=1e-5, atol=1e-7)
    _, tangent = model.jg(w, x, 1.0)
    np.testing.assert_allclose(tangent, along_w(model.gx, w, x), rtol=1e-5, atol=1e-7)


def test_over_no_items_a_fold_passes_its_cotangent_to_its_initial_state():
    m = catad.compile("fn f(s: f64, xs: f64[n]) -> f64 { fold(s, xs, |a, p| sin(a + p)) }\n"
                      "fn g = grad(f, wrt = (s, xs));\n")
    s_bar, xs_bar = m.g(0.3, np.zeros(0))
    assert s_bar == 1.0 and xs_bar.shape == (0,)
