"""to_unary: the exact UNF shape of each typed construct, and its stack discipline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from catad.compiler.check import check_source
from catad.compiler.errors import Span
from catad.compiler.primitives import ADD, CONST, INDEX, LT, MUL, SIZE, SUM, ZEROS, params
from catad.compiler.to_unary import Env, substitute_params, to_unary, translate
from catad.compiler.typed import (SizeBinding, TCall, TConst, TFor, TFunction, TGet, TIf, TLambda,
                                  TLet, TLoop, TMap, TPrim, TProgram, TReduce, TSize, TTuple, TVar)
from catad.compiler.types import BOOL, F64, I64, ArrayType, DType, Dim, TupleType, scalar
from catad.compiler.unary import (Build, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                                  UProgram, Var)
from catad.compiler.unary_check import check_function
from catad.compiler.unary_eval import evaluate

n, k = Dim.of("n"), Dim.of("k")
VEC_N = ArrayType(DType.F64, (n,))
VEC_K = ArrayType(DType.F64, (k,))
LIT = scalar(DType.F64, weak=True)


def literal(value: float) -> Prim:
    return Prim(CONST, params(value=value, dtype=DType.F64), 0)


def add(a, b, t=F64, **kw):
    return TPrim(t, ADD, (), (a, b), **kw)


def mul(a, b, t=F64, **kw):
    return TPrim(t, MUL, (), (a, b), **kw)


def v(name, t=F64, **kw):
    return TVar(t, name, **kw)


def env_of(*names: str, program: TProgram = TProgram(())) -> Env:
    return Env(program, {}, 0).bind(*names)


def height_after(term: Term, height: int) -> int:
    """The stack height after `term` runs on `height` entries; asserts every read is in range."""
    match term:
        case Var(index=i):
            assert 0 <= i < height
            return height + 1
        case Prim(arity=a):
            assert a <= height
            return height + 1
        case Seq(terms=terms):
            for t in terms:
                height = height_after(t, height)
            return height
        case Tuple(n=count):
            assert count <= height
            return height - count + 1
        case Get():
            assert height >= 1
            return height + 1
        case Drop(keep=keep, count=count):
            assert keep + count <= height
            return height - count
        case If(then=then, orelse=orelse):
            assert height_after(then, height) == height_after(orelse, height) == height + 1
            return height + 1
        case Build(body=body):
            assert height_after(body, height + 1) == height + 2
            return height + 1
        case Map(n=count, body=body):
            assert height_after(body, height + count) == height + count + 1
            return height + 1
        case Reduce(body=body) | Loop(body=body):
            assert height_after(body, height + 2) == height + 3
            return height + 1
    raise AssertionError(term)


def test_variables_are_absolute_positions():
    assert translate(v("y"), env_of("x", "y")) == Var(1)
    assert translate(v("x"), env_of("x", "y").push(3)) == Var(0)


def test_binary_primitive():
    term = translate(add(v("x"), v("y")), env_of("x", "y"))
    assert term == Seq((Var(0), Var(1), Prim(ADD, (), 2), Drop(1, 2)))


def test_nested_primitives_shift_their_later_operands():
    # (x + y) * x in [x, y]: the second operand runs one entry higher, but x stays at 0
    term = translate(mul(add(v("x"), v("y")), v("x")), env_of("x", "y"))
    assert term == Seq((Var(0), Var(1), Prim(ADD, (), 2), Drop(1, 2), Var(0),
                        Prim(MUL, (), 2), Drop(1, 2)))
    assert height_after(term, 2) == 3


def test_nullary_primitive_has_no_drop():
    zeros = params(dtype=DType.F64, shape=(n,))
    assert translate(TPrim(VEC_N, ZEROS, zeros, ()), env_of()) == Prim(ZEROS, zeros, 0)


def test_constant_and_size():
    assert translate(TConst(LIT, 2.5), env_of("x")) == literal(2.5)
    strong = params(value=3, dtype=DType.I64, weak=False)
    assert translate(TConst(I64, 3), env_of("x")) == Prim(CONST, strong, 0)
    assert translate(TSize(I64, n + 1), env_of("x")) == Prim(SIZE, params(dim=n + 1), 0)


def test_tuple_and_projection():
    pair = TTuple(TupleType((F64, F64)), (v("x"), TConst(LIT, 1.0)))
    term = translate(TGet(F64, pair, 1), env_of("x"))
    assert term == Seq((Var(0), literal(1.0), Tuple(2), Get(1), Drop(1, 1)))
    assert height_after(term, 1) == 2


def test_empty_tuple():
    assert translate(TTuple(TupleType(()), ()), env_of()) == Tuple(0)


def test_let_binds_the_next_position_and_drops_it():
    # in [x]: let z = x * x; z + x
    expr = TLet(F64, ("z",), mul(v("x"), v("x")), add(v("z"), v("x")))
    term = translate(expr, env_of("x"))
    assert term == Seq((Var(0), Var(0), Prim(MUL, (), 2), Drop(1, 2),
                        Var(1), Var(0), Prim(ADD, (), 2), Drop(1, 2), Drop(1, 1)))
    assert term.terms[2].hint == "z"
    assert all(t.hint is None for i, t in enumerate(term.terms) if i != 2)


def test_let_of_a_variable_names_the_copy():
    term = translate(TLet(F64, ("z",), v("x"), v("z")), env_of("x"))
    assert term == Seq((Var(0), Var(1), Drop(1, 1)))
    assert term.terms[0].hint == "z" and term.terms[1].hint is None


def test_let_destructuring_pushes_each_item():
    # in [p]: let (a, b, c) = p; c * a   -- p at 0, tuple copy at 1, a, b, c at 2, 3, 4
    t3 = TupleType((F64, F64, F64))
    expr = TLet(F64, ("a", "b", "c"), v("p", t3), mul(v("c"), v("a")))
    term = translate(expr, env_of("p"))
    assert term == Seq((Var(0), Get(0), Var(1), Get(1), Drop(1, 1), Var(1), Get(2), Drop(1, 1),
                        Var(4), Var(2), Prim(MUL, (), 2), Drop(1, 2), Drop(1, 4)))
    assert [t.hint for t in term.terms if isinstance(t, Get)] == ["a", "b", "c"]
    assert height_after(term, 1) == 2


def test_hidden_names_are_not_hints():
    # let (a, (b, c)) = p, as the checker desugars it: a hidden %t1 for the inner tuple
    inner = TupleType((F64, F64))
    t3 = TupleType((F64, inner))
    expr = TLet(F64, ("a", "%t1"), v("p", t3),
                TLet(F64, ("b", "c"), v("%t1", inner), v("c")))
    term = translate(expr, env_of("p"))
    assert [t.hint for t in term.terms if isinstance(t, Get)] == ["a", None, "b", "c"]
    single = translate(TLet(F64, ("%t2",), v("x"), v("%t2")), env_of("x"))
    assert single.terms[0].hint is None


def test_if_branches_see_the_condition():
    cond = TPrim(BOOL, ADD, (), (v("b", BOOL), v("b", BOOL)))
    expr = TIf(F64, cond, v("x"), add(v("x"), v("x")))
    term = translate(expr, env_of("x", "b"))
    assert term == Seq((Var(1), Var(1), Prim(ADD, (), 2), Drop(1, 2),
                        If(Var(0), Seq((Var(0), Var(0), Prim(ADD, (), 2), Drop(1, 2)))),
                        Drop(1, 1)))
    assert height_after(term, 2) == 3


def test_for_binds_the_index_at_the_height():
    # in [a, x]: for i in 1..n { a[i] + x }
    index = params(spec=(("at",),))
    body = add(TPrim(F64, INDEX, index, (v("a", VEC_N), v("i", I64))), v("x"))
    term = translate(TFor(ArrayType(DType.F64, (n - 1,)), "i", Dim(1), n, body), env_of("a", "x"))
    assert term == Build(Dim(1), n, Seq((Var(0), Var(2), Prim(INDEX, index, 2), Drop(1, 2),
                                         Var(1), Prim(ADD, (), 2), Drop(1, 2))))
    assert height_after(term, 2) == 3


def test_map_binds_elements_above_the_arrays():
    # in [x, s]: map2(|p, q| p * q + s, x, x)
    fn = TLambda((("p", F64), ("q", F64)), add(mul(v("p"), v("q")), v("s")))
    term = translate(TMap(VEC_N, fn, (v("x", VEC_N), v("x", VEC_N))), env_of("x", "s"))
    body = Seq((Var(4), Var(5), Prim(MUL, (), 2), Drop(1, 2), Var(1), Prim(ADD, (), 2), Drop(1, 2)))
    assert term == Seq((Var(0), Var(0), Map(2, body), Drop(1, 2)))
    assert height_after(term, 2) == 3


def test_reduce_layout_is_array_unit_acc_x():
    fn = TLambda((("acc", F64), ("x", F64)), add(v("acc"), v("x")))
    term = translate(TReduce(F64, fn, TConst(LIT, 0.0), v("xs", VEC_N)), env_of("xs"))
    body = Seq((Var(3), Var(4), Prim(ADD, (), 2), Drop(1, 2)))
    assert term == Seq((Var(0), literal(0.0), Reduce(body), Drop(1, 2)))
    assert height_after(term, 1) == 2


@pytest.mark.parametrize("stacked", [False, True])
def test_loop_layout_is_init_xs_acc_x(stacked):
    fn = TLambda((("acc", F64), ("x", F64)), mul(v("acc"), v("x")))
    result = VEC_N if stacked else F64
    term = translate(TLoop(result, fn, v("s"), v("xs", VEC_N), stacked), env_of("xs", "s"))
    assert term == Seq((Var(1), Var(0), Loop(Seq((Var(4), Var(5), Prim(MUL, (), 2), Drop(1, 2))),
                                             stacked), Drop(1, 2)))


def test_nesting_let_inside_lambda_inside_for():
    # in [xs]: for i in 0..n { map(|e| let t = e * i; t + e, xs) }
    inner = TLet(F64, ("t",), mul(v("e"), v("i", I64)), add(v("t"), v("e")))
    comp = TFor(ArrayType(DType.F64, (n, n)), "i", Dim(0), n,
                TMap(VEC_N, TLambda((("e", F64),), inner), (v("xs", VEC_N),)))
    term = translate(comp, env_of("xs"))
    # [xs=0, i=1] ; map: [.., xs copy=2, e=3] ; let: t=4
    let = Seq((Var(3), Var(1), Prim(MUL, (), 2), Drop(1, 2),
               Var(4), Var(3), Prim(ADD, (), 2), Drop(1, 2), Drop(1, 1)))
    assert term == Build(Dim(0), n, Seq((Var(0), Map(1, let), Drop(1, 1))))
    assert height_after(term, 1) == 2


def test_lambda_parameters_shadow_outer_names():
    fn = TLambda((("x", F64),), v("x"))
    term = translate(TMap(VEC_N, fn, (v("x", VEC_N),)), env_of("x"))
    assert term == Seq((Var(0), Map(1, Var(2)), Drop(1, 1)))


def dot2() -> TFunction:
    # fn dot2(a: f64[k], b: f64[k]) -> f64 { let z = zeros(k) + a * b; sum(z) * k }
    zeros = TPrim(VEC_K, ZEROS, params(dtype=DType.F64, shape=(k,)), ())
    z = add(zeros, mul(v("a", VEC_K), v("b", VEC_K), VEC_K), VEC_K)
    total = TPrim(F64, SUM, params(axes=(0,)), (v("z", VEC_K),))
    body = TLet(F64, ("z",), z, mul(total, TSize(I64, k)))
    return TFunction("dot2", (("a", VEC_K), ("b", VEC_K)), F64, body, (SizeBinding("k", 0, 0),))


def test_call_is_inlined_with_sizes_substituted():
    # fn f(x: f64[n], s: f64) -> f64 { s + dot2(x, x) }, with k := n + 1 to see the substitution
    call = TCall(F64, "dot2", (v("x", VEC_N), v("x", VEC_N)), (("k", n + 1),))
    program = TProgram((dot2(),))
    term = translate(add(v("s"), call), env_of("x", "s", program=program))
    # [x=0, s=1, s copy=2, a=3, b=4, z=5]
    zeros = Prim(ZEROS, params(dtype=DType.F64, shape=(n + 1,)), 0)
    assert term == Seq((
        Var(1),
        Var(0), Var(0),
        zeros, Var(3), Var(4), Prim(MUL, (), 2), Drop(1, 2), Prim(ADD, (), 2), Drop(1, 2),
        Var(5), Prim(SUM, params(axes=(0,)), 1), Drop(1, 1),
        Prim(SIZE, params(dim=n + 1), 0), Prim(MUL, (), 2), Drop(1, 2), Drop(1, 1),
        Drop(1, 2),
        Prim(ADD, (), 2), Drop(1, 2)))
    assert [t.hint for t in term.terms[1:3]] == ["a", "b"]
    assert term.terms[8].hint == "z"
    assert height_after(term, 2) == 3


def test_nested_calls_compose_substitutions():
    # fn g(y: f64[m]) -> f64 { dot2(y, y) } (k := m), called from f with m := 2 * n
    m = Dim.of("m")
    vec_m = ArrayType(DType.F64, (m,))
    g = TFunction("g", (("y", vec_m),), F64,
                  TCall(F64, "dot2", (v("y", vec_m), v("y", vec_m)), (("k", m),)),
                  (SizeBinding("m", 0, 0),))
    program = TProgram((dot2(), g))
    call = TCall(F64, "g", (v("x", VEC_N),), (("m", n.scale(2)),))
    term = translate(call, env_of("x", program=program))
    sizes = [t.params for t in term.terms if isinstance(t, Prim) and t.prim in (ZEROS, SIZE)]
    assert sizes == [params(dtype=DType.F64, shape=(n.scale(2),)), params(dim=n.scale(2))]
    assert height_after(term, 1) == 2


def test_call_arguments_are_named_after_the_parameters():
    ident = TFunction("ident", (("a", F64),), F64, v("a"), ())
    program = TProgram((ident,))
    # ident(let w = x * x; w): the argument's value is the copy of w, which becomes `a`
    arg = TLet(F64, ("w",), mul(v("x"), v("x")), v("w"))
    term = translate(TCall(F64, "ident", (arg,), ()), env_of("x", program=program))
    assert term == Seq((Var(0), Var(0), Prim(MUL, (), 2), Drop(1, 2), Var(1), Drop(1, 1),
                        Var(1), Drop(1, 1)))
    assert [t.hint for t in term.terms] == [None, None, "w", None, "a", None, None, None]


def test_spans_follow_the_typed_nodes():
    where = Span(3, 7, 3, 12)
    term = translate(add(v("x", span=Span(3, 7)), v("x"), span=where), env_of("x"))
    assert term.terms[0].span == Span(3, 7)
    assert term.terms[2].span == where and term.terms[3].span == where


def test_substitute_params_walks_nested_tuples():
    spec = params(spec=(("slice", Dim(1), n), ("at",)), dtype=DType.F64, flag=True)
    out = substitute_params(spec, {"n": k + 2})
    assert out == params(spec=(("slice", Dim(1), k + 2), ("at",)), dtype=DType.F64, flag=True)
    assert substitute_params(spec, {}) == spec


def test_to_unary_keeps_the_signature():
    f = TFunction("f", (("x", VEC_N), ("s", F64)), VEC_N, add(v("x", VEC_N), v("s"), VEC_N),
                  (SizeBinding("n", 0, 0),), span=Span(1, 1))
    (uf,) = to_unary(TProgram((f,))).functions
    assert (uf.name, uf.params, uf.result, uf.sizes, uf.span) == (f.name, f.params, f.result,
                                                                  f.sizes, f.span)
    assert uf.body == Seq((Var(0), Var(1), Prim(ADD, (), 2), Drop(1, 2)))


# ---- end to end: source -> check -> to_unary, run by the UNF reference interpreter ----

RNG = np.random.default_rng(0)


def unary_program(source: str) -> UProgram:
    """The UNF of `source`, every function of which passes the UNF type checker."""
    program = to_unary(check_source(source))
    for fn in program.functions:
        check_function(fn)
    return program


def run(source: str, name: str, *args):
    return evaluate(unary_program(source).function(name), args)


def test_arithmetic_broadcasts():
    source = "fn f(X: f64[n, d], w: f64[d], b: f64) -> f64[n, d] { (X - 1.0) * w + b / 2.0 }"
    X, w = RNG.normal(size=(4, 3)), RNG.normal(size=3)
    np.testing.assert_allclose(run(source, "f", X, w, 0.5), (X - 1.0) * w + 0.5 / 2.0)


def test_lets_and_nested_destructuring():
    source = """
    fn f(x: f64[n], y: f64[n]) -> f64[n] {
        let s = x + y;
        let (a, (b, c)) = (s, (x * y, 3.0));
        let s = a * c;
        s - b
    }"""
    x, y = RNG.normal(size=5), RNG.normal(size=5)
    np.testing.assert_allclose(run(source, "f", x, y), (x + y) * 3.0 - x * y)


def test_tuple_result():
    source = """
    fn swap(p: (f64, f64)) -> (f64, f64) { let (a, b) = p; (b, a) }
    fn f(x: f64, y: f64) -> (f64, f64) { swap((x + y, x * y)) }"""
    assert run(source, "f", 2.0, 5.0) == (10.0, 7.0)


@pytest.mark.parametrize("x, y", [(3.0, 1.0), (1.0, 3.0)])
def test_if(x, y):
    source = """
    fn f(x: f64, y: f64) -> f64 {
        let d = x - y;
        if d > 0.0 { let e = d * 2.0; e + y } else if x == y { 0.0 } else { y * y }
    }"""
    expected = 2.0 * (x - y) + y if x > y else y * y
    assert run(source, "f", x, y) == pytest.approx(expected)


def test_for_comprehension_with_indexing():
    source = """
    fn diff(x: f64[n]) -> f64[n - 1] { for i in 0..n - 1 { x[i + 1] - x[i] } }
    fn scaled(A: f64[n, m], b: f64[m]) -> f64[n, m] {
        for i in 0..n { for j in 0..m { A[i, j] * b[j] + i } }
    }
    fn tail(x: f64[n]) -> f64[n - 2] { let t = x[1:]; t[:-1] * 2.0 }"""
    x, A, b = RNG.normal(size=6), RNG.normal(size=(3, 4)), RNG.normal(size=4)
    np.testing.assert_allclose(run(source, "diff", x), np.diff(x))
    np.testing.assert_allclose(run(source, "scaled", A, b), A * b + np.arange(3)[:, None])
    np.testing.assert_allclose(run(source, "tail", x), x[1:-1] * 2.0)


def test_map_and_map2():
    source = """
    fn f(x: f64[n], y: f64[n], s: f64) -> f64[n] {
        let sq = map(x, |e| e * e + s);
        map2(sq, y, |a, b| { let p = a * b; p - s })
    }
    fn rows(A: f64[n, d], w: f64[d]) -> f64[n] { map(A, |r| sum(r * w)) }"""
    x, y, A, w = RNG.normal(size=4), RNG.normal(size=4), RNG.normal(size=(3, 2)), RNG.normal(size=2)
    np.testing.assert_allclose(run(source, "f", x, y, 0.25), (x * x + 0.25) * y - 0.25)
    np.testing.assert_allclose(run(source, "rows", A, w), A @ w)


def test_reduce():
    source = """
    fn total(x: f64[n]) -> f64 { reduce(x, 0.0, |a, b| a + b) }
    fn colmax(A: f64[n, d]) -> f64[d] { reduce(A, A[0], |a, b| maximum(a, b)) }"""
    x, A = RNG.normal(size=7), RNG.normal(size=(5, 3))
    assert run(source, "total", x) == pytest.approx(x.sum())
    np.testing.assert_allclose(run(source, "colmax", A), A.max(axis=0))


def test_fold_and_scan():
    source = """
    fn decay(xs: f64[t], h: f64) -> f64 { fold(0.0, xs, |acc, x| acc * h + x) }
    fn running_sum(xs: f64[t, d]) -> f64[t, d] { scan(zeros(d), xs, |acc, x| acc + x) }
    fn both(xs: f64[t]) -> (f64, f64) {
        fold((0.0, 1.0), xs, |acc, x| { let (s, p) = acc; (s + x, p * x) })
    }"""
    xs, X = RNG.normal(size=5), RNG.normal(size=(4, 2))
    expected = 0.0
    for x in xs:
        expected = expected * 0.5 + x
    assert run(source, "decay", xs, 0.5) == pytest.approx(expected)
    np.testing.assert_allclose(run(source, "running_sum", X), np.cumsum(X, axis=0))
    s, p = run(source, "both", xs)
    assert (s, p) == (pytest.approx(xs.sum()), pytest.approx(xs.prod()))


def test_calls_between_functions_with_different_size_variables():
    source = """
    fn dot2(a: f64[k], b: f64[k]) -> f64 {
        let pairs = for i in 0..k { a[i] * b[i] };
        sum(pairs) / k
    }
    fn gram(X: f64[n, d]) -> f64[n, n] { for i in 0..n { for j in 0..n { dot2(X[i], X[j]) } } }
    fn f(x: f64[n], y: f64[m]) -> f64 {
        let head = x[:m];
        dot2(head, y) + dot2(zeros(2 * n), ones(2 * n)) + dot2(x, x)
    }"""
    X, x, y = RNG.normal(size=(3, 4)), RNG.normal(size=5), RNG.normal(size=2)
    np.testing.assert_allclose(run(source, "gram", X), X @ X.T / 4)
    assert run(source, "f", x, y) == pytest.approx(x[:2] @ y / 2 + x @ x / 5)


# ---- property: random scalar programs mean the same in UNF as in the typed core ----

POOL = ("a", "b", "c")  # few names, so lets shadow each other and the parameters


@st.composite
def scalar_exprs(draw, scope: tuple[str, ...], depth: int):
    """A typed f64 expression over the names in `scope`."""
    nodes = ["add", "mul", "let", "let2", "if", "get"] if depth else []
    kind = draw(st.sampled_from(["var", "const", *nodes]))

    def sub(names: tuple[str, ...] = scope):
        return draw(scalar_exprs(names, depth - 1))

    match kind:
        case "var":
            return v(draw(st.sampled_from(scope)))
        case "const":
            return TConst(LIT, draw(st.sampled_from([0.5, 1.0, 2.0, -3.0])))
        case "add":
            return add(sub(), sub())
        case "mul":
            return mul(sub(), sub())
        case "let":
            name = draw(st.sampled_from(POOL))
            return TLet(F64, (name,), sub(), sub(scope + (name,)))
        case "let2":
            names = tuple(draw(st.lists(st.sampled_from(POOL), min_size=2, max_size=2,
                                        unique=True)))
            pair = TTuple(TupleType((F64, F64)), (sub(), sub()))
            return TLet(F64, names, pair, sub(scope + names))
        case "if":
            return TIf(F64, TPrim(BOOL, LT, (), (sub(), sub())), sub(), sub())
        case "get":
            pair = TTuple(TupleType((F64, F64)), (sub(), sub()))
            return TGet(F64, pair, draw(st.sampled_from([0, 1])))
    raise AssertionError(kind)


def interpret(expr, env: dict[str, float]) -> float:
    """The typed core's meaning, for the constructs `scalar_exprs` makes."""
    match expr:
        case TVar(name=name):
            return env[name]
        case TConst(value=value):
            return value
        case TPrim(prim=prim, args=(x, y)):
            a, b = interpret(x, env), interpret(y, env)
            return {ADD: lambda: a + b, MUL: lambda: a * b, LT: lambda: a < b}[prim]()
        case TTuple(items=items):
            return tuple(interpret(item, env) for item in items)
        case TGet(tuple=tup, index=k):
            return interpret(tup, env)[k]
        case TLet(names=(name,), value=value, body=body):
            return interpret(body, {**env, name: interpret(value, env)})
        case TLet(names=names, value=value, body=body):
            return interpret(body, {**env, **dict(zip(names, interpret(value, env)))})
        case TIf(cond=cond, then=then, orelse=orelse):
            return interpret(then if interpret(cond, env) else orelse, env)
    raise AssertionError(expr)


@given(scalar_exprs(("x", "y"), 4), st.floats(-2, 2), st.floats(-2, 2))
def test_random_scalar_programs_agree_with_the_typed_core(body, x, y):
    fn = TFunction("f", (("x", F64), ("y", F64)), F64, body, ())
    (ufn,) = to_unary(TProgram((fn,))).functions
    check_function(ufn)
    assert height_after(ufn.body, 2) == 3
    np.testing.assert_allclose(evaluate(ufn, [x, y]), interpret(body, {"x": x, "y": y}), rtol=1e-12)
