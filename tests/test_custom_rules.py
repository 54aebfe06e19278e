"""User-declared derivative rules: `custom_vjp` and `custom_jvp`.

* the straight-through estimator: reverse mode uses the rule, forward mode
  derives its tangent from it, and both agree by the adjoint law;
* a jvp rule used by reverse mode, a vjp rule used by forward mode, both at
  every order (Hessians through the rule);
* a rule equal to the true derivative gives what automatic differentiation
  gives (softplus with sigmoid), for grad, jvp, Hessian and Jacobian;
* rules with several parameters, a non-real one, tuple results, f32, size
  variables that differ at the call site, calls inside `if` and `fold`;
* calls inside comprehensions (`for`, `map`, nested, under a batched `if`) on
  values that vary with the index: the rule lane by lane, in both modes and at
  second order, equal to the same rule on whole arrays;
* the marker in UNF: emitted for calls with rules only, checked, evaluated,
  printed, shifted, vectorised, and the reference evaluator agrees with the
  compiled module;
* mistakes in a rule declaration are errors at the user's line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import catad
from catad.compiler.errors import (CatadError, DerivativeError, ShapeError, TypeMismatchError,
                                   UnknownNameError, UnsupportedError)
from catad.compiler.primitives import MUL
from catad.compiler.types import ArrayType, Dim, DType
from catad.compiler.unary import Build, Custom, Drop, Lanes, Map, Prim, Seq, Term, Var, shift
from catad.compiler.unary_check import check_term
from catad.compiler.unary_eval import evaluate, run
from catad.compiler.unary_print import format_term

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

STE = """
fn ste(x: f64[n]) -> f64[n] { where(x > 0.0, 1.0, -1.0) }
fn ste_vjp = custom_vjp(ste, |x, y_bar| y_bar);
fn loss(x: f64[n], w: f64[n]) -> f64 { sum(ste(x) * w) }
"""


def compiled(source: str):
    return catad.compile(source, "rules.catad")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def instructions(term: Term):
    """Every instruction of `term`, bodies included."""
    if isinstance(term, Seq):
        for t in term.terms:
            yield from instructions(t)
        return
    yield term
    for name in ("body", "then", "orelse"):
        if hasattr(term, name):
            yield from instructions(getattr(term, name))


# ---- the straight-through estimator -------------------------------------------------

def test_straight_through_gradient_is_the_cotangent_not_zero():
    m = compiled(STE + "fn g = grad(loss, wrt = x);\n")
    x, w = rng().standard_normal(5), rng(1).standard_normal(5)
    np.testing.assert_array_equal(m.g(x, w), w)


def test_straight_through_forward_mode_agrees_with_reverse_mode():
    m = compiled(STE + "fn t = jvp(loss, wrt = x);\nfn c = vjp(loss, wrt = x);\n")
    x, w, v = (rng(k).standard_normal(6) for k in range(3))
    value, tangent = m.t(x, w, v)
    assert value == pytest.approx(np.sum(np.where(x > 0, 1.0, -1.0) * w))
    assert tangent == pytest.approx(np.sum(v * w))
    _, cotangent = m.c(x, w, 0.7)
    assert tangent * 0.7 == pytest.approx(np.sum(v * cotangent))  # <D v, w> = <v, R w>


def test_differentiating_the_function_itself_uses_its_rule():
    m = compiled(STE + "fn c = vjp(ste);\nfn t = jvp(ste);\nfn j = jacobian(ste, wrt = x);\n")
    x, u = rng().standard_normal(4), rng(1).standard_normal(4)
    np.testing.assert_array_equal(m.c(x, u)[1], u)
    np.testing.assert_array_equal(m.t(x, u)[1], u)
    np.testing.assert_array_equal(m.j(x), np.eye(4))


def test_the_rule_makes_a_piecewise_constant_function_differentiable():
    body = "fn s(x: f64[n]) -> f64[n] { sign(x) }\nfn l(x: f64[n]) -> f64 { sum(s(x)) }\n"
    with pytest.raises(DerivativeError, match="sign"):
        compiled(body + "fn g = grad(l);\n")
    m = compiled(body + "fn s_vjp = custom_vjp(s, |x, g| g);\nfn g = grad(l);\n")
    np.testing.assert_array_equal(m.g(np.array([-2.0, 0.5])), [1.0, 1.0])


def test_the_rule_defines_higher_derivatives_too():
    """grad(sum(ste(x)^2)) = 2 ste(x) through the rule; its derivative, through the
    rule again, is 2 I (differentiating ste's body would give 0)."""
    m = compiled(STE + "fn sq(x: f64[n]) -> f64 { sum(ste(x) * ste(x)) }\n"
                       "fn h = hessian(sq, wrt = x);\nfn g = grad(sq);\n")
    x = np.array([0.3, -1.2, 2.0])
    np.testing.assert_array_equal(m.g(x), 2 * np.sign(x))
    np.testing.assert_array_equal(m.h(x), 2 * np.eye(3))


def test_the_rule_is_used_inside_if_and_fold():
    m = compiled(STE + """
fn branchy(x: f64[n], w: f64[n], c: bool) -> f64 { if c { let s = ste(x); sum(s * w) } else { sum(x) } }
fn seq(X: f64[t, n], w: f64[n]) -> f64 { fold(0.0, X, |acc, x| acc + sum(ste(x) * w)) }
fn gb = grad(branchy, wrt = x);
fn tb = jvp(branchy, wrt = x);
fn gs = grad(seq, wrt = X);
fn ts = jvp(seq, wrt = X);
""")
    x, w, v = (rng(k).standard_normal(3) for k in range(3))
    np.testing.assert_array_equal(m.gb(x, w, True), w)
    np.testing.assert_array_equal(m.gb(x, w, False), np.ones(3))
    assert m.tb(x, w, True, v)[1] == pytest.approx(v @ w)
    X, V = rng(3).standard_normal((4, 3)), rng(4).standard_normal((4, 3))
    np.testing.assert_array_equal(m.gs(X, w), np.broadcast_to(w, (4, 3)))
    assert m.ts(X, w, V)[1] == pytest.approx(np.sum(V * w))


def test_a_call_inside_a_comprehension_on_unbatched_values_uses_the_rule():
    m = compiled(STE + "fn c(x: f64[n], w: f64[n]) -> f64 { sum(for i in 0..n { ste(x)[i] * w[i] }) }\n"
                       "fn g = grad(c, wrt = x);\n")
    x, w = rng().standard_normal(4), rng(1).standard_normal(4)
    np.testing.assert_allclose(m.g(x, w), w)


# ---- calls inside comprehensions: the rule lane by lane ----------------------------

CLIPPED = """
fn ste(x: f64[n]) -> f64[n] { where(x > 0.0, 1.0, -1.0) }
fn ste_vjp = custom_vjp(ste, |x, y_bar| where(abs(x) <= 1.0, y_bar, zeros(n)));
fn ste2(x: f64[m, n]) -> f64[m, n] { where(x > 0.0, 1.0, -1.0) }
fn ste2_vjp = custom_vjp(ste2, |x, y_bar| where(abs(x) <= 1.0, y_bar, zeros((m, n))));
"""
"""The clipped straight-through estimator, for a vector and for a matrix: its rule
reads the lane's input and sizes; differentiating the body (a sign) would give 0."""


def test_a_rule_applies_lane_by_lane_in_a_for_comprehension():
    """ste(X[i] * w) row by row: the same derivatives as ste2 on the whole matrix."""
    m = compiled(CLIPPED + """
fn rows(X: f64[m, n], w: f64[n], C: f64[m, n]) -> f64 { sum(for i in 0..m { ste(X[i] * w) } * C) }
fn whole(X: f64[m, n], w: f64[n], C: f64[m, n]) -> f64 { sum(ste2(X * w) * C) }
fn g_rows = grad(rows, wrt = (X, w));
fn g_whole = grad(whole, wrt = (X, w));
fn t_rows = jvp(rows, wrt = (X, w));
fn t_whole = jvp(whole, wrt = (X, w));
""")
    X, w, C = rng(0).standard_normal((5, 4)), rng(1).standard_normal(4), rng(2).standard_normal((5, 4))
    V, u = rng(3).standard_normal((5, 4)), rng(4).standard_normal(4)
    got, expected = m.g_rows(X, w, C), m.g_whole(X, w, C)
    passes = np.abs(X * w) <= 1.0
    assert passes.any() and not passes.all()  # the clipping matters here
    np.testing.assert_allclose(got[0], np.where(passes, C * w, 0.0), rtol=1e-14)
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-15)
    assert np.any(got[0] != 0.0)
    np.testing.assert_allclose(m.t_rows(X, w, C, V, u), m.t_whole(X, w, C, V, u), rtol=1e-13)


def test_a_rule_applies_lane_by_lane_in_a_map():
    m = compiled(CLIPPED + """
fn mapped(X: f64[m, n], c: f64[m]) -> f64 { sum(map(X, |r| sum(ste(r))) * c) }
fn g = grad(mapped, wrt = X);
fn t = jvp(mapped, wrt = X);
""")
    X, c, V = rng(0).standard_normal((4, 3)), rng(1).standard_normal(4), rng(2).standard_normal((4, 3))
    expected = np.where(np.abs(X) <= 1.0, c[:, None], 0.0)
    np.testing.assert_allclose(m.g(X, c), expected, rtol=1e-14)
    assert m.t(X, c, V)[1] == pytest.approx(np.sum(expected * V), rel=1e-13)


def test_a_batched_call_is_marked_with_its_lanes():
    stages = catad.stages(CLIPPED + "fn mapped(X: f64[m, n]) -> f64[m, n] { map(X, |r| ste(r)) }\n")
    marks = [t for t in instructions(stages.vectorised.function("mapped").body)
             if isinstance(t, Custom)]
    assert [(t.name, t.lanes) for t in marks] == [("ste", Lanes((1,)))]
    assert not any(isinstance(t, (Build, Map)) for t in instructions(marks[0].body))


def test_a_jvp_rule_applies_lane_by_lane_forward_and_reverse_and_at_second_order():
    """A deliberately wrong rule, D = 2 x_dot my_exp(x), that calls its own function:
    the derivatives are the rule's, lane by lane, and the Hessian is the one the same
    rule gives on the whole matrix (my_exp2) outside any comprehension."""
    m = compiled("""
fn my_exp(x: f64[n]) -> f64[n] { exp(x) }
fn my_exp_jvp = custom_jvp(my_exp, |x, x_dot| 2.0 * x_dot * my_exp(x));
fn my_exp2(x: f64[m, n]) -> f64[m, n] { exp(x) }
fn my_exp2_jvp = custom_jvp(my_exp2, |x, x_dot| 2.0 * x_dot * my_exp2(x));
fn whole(x: f64[n], a: f64[m]) -> f64 { sum(my_exp2(outer(a, x))) }
fn gw = grad(whole, wrt = x);
fn hw = hessian(whole, wrt = x);
fn rows(X: f64[m, n], C: f64[m, n]) -> f64 { sum(for i in 0..m { my_exp(X[i]) } * C) }
fn scaled(x: f64[n], a: f64[m]) -> f64 { sum(for i in 0..m { sum(my_exp(x * a[i])) }) }
fn g = grad(rows, wrt = X);
fn t = jvp(rows, wrt = X);
fn gs = grad(scaled, wrt = x);
fn hs = hessian(scaled, wrt = x);
""")
    X, C, V = rng(0).standard_normal((3, 4)), rng(1).standard_normal((3, 4)), rng(2).standard_normal((3, 4))
    np.testing.assert_allclose(m.g(X, C), 2 * C * np.exp(X), rtol=1e-14)
    assert m.t(X, C, V)[1] == pytest.approx(np.sum(2 * C * np.exp(X) * V), rel=1e-13)
    x, a = rng(3).standard_normal(4), rng(4).standard_normal(3)
    E = np.exp(np.outer(a, x))  # E[i] = exp(x * a[i])
    np.testing.assert_allclose(m.gs(x, a), 2 * a @ E, rtol=1e-13)
    np.testing.assert_allclose(m.gw(x, a), 2 * a @ E, rtol=1e-13)
    np.testing.assert_allclose(m.hs(x, a), m.hw(x, a), rtol=1e-13)
    assert not np.allclose(m.hs(x, a), np.diag((a * a) @ E))  # not the body's Hessian


GAP = """
fn gap(x: f64[k], y: f64[k], s: f64) -> f64 { s * sum(sign(x - y)) }
fn gap_vjp = custom_vjp(gap, |x, y, s, g|
    (g * s * (x - y), g * s * (y - x), g * sum((x - y) * (x - y)) / 2.0));
fn gap_j(x: f64[k], y: f64[k], s: f64) -> f64 { s * sum(sign(x - y)) }
fn gap_j_jvp = custom_jvp(gap_j, |x, y, s, x_dot, y_dot, s_dot|
    s * sum((x - y) * (x_dot - y_dot)) + s_dot * sum((x - y) * (x - y)) / 2.0);
fn half(x: f64[k], y: f64[k], s: f64) -> f64 { s * sum((x - y) * (x - y)) / 2.0 }
"""
"""gap's rules are the derivatives of `half`, whose body has no rule: so derivatives
through gap's rules must equal automatic derivatives of half."""


@pytest.mark.parametrize("kind", ["gap", "gap_j"])
def test_rules_in_nested_comprehensions_with_batched_and_unbatched_arguments(kind):
    """A[i] varies along the outer comprehension, B[j] along the inner one only, s
    along neither: the cotangents of B and s sum the lanes' cotangents."""
    pairs = "".join(
        f"fn pairs_{f}(A: f64[m, k], B: f64[p, k], s: f64, C: f64[m, p]) -> f64 {{\n"
        f"    sum(for i in 0..m {{ for j in 0..p {{ {f}(A[i], B[j], s) }} }} * C)\n}}\n"
        f"fn g_{f} = grad(pairs_{f}, wrt = (A, B, s));\nfn t_{f} = jvp(pairs_{f}, wrt = (A, B, s));\n"
        for f in (kind, "half"))
    m = compiled(GAP + pairs)
    A, B = rng(0).standard_normal((3, 2)), rng(1).standard_normal((4, 2))
    C, dA, dB = rng(2).standard_normal((3, 4)), rng(3).standard_normal((3, 2)), rng(4).standard_normal((4, 2))
    got, expected = getattr(m, f"g_{kind}")(A, B, 1.3, C), m.g_half(A, B, 1.3, C)
    assert len(got) == 3
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)
    tangent = getattr(m, f"t_{kind}")(A, B, 1.3, C, dA, dB, 0.6)[1]  # the values differ
    assert tangent == pytest.approx(m.t_half(A, B, 1.3, C, dA, dB, 0.6)[1], rel=1e-12)


def test_a_rule_applies_lane_by_lane_in_a_branch_that_some_lanes_skip():
    """Under a condition that varies with the index, both branches run for every
    lane: the rule's `X[i][k]` of lanes that skip the branch must not fail."""
    m = compiled(CLIPPED + """
fn pick(x: f64[n]) -> f64[n] { x }
fn pick_vjp = custom_vjp(pick, |x, g| { let k = 0; where(x[k] > 0.0, 3.0 * g, zeros(n)) });
fn branchy(X: f64[m, n], c: f64[m]) -> f64 {
    sum(for i in 0..m { if c[i] > 0.0 { sum(pick(X[i])) } else { 0.0 } })
}
fn g = grad(branchy, wrt = X);
fn t = jvp(branchy, wrt = X);
""")
    X, c, V = rng(0).standard_normal((6, 3)), rng(1).standard_normal(6), rng(2).standard_normal((6, 3))
    expected = np.where(((c > 0) & (X[:, 0] > 0))[:, None], 3.0, 0.0) * np.ones_like(X)
    assert expected.any() and not expected.all()
    np.testing.assert_allclose(m.g(X, c), expected, rtol=1e-14)
    assert m.t(X, c, V)[1] == pytest.approx(np.sum(expected * V), rel=1e-13)


def test_the_rule_defines_higher_derivatives_inside_a_comprehension():
    """sum_i |ste(x a_i)|^2: gradient 2 sum_i a_i ste(x a_i) through the rule (y_bar),
    Hessian 2 sum_i a_i^2 I through the rule again (the body's would be 0)."""
    m = compiled(STE + """
fn sq(x: f64[n], a: f64[m]) -> f64 { sum(for i in 0..m { let s = ste(x * a[i]); sum(s * s) }) }
fn g = grad(sq, wrt = x);
fn h = hessian(sq, wrt = x);
""")
    x, a = rng(0).standard_normal(3), rng(1).standard_normal(5)
    np.testing.assert_allclose(m.g(x, a), 2 * a @ np.sign(np.outer(a, x)), rtol=1e-14)
    np.testing.assert_allclose(m.h(x, a), 2 * np.sum(a * a) * np.eye(3), rtol=1e-14)


def test_a_rule_whose_own_code_calls_a_rule_in_a_comprehension_applies_lane_by_lane():
    """total's jvp rule runs ste row by row; total is itself called row by row: the
    rule's ste calls get the outer lanes in front of their own. The gradient of
    `stacked`, sum_k c_k total(T[k]), is c_k sign(T[k]); its derivative, through
    ste's rule, c_k V[k]."""
    m = compiled(STE + """
fn total(X: f64[p, q]) -> f64 { sum(X) }
fn total_jvp = custom_jvp(total, |X, X_dot| sum(for i in 0..p { X_dot[i] * ste(X[i]) }));
fn stacked(T: f64[m, p, q], c: f64[m]) -> f64 { sum(for k in 0..m { total(T[k]) } * c) }
fn g = grad(stacked, wrt = T);
fn t = jvp(stacked, wrt = T);
fn hv = jvp(grad(stacked, wrt = T), wrt = T);
""")
    T, c, V = rng(0).standard_normal((2, 3, 4)), rng(1).standard_normal(2), rng(2).standard_normal((2, 3, 4))
    expected = c[:, None, None] * np.sign(T)
    np.testing.assert_allclose(m.g(T, c), expected, rtol=1e-14)
    assert m.t(T, c, V)[1] == pytest.approx(np.sum(expected * V), rel=1e-13)
    np.testing.assert_allclose(m.hv(T, c, V)[1], c[:, None, None] * V, rtol=1e-14)


# ---- rules equal to the true derivative -------------------------------------------

SOFTPLUS = """
fn sp_v(x: f64[n]) -> f64[n] { log(1.0 + exp(x)) }
fn sp_v_vjp = custom_vjp(sp_v, |x, g| g * sigmoid(x));
fn sp_j(x: f64[n]) -> f64[n] { log(1.0 + exp(x)) }
fn sp_j_jvp = custom_jvp(sp_j, |x, x_dot| x_dot * sigmoid(x));
fn sp_p(x: f64[n]) -> f64[n] { log(1.0 + exp(x)) }
"""


@pytest.mark.parametrize("kind", ["v", "j"])
def test_a_rule_equal_to_the_derivative_agrees_with_automatic_differentiation(kind):
    losses = "".join(f"fn loss_{k}(w: f64[d], X: f64[m, d], y: f64[m]) -> f64 {{ sum(sp_{k}(X @ w) * y) }}\n"
                     for k in (kind, "p"))
    derived = "".join(f"fn {t}_{k} = {t}(loss_{k}, wrt = w);\n"
                      for t in ("grad", "jvp", "hessian") for k in (kind, "p"))
    jacobians = f"fn jac_{kind} = jacobian(sp_{kind}, wrt = x);\nfn jac_p = jacobian(sp_p, wrt = x);\n"
    m = compiled(SOFTPLUS + losses + derived + jacobians)
    w, X, y, v = rng().standard_normal(3), rng(1).standard_normal((4, 3)), rng(2).standard_normal(4), rng(3).standard_normal(3)
    for t in ("grad", "hessian"):
        np.testing.assert_allclose(getattr(m, f"{t}_{kind}")(w, X, y), getattr(m, f"{t}_p")(w, X, y),
                                   rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(getattr(m, f"jvp_{kind}")(w, X, y, v), m.jvp_p(w, X, y, v), rtol=1e-12)
    np.testing.assert_allclose(getattr(m, f"jac_{kind}")(X @ w), m.jac_p(X @ w), rtol=1e-12)


def test_a_jvp_rule_that_calls_its_own_function_serves_reverse_mode_at_every_order():
    m = compiled("""
fn my_exp(x: f64[n]) -> f64[n] { exp(x) }
fn my_exp_jvp = custom_jvp(my_exp, |x, x_dot| x_dot * my_exp(x));
fn e(x: f64[n]) -> f64 { sum(my_exp(x)) }
fn g = grad(e);
fn h = hessian(e, wrt = x);
""")
    x = rng().standard_normal(3)
    np.testing.assert_allclose(m.g(x), np.exp(x), rtol=1e-14)
    np.testing.assert_allclose(m.h(x), np.diag(np.exp(x)), rtol=1e-14)


def test_a_vjp_rule_that_calls_its_own_function_serves_forward_mode_at_every_order():
    m = compiled("""
fn my_exp(x: f64[n]) -> f64[n] { exp(x) }
fn my_exp_vjp = custom_vjp(my_exp, |x, g| g * my_exp(x));
fn e(x: f64[n]) -> f64 { sum(my_exp(x)) }
fn t = jvp(e);
fn h = hessian(e, wrt = x);
""")
    x, v = rng().standard_normal(3), rng(1).standard_normal(3)
    assert m.t(x, v)[1] == pytest.approx(np.exp(x) @ v, rel=1e-14)
    np.testing.assert_allclose(m.h(x), np.diag(np.exp(x)), rtol=1e-14)


def test_rules_with_several_parameters_a_bool_one_and_size_variables_of_the_caller():
    """scaled(x, s, flag) = x * s or x; the rules give (x_bar, s_bar), nothing for flag.
    The caller's sizes (m) stand for the rule's (n); zeros(n) in the rule follows."""
    m = compiled("""
fn scaled(x: f64[n], s: f64, flag: bool) -> f64[n] { if flag { x * s } else { x } }
fn scaled_vjp = custom_vjp(scaled, |x, s, flag, g|
    (if flag { g * s } else { g + zeros(n) }, if flag { sum(g * x) } else { 0.0 }));
fn scaled_j(x: f64[n], s: f64, flag: bool) -> f64[n] { if flag { x * s } else { x } }
fn scaled_j_jvp = custom_jvp(scaled_j, |x, s, flag, x_dot, s_dot|
    if flag { x_dot * s + x * s_dot } else { x_dot });
fn plain(x: f64[n], s: f64, flag: bool) -> f64[n] { if flag { x * s } else { x } }
fn lv(A: f64[m, k], u: f64[k], s: f64, flag: bool) -> f64 { sum(sin(scaled(A @ u, s, flag))) }
fn lj(A: f64[m, k], u: f64[k], s: f64, flag: bool) -> f64 { sum(sin(scaled_j(A @ u, s, flag))) }
fn lp(A: f64[m, k], u: f64[k], s: f64, flag: bool) -> f64 { sum(sin(plain(A @ u, s, flag))) }
fn gv = grad(lv);
fn gj = grad(lj);
fn gp = grad(lp);
fn tv = jvp(lv);
fn tj = jvp(lj);
fn tp = jvp(lp);
""")
    A, u, dA, du = (rng(k).standard_normal(s) for k, s in enumerate([(5, 2), 2, (5, 2), 2]))
    for flag in (True, False):
        args = (A, u, 1.7, flag)
        for got in (m.gv(*args), m.gj(*args)):
            for a, b in zip(got, m.gp(*args)):
                np.testing.assert_allclose(a, b, rtol=1e-12)
        for got in (m.tv(*args, dA, du, 0.4), m.tj(*args, dA, du, 0.4)):
            np.testing.assert_allclose(got, m.tp(*args, dA, du, 0.4), rtol=1e-12)


def test_rules_of_functions_with_tuple_results():
    m = compiled("""
fn two(x: f64[n]) -> (f64[n], f64) { (x * 2.0, sum(x)) }
fn two_vjp = custom_vjp(two, |x, g| { let (a, b) = g; 2.0 * a + b });
fn two_j(x: f64[n]) -> (f64[n], f64) { (x * 2.0, sum(x)) }
fn two_j_jvp = custom_jvp(two_j, |x, x_dot| (2.0 * x_dot, sum(x_dot)));
fn lv(x: f64[n]) -> f64 { let (a, b) = two(x); sum(a * a) * b }
fn lj(x: f64[n]) -> f64 { let (a, b) = two_j(x); sum(a * a) * b }
fn gv = grad(lv);
fn gj = grad(lj);
fn tv = jvp(lv);
fn tj = jvp(lj);
""")
    x, v = rng().standard_normal(3), rng(1).standard_normal(3)
    expected = 8 * x * np.sum(x) + 4 * np.sum(x * x)  # d/dx of 4 |x|^2 sum(x)
    np.testing.assert_allclose(m.gv(x), expected, rtol=1e-12)
    np.testing.assert_allclose(m.gj(x), expected, rtol=1e-12)
    assert m.tv(x, v)[1] == pytest.approx(expected @ v, rel=1e-12)
    assert m.tj(x, v)[1] == pytest.approx(expected @ v, rel=1e-12)


def test_rules_on_f32_keep_f32():
    m = compiled("""
fn q(x: f32[n]) -> f32[n] { x * x }
fn q_vjp = custom_vjp(q, |x, g| 2.0 * x * g);
fn l(x: f32[n]) -> f32 { sum(q(x)) }
fn g = grad(l);
fn t = jvp(l);
""")
    x = np.array([1.0, -2.0], np.float32)
    assert m.g(x).dtype == np.float32
    np.testing.assert_array_equal(m.g(x), 2 * x)
    assert m.t(x, np.ones(2, np.float32))[1] == pytest.approx(-2.0)


# ---- the marker in unary form ---------------------------------------------------------

def test_calls_of_functions_with_rules_and_only_those_are_marked():
    stages = catad.stages(STE + "fn plain(x: f64[n]) -> f64[n] { x * 2.0 }\n"
                                "fn both(x: f64[n]) -> f64 { sum(ste(x) + plain(x)) }\n")
    assert stages.typed.rules == (("ste", "vjp", "ste_vjp"),)
    assert stages.unary.rules == stages.vectorised.rules == stages.typed.rules
    for program in (stages.unary, stages.vectorised):
        marks = [t for t in instructions(program.function("both").body) if isinstance(t, Custom)]
        assert [(t.name, t.n) for t in marks] == [("ste", 1)]
        assert not any(isinstance(t, Custom) for t in instructions(program.function("ste").body))
    unary = stages.unary.function("both")
    assert "custom ste/1" in format_term(unary.body, 1)


def test_the_rule_is_an_ordinary_function_of_the_program():
    m = compiled(STE)
    x, g = rng().standard_normal(3), rng(1).standard_normal(3)
    np.testing.assert_array_equal(m.ste_vjp(x, g), g)
    assert "ste_vjp(x: f64[n], y_bar: f64[n]) -> f64[n]" in m.ste_vjp.__doc__


def test_custom_is_typed_evaluated_printed_and_shifted_as_its_body():
    vec = ArrayType(DType.F64, (Dim.of("n"),))
    body = Seq((Var(1), Var(1), Prim(MUL, (), 2), Drop(1, 2)))  # x * x, x the entry at 1
    term = Custom("square", 1, body, hint="y")
    context = (ArrayType(DType.BOOL), vec)
    assert check_term(term, context) == context + (vec,)
    x = np.array([1.0, 2.0, -3.0])
    out = run(term, [True, x], {"n": 3})
    assert len(out) == 3
    np.testing.assert_array_equal(out[-1], x * x)
    assert run(shift(term, 2), [0, 0, True, x], {"n": 3})[-1].tolist() == [1.0, 4.0, 9.0]
    assert shift(term, 2) == Custom("square", 1, shift(body, 2))
    head, first = format_term(term, 2).splitlines()[:2]
    assert head.startswith("[2]  custom square/1 ") and head.endswith(" # y")
    assert first == "    [2]  var 1"  # the body, indented, at the depth of the custom
    with pytest.raises(Exception, match="needs 1 entries"):
        check_term(term, ())


@pytest.mark.parametrize("name", ["g", "t", "h"])
def test_the_reference_evaluator_agrees_with_the_compiled_module(name):
    source = STE + ("fn sq(x: f64[n]) -> f64 { sum(ste(x) * ste(x) * x) }\n"
                    "fn g = grad(loss, wrt = x);\nfn t = jvp(loss);\nfn h = hessian(sq, wrt = x);\n")
    stages = catad.stages(source)
    module = compiled(source)
    x, w, v, u = (rng(k).standard_normal(4) for k in range(4))
    args = {"g": (x, w), "t": (x, w, v, u), "h": (x,)}[name]
    expected = getattr(module, name)(*args)
    np.testing.assert_allclose(evaluate(stages.vectorised.function(name), args), expected, rtol=1e-12)


def test_the_binarized_example_trains_with_the_straight_through_estimator():
    m = catad.load(EXAMPLES / "binarized.catad")
    r = rng(5)
    W, v, b, X = r.standard_normal((4, 3)), r.standard_normal(4), 0.2, r.standard_normal((6, 3))
    y = (r.random(6) > 0.5).astype(float)
    sign = lambda a: np.where(a >= 0, 1.0, -1.0)  # noqa: E731
    A = X @ sign(W).T / 3
    H = sign(A)
    z_bar = (1 / (1 + np.exp(-(H @ v + b))) - y) / 6
    A_bar = np.where(np.abs(A) <= 1, np.outer(z_bar, v), 0.0)
    W_bar = np.where(np.abs(W) <= 1, (A_bar / 3).T @ X, 0.0)
    got = m.loss_grad(W, v, b, X, y)
    for a, e in zip(got, (W_bar, H.T @ z_bar, z_bar.sum())):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-15)
    assert np.any(got[0] != 0.0)  # differentiating sign itself would give zeros


# ---- mistakes -------------------------------------------------------------------------

BASE = "fn ste(x: f64[n]) -> f64[n] { where(x > 0.0, 1.0, -1.0) }\n"


@pytest.mark.parametrize("decl, error, message, line", [
    ("fn r = custom_vjp(stee, |x, g| g);", UnknownNameError, "unknown function `stee`", 2),
    ("fn r = custom_vjp(ste, |x| x);", TypeMismatchError,
     r"takes 2 parameters: ste's parameters \(x\), then the cotangent of its result; "
     "this lambda has 1", 2),
    ("fn r = custom_jvp(ste, |x, a, b| a);", TypeMismatchError,
     r"then a tangent for each real one \(x\); this lambda has 3", 2),
    ("fn r = custom_vjp(ste, 3.0);", TypeMismatchError, "must be a lambda", 2),
    ("fn r = custom_vjp(ste);", TypeMismatchError, "the name of a function and a lambda", 2),
    ("fn r = custom_vjp(ste, |x, g| g, wrt = x);", TypeMismatchError, "no keyword arguments", 2),
    ("fn r = custom_vjp(ste, |x, g| g);\nfn r2 = custom_jvp(ste, |x, t| t);", UnsupportedError,
     "`ste` has two derivative rules", 3),
    ("fn r = custom_vjp(ste, |x, g| 0.0);", ShapeError,
     r"the result of the rule `r` \(the cotangent of `x`\) must have type f64\[n\], but it has "
     "type f64", 2),
    ("fn r = custom_jvp(ste, |x, t| sum(t));", ShapeError,
     r"the rule `r` \(the tangent of `ste`'s result\) must have type f64\[n\]", 2),
    ("fn b(x: f64[n]) -> bool { x[0] > 0.0 }\nfn r = custom_vjp(b, |x, g| x);", DerivativeError,
     "`b` does not return real numbers", 3),
    ("fn i(k: i64[n]) -> f64 { 1.0 }\nfn r = custom_vjp(i, |k, g| g);", DerivativeError,
     "`i` has no real", 3),
    ("fn t(p: (f64, i64)) -> f64 { 1.0 }\nfn r = custom_vjp(t, |p, g| g);", UnsupportedError,
     "mixes real and other values", 2),
    ("fn g = grad(ste);\nfn r = custom_vjp(g, |x, u| u);", UnsupportedError,
     "`g` is a derived function", 3),
    ("fn r = custom_vjp(ste, |x, g| g * y);", UnknownNameError, "unknown name `y`", 2),
])
def test_mistakes_are_errors_at_the_users_line(decl, error, message, line):
    with pytest.raises(error, match=message) as info:
        catad.compile(BASE + decl, "rules.catad")
    assert info.value.span.line == line
    assert isinstance(info.value, CatadError)
