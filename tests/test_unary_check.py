"""unary_check: the stack typing of every instruction, what it refuses and how it
says so; and unary_print, whose text the checker's messages are made of."""

from __future__ import annotations

import pytest

from catad.compiler.errors import Span
from catad.compiler.primitives import (ADD, CONST, INDEX, MATMUL, MUL, SIZE, SUM, ZEROS, Params,
                                       Primitive, params)
from catad.compiler.typed import SizeBinding
from catad.compiler.types import BOOL, F64, I64, ArrayType, Dim, DType, TupleType, scalar, stacked_type
from catad.compiler.unary import (Build, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                                  UFunction, UProgram, Var, seq)
from catad.compiler.unary_check import (UnaryTypeError, check_function, check_program, check_term,
                                        element_type, join_types, leading_length)
from catad.compiler.unary_print import (format_function, format_instruction, format_program,
                                        format_term, format_type_stack)

n, m, d = Dim.of("n"), Dim.of("m"), Dim.of("d")
F32 = scalar(DType.F32)
LIT = scalar(DType.F64, weak=True)


def vec(*shape: Dim | int, dtype: DType = DType.F64) -> ArrayType:
    return ArrayType(dtype, tuple(Dim.of(s) for s in shape))


def op(prim: Primitive, arity: int, ps: Params = ()) -> Term:
    return seq(Prim(prim, ps, arity), Drop(1, arity))


def const(value, dtype: DType = DType.F64) -> Term:
    return Prim(CONST, params(value=value, dtype=dtype), 0)


def binary(prim: Primitive, a: int, b: int) -> Term:
    return seq(Var(a), Var(b), op(prim, 2))


# ---- the typing of each instruction -------------------------------------------

def test_var_prim_drop():
    assert check_term(binary(ADD, 0, 1), (vec(n), F64)) == (vec(n), F64, vec(n))
    assert check_term(Prim(MATMUL, (), 2), (vec(n, d), vec(d))) == (vec(n, d), vec(d), vec(n))


def test_drop_keep_and_count():
    ctx = (F64, I64, BOOL, vec(n))
    assert check_term(Drop(1, 2), ctx) == (F64, vec(n))
    assert check_term(Drop(0, 4), ctx) == ()
    assert check_term(Drop(4, 0), ctx) == ctx
    assert check_term(Drop(2, 2), ctx) == (BOOL, vec(n))


def test_tuple_consumes_and_get_copies():
    assert check_term(Tuple(2), (F64, I64, BOOL)) == (F64, TupleType((I64, BOOL)))
    pair = TupleType((I64, BOOL))
    assert check_term(Get(1), (pair,)) == (pair, BOOL)


def test_if_build_map_reduce_loop():
    assert check_term(If(Var(0), Var(0)), (F64, BOOL)) == (F64, BOOL, F64)
    assert check_term(Build(Dim(1), n, Var(0)), (vec(3),)) == (vec(3), vec(n - 1, 3))
    assert check_term(Map(2, binary(MUL, 2, 3)), (vec(n, 2), vec(n, 2)))[-1] == vec(n, 2)
    assert check_term(Reduce(binary(ADD, 2, 3)), (vec(n, 3), vec(3)))[-1] == vec(3)
    assert check_term(Loop(binary(ADD, 2, 3), False), (F64, vec(n)))[-1] == F64
    assert check_term(Loop(binary(ADD, 2, 3), True), (F64, vec(n)))[-1] == vec(n)


def test_a_tuple_of_arrays_is_run_over_item_by_item():
    soa = TupleType((vec(n), vec(n, 2, dtype=DType.I64)))
    assert element_type(soa) == TupleType((F64, vec(2, dtype=DType.I64)))
    assert leading_length(soa) == n
    assert stacked_type(element_type(soa), n) == soa
    state = TupleType((F64, I64))
    body = seq(Var(2), Get(0), Drop(1, 1), Var(3), op(ADD, 2), Var(2), Get(1), Drop(1, 1), Tuple(2))
    assert check_term(Loop(body, True), (state, vec(n)))[-1] == TupleType((vec(n), vec(n, dtype=DType.I64)))
    assert leading_length(TupleType((vec(n), vec(m)))) is None


def test_join_types():
    assert join_types(F64, F64) == F64
    assert join_types(LIT, F64) == F64 and join_types(F64, LIT) == F64
    assert join_types(LIT, F32) == F32
    assert join_types(scalar(DType.I64, weak=True), F64) == F64
    assert join_types(LIT, I64) is None              # a float literal does not yield to an int
    assert join_types(F64, F32) is None
    assert join_types(vec(n), vec(m)) is None
    assert join_types(TupleType((LIT, I64)), TupleType((F64, I64))) == TupleType((F64, I64))


def test_sizes_known_substitutes_dims():
    term = seq(Prim(ZEROS, params(shape=(n,), dtype=DType.F64), 0), Build(Dim(0), n, Var(1)))
    assert check_term(term, ()) == (vec(n), vec(n, dtype=DType.I64))
    assert check_term(term, (), {"n"}) == (vec(n), vec(n, dtype=DType.I64))
    assert check_term(term, (), {"n": 3}) == (vec(3), vec(3, dtype=DType.I64))
    # concrete sizes let a concrete context meet a symbolic shape
    with pytest.raises(UnaryTypeError):
        check_term(seq(term, Var(0), Var(1), op(ADD, 2)), (vec(3),))
    assert check_term(seq(Prim(ZEROS, params(shape=(n,), dtype=DType.F64), 0), Var(0), op(ADD, 2)),
                      (vec(3),), {"n": 3})[-1] == vec(3)


# ---- rejections ------------------------------------------------------------------

@pytest.mark.parametrize("term, ctx, message", [
    (Var(2), (F64, I64), r"`var 2` reads entry 2 of a stack of 2; stack: \[0: f64, 1: i64\]"),
    (Var(-1), (F64,), "reads entry -1"),
    (Drop(1, 3), (F64, I64, BOOL), r"`drop 3 keep 1` needs 4 entries, but the stack has 3"),
    (Drop(-1, 1), (F64, I64), "negative"),
    (Tuple(3), (F64,), "needs 3 entries"),
    (Get(0), (F64,), r"`get 0` needs a tuple of more than 0 items on top"),
    (Get(2), (TupleType((F64, F64)),), "more than 2 items"),
    (Prim(ADD, (), 2), (vec(n), vec(m)),
     r"`add/2` does not apply to f64\[n\], f64\[m\]: shapes \[n\] and \[m\] do not broadcast"),
    (Prim(ADD, (), 3), (F64, F64, F64), "add takes 2 arguments, got 3"),
    (If(Var(0), Var(0)), (F64, I64), r"`if` needs a bool scalar on top, got i64"),
    (If(Var(0), Var(1)), (F64, BOOL), "the branches have different types f64 and bool"),
    (If(Var(0), seq(Var(0), Var(0))), (F64, BOOL), "else-branch must leave its stack and push one"),
    (If(Var(0), Drop(0, 1)), (F64, BOOL), "else-branch must leave its stack"),
    (Map(2, binary(ADD, 2, 3)), (vec(n), vec(m)), r"`map/2` runs over arrays of different lengths n, m"),
    (Map(1, Var(1)), (F64,), "needs arrays"),
    (Map(0, Var(0)), (F64,), "maps over no arrays"),
    (Reduce(binary(ADD, 2, 3)), (vec(n), vec(3)), "the unit and the items have different types"),
    (Reduce(seq(Var(2), Var(2), Tuple(2))), (vec(n), F64), "the accumulator and the body's result"),
    (Loop(seq(Var(3), Var(3), Tuple(2)), False), (F64, vec(n)),
     r"the initial state and the body's result have different types f64 and \(f64, f64\)"),
    (Loop(Var(0), True), (F64, F64), "needs arrays"),
    (Loop(Var(2), (True, False)), (F64, vec(n)), r"stacks items \[True, False\] of a state of type f64"),
    (Loop(Var(2), (True,)), (TupleType((F64, F64)), vec(n)), r"stacks items \[True\] of a state of type \(f64, f64\)"),
    (Build(Dim(0), n, Var(0)), (F64,), None),  # fine without sizes_known...
])
def test_ill_typed_terms_are_refused(term, ctx, message):
    if message is None:
        check_term(term, ctx)
        return
    with pytest.raises(UnaryTypeError, match=message):
        check_term(term, ctx)


def test_an_unknown_size_variable_is_refused():
    with pytest.raises(UnaryTypeError, match=r"`build 0..n` uses the size n, but n is not in scope"):
        check_term(Build(Dim(0), n, Var(0)), (F64,), {"m"})
    with pytest.raises(UnaryTypeError, match="uses the size m \\+ 1, but m is not in scope"):
        check_term(Prim(SIZE, params(dim=m + 1), 0), (), {"n"})


def test_errors_in_bodies_say_where_they_are():
    inner = Map(1, seq(Var(1), If(Var(6), Var(4)), Drop(1, 1)))
    term = Build(Dim(0), n, seq(Var(0), inner, Drop(1, 1)))
    with pytest.raises(UnaryTypeError, match=r"^in the body of build 0..n: in the body of map/1: "
                                             r"in the then-branch of if: `var 6` reads entry 6"):
        check_term(term, (vec(m), BOOL))


# ---- functions -------------------------------------------------------------------

def linear() -> UFunction:
    """fn linear(w: f64[d], X: f64[n, d]) -> f64[n] { X @ w }"""
    return UFunction("linear", (("w", vec(d)), ("X", vec(n, d))), vec(n),
                     seq(Var(1), Var(0), op(MATMUL, 2)),
                     (SizeBinding("d", 0, 0), SizeBinding("n", 1, 0)))


def test_check_function_accepts_a_well_typed_function():
    check_function(linear())
    check_program(UProgram((linear(),)))


def test_the_result_is_compared_up_to_weakness():
    fn = UFunction("two", (), F64, const(2.0), ())
    check_function(fn)
    with pytest.raises(UnaryTypeError, match="computes weak f64, but the declared result is i64"):
        check_function(UFunction("two", (), I64, const(2.0), ()))


@pytest.mark.parametrize("change, message", [
    (dict(result=vec(d)), r"in fn linear: the body computes f64\[n\], but the declared result is f64\[d\]"),
    (dict(body=seq(Var(1), Var(0), Prim(MATMUL, (), 2))), "must leave the parameters and push the result"),
    (dict(body=seq(Var(1), Var(0), Prim(MATMUL, (), 2), Drop(1, 3))), "must leave the parameters"),
    (dict(sizes=(SizeBinding("d", 0, 0), SizeBinding("n", 1, 1))), "size n is read off parameter 1, axis 1"),
    (dict(sizes=(SizeBinding("d", 0, 0), SizeBinding("n", 2, 0))), "there are 2 parameters"),
    (dict(sizes=(SizeBinding("d", 0, 0),)), "X has type f64\\[n, d\\] but n is not bound"),
    (dict(body=seq(Var(2), Var(0), op(MATMUL, 2))), "in fn linear: `var 2` reads entry 2"),
    (dict(body=seq(Build(Dim(0), m, Var(2)), Get(0))), "in fn linear: `build 0..m` uses the size m"),
])
def test_check_function_refuses(change, message):
    import dataclasses
    fn = dataclasses.replace(linear(), **change)
    with pytest.raises(UnaryTypeError, match=message):
        check_function(fn)


# ---- printing --------------------------------------------------------------------

def test_format_instruction():
    assert format_instruction(Var(3)) == "var 3"
    assert format_instruction(const(1.0)) == "const 1.0: f64"
    assert format_instruction(Prim(SIZE, params(dim=n - 1), 0)) == "size n - 1"
    assert format_instruction(Prim(SUM, params(axes=(0,)), 1)) == "sum/1 axes=(0,)"
    assert format_instruction(Prim(ZEROS, params(shape=(n, Dim(2)), dtype=DType.F32), 0)) \
        == "zeros/0 dtype=f32 shape=(n, 2)"
    spec = (("at",), ("slice", Dim(1), n))
    assert format_instruction(Prim(INDEX, params(spec=spec), 2)) == "index/2 [at, 1:n]"
    assert format_instruction(Drop(1, 2)) == "drop 2 keep 1"
    assert format_instruction(Loop(Var(0), True)) == "scan"
    assert format_instruction(Loop(Var(0), False)) == "fold"


def test_format_type_stack():
    assert format_type_stack((vec(n, d), LIT, TupleType((F64, BOOL)))) \
        == "[0: f64[n, d], 1: weak f64, 2: (f64, bool)]"
    assert format_type_stack(()) == "[]"


def test_format_function():
    fn = linear()
    fn = UFunction(fn.name, fn.params, fn.result,
                   seq(Var(1, hint="X"), Var(0, hint="w"),
                       Prim(MATMUL, (), 2, hint="z", span=Span(3, 13)), Drop(1, 2),
                       Map(1, seq(Var(3), const(2.0), op(MUL, 2))), Drop(1, 1)),
                   fn.sizes)
    assert format_function(fn) == "\n".join([
        "fn linear(w: f64[d], X: f64[n, d]) -> f64[n]",
        "  sizes: d = w.shape[0], n = X.shape[0]",
        "  [2]  var 1                            # X",
        "  [3]  var 0                            # w",
        "  [4]  matmul/2                         # z @3:13",
        "  [5]  drop 2 keep 1",
        "  [3]  map/1",
        "      [4]  var 3",
        "      [5]  const 2.0: f64",
        "      [6]  mul/2",
        "      [7]  drop 2 keep 1",
        "  [4]  drop 1 keep 1",
    ])
    assert format_program(UProgram((fn, fn))) == format_function(fn) + "\n\n" + format_function(fn) + "\n"


def test_format_term_shows_the_depth_in_bodies():
    term = seq(Var(0), If(Build(Dim(0), Dim(2), Var(1)), Loop(Var(2), True)), Reduce(Var(2)))
    assert format_term(term, depth=2) == "\n".join([
        "[2]  var 0",
        "[3]  if",
        "    then:",
        "      [3]  build 0..2",
        "          [4]  var 1",
        "    else:",
        "      [3]  scan",
        "          [5]  var 2",
        "[4]  reduce",
        "    [6]  var 2",
    ])
    assert format_term(Seq(())) == "[0]  (nothing)"
