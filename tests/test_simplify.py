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
from catad.compiler.primitives import param, params
from catad.compiler.simplify import RULES, binding_types, simplify
from catad.compiler.target import (Apply, Bind, Block, Call, IfElse, Lambda, Lit, LoopE, MakeTuple,
                                   Name, Project, TargetFunction)
from catad.compiler.typed import SizeBinding
from catad.compiler.types import BOOL, F64, I64, ArrayType, Dim, DType, TupleType, scalar

N, M, P3 = Dim.of("n"), Dim.of("m"), Dim.of("p")
VEC = ArrayType(DType.F64, (N,))
IVEC = ArrayType(DType.I64, (N,))
MAT = ArrayType(DType.F64, (N, N))
PARAMS = {"x": VEC, "y": VEC, "s": F64, "i": IVEC, "A": MAT, "c": BOOL, "k": I64,
          "q": TupleType((F64, VEC)), "g": F64,
          "f": ArrayType(DType.F32, (N,)), "B": ArrayType(DType.F64, (N, M)),
          "V": ArrayType(DType.F64, (P3, N)), "W": ArrayType(DType.F64, (P3, N, N)),
          "U": ArrayType(DType.F64, (M, P3, N)), "Z": ArrayType(DType.F64, (M, P3, N)),
          "o": ArrayType(DType.F64, (Dim(1), N))}
SIZES = (SizeBinding("n", 0, 0), SizeBinding("m", 10, 1), SizeBinding("p", 11, 0))
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


def values_agree(*bindings: Bind, result) -> None:
    """The function and its simplification, lowered to NumPy, compute the same on
    random arguments (n = 3, m = 4, p = 2)."""
    ps = tuple(PARAMS.items())
    fn = TargetFunction("f", ps, tuple(p for p, _ in ps), F64, SIZES, Block(bindings, atom(result)))
    before = load_module(lower(_program(fn), source_path="t.catad", source=None), "before")
    after = load_module(lower(_program(simplify(fn)), source_path="t.catad", source=None), "after")
    rng = np.random.default_rng(1)
    sizes = {"n": 3, "m": 4, "p": 2}
    args = []
    for _, t in ps:
        if isinstance(t, TupleType):
            args.append(tuple(rng.normal(size=tuple(d.evaluate(sizes) for d in u.shape)) for u in t.items))
            continue
        shape = tuple(d.evaluate(sizes) for d in t.shape)
        args.append(rng.integers(0, 3, size=shape) if t.dtype is DType.I64 else
                    rng.random(size=shape) < 0.5 if t.dtype is DType.BOOL else
                    rng.normal(size=shape).astype(t.dtype.numpy_name))
    expected, got = before.f(*args), after.f(*args)
    for e, g in zip(_leaves(expected), _leaves(got), strict=True):
        assert np.shape(e) == np.shape(g) and np.asarray(e).dtype == np.asarray(g).dtype
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def _program(fn):
    from catad.compiler.target import TargetProgram
    return TargetProgram((fn,))


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
                     let("r", call("mul", "a", "b")), result="r")
    assert got == block(let("a", call("exp", "x")), let("r", call("mul", "a", "a")), result="r")


def test_a_commutative_call_is_shared_with_its_arguments_swapped():
    # x * y and y * x are one value; x - y and y - x are not
    got = simplified(let("a", call("mul", "x", "y")), let("b", call("mul", "y", "x")),
                     let("d1", call("sub", "x", "y")), let("d2", call("sub", "y", "x")),
                     let("r", MakeTuple((Name("a"), Name("b"), Name("d1"), Name("d2")))), result="r")
    assert got.bindings[-1].expr == MakeTuple((Name("a"), Name("a"), Name("d1"), Name("d2")))


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
    # f32 * float64(2.0) is f64, f32 * 2.0 would be f32
    got = simplified(let("k2", const), let("r", call("mul", "f", "k2")), result="r")
    assert got == block(let("k2", const), let("r", call("mul", "f", "k2")), result="r")


def test_a_strong_constant_is_a_literal_where_the_other_argument_decides_the_type():
    # x * float64(2.0) -> x * 2.0   (x: f64[n])
    got = simplified(let("k2", call("const", value=2.0, dtype=DType.F64, weak=False)),
                     let("r", call("mul", "x", "k2")), result="r")
    assert got == block(let("r", call("mul", "x", 2.0)), result="r")


def test_a_constant_size_is_a_literal_where_the_other_argument_decides_the_type():
    # k - int64(1) -> k - 1, k == int64(0) -> k == 0   (k: i64); an f32 beside it keeps it
    one, zero = call("size", dim=Dim(1)), call("size", dim=Dim(0))
    got = simplified(let("o", one), let("z", zero), let("r", call("sub", "k", "o")),
                     let("c", call("eq", "r", "z")), let("w", call("where", "c", "s", "g")), result="w")
    assert got == block(let("r", call("sub", "k", 1)), let("c", call("eq", "r", 0)),
                        let("w", call("where", "c", "s", "g")), result="w")
    kept = simplified(let("o", one), let("r", call("mul", "f", "o")), result="r")
    assert kept == block(let("o", one), let("r", call("mul", "f", "o")), result="r")


def test_ones_and_zeros_of_no_shape_are_strong_constants():
    # ones(()) -> float64(1.0); -float64(1.0) -> float64(-1.0); ones((n,)) stays
    got = simplified(let("o", call("ones", dtype=DType.F64, shape=())), let("r", call("neg", "o")),
                     result="r")
    assert got == block(let("r", call("const", value=-1.0, dtype=DType.F64, weak=False)), result="r")
    kept = call("ones", dtype=DType.F64, shape=(N,))
    assert simplified(let("o", kept), result="o") == block(let("o", kept), result="o")


@pytest.mark.parametrize("expr, value", [
    (call("mul", 2.0, 3.0), 6.0), (call("add", 2, 3), 5), (call("div", 7, 2), 3.5),
    (call("sub", 1, 2.5), -1.5), (call("neg", 2.0), -2.0),
    (call("lt", 1, 2.5), True), (call("ge", 2.0, 3), False), (call("eq", 2, 2.0), True),
    (call("ne", 0.5, 0.5), False), (call("le", -1, -1), True), (call("gt", 0.0, -0.0), False),
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


def test_a_comparison_of_a_large_strong_int_with_a_float_is_left_to_numpy():
    # NumPy compares int64(2**53 + 1) with float64(2**53) as floats (equal), Python exactly
    got = simplified(let("i", call("const", value=2 ** 53 + 1, dtype=DType.I64, weak=False)),
                     let("f", call("const", value=2.0 ** 53, dtype=DType.F64, weak=False)),
                     let("c", call("lt", "i", "f")), result="c")
    assert any(isinstance(b.expr, Call) and b.expr.prim is P.LT for b in got.bindings), got


def test_a_branch_on_a_comparison_of_strong_constants_is_inlined():
    # if f64(-0.5) < 0.0 { a } else { b }  ->  a    (the cast of a literal is a strong constant,
    # the comparison folds to bool(True), which decides as a literal does)
    branch = IfElse(Name("c"), block(result="x"), block(let("u", call("exp", "x")), result="u"))
    got = simplified(let("h", call("astype", -0.5, dtype=DType.F64)), let("c", call("lt", "h", 0.0)),
                     let("r", branch), result="r")
    assert got == block(result="x")


def test_an_if_whose_branches_compute_the_same_is_its_branch():
    # if c { u = exp(x); (u,) } else { w = exp(x); (w,) }  ->  u = exp(x); (u,)
    alike = IfElse(Name("c"), block(let("u", call("exp", "x")), let("p", MakeTuple((Name("u"),))), result="p"),
                   block(let("w", call("exp", "x")), let("q", MakeTuple((Name("w"),))), result="q"))
    got = simplified(let("r", alike), let("z", Project(Name("r"), 0)), result="z")
    assert got == block(let("u", call("exp", "x")), result="u")
    # one argument apart (exp(x) and exp(y)), or one name read where the other block reads
    # its own binding: not alike
    for orelse in (block(let("w", call("exp", "y")), let("q", MakeTuple((Name("w"),))), result="q"),
                   block(let("w", call("exp", "x")), let("q", MakeTuple((Name("x"),))), result="q")):
        branch = IfElse(Name("c"), alike.then, orelse)
        got = simplified(let("r", branch), let("z", Project(Name("r"), 0)), result="z")
        assert any(isinstance(b.expr, IfElse) for b in got.bindings), got


@pytest.mark.parametrize("prim, known, folded", [
    ("and", False, False), ("and", True, "c"), ("or", True, True), ("or", False, "c"),
])
def test_a_logical_operation_with_a_known_bool_folds(prim, known, folded):
    # False and c -> False; True and c -> c; True or c -> True; False or c -> c (c: bool)
    for k in (Lit(known), Name("known")):
        got = simplified(let("known", call("const", value=known, dtype=DType.BOOL, weak=False)),
                         let("r", call(prim, k, "c")), let("w", call("where", "r", "x", "y")), result="w")
        taken = {True: "x", False: "y"}.get(folded) if isinstance(folded, bool) else None
        if taken is not None:
            assert got == block(result=taken), got
        else:
            assert got == block(let("w", call("where", "c", "x", "y")), result="w"), got


@pytest.mark.parametrize("condition, then, orelse", [
    # found by the deep profile of test_cost: the gradients computed exp(x / n) only to
    # multiply it by the zeros of an `if` whose condition is known or whose branches agree
    ("f64(-0.5) < 0.0", "f64(0.5)", "let (v2, v3) = (v1, f64(0.5)); v3"),
    ("f64(0.5) < 0.0 and n < 2", "let (v2, v3) = (v1, f64(0.5)); v3", "f64(0.5)"),
    ("f64(0.5) < 0.0 and n < 2", "let (v2, v3) = (v1, f64(0.5)); v3", "f64(1.0)"),
])
def test_the_gradient_through_an_if_that_reads_nothing_differentiable_is_zeros(condition, then, orelse):
    text = catad.to_python(
        f"fn f(x: f64[n]) -> f64 {{\n    let v1 = exp(x / n);\n"
        f"    let v4 = if {condition} {{ {then} }} else {{ {orelse} }};\n    v4\n}}\nfn f_grad = grad(f);\n")
    gradient = text[text.index("def f_grad("):]
    assert "np.exp" not in gradient and "    return np.zeros((n,))\n" in gradient, gradient
    m = load_module(text, "constant_branch")
    np.testing.assert_array_equal(m.f_grad(np.arange(3.0)), np.zeros(3))


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
    # fold(x, A, |acc, row| (acc * 1.0, row).0 + const(0.0))  ->  fold(x, A, |acc, row| acc)  ->  x
    body = block(let("m", call("mul", "acc", 1.0)), let("p", MakeTuple((Name("m"), Name("row")))),
                 let("h", Project(Name("p"), 0)), let("z", call("const", value=0.0, dtype=DType.F64)),
                 let("n2", call("add", "h", "z")), result="n2")
    got = simplified(let("r", LoopE(Name("x"), Name("A"), "acc", "row", body, False)), result="r")
    assert got == block(result="x")
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


# ---- comparisons, selections, sums and scalings -----------------------------------------


ARANGE_N = call("arange", lo=Dim(0), hi=N)


@pytest.mark.parametrize("bindings, result, expected", [
    # 2 == 0 -> False;  where(false, x, y) -> y;  where(c, x, x) -> x
    ((let("b", call("eq", 2, 0)), let("r", call("where", "b", "x", "y"))), "r", block(result="y")),
    ((let("r", call("where", "c", "x", "x")),), "r", block(result="x")),
    # x + x -> 2 * x
    ((let("r", call("add", "x", "x")),), "r", block(let("r", call("mul", 2, "x")), result="r")),
    # 2 * (0.5 * x) -> x;  3 * (-x) -> -3 * x;  -(2 * x) -> -2 * x;  x * -1 -> -x
    ((let("h", call("mul", 0.5, "x")), let("r", call("mul", 2, "h"))), "r", block(result="x")),
    ((let("m", call("neg", "x")), let("r", call("mul", 3, "m"))), "r",
     block(let("r", call("mul", -3, "x")), result="r")),
    ((let("m", call("mul", "x", 2.0)), let("r", call("neg", "m"))), "r",
     block(let("r", call("mul", -2.0, "x")), result="r")),
    ((let("r", call("mul", "x", -1)),), "r", block(let("r", call("neg", "x")), result="r")),
    # 0 / x -> zeros;  where(x > 0, 0.0, zeros) -> zeros
    ((let("r", call("div", 0.0, "x")),), "r",
     block(let("r", call("zeros", dtype=DType.F64, shape=(N,))), result="r")),
    ((let("m", call("gt", "x", 0.0)), let("z", call("zeros", dtype=DType.F64, shape=(N,))),
      let("r", call("where", "m", 0.0, "z"))), "r",
     block(let("z", call("zeros", dtype=DType.F64, shape=(N,))), result="z")),
    # x - (-y) -> x + y;  x + (-y) -> x - y;  (-x) + y -> y - x
    ((let("m", call("neg", "y")), let("r", call("sub", "x", "m"))), "r",
     block(let("r", call("add", "x", "y")), result="r")),
    ((let("m", call("neg", "y")), let("r", call("add", "x", "m"))), "r",
     block(let("r", call("sub", "x", "y")), result="r")),
    ((let("m", call("neg", "x")), let("r", call("add", "m", "y"))), "r",
     block(let("r", call("sub", "y", "x")), result="r")),
])
def test_algebra_that_fires(bindings, result, expected):
    assert simplified(*bindings, result=result) == expected
    values_agree(*bindings, result=result)


@pytest.mark.parametrize("expr", [
    call("eq", "s", 0.0),              # not literals
    call("where", "c", "x", "y"),      # a condition known only at run time
    call("where", True, "s", "x"),     # s is a scalar, the where an array
    call("add", "c", "c"),             # bool + bool is `or`, 2 * c an i64
    call("mul", "i", -1.0),            # -i is i64, i * -1.0 f64
])
def test_algebra_that_must_not_fire(expr):
    assert simplified(let("r", expr), result="r") == block(let("r", expr), result="r")


def test_a_literal_factor_inside_a_product_of_arrays_stays():
    got = simplified(let("m", call("mul", "x", "y")), let("r", call("mul", 2.0, "m")), result="r")
    assert got == block(let("m", call("mul", "x", "y")), let("r", call("mul", 2.0, "m")), result="r")


@pytest.mark.parametrize("scaled, outer", [
    (call("neg", "A"), lambda total: call("neg", total)),             # sum(-a) -> -sum(a)
    (call("mul", 2.0, "A"), lambda total: call("mul", 2.0, total)),   # sum(c * a) -> c * sum(a)
])
def test_a_sum_is_taken_before_the_scaling(scaled, outer):
    got = simplified(let("a", scaled), let("r", call("sum", "a", axes=(1,))), result="r")
    (first, second) = got.bindings
    assert first.expr == call("sum", "A", axes=(1,)) and second.expr == outer(first.name)
    values_agree(let("a", scaled), let("r", call("sum", "a", axes=(1,))), result="r")


def test_a_sum_of_a_product_of_arrays_stays():
    bindings = (let("a", call("mul", "A", "A")), let("r", call("sum", "a", axes=(1,))))
    assert simplified(*bindings, result="r") == block(*bindings, result="r")


# ---- sums taken before the linear work that made their argument ------------------------


def _calls(got: Block) -> list[tuple[str, object]]:
    """(primitive, result type) of each call made, in order."""
    types = binding_types(TargetFunction("f", tuple(PARAMS.items()), tuple(PARAMS), F64, (), got))
    return [(b.expr.prim.name, types[b.name]) for b in got.bindings if isinstance(b.expr, Call)]


NN, PN = ArrayType(DType.F64, (N, N)), ArrayType(DType.F64, (P3, N))


@pytest.mark.parametrize("bindings, expected", [
    # sum(A * x, 0) -> sum(A, 0) * x      (x is the same down the rows of A)
    ((let("a", call("mul", "A", "x")), let("r", call("sum", "a", axes=(0,)))),
     block(let("t", call("sum", "A", axes=(0,))), let("r", call("mul", "t", "x")), result="r")),
    # mean(x[:, None] * A, 1) -> mean(A, 1) * x      (the unit axis goes with the sum)
    ((let("e", call("expand_dims", "x", axis=1)), let("a", call("mul", "e", "A")),
      let("r", call("mean", "a", axes=(1,)))),
     block(let("t", call("mean", "A", axes=(1,))), let("r", call("mul", "t", "x")), result="r")),
    # sum(transpose(W, (1, 0, 2)), 0) -> sum(W, 1)
    ((let("a", call("transpose", "W", perm=(1, 0, 2))), let("r", call("sum", "a", axes=(0,)))),
     block(let("r", call("sum", "W", axes=(1,))), result="r")),
    # sum(transpose(W, (2, 1, 0)), 1) -> transpose(sum(W, 1))
    ((let("a", call("transpose", "W", perm=(2, 1, 0))), let("r", call("sum", "a", axes=(1,)))),
     block(let("t", call("sum", "W", axes=(1,))), let("r", call("transpose", "t", perm=(1, 0))),
           result="r")),
])
def test_a_sum_is_taken_before_a_broadcast_factor_or_a_transpose(bindings, expected):
    got = simplified(*bindings, result="r")
    assert len(got.bindings) == len(expected.bindings)
    renamed = {b.name: e.name for b, e in zip(got.bindings, expected.bindings)}
    assert _renamed(got, renamed) == expected
    values_agree(*bindings, result="r")


def _renamed(got: Block, names: dict[str, str]) -> Block:
    """`got` with its binding names replaced (the temporaries' numbers are the namer's business)."""
    def a(x):
        return Name(names.get(x.id, x.id)) if isinstance(x, Name) else x
    return Block(tuple(Bind(names.get(b.name, b.name), Call(b.expr.prim, b.expr.params, tuple(map(a, b.expr.args)))
                            if isinstance(b.expr, Call) else b.expr) for b in got.bindings), a(got.result))


@pytest.mark.parametrize("bindings", [
    # the rows of the product: (sum(W, 1)[:, None, :] @ A)[:, 0, :], which is sum(W, 1) @ A
    (let("a", call("matmul", "W", "A")), let("r", call("sum", "a", axes=(1,)))),
    # its columns: A @ sum(B, 1)[:, None]
    (let("a", call("matmul", "A", "B")), let("r", call("sum", "a", axes=(1,)))),
    # the rows, then the batch axis
    (let("a", call("matmul", "W", "A")), let("r", call("sum", "a", axes=(0, 1)))),
    # through a transpose: the sum of the rows of transpose(W @ A, (1, 0, 2)) is over axis 0
    (let("a", call("matmul", "W", "A")), let("b", call("transpose", "a", perm=(1, 0, 2))),
     let("r", call("sum", "b", axes=(0,)))),
])
def test_a_sum_over_the_rows_of_a_product_is_the_product_of_the_summed_rows(bindings):
    got = simplified(*bindings, result="r")
    full = binding_types(function(*bindings, result="r"))["a"]
    made = _calls(got)
    assert [prim for prim, _ in made].count("matmul") == 1 and all(t != full for _, t in made), got
    values_agree(*bindings, result="r")


def test_a_sum_of_terms_is_split_where_a_term_reduces_first():
    # sum(W @ A + W * x, 1) -> (product of the summed rows) + sum(W, 1) * x: no (p, n, n) array
    bindings = (let("a", call("matmul", "W", "A")), let("b", call("mul", "W", "x")),
                let("s", call("add", "a", "b")), let("r", call("sum", "s", axes=(1,))))
    got = simplified(*bindings, result="r")
    assert all(t.rank <= 2 for prim, t in _calls(got) if prim not in ("expand_dims", "matmul")), got
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("bindings", [
    # x varies along the summed axis
    (let("a", call("mul", "A", "x")), let("r", call("sum", "a", axes=(1,)))),
    # neither term of the sum reduces first
    (let("a", call("exp", "A")), let("s", call("add", "a", "A")), let("r", call("sum", "s", axes=(0,)))),
    # a product with a vector has no row axis left to sum
    (let("a", call("matmul", "A", "x")), let("r", call("sum", "a", axes=(0,)))),
    # integers: i * k summed stays as written
    (let("a", call("mul", "i", "k")), let("r", call("sum", "a", axes=(0,)))),
])
def test_sums_that_stay(bindings):
    assert simplified(*bindings, result="r") == block(*bindings, result="r")


def test_a_sum_whose_argument_is_read_elsewhere_stays():
    # the product is made anyway for `b`: summing its factor first saves nothing
    bindings = (let("a", call("mul", "A", "x")), let("r", call("sum", "a", axes=(0,))),
                let("b", call("exp", "a")), let("q", MakeTuple((Name("r"), Name("b")))))
    got = simplified(*bindings, result="q")
    assert got == block(*bindings, result="q")


@pytest.mark.parametrize("bindings, ones", [
    # sum(exp(x) / sum(exp(x))) -> 1.0
    ((let("e", call("exp", "x")), let("s", call("sum", "e", axes=(0,))), let("w", call("div", "e", "s")),
      let("r", call("sum", "w", axes=(0,)))), call("const", value=1.0, dtype=DType.F64, weak=False)),
    # along axis 1, the total put back with a unit axis, as 1 / total times exp
    ((let("e", call("exp", "A")), let("s", call("sum", "e", axes=(1,))), let("u", call("expand_dims", "s", axis=1)),
      let("i", call("div", 1.0, "u")), let("w", call("mul", "e", "i")), let("r", call("sum", "w", axes=(1,)))),
     call("ones", dtype=DType.F64, shape=(N,))),
])
def test_normalised_exponentials_sum_to_one(bindings, ones):
    got = simplified(*bindings, result="r")
    assert got == block(let("r", ones), result="r")
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("bindings", [
    # x may be negative: its normalised values need not sum to one (nor be finite)
    (let("s", call("sum", "x", axes=(0,))), let("w", call("div", "x", "s")), let("r", call("sum", "w", axes=(0,)))),
    # normalised along axis 1, summed along axis 0
    (let("e", call("exp", "A")), let("s", call("sum", "e", axes=(1,))), let("u", call("expand_dims", "s", axis=1)),
     let("w", call("div", "e", "u")), let("r", call("sum", "w", axes=(0,)))),
])
def test_sums_of_other_quotients_stay(bindings):
    assert simplified(*bindings, result="r") == block(*bindings, result="r")


def test_a_literal_scales_the_smaller_factor_of_a_product():
    # 2 * (x * A) -> (2 * x) * A;  2 * (expand_dims(-0.5 * x, 1) * A) -> expand_dims(-x, 1) * A
    bindings = (let("a", call("mul", "x", "A")), let("r", call("mul", 2.0, "a")))
    got = simplified(*bindings, result="r")
    (scaled, result) = got.bindings
    assert scaled.expr == call("mul", 2.0, "x") and result.expr == call("mul", scaled.name, "A")
    values_agree(*bindings, result="r")
    bindings = (let("h", call("mul", -0.5, "x")), let("e", call("expand_dims", "h", axis=1)),
                let("a", call("mul", "e", "A")), let("r", call("mul", 2, "a")))
    got = simplified(*bindings, result="r")
    assert [b.expr.prim for b in got.bindings] == [P.NEG, P.EXPAND_DIMS, P.MUL]
    assert got.bindings[0].expr == call("neg", "x")
    values_agree(*bindings, result="r")


# ---- broadcasting and shapes -------------------------------------------------------------


@pytest.mark.parametrize("bindings, expected", [
    # x * broadcast_to(s, (n,)) -> x * s
    ((let("b", call("broadcast_to", "s", shape=(N,))), let("r", call("mul", "x", "b"))),
     block(let("r", call("mul", "x", "s")), result="r")),
    # A + expand_dims(x, 0) -> A + x
    ((let("e", call("expand_dims", "x", axis=0)), let("r", call("add", "A", "e"))),
     block(let("r", call("add", "A", "x")), result="r")),
    # A + reshape(x, (1, n)) -> A + x
    ((let("e", call("reshape", "x", shape=(Dim(1), N))), let("r", call("add", "A", "e"))),
     block(let("r", call("add", "A", "x")), result="r")),
])
def test_numpy_broadcasting_replaces_an_explicit_one(bindings, expected):
    assert simplified(*bindings, result="r") == expected
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("bindings", [
    # a new axis 1 is no leading axis: A + x[:, None] is not A + x
    (let("e", call("expand_dims", "x", axis=1)), let("r", call("add", "A", "e"))),
    # f32 * float64(2.0) is f64, f32 * 2.0 would stay f32
    (let("k2", call("const", value=2.0, dtype=DType.F64, weak=False)), let("r", call("mul", "f", "k2"))),
])
def test_explicit_broadcasting_that_stays(bindings):
    assert simplified(*bindings, result="r") == block(*bindings, result="r")


def test_an_elementwise_call_on_a_broadcast_is_made_on_the_smaller_array():
    # -broadcast_to(s, (n,)) -> broadcast_to(-s, (n,))
    bindings = (let("b", call("broadcast_to", "s", shape=(N,))), let("r", call("neg", "b")))
    got = simplified(*bindings, result="r")
    (negated, result) = got.bindings
    assert negated.expr == call("neg", "s") and result.expr == call("broadcast_to", negated.name, shape=(N,))
    values_agree(*bindings, result="r")
    assert simplified(let("r", call("neg", "x")), result="r") == block(let("r", call("neg", "x")), result="r")


@pytest.mark.parametrize("bindings, expected", [
    # reshape(reshape(A, (1, n, n)), (n, n)) -> A;  reshape(expand_dims(x, 0), (n,)) -> x
    ((let("a", call("reshape", "A", shape=(Dim(1), N, N))), let("r", call("reshape", "a", shape=(N, N)))),
     block(result="A")),
    ((let("a", call("expand_dims", "x", axis=0)), let("r", call("reshape", "a", shape=(N,)))),
     block(result="x")),
    # expand_dims(expand_dims(x, 0), 2) -> reshape(x, (1, n, 1))
    ((let("a", call("expand_dims", "x", axis=0)), let("r", call("expand_dims", "a", axis=2))),
     block(let("r", call("reshape", "x", shape=(Dim(1), N, Dim(1)))), result="r")),
    # broadcast_to(broadcast_to(s, (n,)), (n, n)) -> broadcast_to(s, (n, n))
    ((let("a", call("broadcast_to", "s", shape=(N,))), let("r", call("broadcast_to", "a", shape=(N, N)))),
     block(let("r", call("broadcast_to", "s", shape=(N, N))), result="r")),
    # expand_dims(broadcast_to(s, (n,)), 1) -> broadcast_to(s, (n, 1))
    ((let("a", call("broadcast_to", "s", shape=(N,))), let("r", call("expand_dims", "a", axis=1))),
     block(let("r", call("broadcast_to", "s", shape=(N, Dim(1)))), result="r")),
    # transpose(transpose(W, (2, 0, 1)), (1, 2, 0)) -> W
    ((let("a", call("transpose", "W", perm=(2, 0, 1))), let("r", call("transpose", "a", perm=(1, 2, 0)))),
     block(result="W")),
    # transpose(transpose(W, (1, 0, 2)), (0, 2, 1)) -> transpose(W, (1, 2, 0))
    ((let("a", call("transpose", "W", perm=(1, 0, 2))), let("r", call("transpose", "a", perm=(0, 2, 1)))),
     block(let("r", call("transpose", "W", perm=(1, 2, 0))), result="r")),
])
def test_shape_operations_compose(bindings, expected):
    assert simplified(*bindings, result="r") == expected
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("bindings", [
    (let("a", call("transpose", "A", perm=(1, 0))), let("r", call("reshape", "a", shape=(N, Dim(1), N)))),
    (let("a", call("exp", "x")), let("r", call("expand_dims", "a", axis=0))),
    (let("a", call("expand_dims", "x", axis=1)), let("r", call("broadcast_to", "a", shape=(N, N)))),
    # the new axis 2 is among the axes of x
    (let("a", call("broadcast_to", "x", shape=(N, N))), let("r", call("expand_dims", "a", axis=2))),
])
def test_shape_operations_that_do_not_compose(bindings):
    assert simplified(*bindings, result="r") == block(*bindings, result="r")


def test_axes_of_length_one_move_out_of_a_transpose():
    # transpose(expand_dims(A, 2), (1, 0, 2)) -> reshape(transpose(A, (1, 0)), (n, n, 1))
    bindings = (let("a", call("expand_dims", "A", axis=2)), let("r", call("transpose", "a", perm=(1, 0, 2))))
    got = simplified(*bindings, result="r")
    (turned, result) = got.bindings
    assert turned.expr == call("transpose", "A", perm=(1, 0))
    assert result.expr == call("reshape", turned.name, shape=(N, N, Dim(1)))
    values_agree(*bindings, result="r")
    # o has an axis of length 1 of its own: which axis is which is not known
    kept = (let("a", call("expand_dims", "o", axis=2)), let("r", call("transpose", "a", perm=(1, 0, 2))))
    assert simplified(*kept, result="r") == block(*kept, result="r")


# ---- products ------------------------------------------------------------------------------


def test_the_transpose_of_a_product_with_a_transposed_factor():
    # transpose(transpose(B) @ A) -> transpose(A) @ B
    bindings = (let("bt", call("transpose", "B", perm=(1, 0))), let("p", call("matmul", "bt", "A")),
                let("r", call("transpose", "p", perm=(1, 0))))
    got = simplified(*bindings, result="r")
    assert got.bindings[-1].expr == Call(P.MATMUL, (), (Name(got.bindings[0].name), Name("B")))
    assert got.bindings[0].expr == call("transpose", "A", perm=(1, 0))
    values_agree(*bindings, result="r")
    kept = (let("p", call("matmul", "A", "A")), let("r", call("transpose", "p", perm=(1, 0))))
    assert simplified(*kept, result="r") == block(*kept, result="r")


def test_a_stack_of_vectors_times_one_matrix_is_one_product():
    # A @ V[:, :, None] -> (V @ A.T)[:, :, None]
    bindings = (let("v", call("expand_dims", "V", axis=2)), let("r", call("matmul", "A", "v")))
    got = simplified(*bindings, result="r")
    assert [b.expr.prim for b in got.bindings] == [P.TRANSPOSE, P.MATMUL, P.EXPAND_DIMS]
    assert got.bindings[1].expr.args == (Name("V"), Name(got.bindings[0].name))
    values_agree(*bindings, result="r")


def test_vectors_times_a_matrix_broadcast_along_one_batch_axis_are_one_product_per_matrix():
    # W[None] @ U[..., None]: U's leading axis becomes rows of one product per matrix of W
    bindings = (let("w", call("expand_dims", "W", axis=0)), let("u", call("expand_dims", "U", axis=3)),
                let("r", call("matmul", "w", "u")))
    got = simplified(*bindings, result="r")
    products = [b.expr for b in got.bindings if isinstance(b.expr, Call) and b.expr.prim is P.MATMUL]
    assert len(products) == 1 and S.binding_types(simplify(function(*bindings, result="r")))
    values_agree(*bindings, result="r")


def test_row_vectors_times_one_matrix_are_one_product():
    # V[:, None, :] @ A -> (V @ A)[:, None, :]
    bindings = (let("v", call("expand_dims", "V", axis=1)), let("r", call("matmul", "v", "A")))
    got = simplified(*bindings, result="r")
    assert got.bindings[0].expr == call("matmul", "V", "A")
    assert got.bindings[1].expr == call("reshape", got.bindings[0].name, shape=(P3, Dim(1), N))
    values_agree(*bindings, result="r")


def test_a_batch_of_matrices_times_vectors_stays():
    # every batch axis varies in both: no single product does it
    bindings = (let("v", call("expand_dims", "V", axis=2)), let("r", call("matmul", "W", "v")))
    assert simplified(*bindings, result="r") == block(*bindings, result="r")
    rows = (let("v", call("expand_dims", "V", axis=1)), let("r", call("matmul", "v", "W")))
    assert simplified(*rows, result="r") == block(*rows, result="r")


def test_the_identity_matrix_of_a_basis_is_no_product():
    # astype(arange(n) == arange(n)[:, None]) @ A -> A;  with < instead of == it stays
    for compare, fires in (("eq", True), ("lt", False)):
        bindings = (let("a", ARANGE_N), let("col", call("expand_dims", "a", axis=1)),
                    let("e", call(compare, "a", "col")), let("ef", call("astype", "e", dtype=DType.F64)),
                    let("r", call("matmul", "ef", "A")))
        got = simplified(*bindings, result="r")
        assert (got == block(result="A")) is fires
        values_agree(*bindings, result="r")


def _prims(got: Block) -> list[str]:
    return [b.expr.prim.name for b in got.bindings if isinstance(b.expr, Call)]


# V * U + transpose(transpose(U, (1, 0, 2)) @ transpose(W, (0, 2, 1)), (1, 0, 2)): the GMM's
# diag(exp(q)) x + L x, for m points x of n numbers in each of p components
DIAGONAL_AND_PRODUCT = (let("ax", call("mul", "V", "U")),
                        let("xt", call("transpose", "U", perm=(1, 0, 2))),
                        let("lt", call("transpose", "W", perm=(0, 2, 1))),
                        let("pr", call("matmul", "xt", "lt")),
                        let("lx", call("transpose", "pr", perm=(1, 0, 2))))


@pytest.mark.parametrize("bindings", [
    (*DIAGONAL_AND_PRODUCT, let("r", call("add", "ax", "lx"))),
    (*DIAGONAL_AND_PRODUCT, let("r", call("add", "lx", "ax"))),
    # no transposes: x[.., p, n] @ A + x * v, A broadcast along the batch axis m
    (let("ax", call("mul", "U", "x")), let("pr", call("matmul", "U", "A")), let("r", call("add", "pr", "ax"))),
])
def test_a_diagonal_scaling_beside_a_product_is_added_to_its_matrices(bindings):
    got = simplified(*bindings, result="r")
    assert _prims(got).count("matmul") == 1 and "mul" not in _prims(got)
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("bindings", [
    # the scale varies along the rows of the product: not a diagonal
    (*DIAGONAL_AND_PRODUCT[1:], let("ax", call("mul", "U", "U")), let("r", call("add", "ax", "lx"))),
    # the product is read elsewhere: it is made anyway
    (*DIAGONAL_AND_PRODUCT, let("s", call("add", "ax", "lx")), let("r", MakeTuple((Name("s"), Name("lx"))))),
    # another array is scaled than the one multiplied
    (let("ax", call("mul", "V", "Z")), *DIAGONAL_AND_PRODUCT[1:], let("r", call("add", "ax", "lx"))),
    # as many rows as columns (W @ W + v * W): no pass saved over the matrices' own
    (let("ax", call("mul", "x", "W")), let("pr", call("matmul", "W", "W")), let("r", call("add", "ax", "pr"))),
])
def test_a_scaling_beside_a_product_that_stays(bindings):
    got = simplified(*bindings, result="r")
    assert "mul" in _prims(got)
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("gt_perm, zt_perm", [((1, 2, 0), (1, 0, 2)),   # the diagonal on n, batch p
                                              ((2, 1, 0), (2, 0, 1))])  # on p, batch n: transposed back
def test_a_sum_of_a_product_beside_the_matrix_product_is_its_diagonal(gt_perm, zt_perm):
    # sum(U * Z, axis 0) beside transpose(U) @ transpose(Z), both contracting axis 0
    bindings = (let("gt", call("transpose", "U", perm=gt_perm)), let("zt", call("transpose", "Z", perm=zt_perm)),
                let("pr", call("matmul", "gt", "zt")), let("gz", call("mul", "U", "Z")),
                let("s", call("sum", "gz", axes=(0,))), let("r", MakeTuple((Name("pr"), Name("s")))))
    got = simplified(*bindings, result="r")
    assert "mul" not in _prims(got) and _prims(got).count("matmul") == 1
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("bindings", [
    # no product in scope
    (let("gz", call("mul", "U", "Z")), let("r", call("sum", "gz", axes=(0,)))),
    # a product contracting another axis than the sum's
    (let("gt", call("transpose", "U", perm=(0, 2, 1))), let("pr", call("matmul", "gt", "Z")),
     let("gz", call("mul", "U", "Z")), let("s", call("sum", "gz", axes=(0,))),
     let("r", MakeTuple((Name("pr"), Name("s"))))),
    # as many items summed as on the diagonal (sum(W * W, axis 1) beside Wᵀ @ W)
    (let("wt", call("transpose", "W", perm=(0, 2, 1))), let("pr", call("matmul", "wt", "W")),
     let("ww", call("mul", "W", "W")), let("s", call("sum", "ww", axes=(1,))),
     let("r", MakeTuple((Name("pr"), Name("s"))))),
])
def test_a_sum_of_a_product_that_stays(bindings):
    got = simplified(*bindings, result="r")
    assert "mul" in _prims(got)
    values_agree(*bindings, result="r")


# ---- indexing --------------------------------------------------------------------------------


def _grid(*bindings):
    """rows = arange(n)[:, None], cols = arange(n), then `bindings`."""
    return (let("a", ARANGE_N), let("rows", call("reshape", "a", shape=(N, Dim(1)))), *bindings)


def test_a_gather_of_every_item_in_order_is_a_reshape():
    # A[arange(n)[:, None], arange(n)] -> A
    bindings = _grid(let("r", call("gather", "A", "rows", "a", clip=False)))
    assert simplified(*bindings, result="r") == block(result="A")
    values_agree(*bindings, result="r")


@pytest.mark.parametrize("indices", [("a", "a"), ("a", "rows")])  # the diagonal; the transpose
def test_other_gathers_stay(indices):
    bindings = _grid(let("r", call("gather", "A", *indices, clip=False)))
    got = simplified(*bindings, result="r")
    assert got.bindings[-1].expr.prim is P.GATHER


def test_a_scatter_of_every_item_in_order_is_an_addition():
    # gather_add(zeros((n, n)), A, arange(n)[:, None], arange(n)) -> A
    bindings = _grid(let("z", call("zeros", shape=(N, N), dtype=DType.F64)),
                     let("r", call("gather_add", "z", "A", "rows", "a", clip=False)))
    assert simplified(*bindings, result="r") == block(result="A")
    values_agree(*bindings, result="r")
    diagonal = _grid(let("z", call("zeros", shape=(N, N), dtype=DType.F64)),
                     let("r", call("gather_add", "z", "x", "a", "a", clip=False)))
    assert simplified(*diagonal, result="r").bindings[-1].expr.prim is P.GATHER_ADD


def test_adding_a_scatter_into_zeros_scatters_into_the_other_addend():
    # x + index_add(zeros(n), s, at k) -> index_add(x, s, at k)
    spec = (("at",),)
    bindings = (let("z", call("zeros", shape=(N,), dtype=DType.F64)),
                let("u", call("index_add", "z", "s", "k", spec=spec)), let("r", call("add", "x", "u")))
    assert simplified(*bindings, result="r") == block(let("r", call("index_add", "x", "s", "k", spec=spec)),
                                                      result="r")
    kept = (let("u", call("index_add", "y", "s", "k", spec=spec)), let("r", call("add", "x", "u")))
    assert simplified(*kept, result="r") == block(*kept, result="r")


# ---- tuples and loops -------------------------------------------------------------------------


def test_a_tuple_of_every_projection_in_order_is_the_tuple():
    # (q.0, q.1) -> q;  (q.1, q.0) stays
    parts = (let("a", Project(Name("q"), 0)), let("b", Project(Name("q"), 1)))
    assert simplified(*parts, let("r", MakeTuple((Name("a"), Name("b")))), result="r") == block(result="q")
    swapped = simplified(*parts, let("r", MakeTuple((Name("b"), Name("a")))), result="r")
    assert swapped.result == Name("r")


def test_loop_invariant_calls_move_out_of_the_loop_but_indexing_stays():
    row = call("index", "A", "k", spec=(("at",), ("slice", Dim(0), N)))
    body = block(let("e", call("exp", "y")), let("row", row),
                 let("n2", call("add", "acc", "e")), let("n3", call("add", "n2", "row")), result="n3")
    bindings = (let("r", LoopE(Name("x"), Name("A"), "acc", "xi", body, False)),)
    got = simplified(*bindings, result="r")
    assert got.bindings[0] == let("e", call("exp", "y"))
    assert [b.name for b in got.bindings[1].expr.body.bindings] == ["row", "n2", "n3"]
    values_agree(*bindings, result="r")


def _scan_of_sums(stacked: bool = True) -> LoopE:
    return LoopE(Name("x"), Name("A"), "acc", "xi", block(let("n2", call("add", "acc", "xi")), result="n2"),
                 stacked)


def test_a_scan_read_only_at_its_last_state_is_a_fold():
    # let s = scan(x, A, f); s[n - 1] -> fold(x, A, f)
    last = (let("l", call("size", dim=N - 1)),
            let("r", call("index", "s", "l", spec=(("at",), ("slice", Dim(0), N)))))
    got = simplified(let("s", _scan_of_sums()), *last, result="r")
    (fold,) = got.bindings
    assert isinstance(fold.expr, LoopE) and not fold.expr.stacked and got.result == Name(fold.name)
    values_agree(let("s", _scan_of_sums()), *last, result="r")
    # read whole as well: it stays a scan
    both = simplified(let("s", _scan_of_sums()), *last, let("t", MakeTuple((Name("r"), Name("s")))),
                      result="t")
    assert [b.expr.stacked for b in both.bindings if isinstance(b.expr, LoopE)] == [True]


def test_an_item_of_a_loop_state_that_nothing_reads_is_dropped():
    # fold((x, y), A, |acc, xi| (acc.0 + xi, acc.1 * xi)).0: the second item goes
    body = block(let("a0", Project(Name("acc"), 0)), let("a1", Project(Name("acc"), 1)),
                 let("n0", call("add", "a0", "xi")), let("n1", call("mul", "a1", "xi")),
                 let("nt", MakeTuple((Name("n0"), Name("n1")))), result="nt")
    bindings = (let("i0", MakeTuple((Name("x"), Name("y")))),
                let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", body, False)),
                let("z", Project(Name("r"), 0)))
    got = simplified(*bindings, result="z")
    loops = [b.expr for b in got.bindings if isinstance(b.expr, LoopE)]
    assert len(loops) == 1 and P.MUL not in {b.expr.prim for b in loops[0].body.bindings
                                             if isinstance(b.expr, Call)}
    values_agree(*bindings, result="z")
    # the first item reads the second: both stay
    feeding = block(let("a0", Project(Name("acc"), 0)), let("a1", Project(Name("acc"), 1)),
                    let("n0", call("mul", "a0", "a1")), let("n1", call("mul", "a1", "xi")),
                    let("nt", MakeTuple((Name("n0"), Name("n1")))), result="nt")
    kept = (bindings[0], let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", feeding, False)), bindings[2])
    got = simplified(*kept, result="z")
    (loop,) = [b.expr for b in got.bindings if isinstance(b.expr, LoopE)]
    assert loop.body.bindings[-1].expr == MakeTuple((Name("n0"), Name("n1")))


def _accumulating_body(outer: bool) -> Block:
    """|acc, xi| (acc.0 * xi, acc.1 + e) with e = (acc.0 * xi)[:, None] * xi (outer) or acc.0 * xi."""
    term = ((let("col", call("expand_dims", "n0", axis=1)), let("e", call("mul", "col", "xi")))
            if outer else (let("e", call("mul", "n0", 2.0)),))
    return block(let("a0", Project(Name("acc"), 0)), let("a1", Project(Name("acc"), 1)),
                 let("n0", call("mul", "a0", "xi")), *term, let("n1", call("add", "a1", "e")),
                 let("nt", MakeTuple((Name("n0"), Name("n1")))), result="nt")


@pytest.mark.parametrize("outer", [True, False])
def test_accumulated_outer_products_are_one_product_after_the_loop(outer):
    # fold((x, A), V, |acc, xi| (acc.0 * xi, acc.1 + (acc.0 * xi)[:, None] * xi)).1
    #   -> A + U.T @ X with U, X the stacked factors (a vector accumulator: x + sum(E, axis=0))
    start = MakeTuple((Name("x"), Name("A") if outer else Name("y")))
    loop = LoopE(Name("i0"), Name("V"), "acc", "xi", _accumulating_body(outer), False)
    bindings = (let("i0", start), let("r", loop),
                let("z", Project(Name("r"), 1)))
    got = simplified(*bindings, result="z")
    (loop,) = [b.expr for b in got.bindings if isinstance(b.expr, LoopE)]
    assert loop.stacked
    assert not any(isinstance(b.expr, Call) and b.expr.prim is P.ADD for b in loop.body.bindings)
    after = {b.expr.prim for b in got.bindings if isinstance(b.expr, Call)}
    assert (P.MATMUL in after) is outer and (P.SUM in after) is not outer
    values_agree(*bindings, result="z")


def test_an_accumulator_another_item_reads_stays():
    # acc.0 reads acc.1: the running sum is needed at every step
    body = block(let("a0", Project(Name("acc"), 0)), let("a1", Project(Name("acc"), 1)),
                 let("n0", call("mul", "a0", "a1")), let("n1", call("add", "a1", "xi")),
                 let("nt", MakeTuple((Name("n0"), Name("n1")))), result="nt")
    bindings = (let("i0", MakeTuple((Name("x"), Name("y")))),
                let("r", LoopE(Name("i0"), Name("V"), "acc", "xi", body, False)),
                let("z", Project(Name("r"), 1)),
                let("w", Project(Name("r"), 0)), let("t", MakeTuple((Name("z"), Name("w")))))
    got = simplified(*bindings, result="t")
    (loop,) = [b.expr for b in got.bindings if isinstance(b.expr, LoopE)]
    assert not loop.stacked


def _pair_body(first, second) -> Block:
    """|acc, xi| (first, second), first and second made from a0 = acc.0, a1 = acc.1 and xi."""
    return block(let("a0", Project(Name("acc"), 0)), let("a1", Project(Name("acc"), 1)),
                 *first, *second, let("nt", MakeTuple((Name(first[-1].name), Name(second[-1].name)))),
                 result="nt")


def _loops_of(got: Block) -> list[LoopE]:
    return [b.expr for b in got.bindings if isinstance(b.expr, LoopE)]


@pytest.mark.parametrize("stacked", [False, True, (False, True)])
def test_an_item_each_step_returns_unchanged_is_its_initial_value(stacked):
    # loop((x, y), A, |acc, xi| (acc.0, acc.1 + acc.0 * xi)) -> its item 0 is x after every
    # step (stacked: broadcast_to(x, (n, n))), read as x, and the loop carries item 1 alone
    body = _pair_body((let("same", Name("a0")),),
                      (let("m", call("mul", "a0", "xi")), let("n1", call("add", "a1", "m"))))
    bindings = (let("i0", MakeTuple((Name("x"), Name("y")))),
                let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", body, stacked)),
                let("z0", Project(Name("r"), 0)), let("z1", Project(Name("r"), 1)),
                let("t", MakeTuple((Name("z0"), Name("z1")))))
    got = simplified(*bindings, result="t")
    (loop,) = _loops_of(got)
    assert loop.init == Name("y") and call("mul", "x", "xi") in [b.expr for b in loop.body.bindings], loop
    assert (call("broadcast_to", "x", shape=(N, N)) in [b.expr for b in got.bindings]) is (stacked is True)
    values_agree(*bindings, result="t")


def test_an_item_that_takes_another_items_value_stays():
    # loop((x, y), A, |acc, xi| (acc.1, acc.0 * xi)): no item is returned unchanged
    body = _pair_body((let("other", Name("a1")),), (let("n1", call("mul", "a0", "xi")),))
    bindings = (let("i0", MakeTuple((Name("x"), Name("y")))),
                let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", body, False)))
    (loop,) = _loops_of(simplified(*bindings, result="r"))
    assert loop.body.bindings[-1].expr == MakeTuple((Name("a1"), Name("n1")))


@pytest.mark.parametrize("stacked, expected", [(False, block(result="x")),
                                               (True, block(let("r", call("broadcast_to", "x", shape=(N, N))),
                                                            result="r"))])
def test_a_state_each_step_returns_unchanged_is_its_initial_value(stacked, expected):
    # fold(x, A, |acc, xi| acc) -> x;  scan(x, A, |acc, xi| acc) -> broadcast_to(x, (n, n))
    bindings = (let("r", LoopE(Name("x"), Name("A"), "acc", "xi", block(result="acc"), stacked)),)
    assert simplified(*bindings, result="r") == expected
    values_agree(*bindings, result="r")


def _steps_loop(backwards: bool, second) -> tuple:
    """scan[1](x, arange(p), |acc, i| (acc.0 * V[t], second)).1, t = i or p - 1 - i, over
    V: (p, n), `second` made from t, acc and outside values."""
    row = (("at",), ("slice", Dim(0), N))
    row_index = ((let("last", call("size", dim=P3 - 1)), let("t", call("sub", "last", "i")))
                 if backwards else (let("t", Name("i")),))
    first = (*row_index, let("v", call("index", "V", "t", spec=row)), let("n0", call("mul", "a0", "v")))
    return (let("steps", call("arange", lo=Dim(0), hi=P3)), let("i0", MakeTuple((Name("x"), Name("y")))),
            let("r", LoopE(Name("i0"), Name("steps"), "acc", "i", _pair_body(first, second), (False, True))),
            let("z0", Project(Name("r"), 0)), let("z1", Project(Name("r"), 1)),
            let("t2", MakeTuple((Name("z0"), Name("z1")))))


def _state_before(states: str) -> tuple:
    """if t == 0 { y } else { states[t - 1] }"""
    row = (("at",), ("slice", Dim(0), N))
    return (let("first", call("eq", "t", 0)),
            let("before", IfElse(Name("first"), block(result="y"),
                                 block(let("t1", call("sub", "t", 1)),
                                       let("b", call("index", states, "t1", spec=row)), result="b"))))


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("second", [
    (let("same", call("exp", "y")),),                                           # made by no step
    (let("w", call("index", "V", "t", spec=(("at",), ("slice", Dim(0), N)))),),  # V's own row
], ids=["invariant", "row"])
def test_a_stacked_item_that_no_step_makes_is_made_once_after_the_loop(backwards, second):
    # scan[1](.., arange(p), |acc, i| (.., e)).1 -> broadcast_to(e, (p, n)) or V[rows],
    # rows = arange(p) or p - 1 - arange(p): the loop carries item 0 alone
    bindings = _steps_loop(backwards, second)
    got = simplified(*bindings, result="t2")
    (loop,) = _loops_of(got)
    assert loop.init == Name("x") and loop.stacked is False, loop
    assert not any(isinstance(b.expr, IfElse) for b in loop.body.bindings)
    values_agree(*bindings, result="t2")


@pytest.mark.parametrize("second", [
    # V[p - 1 - (p - 1)] at every step: row 0 again and again, not the rows in order
    (let("same_row", call("sub", "last", "last")),
     let("w", call("index", "V", "same_row", spec=(("at",), ("slice", Dim(0), N))))),
    # the state before step t is copied row by row, as the reverse steps read it in
    # place: made after the loop it would be the states behind y, a concatenated copy
    _state_before("V"),
], ids=["same-row", "state-before"])
def test_a_stacked_item_that_is_not_a_whole_array_read_in_order_stays(second):
    bindings = _steps_loop(True, second)
    (loop,) = _loops_of(simplified(*bindings, result="t2"))
    assert loop.stacked == (False, True)
    values_agree(*bindings, result="t2")


@pytest.mark.parametrize("start", ["y", "A"])
def test_an_invariant_added_at_every_step_is_added_once_times_the_length(start):
    # fold((x, y), A, |acc, xi| (acc.0 * xi, acc.1 + exp(y))).1 -> y + f64(n) * exp(y)
    # (a matrix too, which accumulated_products leaves: no outer product of the step's vectors)
    body = _pair_body((let("n0", call("mul", "a0", "xi")),),
                      (let("e", call("exp", start)), let("n1", call("add", "a1", "e"))))
    bindings = (let("i0", MakeTuple((Name("x"), Name(start)))),
                let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", body, False)),
                let("z0", Project(Name("r"), 0)), let("z1", Project(Name("r"), 1)),
                let("t", MakeTuple((Name("z0"), Name("z1")))))
    got = simplified(*bindings, result="t")
    (loop,) = _loops_of(got)
    assert loop.init == Name("x"), loop
    after = {b.expr.prim for b in got.bindings if isinstance(b.expr, Call)}
    assert {P.ASTYPE, P.MUL} <= after and P.SUM not in after, got  # f64(n) * exp(y), not a sum of n terms
    values_agree(*bindings, result="t")
    # stacked, item 1 is y + k * exp(y) after step k: it stays
    scan = (*bindings[:1], let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", body, (False, True))),
            *bindings[2:])
    (loop,) = _loops_of(simplified(*scan, result="t"))
    assert loop.stacked == (False, True)


def test_a_broadcast_gathered_along_its_broadcast_axis_is_a_broadcast():
    # broadcast_to(x, (n, n))[i] -> broadcast_to(x, (n, n));  of o: (1, n), whose leading axis is no new one, stays
    bindings = (let("b", call("broadcast_to", "x", shape=(N, N))), let("r", call("gather", "b", "i", clip=False)))
    assert simplified(*bindings, result="r") == block(bindings[0], result="b")
    values_agree(*bindings, result="r")
    kept = (let("b", call("broadcast_to", "o", shape=(N, N))), let("r", call("gather", "b", "i", clip=False)))
    assert simplified(*kept, result="r") == block(*kept, result="r")


def test_a_broadcast_indexed_along_its_broadcast_axis_is_its_source():
    # broadcast_to(x, (n, n))[k] -> x;  A[k] of a plain array stays
    spec = (("at",), ("slice", Dim(0), N))
    bindings = (let("b", call("broadcast_to", "x", shape=(N, N))),
                let("r", call("index", "b", "k", spec=spec)))
    assert simplified(*bindings, result="r") == block(result="x")
    kept = (let("r", call("index", "A", "k", spec=spec)),)
    assert simplified(*kept, result="r") == block(*kept, result="r")


def test_scatters_into_zeros_added_to_a_value_scatter_into_it():
    # x + index_add(index_add(zeros(n), s, at k), g, at 0) -> index_add(index_add(x, s, at k), g, at 0)
    spec = (("at",),)
    bindings = (let("z", call("zeros", shape=(N,), dtype=DType.F64)),
                let("u", call("index_add", "z", "s", "k", spec=spec)),
                let("w", call("index_add", "u", "g", 0, spec=spec)), let("r", call("add", "x", "w")))
    got = simplified(*bindings, result="r")
    assert [b.expr.prim for b in got.bindings] == [P.INDEX_ADD, P.INDEX_ADD]
    assert got.bindings[0].expr.args[0] == Name("x")
    values_agree(*bindings, result="r")


def test_every_row_added_once_into_zeros_is_a_stack():
    # index_add(index_add(index_add(zeros((3, n)), x, 2), y, 0), x, 1) -> stack((y, x, x))
    spec = (("at",), ("slice", Dim(0), N))
    rows = (let("z", call("zeros", shape=(Dim(3), N), dtype=DType.F64)),
            let("a", call("index_add", "z", "x", 2, spec=spec)),
            let("b", call("index_add", "a", "y", 0, spec=spec)))
    bindings = (*rows, let("r", call("index_add", "b", "x", 1, spec=spec)))
    stacked = block(let("r", call("stack", "y", "x", "x", axis=0)), result="r")
    assert simplified(*bindings, result="r") == stacked
    values_agree(*bindings, result="r")
    # row 1 twice and row 2 never: it stays a scatter
    twice = (*rows, let("r", call("index_add", "b", "x", 0, spec=spec)))
    assert simplified(*twice, result="r").bindings[-1].expr.prim is P.INDEX_ADD


def test_a_row_of_values_added_along_a_whole_axis_is_their_row_added_into_a_row():
    # index_add(zeros((p, n, n)), V, (:, 0))[1] -> index_add(zeros((n, n)), V[1], (0,)): the
    # (p, n, n) array is never made (a reverse loop reads a stacked cotangent row by row)
    spec = (("slice", Dim(0), P3), ("at",))
    row = (("at",), ("slice", Dim(0), N), ("slice", Dim(0), N))
    scatter = (let("z", call("zeros", shape=(P3, N, N), dtype=DType.F64)),
               let("s", call("index_add", "z", "V", 0, spec=spec)))
    bindings = (*scatter, let("r", call("index", "s", 1, spec=row)))
    got = simplified(*bindings, result="r")
    zeros = [b.expr.params for b in got.bindings if isinstance(b.expr, Call) and b.expr.prim is P.ZEROS]
    assert zeros == [params(dtype=DType.F64, shape=(N, N))], got
    values_agree(*bindings, result="r")
    # read whole as well: the scatter stays, and so do its rows
    whole = (*bindings, let("t", call("sum", "s", axes=(0, 1, 2))), let("u", call("add", "r", "t")))
    assert any(isinstance(b.expr, Call) and b.expr.prim is P.ZEROS and len(param(b.expr.params, "shape")) == 3
               for b in simplified(*whole, result="u").bindings)


def test_a_row_of_a_row_is_one_index():
    # A[k][1] -> A[k, 1]: one read; a value the source names (w = A[k]) stays, and so does
    # a row of a slice that is not a whole axis
    bindings = (let("t1", call("index", "A", "k", spec=(("at",), ("slice", Dim(0), N)))),
                let("r", call("index", "t1", 1, spec=(("at",),))))
    assert simplified(*bindings, result="r") == block(
        let("r", call("index", "A", "k", 1, spec=(("at",), ("at",)))), result="r")
    values_agree(*bindings, result="r")
    named = (let("w", bindings[0].expr), let("r", call("index", "w", 1, spec=(("at",),))))
    assert simplified(*named, result="r") == block(*named, result="r")
    sliced = (let("t1", call("index", "A", "k", spec=(("at",), ("slice", Dim(1), N)))),
              let("r", call("index", "t1", 1, spec=(("at",),))))
    assert simplified(*sliced, result="r") == block(*sliced, result="r")


@pytest.mark.parametrize("target", ["A", "zeros"])
def test_constant_rows_of_a_scatter_at_a_constant_row_read_the_rows_added_to(target):
    # index_add(A, x, 0)[0] + index_add(A, x, 0)[2] -> (A[0] + x) + A[2]: the copy of A is
    # never made (of zeros: x + zeros)
    spec = (("at",), ("slice", Dim(0), N))
    made = (let("z", call("zeros", shape=(N, N), dtype=DType.F64)),) if target == "zeros" else ()
    bindings = (*made, let("s", call("index_add", "z" if made else "A", "x", 0, spec=spec)),
                let("r0", call("index", "s", 0, spec=spec)), let("r2", call("index", "s", 2, spec=spec)),
                let("r", call("add", "r0", "r2")))
    got = simplified(*bindings, result="r")
    assert not any(isinstance(b.expr, Call) and b.expr.prim is P.INDEX_ADD for b in got.bindings), got
    values_agree(*bindings, result="r")
    # a row the sizes do not decide (k): the scatter stays
    read_at_k = (*bindings[:-1], let("rk", call("index", "s", "k", spec=spec)), let("r", call("add", "r0", "rk")))
    assert any(isinstance(b.expr, Call) and b.expr.prim is P.INDEX_ADD
               for b in simplified(*read_at_k, result="r").bindings)


@pytest.mark.parametrize("start", ["zeros", "A"])
def test_a_state_item_made_by_adding_into_zeros_carries_the_values_alone(start):
    # fold((zeros((n, n)), y), A, |acc, xi| (index_add(zeros((n, n)), acc.1 * xi, 0), acc.1 + acc.0[0]))
    #   -> the loop carries acc.1 * xi, a vector, and reads acc.0[0] as that vector: no (n, n)
    #   array made per step; started from A, not zeros, the scatter stays
    spec = (("at",), ("slice", Dim(0), N))
    body = _pair_body((let("v", call("mul", "a1", "xi")), let("n0", call("index_add", "z", "v", 0, spec=spec))),
                      (let("row", call("index", "a0", 0, spec=spec)), let("n1", call("add", "a1", "row"))))
    bindings = (let("z", call("zeros", shape=(N, N), dtype=DType.F64)),
                let("i0", MakeTuple((Name("z" if start == "zeros" else "A"), Name("y")))),
                let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", body, False)),
                let("z0", Project(Name("r"), 0)), let("z1", Project(Name("r"), 1)),
                let("t", MakeTuple((Name("z0"), Name("z1")))))
    (loop,) = _loops_of(simplified(*bindings, result="t"))
    scatters = [b for b in loop.body.bindings if isinstance(b.expr, Call) and b.expr.prim is P.INDEX_ADD]
    assert bool(scatters) == (start == "A"), loop
    values_agree(*bindings, result="t")


def test_an_item_of_an_arange_is_its_index():
    bindings = (let("a", ARANGE_N), let("r", call("index", "a", "k", spec=(("at",),))))
    assert simplified(*bindings, result="r") == block(result="k")
    values_agree(*bindings, result="r")
