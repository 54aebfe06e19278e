"""Common-subexpression elimination on unary form (compiler/unary_cse.py): each
distinct subexpression computed once, the meaning and the type unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import catad
from catad.compiler import primitives as P
from catad.compiler.check import check_source
from catad.compiler.cost import function_cost
from catad.compiler.primitives import params
from catad.compiler.to_unary import to_unary
from catad.compiler.typed import SizeBinding
from catad.compiler.types import ArrayType, Dim, DType, TupleType
from catad.compiler.unary import (Build, Custom, Drop, If, Loop, Map, Prim, Reduce, Seq, Term,
                                  Tuple, Get, UFunction, Var, seq)
from catad.compiler.unary_check import check_function
from catad.compiler.unary_cse import share_subexpressions
from catad.compiler.unary_eval import evaluate
from catad.compiler.vectorise import vectorise, vectorise_program

from program_strategy import programs, scaled, size_values

F64_N = ArrayType(DType.F64, (Dim.of("n"),))
SIZES = {"n": 3, "m": 4}


def instructions(term: Term) -> list[Term]:
    """Every instruction of `term`, bodies included."""
    match term:
        case Seq(terms=terms):
            return [i for t in terms for i in instructions(t)]
        case If(then=then, orelse=orelse):
            return [term, *instructions(then), *instructions(orelse)]
        case Build(body=body) | Map(body=body) | Reduce(body=body) | Loop(body=body) | Custom(body=body):
            return [term, *instructions(body)]
    return [term]


def prims(fn: UFunction, prim: P.Primitive) -> int:
    """How many times `fn` applies `prim`, bodies included."""
    return sum(1 for i in instructions(fn.body) if isinstance(i, Prim) and i.prim is prim)


def vectorised(source: str, name: str = "f") -> UFunction:
    return vectorise(to_unary(check_source(source)).function(name))


def shared(fn: UFunction, sizes=SIZES, seeds=range(3)) -> UFunction:
    """`share_subexpressions(fn)`, checked: UNF-typed, and equal in value to `fn`."""
    out = share_subexpressions(fn)
    check_function(out)
    assert out.params == fn.params and out.result == fn.result
    for seed in seeds:
        rng = np.random.default_rng(seed)
        args = [rng.uniform(-1, 1, tuple(d.evaluate(sizes) for d in t.shape)) for _, t in fn.params]
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(evaluate(out, args), evaluate(fn, args))
    return out


# ---- what is shared ------------------------------------------------------------------

def test_a_product_written_twice_is_computed_once():
    fn = vectorised("fn f(x: f64[n], A: f64[n, n]) -> f64 {\n"
                    "    sin(dot(x, A @ x)) * cos(dot(x, A @ x))\n}\n")
    assert prims(fn, P.MATMUL) == 4
    out = shared(fn)
    assert prims(out, P.MATMUL) == 2
    assert prims(out, P.BY_NAME["sin"]) == prims(out, P.BY_NAME["cos"]) == 1


def test_copies_of_one_value_make_one_key():
    """`x * x` read through two copies of x, and again through a let: one product."""
    out = shared(vectorised("fn f(x: f64[n]) -> f64 { let y = x; sum(x * x) + sum(y * x) }"))
    assert prims(out, P.MUL) == 1 and prims(out, P.SUM) == 1


def test_different_arguments_or_params_are_not_shared():
    out = shared(vectorised("fn f(A: f64[n, n]) -> f64 { sum(sum(A, axis=0) * sum(A, axis=1)) }"))
    assert prims(out, P.SUM) == 3
    out = shared(vectorised("fn f(x: f64[n], y: f64[n]) -> f64 { sum(x * y) + sum(y * x) }"))
    assert prims(out, P.MUL) == 2  # not commuted: the pass only matches what is equal


@pytest.mark.parametrize("a, b", [(0.0, -0.0), (1.0, 1), (True, 1)])
def test_literals_equal_in_python_but_not_in_meaning_stay_apart(a, b):
    """0.0 == -0.0 and 1 == 1.0 == True in Python; as params they differ (1 / -0.0 is -inf)."""
    dtype = lambda v: DType.BOOL if isinstance(v, bool) else DType.I64 if isinstance(v, int) else DType.F64  # noqa: E731
    types = tuple(ArrayType(dtype(v), ()) for v in (a, b))
    body = seq(Prim(P.CONST, params(value=a, dtype=dtype(a), weak=False), 0),
               Prim(P.CONST, params(value=b, dtype=dtype(b), weak=False), 0), Tuple(2))
    out = shared(UFunction("f", (), TupleType(types), body, ()))
    assert prims(out, P.CONST) == 2


def test_a_tuple_item_is_read_from_the_tuple_made():
    """`(a, b).0` is `a`: no Get is left, and a tuple made twice is made once."""
    body = seq(Var(0), Var(0), Prim(P.NEG, (), 1), Drop(1, 1), Tuple(2),
               Var(0), Var(0), Prim(P.NEG, (), 1), Drop(1, 1), Tuple(2),
               Get(1), Drop(1, 1))
    fn = UFunction("f", (("x", F64_N),), F64_N, seq(body, Drop(1, 1)), (SizeBinding("n", 0, 0),))
    out = shared(fn)
    assert not [i for i in instructions(out.body) if isinstance(i, Get)]
    assert sum(1 for i in instructions(out.body) if isinstance(i, Tuple)) == 1
    assert prims(out, P.NEG) == 1


# ---- scopes: bodies see what is outside, and keep what they make ------------------------

def test_a_branch_reuses_a_value_made_before_the_if():
    fn = vectorised("fn f(x: f64[n], s: f64) -> f64 {\n"
                    "    let e = sum(exp(x));\n"
                    "    if s > 0.0 { sum(exp(x)) * e } else { e }\n}\n")
    assert prims(fn, P.BY_NAME["exp"]) == 2
    assert prims(shared(fn), P.BY_NAME["exp"]) == 1


def test_a_value_made_in_one_branch_is_not_read_in_the_other_or_after():
    source = ("fn f(x: f64[n], s: f64) -> f64 {\n"
              "    let a = if s > 0.0 { sum(exp(x)) } else { sum(sin(x)) };\n"
              "    let b = if s > 0.0 { sum(sin(x)) } else { sum(exp(x)) };\n"
              "    a * b + sum(exp(x))\n}\n")
    fn = vectorised(source)
    out = shared(fn)
    for s in (-1.0, 1.0):  # both branches taken, each after the other
        args = [np.array([0.1, 0.2, 0.3]), np.array(s)]
        np.testing.assert_array_equal(evaluate(out, args), evaluate(fn, args))
    assert prims(out, P.BY_NAME["exp"]) == prims(fn, P.BY_NAME["exp"]) == 3


def test_a_loop_body_reads_values_made_outside_but_keeps_its_own():
    source = ("fn f(x: f64[n]) -> f64 {\n"
              "    let c = sum(exp(x));\n"
              "    fold(c, x, |acc, v| acc * v + sum(exp(x)) + acc * v) + sum(exp(x))\n}\n")
    fn = vectorised(source)
    out = shared(fn)
    assert prims(out, P.BY_NAME["exp"]) == 1  # the body reads the value made before the loop
    (loop,) = [i for i in instructions(out.body) if isinstance(i, Loop)]
    assert sum(1 for i in instructions(loop.body) if isinstance(i, Prim) and i.prim is P.MUL) == 1


def test_an_if_or_a_loop_written_twice_runs_once():
    source = ("fn f(x: f64[n], s: f64) -> f64 {\n"
              "    let a = if s > 0.0 { sum(x) } else { s };\n"
              "    let b = if s > 0.0 { sum(x) } else { s };\n"
              "    a * b + fold(s, x, |acc, v| acc + v * v) * fold(s, x, |acc, v| acc + v * v)\n}\n")
    out = shared(vectorised(source))
    assert sum(1 for i in instructions(out.body) if isinstance(i, If)) == 1
    assert sum(1 for i in instructions(out.body) if isinstance(i, Loop)) == 1


def test_a_call_with_a_rule_keeps_its_marker_and_reads_only_its_arguments():
    source = ("fn clip(x: f64[n]) -> f64[n] { where(x > 0.0, x * x, x * x * 0.5) }\n"
              "fn clip_vjp = custom_vjp(clip, |x, y_bar| y_bar);\n"
              "fn f(x: f64[n]) -> f64 { sum(clip(x)) * sum(clip(x)) + sum(x * x) }\n")
    fn = vectorise_program(to_unary(check_source(source))).function("f")
    out = shared(fn)
    calls = [i for i in instructions(out.body) if isinstance(i, Custom)]
    assert len(calls) == 1 and calls[0].name == "clip"
    inside = [i for i in instructions(calls[0].body) if isinstance(i, Prim) and i.prim is P.MUL]
    assert len(inside) == 2  # x * x once, inside the marked call, and its half


# ---- derivatives: one adjoint for a shared subexpression -----------------------------------

def test_the_gradient_of_a_repeated_subexpression_costs_as_much_as_with_a_let():
    repeated = "sin(dot(x, A @ x)) * cos(dot(x, A @ x))"
    bound = "let d = dot(x, A @ x); sin(d) * cos(d)"
    costs = []
    for body in (repeated, bound):
        stages = catad.stages(f"fn f(x: f64[n], A: f64[n, n]) -> f64 {{ {body} }}\n"
                              "fn f_grad = grad(f);\n")
        gradient = next(fn for fn in stages.optimised.functions if fn.name == "f_grad")
        costs.append(function_cost(gradient, SIZES).total)
    assert costs[0] == costs[1]


# ---- random programs ------------------------------------------------------------------------

@scaled(0.5)
@given(programs(), size_values(), st.integers(0, 2 ** 32 - 1))
def test_random_programs_keep_their_meaning(program, sizes, seed):
    fn = vectorise_program(to_unary(check_source(program.source))).function("f")
    out = share_subexpressions(fn)
    check_function(out)
    count = lambda f: sum(1 for i in instructions(f.body) if isinstance(i, Prim))  # noqa: E731
    assert count(out) <= count(fn)
    args = program.inputs(sizes, np.random.default_rng(seed))
    note(f"sizes {sizes}")
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(evaluate(out, args), evaluate(fn, args))
