"""Weak constant expressions where a strong type is required.

A literal is weak (NEP 50), and so is an expression made of literals only
(`-0.5`, `exp(0.25)`, `{ let c = 0.5; c }`). Where a value must have a declared
or joined type (a loop's state, an `if`'s branches, a function's result or
argument, a reduction's unit), the checker gives it exactly that type: a bare
literal is re-typed and any other weak expression is cast. Left weak, a fold
whose step keeps a state item weak for one more step (`(p, sin(q))`) failed
the UNF check, its state joined from the init and the first step only.

Each program below is compiled with its gradient, which is compared to central
finite differences; and every typed program drawn with weak literals is
walked to see that each required type is met exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given

import catad
from catad.compiler.check import check_source
from catad.compiler.errors import CatadError
from catad.compiler.primitives import ASTYPE
from catad.compiler.typed import (TConst, TExpr, TFor, TFunction, TIf, TLambda, TLoop, TMap,
                                  TReduce, TTuple)
from catad.compiler.types import F64, ArrayType, Dim, TupleType, Type, strip_weak
from catad.compiler.lower import load_module

from program_strategy import programs, scaled

CONSTANTS = ["-0.5", "exp(0.25)", "{ let c = 0.5; c }", "sigmoid(1.5)", "0.5 * 3.0",
             "if true { 0.5 } else { -0.5 }"]

# f(x: f64[n]) -> f64 bodies with the constant expression {C} where a strong f64 is needed
BODIES = {
    "fold state items kept weak by a step":
        "let (a, b) = fold(({C}, {C}), x, |s, p| {{ let (q, r) = s; (p, sin(q)) }}); a * b",
    "fold state items, three":
        "let (a, b, c) = fold(({C}, {C}, {C}), x, |s, p| {{ let (q, r, t) = s; "
        "(p, cos(q), r * 2.0) }}); a * b + c",
    "fold state, scalar": "fold({C}, x, |s, p| s * p + 1.0)",
    "scan state items":
        "let (a, b) = scan(({C}, {C}), x, |s, p| {{ let (q, r) = s; (p, sin(q)) }}); sum(a * b)",
    "if branch in a fold": "fold(0.0, x, |s, p| if p < 0.0 {{ {C} }} else {{ s + p * p }})",
    "if over a weak state in a fold": "fold({C}, x, |s, p| if p < 0.0 {{ -s }} else {{ s * p }})",
    "if branch of tuples in a fold":
        "let (a, b) = fold(({C}, 1.0), x, |s, p| {{ let (q, r) = s; "
        "if p < 0.0 {{ (q, r * p) }} else {{ (r, {C}) }} }}); a + b",
    "if branch in a comprehension":
        "sum(for i in 0..n {{ if x[i] < 0.0 {{ {C} }} else {{ x[i] * x[i] }} }})",
    "fold in a comprehension":
        "sum(for i in 0..n {{ fold({C}, x, |s, p| if p < x[i] {{ {C} }} else {{ s + p }}) }})",
    "comprehension body": "sum((for i in 0..n {{ {C} }}) * x)",
    "map body": "sum(map(x, |p| {C}) * x)",
    "where arm": "sum(where(x < 0.0, {C}, x * x))",
    "where arms": "sum(where(x < 0.0, {C}, {C}) * x)",
    "if of tuples": "let (a, b) = if x[0] < 0.0 {{ ({C}, x[1]) }} else {{ (x[1], {C}) }}; a * b",
    "reduce unit": "reduce(x * x, {{ let z = -0.0; z }}, |a, b| a + b) + {C}",
    "tuple returned by a function, then a fold state":
        "let (a, b) = g(x); let (c, d) = fold(g(x), x, |s, p| {{ let (q, r) = s; "
        "(p, tanh(q)) }}); a * b + h(x[0]) * x[1] + c * d",
}
HELPERS = "fn g(y: f64[n]) -> (f64, f64) {{ ({C}, sum(y)) }}\nfn h(y: f64) -> f64 {{ {C} }}\n"


def _source(body: str, constant: str) -> str:
    return (HELPERS.format(C=constant) + "fn f(x: f64[n]) -> f64 { " + body.format(C=constant)
            + " }\nfn f_grad = grad(f);\n")


def _central_differences(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])


@pytest.mark.parametrize("constant", CONSTANTS)
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_weak_constant_expression_compiles_and_differentiates(body, constant):
    module = load_module(catad.stages(_source(body, constant)).python, "weak")
    rng = np.random.default_rng(7)
    for n in (2, 5):
        x = rng.standard_normal(n)
        np.testing.assert_allclose(module.f_grad(x), _central_differences(module.f, x),
                                   rtol=1e-5, atol=1e-7)


def test_a_weak_expression_is_cast_where_a_strong_one_is_needed():
    """The fold's init is the state type itself, (f64, f64), not (weak f64, weak f64):
    the negative literal re-typed, the call cast."""
    typed = check_source("fn f(x: f64[n]) -> f64 {\n"
                         "    let (a, b) = fold((-3.0, exp(0.25)), x, |s, p| "
                         "{ let (q, r) = s; (p, sigmoid(q)) });\n    b\n}\n")
    (loop,) = [e for e in _subterms(typed.function("f").body) if isinstance(e, TLoop)]
    assert loop.init.type == TupleType((F64, F64))
    negative, call = loop.init.items
    assert negative == TConst(F64, -3.0)
    assert call.prim is ASTYPE and call.args[0].type.weak
    assert loop.fn.params[0][1] == loop.init.type == loop.fn.body.type


def test_a_weak_int_body_makes_an_int_array():
    """A weak literal is promoted only by what it meets: `map(xs, |p| 2)` is i64[n], as
    NumPy's np.array([2, 2]) is, so an f64 unit for its reduction is refused (the
    generator once assumed such a `2` would be an f64)."""
    text = ("fn f(x: f64[n]) -> f64 {{ reduce(map(x, |p| {two}), 0.0, |a, b| a + b) }}\n")
    with pytest.raises(CatadError, match="the unit of `reduce` must have type i64"):
        catad.stages(text.format(two="2"))
    assert load_module(catad.stages(text.format(two="2 * 1.0")).python, "two").f(
        np.zeros(3)) == 6.0


# ---- the typed program meets its required types exactly ---------------------------

def _subterms(e: TExpr):
    """`e` and every expression inside it, lambda bodies included."""
    yield e
    for field in dataclasses.fields(e):
        for value in _children(getattr(e, field.name)):
            yield from _subterms(value)


def _children(value: object):
    if isinstance(value, TLambda):
        yield value.body
    elif isinstance(value, tuple):
        for item in value:
            yield from _children(item)
    elif dataclasses.is_dataclass(value) and hasattr(value, "type") and not isinstance(value, Dim):
        yield value


def _stacked(t: Type, length: Dim) -> Type:
    if isinstance(t, ArrayType):
        return ArrayType(t.dtype, (length, *t.shape))
    return TupleType(tuple(_stacked(x, length) for x in t.items))


def _mismatches(fn: TFunction) -> list[str]:
    """Each required type in `fn` that an expression does not have exactly."""
    found = []

    def need(what: str, actual: Type, required: Type) -> None:
        if actual != required:
            found.append(f"{what}: {actual} where {required} is required")

    need(f"the result of {fn.name}", fn.body.type, fn.result)
    for e in _subterms(fn.body):
        match e:
            case TLoop(fn=TLambda(params=((_, state), _)), init=init, stacked=stacked):
                need("a loop's init", init.type, state)
                need("a loop step's result", e.fn.body.type, state)
                length = e.xs.type.shape[0]
                need("a loop's value", e.type, _stacked(state, length) if stacked else state)
            case TIf(then=then, orelse=orelse):
                need("an if's first branch", then.type, e.type)
                need("an if's second branch", orelse.type, e.type)
            case TReduce(unit=unit):
                need("a reduction's unit", unit.type, e.type)
                need("a reduction step's result", e.fn.body.type, e.type)
            case TFor(body=body) | TMap(fn=TLambda(body=body)):
                # stacking weak scalars makes a strong array, as np.array([0.5, 0.5]) does
                need("a comprehension's value", e.type, _stacked(strip_weak(body.type),
                                                                 e.type.shape[0]))
            case TTuple(items=items):
                need("a tuple", e.type, TupleType(tuple(i.type for i in items)))
    return found


@scaled(0.5)
@given(programs(weak_literals=True))
def test_typed_programs_with_weak_literals_meet_their_required_types(program):
    typed = check_source(program.source)
    assert [m for fn in typed.functions for m in _mismatches(fn)] == []


@pytest.mark.parametrize("constant", CONSTANTS)
def test_weak_constant_expression_takes_f32_in_an_f32_fold(constant):
    """The cast goes to the state's dtype: an f32 fold stays f32 (and its gradient too).
    (A state item that only weak values reach, `(p, sin(q))`, would be f64, as NumPy's
    np.sin(0.5) is.)"""
    module = load_module(catad.stages(
        "fn f(x: f32[n]) -> f32 {{ let (a, b) = fold(({C}, {C}), x, |s, p| {{ let (q, r) = s; "
        "(p, sin(q) * p) }}); a * b }}\nfn f_grad = grad(f);\n".format(C=constant)).python,
        "weak32")
    x = np.array([0.5, -0.25, 1.5], dtype=np.float32)
    value, gradient = module.f(x), module.f_grad(x)
    assert value.dtype == np.float32 and gradient.dtype == np.float32
    # a * b = x[2]^2 sin(x[1]): its gradient is (0, x[2]^2 cos(x[1]), 2 x[2] sin(x[1]))
    np.testing.assert_allclose(value, x[2] ** 2 * np.sin(x[1]), rtol=1e-6)
    np.testing.assert_allclose(gradient, [0.0, x[2] ** 2 * np.cos(x[1]), 2 * x[2] * np.sin(x[1])],
                               rtol=1e-6)
