"""prim_eval: every primitive's reference semantics, table-driven against math and NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from catad.compiler import primitives as P
from catad.compiler.prim_eval import EVALUATE, apply, is_weak, resolve_params
from catad.compiler.primitives import params
from catad.compiler.types import Dim, DType

n = Dim.of("n")


def prim(name: str) -> P.Primitive:
    return P.BY_NAME[name]


def test_every_primitive_has_a_rule():
    assert set(EVALUATE) == set(P.ALL)


# ---- elementwise float functions against math on scalars -----------------------

def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


MATH = {
    "exp": math.exp, "log": math.log, "log1p": math.log1p, "expm1": math.expm1,
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "tanh": math.tanh,
    "sigmoid": _sigmoid, "softplus": _softplus, "relu": lambda x: max(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))),
    "silu": lambda x: x * _sigmoid(x), "elu": lambda x: x if x > 0 else math.expm1(x),
    "erf": math.erf,
}
POINTS = [-3.5, -1.0, -1e-3, 0.0, 0.25, 1.0, 2.5]
POSITIVE = [1e-3, 0.25, 1.0, 2.5, 10.0]
DOMAIN = {"log": POSITIVE, "sqrt": POSITIVE, "log1p": [-0.75, -1e-3, 0.0, 0.25, 1.0, 10.0]}


def test_the_math_table_covers_the_float_functions():
    assert set(MATH) == {p.name for p in P.UNARY_FLOAT}


@pytest.mark.parametrize("name", sorted(MATH))
def test_float_function_matches_math(name):
    points = DOMAIN.get(name, POINTS)
    expected = [MATH[name](x) for x in points]
    for x, want in zip(points, expected):
        got = apply(prim(name), (), (np.float64(x),))
        assert isinstance(got, np.float64)
        assert got == pytest.approx(want, rel=1e-14, abs=1e-300)
    got = apply(prim(name), (), (np.array(points),))
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("name", sorted(MATH))
def test_float_function_dtypes(name):
    points = DOMAIN.get(name, POINTS)
    assert apply(prim(name), (), (np.array(points, np.float32),)).dtype == np.float32
    assert apply(prim(name), (), (np.array([1, 2], np.int64),)).dtype == np.float64
    assert apply(prim(name), (), (np.array([True, False]),)).dtype == np.float64
    weak = apply(prim(name), (), (1.0,))
    assert type(weak) is float and weak == pytest.approx(MATH[name](1.0), rel=1e-14)
    assert type(apply(prim(name), (), (2,))) is float


@pytest.mark.parametrize("name, x, want", [
    ("sigmoid", -800.0, 0.0), ("sigmoid", 800.0, 1.0), ("sigmoid", -40.0, math.exp(-40.0)),
    ("softplus", 800.0, 800.0), ("softplus", -800.0, 0.0), ("softplus", -40.0, math.exp(-40.0)),
    ("silu", -800.0, 0.0), ("silu", 800.0, 800.0), ("elu", -800.0, -1.0), ("gelu", -40.0, 0.0),
    ("erf", 6.0, 1.0), ("erf", 1e-20, 2 / math.sqrt(math.pi) * 1e-20),
])
def test_float_functions_are_stable_at_extremes(name, x, want):
    got = apply(prim(name), (), (np.float64(x),))
    assert np.isfinite(got)
    assert got == pytest.approx(want, rel=1e-12, abs=0)


# ---- other elementwise ---------------------------------------------------------

i64 = np.int64
f64 = np.float64
ELEMENTWISE_CASES = [
    # name, args, expected
    ("neg", (f64(2.5),), -2.5), ("neg", (i64(3),), -3),
    ("abs", (f64(-2.5),), 2.5), ("abs", (i64(-3),), 3),
    ("sign", (f64(-0.5),), -1.0), ("sign", (f64(0.0),), 0.0), ("sign", (i64(7),), 1),
    ("not", (np.True_,), False),
    ("add", (f64(1.5), f64(2.0)), 3.5), ("sub", (i64(1), i64(4)), -3),
    ("mul", (f64(1.5), i64(2)), 3.0), ("div", (i64(7), i64(2)), 3.5),
    ("pow", (f64(2.0), f64(0.5)), math.sqrt(2)), ("pow", (i64(3), i64(4)), 81),
    ("floordiv", (i64(-7), i64(2)), -4), ("floordiv", (f64(7.5), f64(-2.0)), -4.0),
    ("mod", (i64(-7), i64(2)), 1), ("mod", (i64(7), i64(-2)), -1), ("mod", (f64(-7.5), f64(2.0)), 0.5),
    ("minimum", (f64(1.0), f64(-2.0)), -2.0), ("maximum", (i64(1), i64(-2)), 1),
    ("lt", (f64(1.0), f64(2.0)), True), ("le", (i64(2), i64(2)), True),
    ("gt", (f64(1.0), f64(2.0)), False), ("ge", (i64(1), i64(2)), False),
    ("eq", (f64(2.0), i64(2)), True), ("ne", (f64(2.0), i64(2)), False),
    ("and", (np.True_, np.False_), False), ("or", (np.True_, np.False_), True),
    ("xor", (np.True_, np.True_), False),
    ("where", (np.True_, f64(1.0), f64(2.0)), 1.0), ("where", (np.False_, f64(1.0), f64(2.0)), 2.0),
]


@pytest.mark.parametrize("name, args, want", ELEMENTWISE_CASES)
def test_elementwise(name, args, want):
    got = apply(prim(name), (), args)
    assert isinstance(got, np.generic)
    assert got == want and type(got.item()) is type(want)


def test_elementwise_broadcasts():
    x = np.array([[1.0], [2.0]])
    y = np.array([10.0, 20.0, 30.0])
    np.testing.assert_array_equal(apply(P.ADD, (), (x, y)), x + y)
    got = apply(P.WHERE, (), (np.array([True, False, True]), y, 0.0))
    np.testing.assert_array_equal(got, [10.0, 0.0, 30.0])


def test_integer_division_floors_like_numpy():
    a, b = np.array([-7, -1, 7, 0]), np.array([2, 3, -2, 5])
    np.testing.assert_array_equal(apply(P.FLOORDIV, (), (a, b)), [-4, -1, -4, 0])
    np.testing.assert_array_equal(apply(P.MOD, (), (a, b)), [1, 2, -1, 0])


def test_bools_compute_as_i64_in_pow_floordiv_mod():
    t = np.array([True, False])
    for name in ("pow", "floordiv", "mod"):
        assert apply(prim(name), (), (t, np.array([True, True]))).dtype == np.int64
    assert apply(P.POW, (), (t, 2.0)).dtype == np.float64
    assert apply(P.ADD, (), (t, t)).dtype == np.bool_


def test_weak_arguments_give_weak_results():
    assert apply(P.ADD, (), (1, 2)) == 3 and type(apply(P.ADD, (), (1, 2))) is int
    assert type(apply(P.MUL, (), (2.0, 3))) is float
    assert type(apply(P.LT, (), (2.0, 3))) is bool
    assert type(apply(P.ADD, (), (1, i64(2)))) is np.int64
    assert apply(P.MUL, (), (2.0, np.float32(1.5))).dtype == np.float32
    assert type(apply(P.ASTYPE, params(dtype=DType.F32), (1.0,))) is np.float32


# ---- leaves --------------------------------------------------------------------

def test_const_is_a_python_scalar_of_its_dtype():
    assert type(apply(P.CONST, params(value=1, dtype=DType.F64), ())) is float
    assert type(apply(P.CONST, params(value=True, dtype=DType.BOOL), ())) is bool
    assert apply(P.CONST, params(value=3, dtype=DType.I64), ()) == 3
    strong = apply(P.CONST, params(value=1.5, dtype=DType.F32, weak=False), ())
    assert type(strong) is np.float32 and strong == 1.5
    assert is_weak(apply(P.CONST, params(value=2.0, dtype=DType.F32), ()))


def test_size_is_a_strong_i64():
    got = apply(P.SIZE, params(dim=n.scale(2) + 1), (), {"n": 3})
    assert type(got) is np.int64 and got == 7


def test_zeros_ones_full_arange():
    shape = (Dim(2), n)
    z = apply(P.ZEROS, params(shape=shape, dtype=DType.F32), (), {"n": 3})
    assert z.dtype == np.float32 and z.shape == (2, 3) and not z.any()
    o = apply(P.ONES, params(shape=shape, dtype=DType.BOOL), (), {"n": 3})
    assert o.dtype == np.bool_ and o.all() and o.shape == (2, 3)
    assert type(apply(P.ZEROS, params(shape=(), dtype=DType.I64), ())) is np.int64
    f = apply(P.FULL, params(shape=shape), (np.float32(2.5),), {"n": 1})
    assert f.dtype == np.float32 and f.shape == (2, 1) and (f == 2.5).all()
    assert apply(P.FULL, params(shape=(Dim(2),)), (1,)).dtype == np.int64
    a = apply(P.ARANGE, params(lo=Dim(1), hi=n), (), {"n": 4})
    assert a.dtype == np.int64 and a.tolist() == [1, 2, 3]
    assert apply(P.ARANGE, params(lo=n, hi=n), (), {"n": 4}).shape == (0,)


def test_astype():
    got = apply(P.ASTYPE, params(dtype=DType.I64), (np.array([1.7, -1.7]),))
    assert got.dtype == np.int64 and got.tolist() == [1, -1]
    assert apply(P.ASTYPE, params(dtype=DType.F64), (np.array([True]),)).tolist() == [1.0]


# ---- reductions ----------------------------------------------------------------

A = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])


@pytest.mark.parametrize("name, fn", [("sum", np.sum), ("mean", np.mean), ("prod", np.prod),
                                      ("max", np.max), ("min", np.min)])
@pytest.mark.parametrize("axes", [(0,), (1,), (0, 1)])
def test_reductions(name, fn, axes):
    got = apply(prim(name), params(axes=axes), (A,))
    np.testing.assert_array_equal(got, fn(A, axis=axes))
    assert np.shape(got) == tuple(d for k, d in enumerate(A.shape) if k not in axes)


def test_reductions_of_ints_and_bools():
    assert apply(P.SUM, params(axes=(0,)), (np.array([True, True, False]),)) == 2
    assert apply(P.MEAN, params(axes=(0,)), (np.array([1, 2]),)) == 1.5
    assert apply(P.SUM, params(axes=(0,)), (np.zeros((0,)),)) == 0.0


@pytest.mark.parametrize("axes", [(0,), (1,), (0, 1)])
def test_logsumexp_matches_the_definition(axes):
    want = np.log(np.sum(np.exp(A), axis=axes))
    np.testing.assert_allclose(apply(P.LOGSUMEXP, params(axes=axes), (A,)), want, rtol=1e-14)


def test_logsumexp_is_stable():
    big = np.array([[1000.0, 1000.0], [-1000.0, -1001.0], [-np.inf, -np.inf], [np.inf, 0.0]])
    got = apply(P.LOGSUMEXP, params(axes=(1,)), (big,))
    np.testing.assert_allclose(got[:2], [1000 + math.log(2), -1000 + math.log1p(math.exp(-1))],
                               rtol=1e-15)
    assert got[2] == -np.inf and got[3] == np.inf
    assert apply(P.LOGSUMEXP, params(axes=(0,)), (np.zeros((0,)),)) == -np.inf
    got32 = apply(P.LOGSUMEXP, params(axes=(0,)), (np.array([1.0, 2.0], np.float32),))
    assert got32.dtype == np.float32


@pytest.mark.parametrize("axis", [0, 1])
def test_softmax(axis):
    got = apply(P.SOFTMAX, params(axis=axis), (A,))
    want = np.exp(A) / np.sum(np.exp(A), axis=axis, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    big = apply(P.SOFTMAX, params(axis=0), (np.array([1000.0, 1000.0, -np.inf]),))
    np.testing.assert_array_equal(big, [0.5, 0.5, 0.0])


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("exclusive", [False, True])
def test_scans_against_their_definition(axis, reverse, exclusive):
    """Entry i combines the items up to i (from i to the end; i itself left out), the
    identity where there are none."""
    rng = np.random.default_rng(3)
    x, counts = rng.normal(size=(3, 4)), rng.integers(-3, 4, size=(3, 4))
    ps = params(axis=axis, reverse=reverse, exclusive=exclusive)
    for prim, combine, unit, data in ((P.CUMSUM, np.add, 0.0, x), (P.CUMPROD, np.multiply, 1.0, x),
                                      (P.CUMSUM, np.add, 0, counts),
                                      (P.CUMPROD, np.multiply, 1, counts)):
        moved = np.moveaxis(data, axis, 0)
        want = []
        for i in range(len(moved)):
            lo, hi = (i + exclusive, len(moved)) if reverse else (0, i + 1 - exclusive)
            want.append(combine.reduce(moved[lo:hi], axis=0, initial=unit))
        got = apply(prim, ps, (data,))
        assert got.dtype == data.dtype
        np.testing.assert_allclose(got, np.moveaxis(np.array(want), 0, axis), rtol=1e-14)
    empty = apply(P.CUMPROD, params(axis=0, reverse=True, exclusive=True), (np.zeros((0, 2)),))
    assert empty.shape == (0, 2)


# ---- linear algebra and shape --------------------------------------------------

def test_matmul_transpose_expand_broadcast_reshape():
    M, v = np.arange(6.0).reshape(2, 3), np.array([1.0, 0.0, -1.0])
    np.testing.assert_array_equal(apply(P.MATMUL, (), (M, v)), M @ v)
    assert apply(P.MATMUL, (), (v, v)) == 2.0
    np.testing.assert_array_equal(apply(P.TRANSPOSE, params(perm=(1, 0)), (M,)), M.T)
    assert apply(P.EXPAND_DIMS, params(axis=1), (v,)).shape == (3, 1)
    b = apply(P.BROADCAST_TO, params(shape=(n, Dim(3))), (v,), {"n": 2})
    assert b.shape == (2, 3) and b.flags.writeable
    np.testing.assert_array_equal(b[1], v)
    r = apply(P.RESHAPE, params(shape=(n.scale(3),)), (M,), {"n": 2})
    np.testing.assert_array_equal(r, np.arange(6.0))


def test_stack_and_concat():
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_array_equal(apply(P.STACK, params(axis=1), (a, b)), [[1, 3], [2, 4]])
    np.testing.assert_array_equal(apply(P.CONCAT, params(axis=0), (a, b, a)), [1, 2, 3, 4, 1, 2])
    assert apply(P.STACK, params(axis=0), (1.0, np.float32(2.0))).dtype == np.float32


# ---- indexing ------------------------------------------------------------------

def test_index():
    x = np.arange(12).reshape(3, 4)
    spec = (("at",), ("slice", Dim(1), n))
    np.testing.assert_array_equal(apply(P.INDEX, params(spec=spec), (x, i64(2)), {"n": 3}),
                                  x[2, 1:3])
    assert apply(P.INDEX, params(spec=(("at",), ("at",))), (x, i64(1), i64(2))) == 6
    np.testing.assert_array_equal(apply(P.INDEX, params(spec=(("slice", Dim(0), Dim(2)),)), (x,)),
                                  x[:2])
    np.testing.assert_array_equal(apply(P.INDEX, params(spec=(("at",),)), (x, i64(0))), x[0])
    with pytest.raises(IndexError):
        apply(P.INDEX, params(spec=(("at",),)), (x, i64(3)))


def test_gather():
    x = np.arange(12).reshape(3, 4)
    rows, cols = np.array([2, 0]), np.array([[1], [3]])
    np.testing.assert_array_equal(apply(P.GATHER, params(clip=False), (x, rows)), x[[2, 0]])
    np.testing.assert_array_equal(apply(P.GATHER, params(clip=False), (x, rows, cols)),
                                  x[rows, cols])
    clipped = apply(P.GATHER, params(clip=True), (x, np.array([-1, 5]), np.array([9, 1])))
    np.testing.assert_array_equal(clipped, [x[0, 3], x[2, 1]])
    with pytest.raises(IndexError):
        apply(P.GATHER, params(clip=False), (x, np.array([5])))


def test_index_add():
    x = np.zeros((3, 4), np.float32)
    spec = (("at",), ("slice", Dim(1), n))
    got = apply(P.INDEX_ADD, params(spec=spec), (x, np.array([1.0, 2.0]), i64(2)), {"n": 3})
    want = np.zeros((3, 4))
    want[2, 1:3] = [1.0, 2.0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert not x.any()  # the target is not changed
    scalar = apply(P.INDEX_ADD, params(spec=(("at",),)), (np.ones(3), 2.0, i64(0)))
    np.testing.assert_array_equal(scalar, [3.0, 1.0, 1.0])


def test_gather_add_accumulates_repeated_indices():
    target = np.zeros(3)
    got = apply(P.GATHER_ADD, params(clip=False), (target, np.array([1.0, 2.0, 4.0]),
                                                   np.array([0, 2, 0])))
    np.testing.assert_array_equal(got, [5.0, 0.0, 2.0])
    assert not target.any()
    clipped = apply(P.GATHER_ADD, params(clip=True), (np.zeros((2, 2)), np.array([1.0, 1.0]),
                                                      np.array([-3, 7]), np.array([1, 1])))
    np.testing.assert_array_equal(clipped, [[0.0, 1.0], [0.0, 1.0]])


def test_gather_is_the_transpose_of_gather_add():
    """<gather(x, i), v> == <x, gather_add(0, v, i)>, also with repeats and clipping."""
    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    i = np.array([0, 3, 3, -2, 9])
    for clip in (True, False):
        idx = i if clip else np.clip(i, 0, 3)
        lhs = np.sum(apply(P.GATHER, params(clip=clip), (x, idx)) * v)
        rhs = np.sum(x * apply(P.GATHER_ADD, params(clip=clip), (np.zeros((4, 3)), v, idx)))
        assert lhs == pytest.approx(rhs, rel=1e-12)


def test_resolve_params_evaluates_nested_dims():
    ps = params(shape=(n, Dim(2)), spec=(("slice", n - 1, n),), dtype=DType.F64)
    assert resolve_params(ps, {"n": 5}) == {"dtype": DType.F64, "shape": (5, 2),
                                            "spec": (("slice", 4, 5),)}


def test_no_floating_point_warnings():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply(prim("log"), (), (np.float64(0.0),)) == -np.inf
        assert np.isnan(apply(P.DIV, (), (np.float64(0.0), np.float64(0.0))))
