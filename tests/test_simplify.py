"""simplify: each rule fires where it should and not where it must not."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import catad
from catad.compiler import primitives as P
from catad.compiler import simplify as S
from catad.compiler.lower import load_module, lower
from catad.compiler.primitives import params
from catad.compiler.simplify import RULES, binding_types, simplify
from catad.compiler.target import (Apply, Bind, Block, Call, IfElse, Lambda, Lit, LoopE, MakeTuple,
                                   Name, Project, TargetFunction)
from catad.compiler.types import BOOL, F64, I64, ArrayType, Dim, DType, TupleType, scalar

N = Dim.of("n")
VEC = ArrayType(DType.F64, (N,))
IVEC = ArrayType(DType.I64, (N,))
MAT = ArrayType(DType.F64, (N, N))
PARAMS = {"x": VEC, "y": VEC, "s": F64, "i": IVEC, "A": MAT, "c": BOOL, "k": I64,
          "q": TupleType((F64, VEC)), "g": F64}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def atom(a):
    if isinstance(a, Name | Lit):
        return a
    return Name(a) if isinstance(a, str) else Lit(a)


def call(prim: str, *args, **ps) -> Call:
    return Call(P.BY_NAME[prim], params(**ps), tuple(map(atom, args)))


def let(name: str, expr) -> Bind:
    return Bind(name, atom(expr) if isinstance(expr, str | int | float) else expr)


def function(*bindings: Bind, result) -> TargetFunction:
    ps = tuple(PARAMS.items())
    return TargetFunction("f", ps, tuple(p for p, _ in ps), F64, (), Block(bindings, atom(result)))


def simplified(*bindings: Bind, result) -> Block:
    return simplify(function(*bindings, result=result)).body


def block(*bindings: Bind, result) -> Block:
    return Block(bindings, atom(result))


# ---- the rule table ------------------------------------------------------------------


def test_every_rule_states_its_algebra_in_a_comment():
    for rule in RULES:
        source = inspect.getsource(inspect.unwrap(rule))
        assert any(line.strip().startswith("#") and "->" in line for line in source.splitlines()), \
            rule.__name__


# ---- copies and dead bindings ----------------------------------------------------------


def test_copy_propagation():
    # let a = x; let b = exp(a)  ->  b = exp(x); a literal propagates the same way
    got = simplified(let("a", "x"), let("l", 2.0), let("b", call("exp", "a")),
                     let("r", call("mul", "b", "l")), result="r")
    assert got == block(let("b", call("exp", "x")), let("r", call("mul", "b", 2.0)), result="r")


def test_copy_propagation_leaves_computed_values_named():
    got = simplified(let("a", call("exp", "x")), let("b", call("log", "a")), result="b")
    assert got == block(let("a", call("exp", "x")), let("b", call("log", "a")), result="b")


def test_dead_bindings_go_also_inside_branches():
    branch = IfElse(Name("c"), block(let("u", call("log", "x")), result="x"), block(result="y"))
    got = simplified(let("a", call("exp", "x")), let("r", branch), result="r")
    assert got == block(let("r", IfElse(Name("c"), block(result="x"), block(result="y"))), result="r")


def test_a_binding_used_inside_a_branch_stays():
    branch = IfElse(Name("c"), block(result="a"), block(result="y"))
    got = simplified(let("a", call("exp", "x")), let("r", branch), result="r")
    assert got == block(let("a", call("exp", "x")), let("r", branch), result="r")


# ---- common subexpressions --------------------------------------------------------------


def test_identical_calls_are_shared():
    got = simplified(let("a", call("exp", "x")), let("b", call("exp", "x")),
                     let("r", call("add", "a", "b")), result="r")
    assert got == block(let("a", call("exp", "x")), let("r", call("add", "a", "a")), result="r")


def test_calls_on_different_arguments_or_literals_are_not_shared():
    # 1, 1.0 and True compare equal in Python, but `i // 1` is i64 and `i // 1.0` f64
    got = simplified(let("a", call("floordiv", "i", 1)), let("b", call("floordiv", "i", 1.0)),
                     let("e", call("exp", "x")), let("f", call("exp", "y")),
                     let("r", MakeTuple((Name("a"), Name("b"), Name("e"), Name("f")))), result="r")
    assert len(got.bindings) == 5


def test_a_call_in_a_branch_is_not_shared_with_the_other_branch_but_with_the_outside():
    branch = IfElse(Name("c"), block(let("u", call("exp", "x")), let("v", call("log", "x")),
                                     let("w", call("add", "u", "v")), result="w"),
                    block(let("u2", call("exp", "x")), result="u2"))
    got = simplified(let("l", call("log", "x")), let("r", branch), let("t", call("mul", "r", "l")),
                     result="t")
    then, orelse = got.bindings[1].expr.then, got.bindings[1].expr.orelse
    assert then == block(let("u", call("exp", "x")), let("w", call("add", "u", "l")), result="w")
    assert orelse == block(let("u2", call("exp", "x")), result="u2")


def test_a_loop_invariant_call_is_shared_with_the_outside():
    body = block(let("e", call("exp", "y")), let("n2", call("add", "acc", "e")), result="n2")
    loop = LoopE(Name("x"), Name("A"), "acc", "row", body, False)
    got = simplified(let("e0", call("exp", "y")), let("r", loop), let("t", call("mul", "r", "e0")),
                     result="t")
    assert got.bindings[1].expr.body == block(let("n2", call("add", "acc", "e0")), result="n2")


# ---- tuples, constants, branches --------------------------------------------------------


def test_projection_of_a_tuple():
    # (x, y).1  ->  y
    assert simplified(let("p", MakeTuple((Name("x"), Name("y")))), let("a", Project(Name("p"), 1)),
                      result="a") == block(result="y")


def test_projection_of_a_parameter_stays():
    got = simplified(let("a", Project(Name("q"), 0)), result="a")
    assert got == block(let("a", Project(Name("q"), 0)), result="a")


def test_a_weak_constant_becomes_its_literal():
    got = simplified(let("k2", call("const", value=2.0, dtype=DType.F64)),
                     let("r", call("mul", "x", "k2")), result="r")
    assert got == block(let("r", call("mul", "x", 2.0)), result="r")


@pytest.mark.parametrize("const", [
    call("const", value=2.0, dtype=DType.F64, weak=False),  # a strong f64 is no Python float
    call("const", value=2.0, dtype=DType.F32),              # a weak f32 has no literal
])
def test_other_constants_stay(const):
    got = simplified(let("k2", const), let("r", call("mul", "x", "k2")), result="r")
    assert got == block(let("k2", const), let("r", call("mul", "x", "k2")), result="r")


@pytest.mark.parametrize("expr, value", [
    (call("mul", 2.0, 3.0), 6.0), (call("add", 2, 3), 5), (call("div", 7, 2), 3.5),
    (call("sub", 1, 2.5), -1.5), (call("neg", 2.0), -2.0),
])
def test_constant_folding(expr, value):
    got = simplified(let("a", expr), result="a")
    assert got == block(result=value) and type(got.result.value) is type(value)


@pytest.mark.parametrize("expr", [
    call("div", 1.0, 0.0),         # NumPy's inf, Python's ZeroDivisionError: left to run time
    call("add", True, True),       # bool + bool is `or` in NumPy, 2 in Python
    call("mul", 1e300, 1e300),     # not finite
    call("pow", 2, 3),             # not one of + - * / neg
    call("add", "s", 1.0),         # not literals
])
def test_no_constant_folding(expr):
    assert simplified(let("a", expr), result="a") == block(let("a", expr), result="a")


def test_a_branch_on_a_literal_is_inlined():
    branch = IfElse(Name("t"), block(let("u", call("exp", "x")), result="u"), block(result="y"))
    got = simplified(let("t", call("const", value=True, dtype=DType.BOOL)), let("r", branch),
                     let("z", call("log", "r")), result="z")
    assert got == block(let("u", call("exp", "x")), let("z", call("log", "u")), result="z")


def test_a_branch_on_a_variable_stays():
    branch = IfElse(Name("c"), block(let("u", call("exp", "x")), result="u"), block(result="y"))
    assert simplified(let("r", branch), result="r") == block(let("r", branch), result="r")


# ---- algebra, guarded by types ------------------------------------------------------------


@pytest.mark.parametrize("expr, result", [
    (call("mul", "x", 1.0), "x"),                 # x * 1 -> x
    (call("mul", 1, "x"), "x"),                   # 1 * x -> x
    (call("add", "x", 0.0), "x"),                 # x + 0 -> x
    (call("add", 0, "x"), "x"),                   # 0 + x -> x
    (call("sub", "x", 0.0), "x"),                 # x - 0 -> x
    (call("div", "x", 1.0), "x"),                 # x / 1 -> x
    (call("pow", "s", 1), "s"),                   # x ** 1 -> x
])
def test_identities(expr, result):
    assert simplified(let("a", expr), result="a") == block(result=result)


@pytest.mark.parametrize("expr", [
    call("mul", "i", 1.0),      # i64 * 1.0 is f64: not i
    call("add", "i", 0.0),      # the same for +
    call("div", "i", 1),        # i64 / 1 is f64
    call("mul", "x", 2.0),      # not one
    call("pow", "s", 2),        # not one
    call("sub", "x", 1.0),      # not zero
])
def test_identities_that_must_not_fire(expr):
    assert simplified(let("a", expr), result="a") == block(let("a", expr), result="a")


@pytest.mark.parametrize("scalar_op", ["mul", "add"])
def test_broadcasting_stops_an_identity(scalar_op):
    # s * ones(n) and s + zeros(n) are arrays; s is a scalar
    filler = "ones" if scalar_op == "mul" else "zeros"
    got = simplified(let("o", call(filler, dtype=DType.F64, shape=(N,))),
                     let("a", call(scalar_op, "s", "o")), result="a")
    assert got.result == Name("a") and len(got.bindings) == 2


def test_an_array_of_ones_of_the_same_type_is_an_identity():
    got = simplified(let("o", call("ones", dtype=DType.F64, shape=(N,))),
                     let("a", call("mul", "o", "x")), result="a")
    assert got == block(result="x")


def test_constants_are_seen_through_shape_operations():
    # broadcast_to(expand_dims(ones(()), 0), (n,)) is ones(n)
    got = simplified(let("o", call("ones", dtype=DType.F64, shape=())),
                     let("e", call("expand_dims", "o", axis=0)),
                     let("b", call("broadcast_to", "e", shape=(N,))),
                     let("a", call("mul", "x", "b")), result="a")
    assert got == block(result="x")


def test_times_zero_gives_zeros_of_the_products_type():
    # x * 0.0 -> zeros(n)  (x: f64[n]);  s * zeros(n) -> that zeros;  s * 0.0 -> a strong 0.0
    zeros = call("zeros", dtype=DType.F64, shape=(N,))
    assert simplified(let("a", call("mul", "x", 0.0)), result="a") == block(let("a", zeros), result="a")
    assert simplified(let("z", zeros), let("a", call("mul", "s", "z")), result="a") == \
        block(let("z", zeros), result="z")
    assert simplified(let("a", call("mul", 0.0, "s")), result="a") == \
        block(let("a", call("const", value=0.0, dtype=DType.F64, weak=False)), result="a")


def test_times_something_else_stays():
    assert simplified(let("a", call("mul", "x", "y")), result="a") == \
        block(let("a", call("mul", "x", "y")), result="a")


def test_zero_minus_x_is_minus_x_unless_that_changes_the_dtype():
    assert simplified(let("a", call("sub", 0.0, "x")), result="a") == \
        block(let("a", call("neg", "x")), result="a")
    kept = call("sub", 0.0, "i")  # 0.0 - i is f64, -i is i64
    assert simplified(let("a", kept), result="a") == block(let("a", kept), result="a")


def test_negating_twice():
    assert simplified(let("a", call("neg", "x")), let("b", call("neg", "a")), result="b") == \
        block(result="x")
    got = simplified(let("a", call("exp", "x")), let("b", call("neg", "a")), result="b")
    assert got == block(let("a", call("exp", "x")), let("b", call("neg", "a")), result="b")


@pytest.mark.parametrize("expr", [
    call("broadcast_to", "x", shape=(N,)), call("reshape", "x", shape=(N,)),
    call("astype", "x", dtype=DType.F64), call("transpose", "A", perm=(0, 1)),
])
def test_identity_reshapings(expr):
    assert simplified(let("a", expr), result="a").result in (Name("x"), Name("A"))


@pytest.mark.parametrize("expr", [
    call("broadcast_to", "x", shape=(N, N)), call("astype", "x", dtype=DType.F32),
    call("transpose", "A", perm=(1, 0)), call("broadcast_to", 2.0, shape=()),  # weak -> strong
    call("expand_dims", "x", axis=0),
])
def test_reshapings_that_change_something_stay(expr):
    assert simplified(let("a", expr), result="a") == block(let("a", expr), result="a")


# ---- beta-reduction ----------------------------------------------------------------


def test_beta_reduction_inlines_with_fresh_names():
    # let f = |a| { let t = a * 2.0; t }; f(x) + f(y)
    lam = Lambda(("a",), block(let("t", call("mul", "a", 2.0)), result="t"))
    got = simplified(let("f", lam), let("r1", Apply(Name("f"), (Name("x"),))),
                     let("r2", Apply(Name("f"), (Name("y"),))), let("z", call("add", "r1", "r2")),
                     result="z")
    assert got == block(let("t_1", call("mul", "x", 2.0)), let("t_2", call("mul", "y", 2.0)),
                        let("z", call("add", "t_1", "t_2")), result="z")


def test_an_unknown_function_is_not_applied():
    got = simplified(let("r", Apply(Name("g"), (Name("x"),))), result="r")
    assert got == block(let("r", Apply(Name("g"), (Name("x"),))), result="r")


# ---- the fixed point ---------------------------------------------------------------


def test_rules_feed_each_other_to_a_fixed_point_inside_loops():
    # fold(x, A, |acc, row| (acc * 1.0, row).0 + const(0.0))  ->  fold(x, A, |acc, row| acc)
    body = block(let("m", call("mul", "acc", 1.0)), let("p", MakeTuple((Name("m"), Name("row")))),
                 let("h", Project(Name("p"), 0)), let("z", call("const", value=0.0, dtype=DType.F64)),
                 let("n2", call("add", "h", "z")), result="n2")
    got = simplified(let("r", LoopE(Name("x"), Name("A"), "acc", "row", body, False)), result="r")
    assert got.bindings[0].expr.body == block(result="acc")
    fn = function(let("r", LoopE(Name("x"), Name("A"), "acc", "row", body, False)), result="r")
    assert simplify(simplify(fn)) == simplify(fn)


def test_binding_types_cover_loops_and_branches():
    body = block(let("n2", call("add", "acc", "row")), result="n2")
    branch = IfElse(Name("c"), block(result="x"), block(result="y"))
    fn = function(let("r", LoopE(Name("x"), Name("A"), "acc", "row", body, True)), let("b", branch),
                  result="r")
    types = binding_types(fn)
    assert types["acc"] == VEC and types["row"] == VEC and types["n2"] == VEC
    assert types["r"] == ArrayType(DType.F64, (N, N)) and types["b"] == VEC
    assert S.literal_type(2) == scalar(DType.I64, weak=True)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.catad")), ids=lambda p: p.stem)
def test_simplified_examples_compute_what_the_unsimplified_ones_do(path):
    stages = catad.stages(path.read_text(), str(path))
    plain = load_module(lower(stages.target, source_path=str(path), source=None), "plain")
    optimised = load_module(stages.python, "optimised")
    rng = np.random.default_rng(0)
    for fn in stages.target.functions:
        sizes = {}
        args = []
        for _, t in fn.params:
            shape = tuple(sizes.setdefault(str(d), int(rng.integers(2, 5))) if not d.is_constant
                          else d.const for d in t.shape)
            args.append(rng.normal(size=shape) if t.dtype.is_float else rng.integers(0, 2, size=shape))
        try:
            expected = getattr(plain, fn.name)(*args)
        except ValueError:
            continue  # sizes that are affine in others: the random shapes do not fit
        got = getattr(optimised, fn.name)(*args)
        for g, e in zip(_leaves(got), _leaves(expected), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-12)
        assert len(simplify(fn).body.bindings) <= len(fn.body.bindings)


def _leaves(value):
    """The arrays of a (nested) tuple result, in order."""
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
