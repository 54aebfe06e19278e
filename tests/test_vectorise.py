"""vectorise: no Build/Map/Reduce left, UNF-type-correct, and the same values as
the per-element reference evaluator on the original function."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from catad.compiler import primitives as P
from catad.compiler.check import check_source
from catad.compiler.primitives import params
from catad.compiler.to_unary import to_unary
from catad.compiler.typed import SizeBinding
from catad.compiler.types import ArrayType, Dim, DType, TupleType, Type
from catad.compiler.unary import (Build, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                                  UFunction, Var, seq)
from catad.compiler.unary_check import check_function, check_term
from catad.compiler.unary_eval import evaluate
from catad.compiler.vectorise import BATCHING_RULES, monoid, shift_vars, vectorise

SIZES = {"n": 4, "m": 3, "k": 2, "d": 3, "t": 5}


# ---- helpers -------------------------------------------------------------------

def instructions(term: Term) -> list[Term]:
    """Every instruction of `term`, bodies included."""
    match term:
        case Seq(terms=terms):
            return [i for t in terms for i in instructions(t)]
        case If(then=then, orelse=orelse):
            return [term, *instructions(then), *instructions(orelse)]
        case Build(body=body) | Map(body=body) | Reduce(body=body) | Loop(body=body):
            return [term, *instructions(body)]
    return [term]


def random_value(t: Type, sizes: dict[str, int], rng: np.random.Generator, high: int = 2):
    if isinstance(t, TupleType):
        return tuple(random_value(x, sizes, rng, high) for x in t.items)
    shape = tuple(d.evaluate(sizes) for d in t.shape)
    if t.dtype is DType.BOOL:
        return rng.random(shape) < 0.5
    if t.dtype is DType.I64:
        return rng.integers(0, high, shape)
    return rng.normal(size=shape)


def assert_same(got, expected) -> None:
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
        return
    g, e = np.asarray(got), np.asarray(expected)
    assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def check_vectorised(fn: UFunction, sizes: dict[str, int], seeds=range(3), high: int = 2) -> UFunction:
    """Vectorise `fn`, check the output's form and type, and compare values."""
    out = vectorise(fn)
    left = [i for i in instructions(out.body) if isinstance(i, (Build, Map, Reduce))]
    assert not left, left
    check_function(out)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        args = [random_value(t, sizes, rng, high) for _, t in fn.params]
        with np.errstate(all="ignore"):
            expected = evaluate(fn, args)
            got = evaluate(out, args)
        assert_same(got, expected)
    return out


def compile_fn(source: str) -> UFunction:
    (fn,) = to_unary(check_source(source)).functions
    return fn


# ---- every batching rule, at every mix of argument levels ----------------------
#
# lanewise(prim) is `for i in 0..n { for j in 0..m { prim(a1', .., ak') } }` where
# ak' is ak (level 0), ak[i] (level 1) or ak[j] (level 2).

def f64(*shape: int) -> ArrayType:
    return ArrayType(DType.F64, tuple(Dim(s) for s in shape))


def i64(*shape: int) -> ArrayType:
    return ArrayType(DType.I64, tuple(Dim(s) for s in shape))


def boolean(*shape: int) -> ArrayType:
    return ArrayType(DType.BOOL, tuple(Dim(s) for s in shape))


AT = ("at",)

# (prim, params, lane argument types)
PRIM_CASES = [
    (P.BY_NAME["exp"], (), [f64(3)]),
    (P.NEG, (), [f64(2, 3)]),
    (P.ADD, (), [f64(3), f64(2, 3)]),
    (P.MUL, (), [f64(), f64(3)]),
    (P.POW, (), [f64(3), f64()]),
    (P.MAXIMUM, (), [f64(2, 1), f64(3)]),
    (P.LT, (), [f64(3), f64()]),
    (P.AND, (), [boolean(3), boolean(2, 3)]),
    (P.NOT, (), [boolean(3)]),
    (P.WHERE, (), [boolean(3), f64(2, 3), f64()]),
    (P.ASTYPE, params(dtype=DType.I64), [f64(3)]),
    (P.SUM, params(axes=(0,)), [f64(3, 2)]),
    (P.MEAN, params(axes=(1,)), [f64(3, 2)]),
    (P.PROD, params(axes=(0, 1)), [f64(3, 2)]),
    (P.MAX, params(axes=(1,)), [f64(3, 2)]),
    (P.MIN, params(axes=(0,)), [f64(3)]),
    (P.LOGSUMEXP, params(axes=(0,)), [f64(3, 2)]),
    (P.SOFTMAX, params(axis=1), [f64(2, 3)]),
    (P.CUMSUM, params(axis=0, reverse=False, exclusive=False), [f64(3, 2)]),
    (P.CUMPROD, params(axis=1, reverse=True, exclusive=True), [f64(2, 3)]),
    (P.MATMUL, (), [f64(3), f64(3, 2)]),
    (P.MATMUL, (), [f64(2, 3), f64(3)]),
    (P.MATMUL, (), [f64(3), f64(3)]),
    (P.MATMUL, (), [f64(2, 3), f64(3, 4)]),
    (P.MATMUL, (), [f64(2, 2, 3), f64(3, 4)]),
    (P.MATMUL, (), [f64(3), f64(2, 3, 4)]),
    (P.TRANSPOSE, params(perm=(1, 2, 0)), [f64(2, 3, 4)]),
    (P.EXPAND_DIMS, params(axis=1), [f64(2, 3)]),
    (P.BROADCAST_TO, params(shape=(Dim(2), Dim(3))), [f64(3)]),
    (P.BROADCAST_TO, params(shape=(Dim(2), Dim(3))), [f64(2, 1)]),
    (P.RESHAPE, params(shape=(Dim(3), Dim(2))), [f64(2, 3)]),
    (P.FULL, params(shape=(Dim(2), Dim(3))), [f64()]),
    (P.STACK, params(axis=1), [f64(3), f64(3)]),
    (P.CONCAT, params(axis=0), [f64(2, 3), f64(1, 3), f64(2, 3)]),
    (P.INDEX, params(spec=(AT,)), [f64(3), i64()]),
    (P.INDEX, params(spec=(("slice", Dim(1), Dim(3)), AT)), [f64(4, 3), i64()]),
    (P.INDEX, params(spec=(AT, ("slice", Dim(0), Dim(2)), AT)), [f64(2, 3, 2, 2), i64(), i64()]),
    (P.INDEX, params(spec=(("slice", Dim(1), Dim(3)),)), [f64(4, 3)]),
    (P.GATHER, params(clip=False), [f64(3, 2), i64(2)]),
    (P.GATHER, params(clip=False), [f64(3, 2, 2), i64(2), i64(3, 1)]),
    (P.INDEX_ADD, params(spec=(AT,)), [f64(3), f64(), i64()]),
    (P.INDEX_ADD, params(spec=(("slice", Dim(1), Dim(3)), AT)), [f64(4, 3), f64(2), i64()]),
    (P.INDEX_ADD, params(spec=(AT, ("slice", Dim(0), Dim(2)), AT)), [f64(2, 3, 2, 2), f64(2, 2), i64(), i64()]),
    (P.INDEX_ADD, params(spec=(("slice", Dim(1), Dim(3)),)), [f64(4, 3), f64(3)]),
    (P.GATHER_ADD, params(clip=False), [f64(3, 2), f64(2, 2), i64(2)]),
    (P.GATHER_ADD, params(clip=False), [f64(3, 2, 2), f64(2), i64(2), i64(3, 1)]),
]


def lanewise(prim, ps, lane_types, levels) -> UFunction:
    """The function described above; parameter k has `levels[k]` leading axes
    (n for level 1, m for level 2)."""
    n, m = Dim.of("n"), Dim.of("m")
    k = len(lane_types)
    types = [((n,) if lv == 1 else (m,) if lv == 2 else ()) for lv in levels]
    param_types = tuple(ArrayType(t.dtype, lead + t.shape) for t, lead in zip(lane_types, types))
    first = {lv: levels.index(lv) for lv in (2, 1) if lv in levels}
    sizes = tuple(SizeBinding(name, first[lv], 0) for name, lv in (("n", 1), ("m", 2)) if lv in first)
    if "n" not in {s.name for s in sizes}:
        param_types += (ArrayType(DType.F64, (n,)),)
        sizes += (SizeBinding("n", len(param_types) - 1, 0),)
    if "m" not in {s.name for s in sizes}:
        param_types += (ArrayType(DType.F64, (m,)),)
        sizes += (SizeBinding("m", len(param_types) - 1, 0),)
    height = len(param_types)  # i at height, j at height + 1
    parts: list[Term] = []
    for a, lv in enumerate(levels):
        if lv:
            parts += [Var(a), Var(height + lv - 1), Prim(P.INDEX, params(spec=(AT,)), 2), Drop(1, 2)]
        else:
            parts.append(Var(a))
    inner = seq(*parts, Prim(prim, ps, k), Drop(1, k))
    body = Build(Dim(0), n, Build(Dim(0), m, inner))
    result = check_term(body, param_types)[-1]
    return UFunction(f"lanewise_{prim.name}", tuple((f"a{i}", t) for i, t in enumerate(param_types)),
                     result, body, sizes)


@pytest.mark.parametrize("prim, ps, lane_types", PRIM_CASES,
                         ids=[f"{c[0].name}-{i}" for i, c in enumerate(PRIM_CASES)])
def test_every_mix_of_levels_agrees_with_the_reference(prim, ps, lane_types):
    for levels in itertools.product((0, 1, 2), repeat=len(lane_types)):
        fn = lanewise(prim, ps, lane_types, levels)
        check_vectorised(fn, {"n": 3, "m": 2}, seeds=range(2))


@pytest.mark.parametrize("prim, ps, lane_types", PRIM_CASES,
                         ids=[f"{c[0].name}-{i}" for i, c in enumerate(PRIM_CASES)])
def test_every_rule_agrees_under_a_batched_condition(prim, ps, lane_types):
    """`if i < j { prim(..) } else { prim(..) }`: the masked forms (clipped gathers)
    give the same values where the indices are in range."""
    for levels in itertools.product((0, 1, 2), repeat=len(lane_types)):
        fn = lanewise(prim, ps, lane_types, levels)
        outer = fn.body
        inner = outer.body.body
        height = len(fn.params)
        cond = seq(Var(height), Var(height + 1), Prim(P.LT, (), 2), Drop(1, 2))
        body = Build(Dim(0), outer.hi, Build(Dim(0), outer.body.hi,
                                             seq(cond, If(inner, inner), Drop(1, 1))))
        out = check_vectorised(dataclasses.replace(fn, body=body), {"n": 3, "m": 2}, seeds=range(1))
        assert any(isinstance(i, Prim) and i.prim is P.WHERE for i in instructions(out.body))


def test_the_batching_rules_cover_every_primitive():
    assert set(BATCHING_RULES) == set(P.ALL)


# ---- programs written as source ---------------------------------------------------

PROGRAMS = {
    "nested comprehension": """
        fn f(A: f64[n, m], x: f64[m]) -> f64[n, m] { for i in 0..n { for j in 0..m { A[i, j] * x[j] } } }""",
    "reductions of rows": """
        fn f(A: f64[n, m]) -> f64[n] {
            for i in 0..n { sum(A[i]) / (1.0 + max(A[i]) - min(A[i])) + mean(A[i] * A[i]) + logsumexp(A[i]) }
        }""",
    "reduction of a matrix per lane": """
        fn f(T: f64[n, m, k]) -> f64[n, k] { for i in 0..n { sum(T[i], axis = 0) + prod(T[i], axis = 0) } }""",
    "map2": """
        fn f(x: f64[n], y: f64[n]) -> f64[n] { map2(x, y, |a, b| a * b + 1.0) }""",
    "map with outer variables": """
        fn f(A: f64[n, m], w: f64[m], b: f64) -> f64[n] { map(A, |row| sum(row * w) + b) }""",
    "nested maps": """
        fn f(A: f64[n, m]) -> f64[n, m] { map(A, |row| map(row, |v| v * sum(row))) }""",
    "map inside a comprehension": """
        fn f(A: f64[k, n], x: f64[n]) -> f64[n, k] { for i in 0..n { map(A, |row| row[i] * x[i]) } }""",
    "vector @ matrix": """
        fn f(A: f64[n, k], B: f64[k, m]) -> f64[n, m] { for i in 0..n { A[i] @ B } }""",
    "matrix @ vector": """
        fn f(B: f64[m, k], X: f64[n, k]) -> f64[n, m] { for i in 0..n { B @ X[i] } }""",
    "vector @ vector": """
        fn f(A: f64[n, k], X: f64[n, k]) -> f64[n] { for i in 0..n { A[i] @ X[i] } }""",
    "matrix @ matrix": """
        fn f(T: f64[n, k, k], B: f64[k, m]) -> f64[n, k, m] { for i in 0..n { T[i] @ T[i] @ B } }""",
    "differences": """
        fn f(x: f64[n]) -> f64[n - 1] { for i in 0..n - 1 { x[i + 1] - x[i] } }""",
    "transpose by indexing": """
        fn f(A: f64[n, m]) -> f64[m, n] { for j in 0..m { for i in 0..n { A[i, j] } } }""",
    "slices": """
        fn f(A: f64[n, m]) -> f64[n - 1, m - 1] { for i in 0..n - 1 { A[i, :m - 1] + A[i + 1, 1:] } }""",
    "slice of a column": """
        fn f(A: f64[n, m]) -> f64[m, n - 1] { for j in 0..m { A[1:, j] } }""",
    "untaken branch indexes below 0": """
        fn f(x: f64[n]) -> f64[n] { for i in 0..n { if i > 0 { x[i - 1] } else { 0.0 } } }""",
    "untaken branch indexes past the end": """
        fn f(x: f64[n]) -> f64[n] { for i in 0..n { if i < n - 1 { x[i + 1] } else { x[i] } } }""",
    "batched condition on rows": """
        fn f(A: f64[n, m]) -> f64[n, m] { for i in 0..n { if sum(A[i]) > 0.0 { A[i] } else { -2.0 * A[i] } } }""",
    "diagonal": """
        fn f(A: f64[n, n]) -> f64[n, n] { for i in 0..n { for j in 0..n { if i == j { A[i, j] } else { 0.0 } } } }""",
    "unbatched condition in a comprehension": """
        fn f(x: f64[n]) -> f64[n] { for i in 0..n { if n > 2 { x[i] * 2.0 } else { 1.0 } } }""",
    "fold in a comprehension": """
        fn f(A: f64[n, m]) -> f64[n] { for i in 0..n { fold(0.0, A[i], |acc, v| acc * 0.5 + v) } }""",
    "scan in a comprehension": """
        fn f(A: f64[n, m]) -> f64[n, m] { for i in 0..n { scan(0.0, A[i], |acc, v| acc * 0.5 + v) } }""",
    "recurrent scan in a comprehension": """
        fn f(X: f64[n, t, d], W: f64[d, d]) -> f64[n, t, d] {
            for i in 0..n { scan(zeros(d), X[i], |h, x| tanh(h @ W + x)) }
        }""",
    "fold of a tuple in a comprehension": """
        fn f(A: f64[n, m]) -> f64[n] {
            for i in 0..n {
                let (s, p) = fold((0.0, 1.0), A[i], |acc, v| { let (s, p) = acc; (s + v, p * v) });
                s - p
            }
        }""",
    "fold over an unbatched sequence in a comprehension": """
        fn f(x: f64[n], y: f64[m]) -> f64[n] { for i in 0..n { fold(x[i], y, |acc, v| acc * v + 1.0) } }""",
    "comprehension in a fold": """
        fn f(x: f64[n], A: f64[m, n]) -> f64[n] { fold(x, A, |h, a| for j in 0..n { h[j] * a[j] + 1.0 }) }""",
    "reduce with +": """
        fn f(A: f64[n, m]) -> f64[n] { for i in 0..n { reduce(A[i], 0.0, |a, b| a + b) } }""",
    "reduce with + and a unit": """
        fn f(A: f64[n, m]) -> f64[n] { for i in 0..n { reduce(A[i], 1.5, |a, b| b + a) } }""",
    "reduce with maximum": """
        fn f(A: f64[n, m]) -> f64[n] { for i in 0..n { reduce(A[i], A[i, 0], |a, b| maximum(a, b)) } }""",
    "reduce with *": """
        fn f(x: f64[n]) -> f64 { reduce(x, 1.0, |a, b| a * b) }""",
    "reduce with a non-monoid body": """
        fn f(A: f64[n, m]) -> f64[n] { for i in 0..n { reduce(A[i], 0.0, |a, b| a + b * b) } }""",
    "softmax of rows": """
        fn f(A: f64[n, m]) -> f64[n, m] { for i in 0..n { softmax(A[i]) } }""",
    "integer comprehension": """
        fn f(x: f64[n], y: f64[m]) -> i64[n, m] { for i in 0..n { for j in 0..m { i * j + 1 } } }""",
    "constant comprehension": """
        fn f(x: f64[n]) -> f64[n, 2] { for i in 0..n { for j in 0..2 { 1.5 } } }""",
    "outer, stack and concat per lane": """
        fn f(A: f64[n, m], x: f64[m]) -> f64[n, m, m] {
            for i in 0..n { outer(A[i], x) * stack((A[i], x), axis = 1)[:, 1:] + concat((A[i], x), axis = 0)[1:m + 1] }
        }""",
    "where, casts and full per lane": """
        fn f(A: f64[n, m], x: f64[n]) -> f32[n, m] {
            for i in 0..n { f32(where(A[i] > 0.0, A[i], 0.0) + full(m, x[i])) }
        }""",
    "let in the else-branch of a batched condition": """
        fn f(x: f64[n]) -> f64[n] { for i in 0..n { if x[i] > 0.0 { x[i] } else { let y = x[i] * 2.0; y * y - 1.0 } } }""",
    "nested batched conditions": """
        fn f(A: f64[n, m]) -> f64[n, m] {
            for i in 0..n { for j in 0..m {
                if A[i, j] > 0.0 { if j > 0 { A[i, j - 1] } else { 1.0 } } else { let y = A[i, j] * 2.0; y * y }
            } }
        }""",
    "tuple-valued batched condition": """
        fn f(x: f64[n]) -> f64[n] {
            for i in 0..n { let (a, b) = if x[i] > 0.0 { (x[i], 1.0) } else { (0.0, x[i]) }; a - b }
        }""",
    "scan of a tuple in a comprehension": """
        fn f(A: f64[n, m]) -> f64[n, m] {
            for i in 0..n {
                let (s, p) = scan((0.0, 1.0), A[i], |acc, v| { let (s, p) = acc; (s + v, p * v) });
                s - p
            }
        }""",
    "reduce in a batched branch": """
        fn f(A: f64[n, m]) -> f64[n] {
            for i in 0..n { if A[i, 0] > 0.0 { reduce(A[i], 0.0, |a, b| a + b) } else { A[i, 1] } }
        }""",
    "untaken branch with an unbatched index out of range": """
        fn f(x: f64[n]) -> f64[n] { for i in 0..n { if i >= n { x[n] } else { x[i] } } }""",
    "fold whose state is batched after two steps": """
        fn f(A: f64[n, m]) -> f64[n] {
            for i in 0..n { let (a, b) = fold((0.0, 0.0), A[i], |acc, v| { let (a, b) = acc; (b, a + v) }); a * b }
        }""",
    "transpose per lane": """
        fn f(T: f64[n, m, k]) -> f64[n, k, m] { for i in 0..n { transpose(T[i]) } }""",
}

LOOPING = {"fold in a comprehension", "scan in a comprehension", "recurrent scan in a comprehension",
           "fold of a tuple in a comprehension", "fold over an unbatched sequence in a comprehension",
           "comprehension in a fold", "reduce with a non-monoid body",
           "scan of a tuple in a comprehension", "fold whose state is batched after two steps"}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_programs_agree_with_the_reference(name):
    fn = compile_fn(PROGRAMS[name])
    for sizes in (SIZES, {**SIZES, "n": 1}):
        out = check_vectorised(fn, sizes)
    has_loop = any(isinstance(i, Loop) for i in instructions(out.body))
    assert has_loop == (name in LOOPING)


def test_a_comprehension_needs_no_python_loop():
    out = vectorise(compile_fn(PROGRAMS["nested comprehension"]))
    kinds = {type(i) for i in instructions(out.body)}
    assert kinds <= {Var, Prim, Drop, Seq}
    prims = {i.prim for i in instructions(out.body) if isinstance(i, Prim)}
    assert prims == {P.ARANGE, P.RESHAPE, P.EXPAND_DIMS, P.GATHER, P.MUL}


def test_untaken_branches_gather_with_clipping():
    out = vectorise(compile_fn(PROGRAMS["untaken branch indexes below 0"]))
    gathers = [i for i in instructions(out.body) if isinstance(i, Prim) and i.prim is P.GATHER]
    assert gathers and all(dict(g.params)["clip"] for g in gathers)
    assert any(isinstance(i, Prim) and i.prim is P.WHERE for i in instructions(out.body))
    out = vectorise(compile_fn(PROGRAMS["differences"]))
    gathers = [i for i in instructions(out.body) if isinstance(i, Prim) and i.prim is P.GATHER]
    assert gathers and not any(dict(g.params)["clip"] for g in gathers)


def test_index_computed_from_data_in_a_comprehension():
    fn = compile_fn("fn f(x: f64[n], idx: i64[k]) -> f64[k] { for j in 0..k { x[idx[j]] } }")
    check_vectorised(fn, SIZES, high=SIZES["n"])


def test_reduce_of_bools_is_a_reduction_of_their_dtype():
    fn = compile_fn("fn f(A: f64[n, m]) -> bool[n] { for i in 0..n { reduce(A[i] > 0.0, false, |a, b| a or b) } }")
    out = check_vectorised(fn, SIZES, seeds=range(6))
    assert P.MAX in {i.prim for i in instructions(out.body) if isinstance(i, Prim)}


# ---- structure -----------------------------------------------------------------

def test_a_function_without_comprehensions_is_unchanged():
    fn = compile_fn("""
        fn f(x: f64[n], W: f64[n, n]) -> f64[n] {
            let y = W @ x;
            if sum(y) > 0.0 { fold(y, W, |h, w| tanh(h * w)) } else { y }
        }""")
    assert vectorise(fn) == fn


def test_hints_and_spans_stay_on_the_values_they_name():
    fn = compile_fn("fn f(A: f64[n, m]) -> f64[n] { for i in 0..n { let s = sum(A[i]); s * s } }")
    out = vectorise(fn)
    named = [i for i in instructions(out.body) if i.hint == "s"]
    assert len(named) == 1 and isinstance(named[0], Prim) and named[0].prim is P.SUM
    assert all(i.span.line == 1 for i in instructions(out.body) if not isinstance(i, Seq))


def test_monoid_bodies_are_recognised_in_either_order():
    acc = 5
    assert monoid(seq(Var(5), Var(6), Prim(P.ADD, (), 2), Drop(1, 2)), acc) is P.ADD
    assert monoid(seq(Var(6), Var(5), Prim(P.MAXIMUM, (), 2), Drop(1, 2)), acc) is P.MAXIMUM
    assert monoid(Prim(P.MUL, (), 2), acc) is P.MUL
    assert monoid(seq(Var(5), Var(5), Prim(P.ADD, (), 2), Drop(1, 2)), acc) is None    # acc + acc
    assert monoid(seq(Var(4), Var(6), Prim(P.ADD, (), 2), Drop(1, 2)), acc) is None    # outer + x
    assert monoid(seq(Var(5), Var(6), Prim(P.SUB, (), 2), Drop(1, 2)), acc) is None    # acc - x
    assert monoid(seq(Var(5), Var(6), Prim(P.ADD, (), 2)), acc) is None                # leaves 3
    add_then_add = seq(Var(5), Var(6), Prim(P.ADD, (), 2), Drop(1, 2), Var(6), Prim(P.ADD, (), 2),
                       Drop(1, 2))
    assert monoid(add_then_add, acc) is None                                           # acc + x + x


def test_shift_vars_moves_reads_above_a_position_only():
    term = seq(Var(1), Var(3), Build(Dim(0), Dim(2), seq(Var(4), Var(0))), Drop(1, 2),
               If(Var(2), Var(5)), Loop(Var(7), False))
    assert shift_vars(term, 3, 2) == seq(Var(1), Var(5), Build(Dim(0), Dim(2), seq(Var(6), Var(0))),
                                         Drop(1, 2), If(Var(2), Var(7)), Loop(Var(9), False))


def test_identity_units_of_sums_need_no_addition():
    out = vectorise(compile_fn(PROGRAMS["reduce with +"]))
    prims = [i.prim for i in instructions(out.body) if isinstance(i, Prim)]
    assert P.SUM in prims and P.ADD not in prims
    out = vectorise(compile_fn(PROGRAMS["reduce with + and a unit"]))
    prims = [i.prim for i in instructions(out.body) if isinstance(i, Prim)]
    assert P.SUM in prims and P.ADD in prims


def test_max_reduce_of_an_empty_array_gives_the_unit():
    fn = compile_fn("fn f(x: f64[n]) -> f64 { reduce(x[1:], -1.0 / 0.0, |a, b| maximum(a, b)) }")
    out = check_vectorised(fn, {"n": 1})
    assert evaluate(out, [np.array([3.0])]) == -math.inf


def test_comprehensions_of_tuples_are_tuples_of_arrays():
    """`ys = for i in 0..n { (x[i], 2.0) }; map(ys, |y| y.0 + y.1)` (hand-built UNF:
    the source language has no comprehensions of tuples, UNF does)."""
    n = Dim.of("n")
    item = seq(Var(0), Var(1), Prim(P.INDEX, params(spec=(AT,)), 2), Drop(1, 2),
               Prim(P.CONST, params(value=2.0, dtype=DType.F64), 0), Tuple(2))
    add_items = seq(Get(0), Var(2), Get(1), Drop(1, 1), Prim(P.ADD, (), 2), Drop(1, 2))
    body = seq(Build(Dim(0), n, item), Var(1), Map(1, add_items), Drop(1, 1), Var(1), Tuple(2),
               Drop(1, 1))
    params_ = (("x", ArrayType(DType.F64, (n,))),)
    result = check_term(body, (t for _, t in params_))[-1]
    fn = UFunction("f", params_, result, body, (SizeBinding("n", 0, 0),))
    check_vectorised(fn, {"n": 4})


def test_an_untaken_index_add_out_of_range_is_no_error():
    """`for i in 0..n { if i > 0 { index_add(x, 1.0, i - 1) } else { x } }`"""
    n = Dim.of("n")
    one = Prim(P.CONST, params(value=1, dtype=DType.I64), 0)
    cond = seq(Var(1), Prim(P.CONST, params(value=0, dtype=DType.I64), 0), Prim(P.GT, (), 2),
               Drop(1, 2))
    then = seq(Var(0), Prim(P.CONST, params(value=1.0, dtype=DType.F64), 0), Var(1), one,
               Prim(P.SUB, (), 2), Drop(1, 2), Prim(P.INDEX_ADD, params(spec=(AT,)), 3), Drop(1, 3))
    body = Build(Dim(0), n, seq(cond, If(then, Var(0)), Drop(1, 1)))
    x = ArrayType(DType.F64, (n,))
    fn = UFunction("f", (("x", x),), ArrayType(DType.F64, (n, n)), body, (SizeBinding("n", 0, 0),))
    out = check_vectorised(fn, {"n": 4})
    adds = [i for i in instructions(out.body) if isinstance(i, Prim) and i.prim is P.GATHER_ADD]
    assert adds and all(dict(a.params)["clip"] for a in adds)
