"""The laws of reverse derivative categories (REFERENCES.md §3, Cockett et al.)
on random programs, each checked numerically on compiled code.

For f: f64[n] -> f64[m] (random programs `fn f(x: f64[n], A: f64[n, m]) ->
f64[m]`, differentiated with respect to x, with A a constant),
R[f](x, w) = J_f(x)^T w is `vjp(f, wrt = x)` and D[f](x, v) = J_f(x) v is
`jvp(f, wrt = x)`; both return (f(x), derivative). The laws need sums, pairs
and composites of programs, written as catad functions that call the random
ones, and derivatives of derivatives (`jvp(rf, ...)`, `vjp(rf, ...)`,
`jvp(df, ...)`), all declared in the source.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st

from catad.compiler.errors import CatadError

from program_strategy import (Signature, compile_source, f64, programs, random_inputs, scaled,
                              size_values, vector_signature)

SEEDS = st.integers(0, 2**32 - 1)
F = vector_signature()  # f(x: f64[n], A: f64[n, m]) -> f64[m], wrt x
G = Signature((("y", f64("m")), ("B", f64("m", "n"))), f64("n"))  # g: f64[m] -> f64[n] in y
PAIRS = programs(signature=F, names=("f", "g"))
SINGLES = programs(signature=F)


def assert_close(got, expected, *also):
    """Equal up to rounding, relative to the largest magnitude involved."""
    scale = 1.0 + max(float(np.max(np.abs(a), initial=0.0)) for a in (got, expected, *also))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * scale)


def compile_second_order(text):
    """The module of `text`, which differentiates a derivative; None (and a note to
    hypothesis) where catad refuses it because the first derivative depends on x
    only through comparisons (f piecewise linear: test_fuzz.py, known bugs)."""
    try:
        return compile_source(text)[1]
    except CatadError as err:
        assert "only through" in err.message, err
        event("second derivative refused: the first is piecewise constant in x")
        return None


def draw_point(program, sizes, seed):
    """(rng, x, A) at random sizes and values."""
    rng = np.random.default_rng(seed)
    x, A = program.inputs(sizes, rng)
    return rng, x, A


# ---- RD.1: R[f + g] = R[f] + R[g] and R[0] = 0 ----------------------------------------------

@scaled(0.15)
@given(PAIRS, size_values(), SEEDS)
def test_rd1_reverse_derivative_of_a_sum_is_the_sum(program, sizes, seed):
    _, m = compile_source(program.with_lines(
        "fn s(x: f64[n], A: f64[n, m]) -> f64[m] { f(x, A) + g(x, A) }",
        "fn z(x: f64[n], A: f64[n, m]) -> f64[m] { zeros(m) }",
        "fn rf = vjp(f, wrt = x);", "fn rg = vjp(g, wrt = x);",
        "fn rs = vjp(s, wrt = x);", "fn rz = vjp(z, wrt = x);"))
    rng, x, A = draw_point(program, sizes, seed)
    w = rng.standard_normal(sizes["m"])
    assert_close(m.rs(x, A, w)[1], m.rf(x, A, w)[1] + m.rg(x, A, w)[1])
    np.testing.assert_array_equal(m.rz(x, A, w)[1], np.zeros(sizes["n"]))


# ---- RD.2: R[f](x, .) is linear ----------------------------------------------------------------

@scaled(0.15)
@given(SINGLES, size_values(), SEEDS, st.floats(-3.0, 3.0))
def test_rd2_reverse_derivative_is_linear_in_the_cotangent(program, sizes, seed, c):
    _, m = compile_source(program.with_lines("fn rf = vjp(f, wrt = x);"))
    rng, x, A = draw_point(program, sizes, seed)
    w1, w2 = rng.standard_normal((2, sizes["m"]))
    r1, r2 = m.rf(x, A, w1)[1], m.rf(x, A, w2)[1]
    assert_close(m.rf(x, A, w1 + w2)[1], r1 + r2)
    assert_close(m.rf(x, A, c * w1)[1], c * r1, r1)
    assert_close(m.rf(x, A, np.zeros(sizes["m"]))[1], np.zeros(sizes["n"]))


# ---- RD.3: R[id](x, w) = w, R[π0]((x, y), w) = (w, 0), R[π1]((x, y), w) = (0, w) ------------

@cache
def _structural():
    return compile_source("""
fn id(x: f64[n]) -> f64[n] { x }
fn p0(x: f64[n], y: f64[m]) -> f64[n] { x }
fn p1(x: f64[n], y: f64[m]) -> f64[m] { y }
fn rid = vjp(id);
fn rp0 = vjp(p0, wrt = (x, y));
fn rp1 = vjp(p1, wrt = (x, y));
""")[1]


@scaled(0.15)
@given(PAIRS, size_values(), SEEDS)
def test_rd3_identity_and_projections(program, sizes, seed):
    n, k = sizes["n"], sizes["m"]
    rng = np.random.default_rng(seed)
    x, y, w, u = rng.standard_normal(n), rng.standard_normal(k), rng.standard_normal(n), \
        rng.standard_normal(k)
    m = _structural()
    np.testing.assert_array_equal(m.rid(x, w)[1], w)
    x_bar, y_bar = m.rp0(x, y, w)[1]
    np.testing.assert_array_equal(x_bar, w)
    np.testing.assert_array_equal(y_bar, np.zeros(k))
    x_bar, y_bar = m.rp1(x, y, u)[1]
    np.testing.assert_array_equal(x_bar, np.zeros(n))
    np.testing.assert_array_equal(y_bar, u)
    # and composed with random programs: R[id ∘ f] = R[π0 ∘ <f, g>] = R[f]
    _, c = compile_source(program.with_lines(
        "fn idf(x: f64[n], A: f64[n, m]) -> f64[m] { let y = f(x, A); y }",
        "fn first(x: f64[n], A: f64[n, m]) -> f64[m] { let (a, b) = (f(x, A), g(x, A)); a }",
        "fn rf = vjp(f, wrt = x);", "fn ridf = vjp(idf, wrt = x);",
        "fn rfirst = vjp(first, wrt = x);"))
    x, A = program.inputs(sizes, rng)
    w = rng.standard_normal(k)
    expected = c.rf(x, A, w)[1]
    assert_close(c.ridf(x, A, w)[1], expected)
    assert_close(c.rfirst(x, A, w)[1], expected)


# ---- RD.4: R[<f, g>](x, (w1, w2)) = R[f](x, w1) + R[g](x, w2) ---------------------------------

@scaled(0.15)
@given(PAIRS, size_values(), SEEDS)
def test_rd4_reverse_derivative_of_a_pairing(program, sizes, seed):
    _, m = compile_source(program.with_lines(
        "fn fg(x: f64[n], A: f64[n, m]) -> (f64[m], f64[m]) { (f(x, A), g(x, A)) }",
        "fn rf = vjp(f, wrt = x);", "fn rg = vjp(g, wrt = x);", "fn rfg = vjp(fg, wrt = x);"))
    rng, x, A = draw_point(program, sizes, seed)
    w1, w2 = rng.standard_normal((2, sizes["m"]))
    assert_close(m.rfg(x, A, (w1, w2))[1], m.rf(x, A, w1)[1] + m.rg(x, A, w2)[1])


# ---- RD.5: R[g ∘ f](x, w) = R[f](x, R[g](f(x), w)) ---------------------------------------------

@scaled(0.15)
@given(SINGLES, programs(signature=G, names=("g",)), size_values(), SEEDS)
def test_rd5_chain_rule(f_program, g_program, sizes, seed):
    source = f_program.source + "\n" + g_program.with_lines(
        "fn h(x: f64[n], A: f64[n, m], B: f64[m, n]) -> f64[n] { g(f(x, A), B) }",
        "fn rf = vjp(f, wrt = x);", "fn rg = vjp(g, wrt = y);", "fn rh = vjp(h, wrt = x);")
    _, m = compile_source(source)
    rng, x, A = draw_point(f_program, sizes, seed)
    (B,) = random_inputs(G.params[1:], sizes, rng)
    w = rng.standard_normal(sizes["n"])
    inner = m.rg(m.f(x, A), B, w)[1]
    assert_close(m.rh(x, A, B, w)[1], m.rf(x, A, inner)[1])


# ---- RD.6: D[R[f]]((x, w), (0, w')) = R[f](x, w') ------------------------------------------------

@scaled(0.15)
@given(SINGLES, size_values(), SEEDS)
def test_rd6_reverse_derivative_is_linear_in_its_second_argument(program, sizes, seed):
    m = compile_second_order(program.with_lines(
        "fn rf = vjp(f, wrt = x);", "fn drf = jvp(rf, wrt = (x, f_bar));"))
    if m is None:
        return
    rng, x, A = draw_point(program, sizes, seed)
    w, w2 = rng.standard_normal((2, sizes["m"]))
    value_dot, x_bar_dot = m.drf(x, A, w, np.zeros(sizes["n"]), w2)[1]
    assert_close(x_bar_dot, m.rf(x, A, w2)[1])
    assert_close(value_dot, np.zeros(sizes["m"]))


# ---- RD.7: D[D[f]]((a, b), (c, d)) = D[D[f]]((a, c), (b, d)) -----------------------------------

@scaled(0.15)
@given(SINGLES, size_values(), SEEDS)
def test_rd7_second_derivatives_are_symmetric(program, sizes, seed):
    m = compile_second_order(program.with_lines(
        "fn df = jvp(f, wrt = x);", "fn ddf = jvp(df, wrt = (x, x_dot));"))
    if m is None:
        return
    rng, a, A = draw_point(program, sizes, seed)
    b, c, d = rng.standard_normal((3, sizes["n"]))
    first = m.ddf(a, A, b, c, d)[1][1]
    second = m.ddf(a, A, c, b, d)[1][1]
    assert_close(first, second)


# ---- the adjoint law, and R gives D ------------------------------------------------------------

@scaled(0.15)
@given(SINGLES, size_values(), SEEDS)
def test_adjoint_law_forward_and_reverse_are_transposes(program, sizes, seed):
    _, m = compile_source(program.with_lines("fn df = jvp(f, wrt = x);",
                                             "fn rf = vjp(f, wrt = x);"))
    rng, x, A = draw_point(program, sizes, seed)
    v, w = rng.standard_normal(sizes["n"]), rng.standard_normal(sizes["m"])
    jv, jtw = m.df(x, A, v)[1], m.rf(x, A, w)[1]
    left, right = float(np.dot(jv, w)), float(np.dot(v, jtw))
    scale = 1.0 + float(np.abs(jv) @ np.abs(w))
    assert abs(left - right) <= 1e-9 * scale, (left, right)


@scaled(0.15)
@given(SINGLES, size_values(), SEEDS)
def test_reverse_of_reverse_gives_forward(program, sizes, seed):
    """D[f](a, v) = π1 R[R[f]]((a, 0), v): the cotangent of f_bar in vjp(rf)."""
    m = compile_second_order(program.with_lines(
        "fn rf = vjp(f, wrt = x);", "fn df = jvp(f, wrt = x);",
        "fn rrf = vjp(rf, wrt = (x, f_bar));"))
    if m is None:
        return
    rng, a, A = draw_point(program, sizes, seed)
    v = rng.standard_normal(sizes["n"])
    zero = np.zeros(sizes["m"])
    _, f_bar_bar = m.rrf(a, A, zero, (zero, v))[1]
    assert_close(f_bar_bar, m.df(a, A, v)[1])
