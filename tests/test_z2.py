"""Derivatives over Z2 (addition xor, multiplication and), declared in catad source.

* on random multilinear circuits, the compiled vjp is the brute-force reverse
  derivative (bit i of R[f](x, dy) = parity((f(x) xor f(x xor e_i)) and dy))
  and the jvp the brute-force forward one;
* the reverse derivative category laws RD.1-RD.7 (REFERENCES.md §3), the
  adjoint law and D from R[R[f]] hold over Z2 on random circuits;
* parity and popcount_le, the primitives the paper's models need, against the
  brute force; `reduce` with xor becomes a whole-array parity;
* `hessian` is the brute-force second difference, row by row jvp(grad(f)), and
  is refused where jvp(grad(f)) is;
* bad input: mixing real and Z2 derivatives, a Z2 derivative through a count
  of bools, an `if` on the bools differentiated, are errors at the user's line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import catad
from catad.compiler import primitives as P
from catad.compiler.algebra import Z2
from catad.compiler.errors import CatadError, DerivativeError
from catad.compiler.forward import jvp_function
from catad.compiler.prim_types import result_type
from catad.compiler.primitives import params
from catad.compiler.reverse import vjp_function
from catad.compiler.types import ArrayType, Dim, DType
from catad.compiler.unary import Prim, Seq, UFunction, Var
from catad.compiler.unary_check import check_function
from catad.compiler.unary_eval import evaluate

# ---- random multilinear circuits ------------------------------------------------------
#
# A circuit is a list of `let`s over the bits x[0..n). Products (and, or, where's
# condition, all, any, popcount_le) only combine sub-circuits on disjoint sets of
# inputs, so no input is multiplied by itself: the polynomial the circuit computes is
# multilinear, and its reverse derivative is that of the Boolean function.

LINEAR = ("xor", "not", "eq", "ne", "parity", "reduce")
PRODUCTS = ("and", "or", "where", "all", "any", "popcount_le")
# the ops whose Z2 derivatives are circuits of these ops again (min/max of bools and
# popcount_le have derivatives that count bools: they are not differentiated twice)
TWICE = LINEAR + ("and", "or", "where")


@dataclass(frozen=True)
class Circuit:
    inputs: int
    outputs: int
    lets: tuple[str, ...]
    results: tuple[str, ...]

    def source(self, name: str, param: str = "x") -> str:
        body = "".join(f"    {line.replace('x[', param + '[')}\n" for line in self.lets)
        results = ", ".join(r.replace("x[", param + "[") for r in self.results)
        out = f"stack(({results}, false))[:{self.outputs}]" if self.outputs == 1 else f"stack(({results}))"
        return (f"fn {name}({param}: bool[{self.inputs}]) -> bool[{self.outputs}] {{\n"
                f"{body}    {out}\n}}\n")


@st.composite
def circuits(draw, inputs: int | None = None, outputs: int | None = None,
             ops: tuple[str, ...] = LINEAR + PRODUCTS) -> Circuit:
    n = inputs or draw(st.integers(2, 5))
    m = outputs or draw(st.integers(1, 3))
    nodes = [(f"x[{i}]", frozenset({i})) for i in range(n)] + [("true", frozenset()),
                                                                ("false", frozenset())]

    def pick(avoid: frozenset = frozenset()) -> tuple[str, frozenset]:
        free = [node for node in nodes if not node[1] & avoid]  # the constants always are
        return draw(st.sampled_from(free))

    def disjoint(k: int) -> list[tuple[str, frozenset]]:
        used, picked = frozenset(), []
        for _ in range(k):
            picked.append(pick(used))
            used |= picked[-1][1]
        return picked

    lets = []
    for j in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(ops))
        operands = [pick() for _ in range(3)] if op in LINEAR else disjoint(3)
        a, b, c = (name for name, _ in operands)
        scale = draw(st.integers(0, 2))
        expr = {"xor": f"({a} xor {b})", "not": f"(not {a})", "eq": f"({a} == {b})",
                "ne": f"({a} != {b})", "parity": f"parity(stack(({a}, {b}, {c})))",
                "reduce": f"reduce(stack(({a}, {b})), {c}, |p, q| p xor q)",
                "and": f"({a} and {b})", "or": f"({a} or {b})", "where": f"where({a}, {b}, {c})",
                "all": f"min(stack(({a}, {b}, {c})))", "any": f"max(stack(({a}, {b}, {c})))",
                "popcount_le": f"popcount_le(stack(({a}, {b})), stack(({c}, false)), "
                               f"scale = {scale})"}[op]
        lets.append(f"let v{j} = {expr};")
        nodes.append((f"v{j}", frozenset().union(*(support for _, support in operands))))
    results = tuple(draw(st.sampled_from(nodes))[0] for _ in range(m))
    return Circuit(n, m, tuple(lets), results)


# each example compiles a program: fewer of them than the profile's default
COMPILES = max(10, settings.default.max_examples * 2 // 5)


def bits(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 2, shape).astype(bool)


def every_input(n: int) -> np.ndarray:
    return (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1 == 1


def partials(f, x: np.ndarray) -> np.ndarray:
    """[i, j]: f(x)_j xor f(x xor e_i)_j, the derivative of output j in input i."""
    base = np.asarray(f(x))
    return np.stack([base ^ np.asarray(f(x ^ (np.arange(len(x)) == i))) for i in range(len(x))])


# ---- the brute force -------------------------------------------------------------------

@settings(max_examples=COMPILES)
@given(circuits(), st.integers(0, 2 ** 32 - 1))
def test_vjp_and_jvp_are_the_brute_force_derivatives(circuit, seed):
    m = catad.compile(circuit.source("f") + "fn f_vjp = vjp(f, wrt = x);\n"
                      "fn f_jvp = jvp(f, wrt = x);\n")
    rng = np.random.default_rng(seed)
    for x in every_input(circuit.inputs):
        jac = partials(m.f, x)
        dy, v = bits(rng, circuit.outputs), bits(rng, circuit.inputs)
        value, x_bar = m.f_vjp(x, dy)
        np.testing.assert_array_equal(value, m.f(x))
        assert x_bar.dtype == np.bool_
        np.testing.assert_array_equal(x_bar, np.sum(jac & dy, axis=1) % 2 == 1)
        _, x_dot = m.f_jvp(x, v)
        np.testing.assert_array_equal(x_dot, np.sum(jac & v[:, None], axis=0) % 2 == 1)


def test_a_circuit_that_squares_an_input_is_not_its_function():
    """x and x is the function x, but the polynomial x·x has derivative 2x = 0: the
    composed derivative is that of the circuit (Wilson & Zanasi's "safe" caveat)."""
    m = catad.compile("fn f(x: bool) -> bool { x and x }\nfn f_vjp = vjp(f, wrt = x);\n")
    assert not m.f_vjp(True, True)[1]
    assert m.f(True) ^ m.f(False)  # while flipping x does change f


# ---- the laws of reverse derivative categories, over Z2 --------------------------------

LAWS = """
fn sum_fg(x: bool[{n}]) -> bool[{m}] {{ f(x) xor g(x) }}
fn zero(x: bool[{n}]) -> bool[{m}] {{ f(x) and false }}
fn ident(x: bool[{n}]) -> bool[{n}] {{ x }}
fn first(x: bool[{n}], y: bool[{m}]) -> bool[{n}] {{ x }}
fn second(x: bool[{n}], y: bool[{m}]) -> bool[{m}] {{ y }}
fn pair(x: bool[{n}]) -> (bool[{m}], bool[{m}]) {{ (f(x), g(x)) }}
fn chain(x: bool[{n}]) -> bool[{q}] {{ k(f(x)) }}
fn f_r = vjp(f, wrt = x);
fn g_r = vjp(g, wrt = x);
fn k_r = vjp(k, wrt = y);
fn sum_fg_r = vjp(sum_fg, wrt = x);
fn zero_r = vjp(zero, wrt = x);
fn ident_r = vjp(ident, wrt = x);
fn first_r = vjp(first, wrt = (x, y));
fn second_r = vjp(second, wrt = (x, y));
fn pair_r = vjp(pair, wrt = x);
fn chain_r = vjp(chain, wrt = x);
fn f_r_d = jvp(f_r, wrt = f_bar);
fn f_r_r = vjp(f_r, wrt = f_bar);
fn f_d = jvp(f, wrt = x);
fn e_d = jvp(e, wrt = x);
fn e_d_d = jvp(e_d, wrt = (x, x_dot));
"""


@settings(max_examples=COMPILES)
@given(st.data(), st.integers(2, 4), st.integers(1, 3), st.integers(1, 2),
       st.integers(0, 2 ** 32 - 1))
def test_reverse_derivative_laws_hold_over_z2(data, n, m, q, seed):
    f = data.draw(circuits(n, m))
    g = data.draw(circuits(n, m))
    k = data.draw(circuits(m, q))
    e = data.draw(circuits(n, m, TWICE))
    mod = catad.compile(f.source("f") + g.source("g") + k.source("k", "y") + e.source("e")
                        + LAWS.format(n=n, m=m, q=q))
    rng = np.random.default_rng(seed)
    x, v, c = bits(rng, n), bits(rng, n), bits(rng, n)
    w, w2, u = bits(rng, m), bits(rng, m), bits(rng, q)
    R = lambda fn, *args: fn(*args)[1]  # noqa: E731 - the cotangents of a vjp

    # RD.1: R[f + g] = R[f] + R[g]; R[0] = 0
    np.testing.assert_array_equal(R(mod.sum_fg_r, x, w), R(mod.f_r, x, w) ^ R(mod.g_r, x, w))
    assert not R(mod.zero_r, x, w).any()
    # RD.2: R[f](x, ·) is linear
    np.testing.assert_array_equal(R(mod.f_r, x, w ^ w2), R(mod.f_r, x, w) ^ R(mod.f_r, x, w2))
    assert not R(mod.f_r, x, np.zeros(m, bool)).any()
    # RD.3: R[id](x, w) = w; R[π0]((x, y), w) = (w, 0); R[π1]((x, y), w) = (0, w)
    np.testing.assert_array_equal(R(mod.ident_r, x, v), v)
    x_bar, y_bar = R(mod.first_r, x, w, c)
    np.testing.assert_array_equal(x_bar, c)
    assert not y_bar.any()
    x_bar, y_bar = R(mod.second_r, x, w2, w)
    assert not x_bar.any()
    np.testing.assert_array_equal(y_bar, w)
    # RD.4: R[<f, g>](x, (w1, w2)) = R[f](x, w1) + R[g](x, w2)
    np.testing.assert_array_equal(R(mod.pair_r, x, (w, w2)), R(mod.f_r, x, w) ^ R(mod.g_r, x, w2))
    # RD.5: R[k ∘ f](x, u) = R[f](x, R[k](f(x), u))
    np.testing.assert_array_equal(R(mod.chain_r, x, u), R(mod.f_r, x, R(mod.k_r, mod.f(x), u)))
    # RD.6: D[R[f]]((x, w), (0, w2)) = R[f](x, w2)
    _, (_, x_bar_dot) = mod.f_r_d(x, w, w2)
    np.testing.assert_array_equal(x_bar_dot, R(mod.f_r, x, w2))
    # RD.7: D[D[e]]((x, v), (c, w)) = D[D[e]]((x, c), (v, w))  (here w: an input tangent)
    w_in = bits(rng, n)
    _, (_, second_vc) = mod.e_d_d(x, v, c, w_in)
    _, (_, second_cv) = mod.e_d_d(x, c, v, w_in)
    np.testing.assert_array_equal(second_vc, second_cv)
    # the adjoint law <D[f](x) v, w> = <v, R[f](x) w>, and D[f](x, v) = π R[R[f]]((x, 0), v)
    d_f = mod.f_d(x, v)[1]
    assert np.sum(d_f & w) % 2 == np.sum(v & R(mod.f_r, x, w)) % 2
    no_value_bar = np.zeros(m, bool)  # f_r returns (f(x), R[f](x, w)): cotangent of the second
    np.testing.assert_array_equal(R(mod.f_r_r, x, no_value_bar, (no_value_bar, v)), d_f)


# ---- the primitives the paper's models need ---------------------------------------------

def _one_primitive(prim, ps, *types: ArrayType) -> UFunction:
    n = len(types)
    body = Seq((*(Var(i) for i in range(n)), Prim(prim, ps, n)))
    return UFunction("f", tuple((f"x{i}", t) for i, t in enumerate(types)),
                     result_type(prim, ps, types), body, ())


def b8(*shape: int) -> ArrayType:
    return ArrayType(DType.BOOL, tuple(Dim(s) for s in shape))


I64 = ArrayType(DType.I64)


@pytest.mark.parametrize("prim, ps, types", [
    (P.PARITY, params(axes=(1,)), (b8(3, 4),)),
    (P.PARITY, params(axes=(0, 2)), (b8(2, 3, 2),)),
    (P.POPCOUNT_LE, params(scale=3), (b8(6), b8(5))),
    (P.POPCOUNT_LE, params(scale=1), (b8(3, 4), b8(4))),
    (P.POPCOUNT_LE, params(scale=0), (b8(2, 1, 3), b8(3, 2))),
    (P.POPCOUNT_LE, params(scale=2), (b8(3), b8(2, 3))),
    (P.INDEX_ADD, params(spec=(("at",), ("slice", Dim(1), Dim(3)))), (b8(4, 3), b8(2), I64)),
    (P.INDEX_ADD, params(spec=(("slice", Dim(0), Dim(2)),)), (b8(3, 2), b8(1, 2))),
], ids=str)
def test_primitive_derivatives_are_the_brute_force_ones(prim, ps, types):
    """(index_add of bools, an OR into its region, appears in second derivatives.)"""
    fn = _one_primitive(prim, ps, *types)
    wrt = tuple(k for k, t in enumerate(types) if t.dtype is DType.BOOL)
    vf = vjp_function(fn, wrt, "r", algebra=Z2, cotangent_param=True)
    jf = jvp_function(fn, wrt, "d", Z2)
    check_function(vf)
    check_function(jf)
    rng = np.random.default_rng(7)
    for _ in range(20):
        xs = [bits(rng, *(d.const for d in t.shape)) if t.dtype is DType.BOOL else np.int64(2)
              for t in types]
        out = np.asarray(evaluate(fn, xs))
        dy = bits(rng, *out.shape)
        vs = [bits(rng, *xs[k].shape) for k in wrt]
        _, grads = evaluate(vf, [*xs, dy])
        grads = grads if len(wrt) > 1 else (grads,)
        _, tangent = evaluate(jf, [*xs, *vs])
        want_tangent = np.zeros(out.shape, bool)
        for k, g, v in zip(wrt, grads, vs):
            x = xs[k]
            for i in np.ndindex(x.shape):
                moved = list(xs)
                moved[k] = x.copy()
                moved[k][i] ^= True
                partial = out ^ np.asarray(evaluate(fn, moved))
                assert g[i] == (np.sum(partial & dy) % 2 == 1)
                want_tangent ^= partial & v[i]
        np.testing.assert_array_equal(tangent, want_tangent)


def test_popcount_le_and_parity_in_source():
    m = catad.compile("fn f(a: bool[n, 5], b: bool[3]) -> bool[n] { popcount_le(a, b, scale = 2) }\n"
                      "fn g(a: bool[n, 5]) -> bool[5] { parity(a, axis = 0) }\n"
                      "fn h(a: bool[4]) -> bool { parity(a) }\n")
    rng = np.random.default_rng(1)
    a, b = bits(rng, 6, 5), bits(rng, 3)
    np.testing.assert_array_equal(m.f(a, b), 2 * a.sum(1) <= b.sum())
    np.testing.assert_array_equal(m.g(a), a.sum(0) % 2 == 1)
    assert m.h(a[0, :4]) == (a[0, :4].sum() % 2 == 1)


def test_popcount_le_and_parity_in_comprehensions():
    """Batched and unbatched arguments of different ranks: the counted axis stays last."""
    source = """
fn f(A: bool[n, 5], B: bool[m, 3]) -> bool[n, m] {
    for i in 0..n { for j in 0..m { popcount_le(A[i], B[j], scale = 1) } }
}
fn g(A: bool[n, 2, 5], b: bool[3]) -> bool[n, 2] { for i in 0..n { popcount_le(A[i], b, scale = 2) } }
fn h(a: bool[5], B: bool[n, 2, 3]) -> bool[n, 2] { for i in 0..n { popcount_le(a, B[i]) } }
fn k(A: bool[n, 2, 5]) -> bool[n, 5] { for i in 0..n { parity(A[i], axis = 0) } }
"""
    m, stages = catad.compile(source), catad.stages(source)
    rng = np.random.default_rng(3)
    A, B, A3, B3, a, b = bits(rng, 4, 5), bits(rng, 3, 3), bits(rng, 4, 2, 5), bits(rng, 4, 2, 3), \
        bits(rng, 5), bits(rng, 3)
    count = lambda x: np.sum(x, axis=-1)  # noqa: E731
    cases = {"f": ((A, B), count(A)[:, None] <= count(B)[None, :]),
             "g": ((A3, b), 2 * count(A3) <= count(b)),
             "h": ((a, B3), count(a) <= count(B3)),
             "k": ((A3,), np.sum(A3, axis=1) % 2 == 1)}
    for name, (args, want) in cases.items():
        np.testing.assert_array_equal(getattr(m, name)(*args), want)
        np.testing.assert_array_equal(evaluate(stages.unary.function(name), list(args)), want)


@pytest.mark.parametrize("unit, length", [("false", "n"), ("true", "n"), ("u", "n"), ("false", "0")])
def test_reduce_with_xor_becomes_parity(unit, length):
    """A whole-array parity, combined with the unit; also inside a comprehension."""
    source = (f"fn f(x: bool[{length}], u: bool) -> bool {{ reduce(x, {unit}, |a, b| a xor b) }}\n"
              f"fn g(x: bool[{length}, 3], u: bool) -> bool[3] {{\n"
              f"    for j in 0..3 {{ reduce(for i in 0..{length} {{ x[i, j] }}, {unit}, |a, b| b xor a) }}\n"
              f"}}\n")
    for fn in catad.stages(source).vectorised.functions:
        terms = _flat(fn.body)
        assert P.PARITY in [t.prim for t in terms if isinstance(t, Prim)]
        assert not any(type(t).__name__ == "Loop" for t in terms)
    m = catad.compile(source)
    rng = np.random.default_rng(2)
    x, u = bits(rng, 0 if length == "0" else 5, 3), bool(rng.integers(2))
    start = {"false": False, "true": True, "u": u}[unit]
    assert m.f(x[:, 0], u) == (np.sum(x[:, 0]) % 2 == 1) ^ start
    np.testing.assert_array_equal(m.g(x, u), (np.sum(x, axis=0) % 2 == 1) ^ start)


def _flat(term):
    return [t for s in term.terms for t in _flat(s)] if isinstance(term, Seq) else [term]


# ---- declarations and bad input ------------------------------------------------------------

def test_bool_parameters_choose_z2_by_default():
    m = catad.compile("fn f(p: bool[3], k: i64) -> bool { parity(p) xor (k > 2) }\n"
                      "fn f_vjp = vjp(f);\n")
    _, p_bar = m.f_vjp(np.array([True, False, True]), 1, True)
    np.testing.assert_array_equal(p_bar, [True, True, True])


BAD = [
    ("fn f(w: f64[d], p: bool[d]) -> f64 { sum(where(p, w, 0.0)) }\n"
     "fn g = grad(f, wrt = (w, p));", 2, "mixes real (w) and bool (p) parameters"),
    ("fn f(w: f64[d], p: bool[d]) -> f64 { sum(where(p, w * w, 0.0)) }\n"
     "fn g = jvp(grad(f, wrt = w), wrt = p);", 2, "jvp over Z2 of grad over reals"),
    ("fn f(p: bool[d], x: bool[d]) -> bool {\n    let hits = sum(p and x);\n"
     "    4 * hits <= sum(p)\n}\nfn g = vjp(f, wrt = p);", 3,
     "this comparison makes a bool from `sum` (a count of bools)"),
    ("fn f(p: bool[d]) -> bool[d] { i64(p) > 0 }\nfn g = vjp(f, wrt = p);", 1,
     "makes a bool from a cast to a number"),
    ("fn f(p: bool[d], t: bool[4]) -> bool { t[sum(p) % 4] }\nfn g = vjp(f, wrt = p);", 1,
     "this `index` makes a bool from `sum`"),
    ("fn f(p: bool[d], q: bool) -> bool[d] {\n    if q { p } else { not p }\n}\n"
     "fn g = vjp(f, wrt = (p, q));", 2, "the condition of this `if` depends on the bools"),
    ("fn f(p: bool[d]) -> i64 { sum(p) }\nfn g = vjp(f, wrt = p);", 1, "the result is i64"),
    ("fn f(a: bool[n, d], b: bool[d]) -> bool[n] { a @ b }\nfn g = vjp(f, wrt = a);", 1,
     "matmul has no Z2 derivative"),
]


@pytest.mark.parametrize("source, line, words", BAD, ids=[b[2] for b in BAD])
def test_bad_z2_derivatives_are_errors_at_the_users_line(source, line, words):
    with pytest.raises(DerivativeError) as info:
        catad.compile(source)
    assert words in info.value.message
    assert info.value.span.line == line
    assert isinstance(info.value, CatadError)


@pytest.mark.parametrize("body", ["min(x)", "popcount_le(x, x[:2], scale = 1)"])
def test_second_derivatives_through_counts_are_refused(body):
    source = (f"fn f(x: bool[3]) -> bool {{ {body} }}\nfn f_d = jvp(f, wrt = x);\n"
              "fn f_r_d = jvp(vjp(f, wrt = x), wrt = f_bar);\n"  # linear in f_bar: fine
              "fn f_d_d = jvp(f_d, wrt = (x, x_dot));\n")
    with pytest.raises(DerivativeError) as info:
        catad.compile(source)
    assert info.value.span.line == 4 and "counts bools" in info.value.message


def test_a_count_that_is_not_differentiated_is_fine():
    """Counting bools that do not depend on the parameters differentiated is no error."""
    m = catad.compile("fn f(p: bool[d], x: bool[d]) -> bool { p[0] and (sum(x) > 1) }\n"
                      "fn g = vjp(f, wrt = p);")
    _, p_bar = m.g(np.array([False, True]), np.array([True, True]), True)
    np.testing.assert_array_equal(p_bar, [True, False])


# ---- Hessians over Z2 -------------------------------------------------------------------------

@settings(max_examples=max(5, COMPILES // 2))
@given(circuits(outputs=1, ops=TWICE), st.integers(0, 2 ** 32 - 1))
def test_the_hessian_is_the_brute_force_second_derivative(circuit, seed):
    """Over Z2 the second difference f(x) + f(x+e_i) + f(x+e_j) + f(x+e_i+e_j) of a
    multilinear f is its mixed second derivative, and the diagonal is zero (no input is
    squared); hessian(s) is that matrix and jvp(grad(s)) each of its rows."""
    source = (circuit.source("c") + f"fn s(x: bool[{circuit.inputs}]) -> bool {{ c(x)[0] }}\n"
              "fn s_h = hessian(s, wrt = x);\nfn s_hvp = jvp(grad(s, wrt = x), wrt = x);\n")
    m = catad.compile(source)
    n = circuit.inputs
    x = bits(np.random.default_rng(seed), n)
    e = np.eye(n, dtype=bool)
    brute = np.array([[m.s(x) ^ m.s(x ^ e[i]) ^ m.s(x ^ e[j]) ^ m.s(x ^ e[i] ^ e[j]) if i != j
                       else False for j in range(n)] for i in range(n)])
    hessian = m.s_h(x)
    assert hessian.dtype == np.bool_
    np.testing.assert_array_equal(hessian, brute)
    for i in range(n):
        np.testing.assert_array_equal(m.s_hvp(x, e[i])[1], hessian[i])


def test_a_hessian_over_z2_with_respect_to_a_scalar():
    m = catad.compile("fn f(a: bool, b: bool[2]) -> bool { (a and b[0]) xor b[1] }\n"
                      "fn f_h = hessian(f, wrt = b);\nfn f_ha = hessian(f, wrt = a);\n")
    np.testing.assert_array_equal(m.f_h(True, np.array([True, False])), np.zeros((2, 2), bool))
    assert m.f_ha(True, np.array([True, True])) == np.False_


def test_a_hessian_over_z2_through_a_count_is_refused_like_jvp_of_grad():
    for decl in ("fn g = hessian(f, wrt = x);", "fn g = jvp(grad(f, wrt = x), wrt = x);"):
        with pytest.raises(DerivativeError) as info:
            catad.compile(f"fn f(x: bool[3]) -> bool {{ max(x) }}\n{decl}\n")
        assert info.value.span.line == 2 and "counts bools" in info.value.message
