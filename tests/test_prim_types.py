"""prim_types: the type and shape rule of every primitive, valid and invalid cases."""

from __future__ import annotations

import pytest

from catad.compiler import primitives as P
from catad.compiler.prim_types import (TYPE_RULES, PrimTypeError, broadcast_shapes,
                                       normalize_axis, result_type)
from catad.compiler.primitives import params
from catad.compiler.types import ArrayType, Dim, DType, TupleType

n, m, d = Dim.of("n"), Dim.of("m"), Dim.of("d")


def T(text: str) -> ArrayType:
    """`"f64[n - 1, 3]"` as a type; a trailing `~` makes a weak scalar (`"f64~"`)."""
    weak = text.endswith("~")
    dtype, _, dims = text.rstrip("~").partition("[")
    shape = tuple(_dim(x) for x in dims.rstrip("]").split(",")) if dims else ()
    return ArrayType(DType(dtype), shape, weak)


def _dim(text: str) -> Dim:
    """A dim written as `Dim.__str__` writes it: `2 * n - m + 1`."""
    total, sign, coeff = Dim(0), 1, 1
    tokens = text.split()
    for k, token in enumerate(tokens):
        if token in "+-":
            sign = 1 if token == "+" else -1
        elif token.isdigit() and k + 1 < len(tokens) and tokens[k + 1] == "*":
            coeff = int(token)
        elif token.isdigit():
            total = total + Dim(sign * int(token))
        elif token != "*":
            total, coeff = total + Dim.of(token).scale(sign * coeff), 1
    return total


def ok(prim, ps, args, expected):
    return pytest.param(prim, ps, args, expected, id=f"{prim.name}-ok-{expected}")


def bad(prim, ps, args, kind, words):
    return pytest.param(prim, ps, args, (kind, words), id=f"{prim.name}-{kind}-{words}")


SPEC = (("at",), ("slice", Dim(1), n))

CASES = [
    *(ok(p, (), ("f64[n]",), "f64[n]") for p in P.UNARY_FLOAT),
    ok(P.BY_NAME["exp"], (), ("i64[n]",), "f64[n]"),
    ok(P.BY_NAME["log"], (), ("f32[n]",), "f32[n]"),
    ok(P.BY_NAME["sqrt"], (), ("i64~",), "f64~"),
    ok(P.BY_NAME["tanh"], (), ("bool",), "f64"),
    bad(P.BY_NAME["exp"], (), (TupleType((T("f64"),)),), "type", "expected an array"),
    ok(P.NEG, (), ("i64[n]",), "i64[n]"),
    bad(P.NEG, (), ("bool[n]",), "type", "does not take bool"),
    ok(P.ABS, (), ("bool",), "bool"),
    ok(P.SIGN, (), ("f32[n]",), "f32[n]"),
    bad(P.SIGN, (), ("bool",), "type", "does not take bool"),
    ok(P.NOT, (), ("bool[n]",), "bool[n]"),
    bad(P.NOT, (), ("f64",), "type", "f64 is not bool"),
    ok(P.ADD, (), ("f64[n, d]", "f64[d]"), "f64[n, d]"),
    ok(P.ADD, (), ("f64[n, 1]", "f64[m]"), "f64[n, m]"),
    ok(P.ADD, (), ("f32[n]", "f64~"), "f32[n]"),
    ok(P.ADD, (), ("i64", "f32"), "f64"),
    ok(P.ADD, (), ("i64~", "f64~"), "f64~"),
    ok(P.ADD, (), ("bool", "bool"), "bool"),
    bad(P.ADD, (), ("f64[n]", "f64[m]"), "shape", "shapes [n] and [m] do not broadcast"),
    bad(P.ADD, (), ("f64[3]", "f64[2]"), "shape", "(3 and 2 differ)"),
    ok(P.SUB, (), ("bool[n]", "i64~"), "i64[n]"),
    bad(P.SUB, (), ("bool", "bool[n]"), "type", "does not take bool"),
    ok(P.MUL, (), ("i64[n]", "f64~"), "f64[n]"),
    ok(P.DIV, (), ("i64[n]", "i64"), "f64[n]"),
    ok(P.DIV, (), ("f32[n]", "i64~"), "f32[n]"),
    ok(P.POW, (), ("f32[n]", "i64~"), "f32[n]"),
    ok(P.POW, (), ("bool", "bool"), "i64"),
    ok(P.FLOORDIV, (), ("i64[n]", "i64~"), "i64[n]"),
    ok(P.FLOORDIV, (), ("bool", "bool"), "i64"),
    ok(P.MOD, (), ("i64", "f64[n]"), "f64[n]"),
    ok(P.MINIMUM, (), ("f32[n]", "f64[n]"), "f64[n]"),
    ok(P.MAXIMUM, (), ("i64[n]", "i64~"), "i64[n]"),
    *(ok(p, (), ("f64[n]", "f64~"), "bool[n]") for p in P.COMPARISON),
    ok(P.EQ, (), ("i64~", "i64~"), "bool~"),
    bad(P.LT, (), ("f64[n]", "f64[m]"), "shape", "do not broadcast"),
    *(ok(p, (), ("bool", "bool[n]"), "bool[n]") for p in P.LOGICAL),
    bad(P.AND, (), ("bool[n]", "f64"), "type", "f64 is not bool"),
    ok(P.WHERE, (), ("bool[n]", "f64", "f64[n]"), "f64[n]"),
    ok(P.WHERE, (), ("bool[n]", "f64~", "f64~"), "f64[n]"),
    ok(P.WHERE, (), ("bool[n, 1]", "i64[m]", "f32"), "f64[n, m]"),
    bad(P.WHERE, (), ("f64[n]", "f64", "f64"), "type", "f64[n] is not bool"),
    bad(P.WHERE, (), ("bool[n]", "f64[m]", "f64"), "shape", "do not broadcast"),
    ok(P.CONST, params(value=2.0, dtype=DType.F64), (), "f64~"),
    ok(P.CONST, params(value=2, dtype=DType.F32, weak=False), (), "f32"),
    ok(P.CONST, params(value=True, dtype=DType.BOOL), (), "bool~"),
    bad(P.CONST, params(value=True, dtype=DType.I64), (), "type", "not a i64"),
    bad(P.CONST, params(value=2.5, dtype=DType.I64), (), "type", "not a i64"),
    ok(P.SIZE, params(dim=n - 1), (), "i64"),
    ok(P.ZEROS, params(shape=(n, Dim(3)), dtype=DType.F32), (), "f32[n, 3]"),
    ok(P.ONES, params(shape=(), dtype=DType.I64), (), "i64"),
    bad(P.ZEROS, params(shape=(Dim(-1),), dtype=DType.F64), (), "shape", "negative dim"),
    ok(P.FULL, params(shape=(n,)), ("f64~",), "f64[n]"),
    ok(P.FULL, params(shape=(n, m)), ("bool",), "bool[n, m]"),
    bad(P.FULL, params(shape=(n,)), ("f64[n]",), "shape", "must be a scalar"),
    ok(P.ARANGE, params(lo=Dim(1), hi=n), (), "i64[n - 1]"),
    bad(P.ARANGE, params(lo=Dim(3), hi=Dim(1)), (), "shape", "backwards"),
    ok(P.ASTYPE, params(dtype=DType.I64), ("f64[n]",), "i64[n]"),
    ok(P.ASTYPE, params(dtype=DType.F32), ("f64~",), "f32"),
    ok(P.SUM, params(axes=(1,)), ("f64[n, d]",), "f64[n]"),
    ok(P.SUM, params(axes=(0, 1)), ("f64[n, d]",), "f64"),
    ok(P.SUM, params(axes=(0,)), ("bool[n]",), "i64"),
    ok(P.PROD, params(axes=(0,)), ("i64[n, d]",), "i64[d]"),
    ok(P.MEAN, params(axes=(0,)), ("i64[n]",), "f64"),
    ok(P.MEAN, params(axes=(0,)), ("f32[n]",), "f32"),
    ok(P.MAX, params(axes=(0,)), ("i64[n]",), "i64"),
    ok(P.MIN, params(axes=(1,)), ("f64[n, d]",), "f64[n]"),
    ok(P.LOGSUMEXP, params(axes=(1,)), ("i64[n, d]",), "f64[n]"),
    bad(P.SUM, params(axes=(2,)), ("f64[n, d]",), "shape", "axis 2 is out of range"),
    bad(P.SUM, params(axes=()), ("f64[n]",), "shape", "at least one"),
    bad(P.MAX, params(axes=(1, 0)), ("f64[n, d]",), "shape", "sorted"),
    ok(P.SOFTMAX, params(axis=1), ("f64[n, d]",), "f64[n, d]"),
    ok(P.SOFTMAX, params(axis=0), ("i64[n]",), "f64[n]"),
    bad(P.SOFTMAX, params(axis=1), ("f64[n]",), "shape", "out of range"),
    ok(P.CUMSUM, params(axis=1, reverse=False, exclusive=False), ("f64[n, d]",), "f64[n, d]"),
    ok(P.CUMSUM, params(axis=0, reverse=True, exclusive=True), ("i64[n]",), "i64[n]"),
    bad(P.CUMSUM, params(axis=0, reverse=False, exclusive=False), ("bool[n]",), "type", "numbers, not bools"),
    ok(P.CUMPROD, params(axis=0, reverse=False, exclusive=True), ("i64[n, d]",), "i64[n, d]"),
    bad(P.CUMPROD, params(axis=1, reverse=False, exclusive=False), ("f64[n]",), "shape", "out of range"),
    bad(P.CUMSUM, params(axis=0, reverse=False, exclusive=False), ("f64",), "shape", "out of range"),
    ok(P.PARITY, params(axes=(1,)), ("bool[n, d]",), "bool[n]"),
    bad(P.PARITY, params(axes=(0,)), ("i64[n]",), "type", "i64[n] is not bool"),
    ok(P.POPCOUNT_LE, params(scale=3), ("bool[n, d]", "bool[m]"), "bool[n]"),
    ok(P.POPCOUNT_LE, params(scale=0), ("bool[n, 1, d]", "bool[m, 3]"), "bool[n, m]"),
    bad(P.POPCOUNT_LE, params(scale=1), ("bool", "bool[d]"), "shape", "rank 1 or more"),
    bad(P.POPCOUNT_LE, params(scale=-1), ("bool[d]", "bool[d]"), "type", "must be an int >= 0"),
    ok(P.MATMUL, (), ("f64[n, d]", "f64[d]"), "f64[n]"),
    ok(P.MATMUL, (), ("f64[d]", "f64[d, m]"), "f64[m]"),
    ok(P.MATMUL, (), ("f64[d]", "f64[d]"), "f64"),
    ok(P.MATMUL, (), ("f64[b, n, d]", "f32[d, m]"), "f64[b, n, m]"),
    ok(P.MATMUL, (), ("f64[b, 1, n, d]", "f64[c, d, m]"), "f64[b, c, n, m]"),
    bad(P.MATMUL, (), ("f64[n, d]", "f64[m]"), "shape", "inner dims of [n, d] and [m] differ"),
    bad(P.MATMUL, (), ("f64[b, n, d]", "f64[c, d, m]"), "shape", "do not broadcast"),
    bad(P.MATMUL, (), ("f64", "f64[n]"), "shape", "rank 1 or more"),
    ok(P.TRANSPOSE, params(perm=(1, 0)), ("f64[n, d]",), "f64[d, n]"),
    ok(P.TRANSPOSE, params(perm=(2, 0, 1)), ("f64[n, d, m]",), "f64[m, n, d]"),
    bad(P.TRANSPOSE, params(perm=(0, 0)), ("f64[n, d]",), "shape", "not a permutation"),
    ok(P.EXPAND_DIMS, params(axis=1), ("f64[n]",), "f64[n, 1]"),
    ok(P.EXPAND_DIMS, params(axis=0), ("f64",), "f64[1]"),
    bad(P.EXPAND_DIMS, params(axis=2), ("f64[n]",), "shape", "out of range"),
    ok(P.BROADCAST_TO, params(shape=(n, d)), ("f64[d]",), "f64[n, d]"),
    ok(P.BROADCAST_TO, params(shape=(n, d)), ("f64[n, 1]",), "f64[n, d]"),
    bad(P.BROADCAST_TO, params(shape=(n, d)), ("f64[m]",), "shape", "does not broadcast to"),
    bad(P.BROADCAST_TO, params(shape=(d,)), ("f64[n, d]",), "shape", "does not broadcast to"),
    ok(P.RESHAPE, params(shape=(n.scale(2),)), ("f64[2, n]",), "f64[2 * n]"),
    ok(P.RESHAPE, params(shape=(Dim(2), Dim(3))), ("f64[6]",), "f64[2, 3]"),
    ok(P.RESHAPE, params(shape=(Dim(3), n)), ("f64[n, 3]",), "f64[3, n]"),
    bad(P.RESHAPE, params(shape=(m,)), ("f64[n]",), "shape", "numbers of elements differ"),
    bad(P.RESHAPE, params(shape=(Dim(4),)), ("f64[6]",), "shape", "numbers of elements differ"),
    ok(P.STACK, params(axis=0), ("f64[n]", "f64[n]", "f64[n]"), "f64[3, n]"),
    ok(P.STACK, params(axis=1), ("f64[n]", "i64[n]"), "f64[n, 2]"),
    bad(P.STACK, params(axis=0), ("f64[n]", "f64[m]"), "shape", "one shape"),
    bad(P.STACK, params(axis=2), ("f64[n]",), "shape", "out of range"),
    bad(P.STACK, params(axis=0), (), "type", "at least one"),
    ok(P.CONCAT, params(axis=0), ("f64[n]", "f64[m]", "f64[2]"), "f64[m + n + 2]"),
    ok(P.CONCAT, params(axis=1), ("f64[n, d]", "f64[n, 1]"), "f64[n, d + 1]"),
    bad(P.CONCAT, params(axis=0), ("f64[n, d]", "f64[m, m]"), "shape", "differ off axis 0"),
    bad(P.CONCAT, params(axis=0), ("f64", "f64"), "shape", "out of range"),
    ok(P.INDEX, params(spec=(("at",),)), ("f64[n, d]", "i64"), "f64[d]"),
    ok(P.INDEX, params(spec=(("at",),)), ("f64[n]", "i64~"), "f64"),
    ok(P.INDEX, params(spec=SPEC), ("f64[m, n, d]", "i64"), "f64[n - 1, d]"),
    ok(P.INDEX, params(spec=(("slice", Dim(0), n - 1),)), ("f64[n]",), "f64[n - 1]"),
    bad(P.INDEX, params(spec=(("slice", Dim(2), Dim(5)),)), ("f64[3]",), "shape",
        "slice 2:5 is out of range"),
    bad(P.INDEX, params(spec=(("slice", Dim(0), n + 1),)), ("f64[n]",), "shape", "out of range"),
    bad(P.INDEX, params(spec=(("at",), ("at",))), ("f64[n]", "i64", "i64"), "shape",
        "2 indices for an array of rank 1"),
    bad(P.INDEX, params(spec=(("at",),)), ("f64[n]", "f64"), "type", "i64 scalar"),
    bad(P.INDEX, params(spec=(("at",),)), ("f64[n]",), "type", "0 index arguments"),
    ok(P.GATHER, params(clip=False), ("f64[n, d]", "i64[m]"), "f64[m, d]"),
    ok(P.GATHER, params(clip=True), ("f64[n, d]", "i64[m]", "i64[m]"), "f64[m]"),
    ok(P.GATHER, params(clip=False), ("f64[n, d]", "i64[m, 1]", "i64[d]"), "f64[m, d]"),
    bad(P.GATHER, params(clip=False), ("f64[n]", "f64[m]"), "type", "must be i64"),
    bad(P.GATHER, params(clip=False), ("f64[n]", "i64[m]", "i64[m]"), "shape", "rank 1"),
    bad(P.GATHER, params(clip=False), ("f64[n]",), "type", "at least one index"),
    ok(P.INDEX_ADD, params(spec=(("at",),)), ("f64[n, d]", "f64[d]", "i64"), "f64[n, d]"),
    ok(P.INDEX_ADD, params(spec=SPEC), ("f64[m, n, d]", "f64~", "i64"), "f64[m, n, d]"),
    ok(P.INDEX_ADD, params(spec=SPEC), ("f64[m, n, d]", "i64[d]", "i64"), "f64[m, n, d]"),
    bad(P.INDEX_ADD, params(spec=(("at",),)), ("f64[n, d]", "f64[n]", "i64"), "shape",
        "does not fit the region [d]"),
    bad(P.INDEX_ADD, params(spec=(("at",),)), ("i64[n]", "f64", "i64"), "type",
        "cannot be added into i64[n]"),
    bad(P.INDEX_ADD, params(spec=()), ("f64[n]",), "type", "a target and a value"),
    ok(P.GATHER_ADD, params(clip=False), ("f64[n, d]", "f64[m, d]", "i64[m]"), "f64[n, d]"),
    ok(P.GATHER_ADD, params(clip=True), ("f64[n]", "f64[m]", "i64[m]"), "f64[n]"),
    bad(P.GATHER_ADD, params(clip=False), ("f64[n, d]", "f64[m]", "i64[m]"), "shape",
        "does not fit the region [m, d]"),
    bad(P.GATHER_ADD, params(clip=False), ("f64[n]", "f64[m]", "f64[m]"), "type", "must be i64"),
]


def _types(args):
    return tuple(T(a) if isinstance(a, str) else a for a in args)


@pytest.mark.parametrize("prim, ps, args, expected", CASES)
def test_rule(prim, ps, args, expected):
    if isinstance(expected, str):
        assert result_type(prim, ps, _types(args)) == T(expected)
    else:
        kind, words = expected
        with pytest.raises(PrimTypeError) as info:
            result_type(prim, ps, _types(args))
        assert info.value.kind == kind
        assert words in info.value.message


def test_every_primitive_has_a_rule():
    assert set(TYPE_RULES) == set(P.ALL)


def test_every_primitive_has_a_valid_case():
    assert {case.values[0] for case in CASES if isinstance(case.values[3], str)} == set(P.ALL)


def test_arity_is_checked():
    with pytest.raises(PrimTypeError, match="exp takes 1 argument, got 2"):
        result_type(P.BY_NAME["exp"], (), (T("f64"), T("f64")))
    with pytest.raises(PrimTypeError, match="where takes 3 arguments, got 2"):
        result_type(P.WHERE, (), (T("bool"), T("f64")))


def test_broadcast_shapes():
    assert broadcast_shapes() == ()
    assert broadcast_shapes((n, Dim(1)), (Dim(1), m), (m,)) == (n, m)
    assert broadcast_shapes((n - 1,), (n + 1 - 2,)) == (n - 1,)
    with pytest.raises(PrimTypeError) as info:
        broadcast_shapes((n, d), (d, n))
    assert info.value.kind == "shape" and "[n, d] and [d, n]" in info.value.message


def test_normalize_axis():
    assert normalize_axis(-1, 3) == 2
    assert normalize_axis(0, 1) == 0
    for axis, rank in ((1, 1), (-2, 1), (0, 0)):
        with pytest.raises(PrimTypeError, match="out of range"):
            normalize_axis(axis, rank)


def test_weak_scalar_operands_keep_the_array_dtype():
    """NEP 50: `x * 2.0` with x f32 stays f32, `x * 2` with x bool becomes i64."""
    assert result_type(P.MUL, (), (T("f32[n]"), T("f64~"))) == T("f32[n]")
    assert result_type(P.MUL, (), (T("bool[n]"), T("i64~"))) == T("i64[n]")
    assert result_type(P.MUL, (), (T("i64[n]"), T("f64~"))) == T("f64[n]")
