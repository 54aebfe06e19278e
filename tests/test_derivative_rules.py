"""jvp_rules and vjp_rules: every primitive's tangent and transposed Jacobian.

Each case is a one-primitive function `f(x0, ..., xn) = prim(x0, ..., xn)`,
differentiated by `forward.jvp_function` and `reverse.vjp_function` and run by
the reference interpreter:

* forward mode against central finite differences;
* reverse mode against forward mode through the adjoint identity
  `<J v, w> = <v, Jᵀ w>` for random v, w;
* every cotangent has exactly its argument's shape and dtype, and the
  derived functions pass the UNF type checker;
* over Z2, for bool functions, reverse (and forward) mode against the brute
  force: bit i of R[f](x, dy) is parity((f(x) xor f(x xor e_i)) and dy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from catad.compiler import primitives as P
from catad.compiler.algebra import REALS, Z2, Algebra
from catad.compiler.errors import DerivativeError
from catad.compiler.forward import jvp_function
from catad.compiler.jvp_rules import JVP_RULES
from catad.compiler.primitives import Params, Primitive, params
from catad.compiler.reverse import vjp_function
from catad.compiler.typed import SizeBinding
from catad.compiler.types import ArrayType, Dim, DType
from catad.compiler.unary import Prim, Seq, Term, UFunction
from catad.compiler.unary_builder import Builder
from catad.compiler.unary_check import check_function
from catad.compiler.unary_eval import evaluate
from catad.compiler.vjp_rules import VJP_RULES

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def arr(dtype: DType, *shape: int) -> ArrayType:
    return ArrayType(dtype, tuple(Dim(s) for s in shape))


def f64(*shape: int) -> ArrayType:
    return arr(DType.F64, *shape)


def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    """|x| >= 0.2: far from the kinks of relu, abs, elu."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def fixed(value) -> Sampler:
    return lambda rng, shape: np.asarray(value)


def small_ints(rng, shape):
    return rng.integers(-2, 4, shape).astype(np.int64)


def distinct(rng, shape):
    """Values at least 0.1 apart: no ties for max and min."""
    size = int(np.prod(shape))
    return rng.permutation(np.arange(size) * 0.1 - 1.0).reshape(shape)


def function(prim: Primitive, ps: Params, types: tuple[ArrayType, ...],
             sizes: tuple[SizeBinding, ...] = ()) -> UFunction:
    b = Builder(types)
    out = b.prim(prim, ps, *map(b.arg, range(len(types))))
    names = tuple((f"x{i}", t) for i, t in enumerate(types))
    return UFunction("f", names, out.type, b.finish(out), sizes=sizes)


@dataclass(frozen=True)
class Case:
    name: str
    prim: Primitive
    ps: Params
    args: tuple[tuple[ArrayType, Sampler], ...]
    h: float = 1e-6
    rtol: float = 1e-5

    def __str__(self) -> str:
        return self.name

    @property
    def types(self) -> tuple[ArrayType, ...]:
        return tuple(t for t, _ in self.args)

    @property
    def wrt(self) -> tuple[int, ...]:
        return tuple(k for k, t in enumerate(self.types) if t.dtype.is_float)

    def sample(self, rng: np.random.Generator) -> list[np.ndarray]:
        out = []
        for t, sampler in self.args:
            shape = tuple(d.const for d in t.shape)
            value = np.asarray(sampler(rng, shape))
            out.append(value.astype(t.dtype.numpy_name) if t.dtype.is_float else value)
        return out


def case(prim: Primitive | str, *args: tuple[ArrayType, Sampler], name: str = "",
         h: float = 1e-6, rtol: float = 1e-5, **ps) -> Case:
    prim = P.BY_NAME[prim] if isinstance(prim, str) else prim
    return Case(name or prim.name, prim, params(**ps), args, h, rtol)


N = normal
UNARY = [case(p, (f64(2, 3), N)) for p in P.UNARY_FLOAT
         if p.name not in ("log", "sqrt", "log1p", "relu", "elu")]
UNARY += [case(p, (f64(2, 3), positive)) for p in map(P.BY_NAME.get, ("log", "sqrt", "log1p"))]
UNARY += [case(p, (f64(2, 3), away_from_zero)) for p in (P.BY_NAME["relu"], P.BY_NAME["elu"], P.ABS)]
UNARY += [case(P.NEG, (f64(4), N))]

BROADCASTS = [((f64(2, 3), f64(3)), "[2,3]*[3]"), ((f64(2, 1), f64(1, 3)), "[2,1]*[1,3]"),
              ((f64(), f64(2, 3)), "[]*[2,3]")]
BINARY = [
    case(prim, (ta, N if prim not in (P.POW, P.MOD) else positive),
         (tb, N if prim not in (P.DIV, P.MOD) else positive), name=f"{prim.name} {label}")
    for prim in (P.ADD, P.SUB, P.MUL, P.DIV, P.POW, P.MOD)
    for (ta, tb), label in BROADCASTS
]
BINARY += [
    case(P.MAXIMUM, (f64(2, 3), N), (f64(3), N), name="maximum [2,3]*[3]"),
    case(P.MINIMUM, (f64(2, 1), N), (f64(1, 3), N), name="minimum [2,1]*[1,3]"),
    case(P.POW, (f64(5), N), (arr(DType.I64, 5), small_ints), name="pow by i64"),
    case(P.MUL, (f64(2, 3), N), (arr(DType.I64), fixed(3)), name="mul by i64"),
    case(P.WHERE, (arr(DType.BOOL, 2, 3), fixed([[True, False, True], [False, False, True]])),
         (f64(3), N), (f64(2, 1), N), name="where"),
    case(P.ASTYPE, (f64(2, 3), N), dtype=DType.F64, name="astype f64"),
    case(P.ASTYPE, (arr(DType.F32, 4), N), dtype=DType.F64, name="astype f32->f64", h=1e-2, rtol=1e-4),
]

REDUCE = [
    case(prim, (f64(2, 3, 4), distinct if prim in (P.MAX, P.MIN) else
                positive if prim is P.PROD else N), axes=axes, name=f"{prim.name} {axes}")
    for prim in P.REDUCTIONS
    for axes in ((1,), (0, 2), (0, 1, 2))
]
REDUCE += [
    case(P.PROD, (f64(3, 4), fixed([[0.0, 2.0, 3.0, 4.0], [0.0, 0.5, 0.0, 2.0], [1.0, 2.0, 3.0, 0.5]])),
         axes=(1,), name="prod with zeros"),
    case(P.SOFTMAX, (f64(3, 4), N), axis=0, name="softmax 0"),
    case(P.SOFTMAX, (f64(3, 4), N), axis=1, name="softmax 1"),
]

ZEROS = {"one zero": [[1.5, 0.0, -2.0, 0.5], [0.5, 2.0, 0.0, 1.5], [0.0, 1.0, 2.0, -1.0]],
         "two zeros": [[0.0, 2.0, 0.0, 0.5], [1.5, 0.0, -1.0, 0.0], [0.0, 0.0, 2.0, 1.0]],
         "all zeros": np.zeros((3, 4))}
SCANS = [
    case(prim, (f64(3, 4), N), axis=axis, reverse=reverse, exclusive=exclusive,
         name=f"{prim.name} {axis}{' reverse' * reverse}{' exclusive' * exclusive}")
    for prim in P.SCANS for axis in (0, 1) for reverse in (False, True) for exclusive in (False, True)
]
# cumprod and prod are polynomials: central differences are exact up to rounding, at zeros too
SCANS += [
    *(case(P.CUMPROD, (f64(3, 4), fixed(x)), axis=axis, reverse=reverse, exclusive=exclusive,
           name=f"cumprod {axis}{' reverse' * reverse}{' exclusive' * exclusive} {label}")
      for label, x in ZEROS.items() for axis in (0, 1) for reverse, exclusive in ((False, False), (True, True))),
    *(case(P.PROD, (f64(3, 4), fixed(x)), axes=axes, name=f"prod {axes} {label}")
      for label, x in ZEROS.items() for axes in ((1,), (0, 1))),
]

LINEAR_ALGEBRA = [
    case(P.MATMUL, (f64(*a), N), (f64(*b), N), name=f"matmul {list(a)}@{list(b)}")
    for a, b in [((3, 4), (4, 2)), ((4,), (4,)), ((4,), (4, 2)), ((3, 4), (4,)),
                 ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
                 # broadcast batch axes contracted in the product (the GMM's Ls[c] @ xc[i, c])
                 ((1, 3, 4, 4), (2, 3, 4, 1)), ((3, 4, 4), (2, 3, 4, 1)), ((3, 4), (2, 5, 4, 1)),
                 ((2, 5, 1, 4), (4, 3))]
]
SHAPE = [
    case(P.TRANSPOSE, (f64(2, 3, 4), N), perm=(2, 0, 1)),
    case(P.EXPAND_DIMS, (f64(2, 3), N), axis=1),
    case(P.BROADCAST_TO, (f64(3), N), shape=(Dim(2), Dim(3)), name="broadcast_to [3]->[2,3]"),
    case(P.BROADCAST_TO, (f64(2, 1), N), shape=(Dim(4), Dim(2), Dim(3)), name="broadcast_to [2,1]->[4,2,3]"),
    case(P.RESHAPE, (f64(2, 3), N), shape=(Dim(3), Dim(2))),
    case(P.RESHAPE, (f64(2, 3), N), shape=(Dim(6),), name="reshape flat"),
    case(P.FULL, (f64(), N), shape=(Dim(2), Dim(3))),
    case(P.STACK, (f64(2, 3), N), (f64(2, 3), N), (f64(2, 3), N), axis=1),
    case(P.CONCAT, (f64(2, 3), N), (f64(2, 1), N), (f64(2, 2), N), axis=1),
    case(P.CONCAT, (f64(1, 3), N), (f64(2, 3), N), axis=0, name="concat 0"),
]
INDEXING = [
    case(P.INDEX, (f64(4, 3, 2), N), (arr(DType.I64), fixed(2)),
         spec=(("at",), ("slice", Dim(1), Dim(3)))),
    case(P.INDEX, (f64(4, 3), N), spec=(("slice", Dim(1), Dim(3)),), name="index slice"),
    case(P.GATHER, (f64(4, 3), N), (arr(DType.I64, 5), fixed([0, 2, 2, 3, 0])), clip=False),
    case(P.GATHER, (f64(4, 3), N), (arr(DType.I64, 2), fixed([1, 3])), (arr(DType.I64, 2), fixed([2, 7])),
         clip=True, name="gather clipped"),
    case(P.INDEX_ADD, (f64(4, 3), N), (f64(2), N), (arr(DType.I64), fixed(1)),
         spec=(("at",), ("slice", Dim(0), Dim(2)))),
    case(P.INDEX_ADD, (f64(4, 3), N), (f64(), N), (arr(DType.I64), fixed(3)),
         spec=(("at",),), name="index_add broadcast value"),
    case(P.GATHER_ADD, (f64(4, 3), N), (f64(5, 3), N), (arr(DType.I64, 5), fixed([0, 2, 2, 3, 0])),
         clip=False),
]
CASES = UNARY + BINARY + REDUCE + SCANS + LINEAR_ALGEBRA + SHAPE + INDEXING


def test_every_primitive_has_both_rules():
    assert set(JVP_RULES) == set(P.ALL) == set(VJP_RULES)


def test_the_cases_cover_every_primitive_with_a_derivative():
    without = {P.SIGN, P.NOT, P.FLOORDIV, *P.COMPARISON, *P.LOGICAL, P.CONST, P.SIZE, P.ZEROS,
               P.ONES, P.ARANGE, P.PARITY, P.POPCOUNT_LE}  # the last two: over Z2 only (test_z2.py)
    assert {c.prim for c in CASES} == set(P.ALL) - without


def _jvp(fn: UFunction, case: Case, xs, vs, alg: Algebra = REALS):
    jf = jvp_function(fn, case.wrt, "f_jvp", alg)
    check_function(jf)
    return evaluate(jf, [*xs, *vs])


def _vjp(fn: UFunction, case: Case, xs, w, alg: Algebra = REALS):
    vf = vjp_function(fn, case.wrt, "f_vjp", algebra=alg, cotangent_param=True)
    check_function(vf)
    value, grads = evaluate(vf, [*xs, w])
    return value, (grads if len(case.wrt) > 1 else (grads,))


def _tangents(case: Case, rng) -> list[np.ndarray]:
    return [rng.standard_normal(tuple(d.const for d in case.types[k].shape)) for k in case.wrt]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_mode_matches_finite_differences(case):
    rng = np.random.default_rng(0)
    fn = function(case.prim, case.ps, case.types)
    xs = case.sample(rng)
    vs = [v.astype(case.types[k].dtype.numpy_name) for k, v in zip(case.wrt, _tangents(case, rng))]
    value, tangent = _jvp(fn, case, xs, vs)

    def shifted(sign: float):
        moved = list(xs)
        for k, v in zip(case.wrt, vs):
            moved[k] = xs[k] + sign * case.h * v
        return np.asarray(evaluate(fn, moved), dtype=np.float64)

    expected = (shifted(1.0) - shifted(-1.0)) / (2 * case.h)
    np.testing.assert_allclose(value, evaluate(fn, xs))
    assert np.shape(tangent) == np.shape(value)
    np.testing.assert_allclose(tangent, expected, rtol=case.rtol, atol=case.rtol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reverse_mode_is_the_adjoint_of_forward_mode(case):
    rng = np.random.default_rng(1)
    fn = function(case.prim, case.ps, case.types)
    xs = case.sample(rng)
    vs = [v.astype(case.types[k].dtype.numpy_name) for k, v in zip(case.wrt, _tangents(case, rng))]
    _, tangent = _jvp(fn, case, xs, vs)
    w = rng.standard_normal(np.shape(tangent)).astype(np.asarray(tangent).dtype)
    _, grads = _vjp(fn, case, xs, w)
    for k, g in zip(case.wrt, grads):
        assert np.shape(g) == np.shape(xs[k])
        assert np.asarray(g).dtype == np.asarray(xs[k]).dtype
    left = float(np.sum(np.asarray(tangent, np.float64) * w))
    right = sum(float(np.sum(np.asarray(v, np.float64) * g)) for v, g in zip(vs, grads))
    tolerance = 1e-9 if all(t.dtype is DType.F64 for t in case.types if t.dtype.is_float) else 1e-6
    assert left == pytest.approx(right, rel=tolerance, abs=tolerance)


# ---- exact values at chosen points --------------------------------------------------

def _grad(prim: Primitive, ps: Params, types, xs, w):
    fn = function(prim, ps, types)
    c = Case("", prim, ps, tuple((t, fixed(x)) for t, x in zip(types, xs)))
    return _vjp(fn, c, xs, np.asarray(w, np.float64))[1]


@pytest.mark.parametrize("name, want", [("relu", [0.0, 0.0, 1.0]), ("abs", [-1.0, 0.0, 1.0]),
                                        ("sign", [0.0, 0.0, 0.0]), ("elu", [np.exp(-1.0), 1.0, 1.0])])
def test_derivatives_at_the_kinks(name, want):
    x = np.array([-1.0, 0.0, 2.0])
    (g,) = _grad(P.BY_NAME[name], (), (f64(3),), [x], np.ones(3))
    np.testing.assert_allclose(g, want)
    c = Case(name, P.BY_NAME[name], (), ((f64(3), fixed(x)),))
    _, tangent = _jvp(function(c.prim, (), c.types), c, [x], [np.ones(3)])
    np.testing.assert_allclose(tangent, want)


def test_reductions_split_ties_equally():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    (g,) = _grad(P.MAX, params(axes=(1,)), (f64(2, 3),), [x], [1.0, 6.0])
    np.testing.assert_allclose(g, [[0, 0.5, 0.5], [2, 2, 2]])
    (g,) = _grad(P.MIN, params(axes=(0, 1)), (f64(2, 3),), [x], 1.0)
    np.testing.assert_allclose(g, [[1, 0, 0], [0, 0, 0]])


def test_maximum_and_minimum_split_ties_equally():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    for prim, want_x in ((P.MAXIMUM, [0.5, 1, 0]), (P.MINIMUM, [0.5, 0, 1])):
        gx, gy = _grad(prim, (), (f64(3), f64(3)), [x, y], np.ones(3))
        np.testing.assert_allclose(gx, want_x)
        np.testing.assert_allclose(gx + gy, 1.0)  # max(x, x) has derivative 1


def test_prod_is_exact_at_zeros():
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 2.0], [1.0, 2.0, 4.0]])
    (g,) = _grad(P.PROD, params(axes=(1,)), (f64(3, 3),), [x], np.ones(3))
    np.testing.assert_allclose(g, [[6, 0, 0], [0, 0, 0], [8, 4, 2]])


def test_pow_at_zero_is_finite():
    gx, gy = _grad(P.POW, (), (f64(2), f64(2)), [np.array([0.0, 0.0]), np.array([0.0, 2.0])], np.ones(2))
    np.testing.assert_allclose(gx, [0.0, 0.0])
    np.testing.assert_allclose(gy, [0.0, 0.0])


def test_mean_divides_by_the_count():
    (g,) = _grad(P.MEAN, params(axes=(0, 2)), (f64(2, 3, 4),), [np.zeros((2, 3, 4))], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(g, np.broadcast_to(np.array([1.0, 2.0, 3.0])[None, :, None] / 8, (2, 3, 4)))


@pytest.mark.parametrize("prim", [P.FLOORDIV, P.LT, P.EQ])
def test_nondifferentiable_primitives_have_zero_cotangents(prim):
    x, y = np.array([0.3, 1.7]), np.array([0.5, 0.5])
    gx, gy = _grad(prim, (), (f64(2), f64(2)), [x, y], np.ones(2))
    np.testing.assert_array_equal(gx, 0.0)
    np.testing.assert_array_equal(gy, 0.0)


def test_cotangents_keep_the_arguments_dtypes():
    types = (arr(DType.F32, 2, 3), f64(3))
    fn = function(P.MUL, (), types)
    vf = vjp_function(fn, (0, 1), "g", cotangent_param=True)
    check_function(vf)
    assert str(vf.result) == "(f64[2, 3], (f32[2, 3], f64[3]))"
    _, (gx, gy) = evaluate(vf, [np.ones((2, 3), np.float32), np.arange(3.0), np.ones((2, 3))])
    assert gx.dtype == np.float32 and gy.dtype == np.float64
    np.testing.assert_allclose(gy, [2.0, 2.0, 2.0])


def test_symbolically_zero_tangents_are_not_materialised():
    """x * c with c not differentiated: the tangent is one mul, no zeros array."""
    fn = function(P.MUL, (), (f64(3), f64(3)))
    jf = jvp_function(fn, (0,), "f_jvp")
    made = [t.prim for t in _prims(jf.body)]
    assert made.count(P.MUL) == 2 and P.ZEROS not in made


def _prims(term: Term) -> list[Prim]:
    if isinstance(term, Seq):
        return [p for t in term.terms for p in _prims(t)]
    return [term] if isinstance(term, Prim) else []


def _flat(value) -> np.ndarray:
    if isinstance(value, tuple):
        return np.concatenate([_flat(v) for v in value])
    return np.ravel(np.asarray(value, np.float64))


# f32 finite differences are too coarse. prod and cumprod are exact at zeros to every
# order: their weights are exclusive cumprods, no selection
SECOND_ORDER = [c for c in CASES if c.name != "astype f32->f64"]


@pytest.mark.parametrize("case", SECOND_ORDER, ids=str)
def test_rules_compose_to_second_order(case):
    """The IR the rules emit is differentiable again: forward over reverse (the
    Hessian-vector product path) against finite differences of the vjp, and
    reverse over reverse against it through the adjoint identity."""
    rng = np.random.default_rng(3)
    fn = function(case.prim, case.ps, case.types)
    vf = vjp_function(fn, case.wrt, "g", cotangent_param=True)
    wrt = case.wrt + (len(case.types),)                  # the primal floats and the cotangent
    hf, rr = jvp_function(vf, wrt, "h"), vjp_function(vf, wrt, "rr", cotangent_param=True)
    check_function(hf)
    check_function(rr)
    xs = case.sample(rng)
    w = rng.standard_normal(np.shape(evaluate(fn, xs)))
    vs = [rng.standard_normal(np.shape(xs[k])) for k in case.wrt] + [rng.standard_normal(w.shape)]
    _, tangent = evaluate(hf, [*xs, w, *vs])

    def moved(sign: float):
        ys = list(xs)
        for k, v in zip(case.wrt, vs):
            ys[k] = xs[k] + sign * case.h * v
        return _flat(evaluate(vf, [*ys, w + sign * case.h * vs[-1]]))

    np.testing.assert_allclose(_flat(tangent), (moved(1.0) - moved(-1.0)) / (2 * case.h),
                               rtol=1e-4, atol=1e-4)
    value = evaluate(vf, [*xs, w])
    cotangent = tuple(rng.standard_normal(np.shape(v)) for v in value[1]) if len(case.wrt) > 1 \
        else rng.standard_normal(np.shape(value[1]))
    seed = (rng.standard_normal(np.shape(value[0])), cotangent)
    _, grads = evaluate(rr, [*xs, w, seed])
    left = float(_flat(tangent) @ _flat(seed))
    right = sum(float(np.sum(v * np.asarray(g))) for v, g in zip(vs, grads))
    assert left == pytest.approx(right, rel=1e-8, abs=1e-8)


def test_rules_on_symbolic_sizes():
    """mean divides by the size n read at run time; broadcasting against [n, 3] un-broadcasts."""
    n = Dim.of("n")
    types = (ArrayType(DType.F64, (n, Dim(3))),)
    fn = function(P.MEAN, params(axes=(0,)), types, sizes=(SizeBinding("n", 0, 0),))
    vf = vjp_function(fn, (0,), "g", cotangent_param=True)
    check_function(vf)
    _, g = evaluate(vf, [np.zeros((4, 3)), np.array([4.0, 8.0, 12.0])])
    np.testing.assert_allclose(g, np.broadcast_to([1.0, 2.0, 3.0], (4, 3)))
    types = (ArrayType(DType.F64, (n, Dim(3))), ArrayType(DType.F64, (Dim(1), Dim(3))))
    fn = function(P.MUL, (), types, sizes=(SizeBinding("n", 0, 0),))
    vf = vjp_function(fn, (0, 1), "g", cotangent_param=True)
    check_function(vf)
    x = np.arange(6.0).reshape(2, 3)
    _, (gx, gy) = evaluate(vf, [x, np.full((1, 3), 2.0), np.ones((2, 3))])
    np.testing.assert_allclose(gx, np.full((2, 3), 2.0))
    np.testing.assert_allclose(gy, x.sum(0, keepdims=True))


# ---- over Z2 -----------------------------------------------------------------------

def b8(*shape: int) -> ArrayType:
    return arr(DType.BOOL, *shape)


def bits(rng, shape):
    return rng.integers(0, 2, shape).astype(bool)


Z2_CASES = [
    *(case(p, (b8(2, 3), bits), (b8(3), bits), name=f"{p.name} bools")
      for p in (*P.LOGICAL, *P.COMPARISON, P.ADD, P.MUL, P.MAXIMUM, P.MINIMUM)),
    case(P.NOT, (b8(4), bits)),
    case(P.ABS, (b8(4), bits), name="abs bools"),
    case(P.WHERE, (b8(3), bits), (b8(2, 3), bits), (b8(3), bits), name="where bools"),
    case(P.MAX, (b8(3, 4), bits), axes=(1,), name="any"),
    case(P.MIN, (b8(3, 4), bits), axes=(0, 1), name="all"),
    case(P.BROADCAST_TO, (b8(3), bits), shape=(Dim(2), Dim(3)), name="broadcast_to bools"),
    case(P.FULL, (b8(), bits), shape=(Dim(3),), name="full bools"),
    case(P.TRANSPOSE, (b8(2, 3), bits), perm=(1, 0), name="transpose bools"),
    case(P.STACK, (b8(3), bits), (b8(3), bits), axis=0, name="stack bools"),
    case(P.CONCAT, (b8(2), bits), (b8(3), bits), axis=0, name="concat bools"),
    case(P.INDEX, (b8(4, 3), bits), (arr(DType.I64), fixed(2)), spec=(("at",),), name="index bools"),
    case(P.GATHER, (b8(4), bits), (arr(DType.I64, 6), fixed([0, 2, 2, 2, 1, 1])), clip=False,
         name="gather bools (repeats)"),
    case(P.ASTYPE, (b8(3), bits), dtype=DType.BOOL, name="astype bools"),
]


def _brute_derivative(fn: UFunction, xs, k: int) -> np.ndarray:
    """For each bit i of argument k: f(x) xor f(x xor e_i), stacked on a leading axis."""
    base = np.asarray(evaluate(fn, xs))
    flips = []
    for i in range(np.size(xs[k])):
        moved = list(xs)
        flipped = np.array(xs[k], copy=True).reshape(-1)
        flipped[i] = not flipped[i]
        moved[k] = flipped.reshape(np.shape(xs[k]))
        flips.append(base ^ np.asarray(evaluate(fn, moved)))
    return np.stack(flips).reshape(np.shape(xs[k]) + base.shape)


@pytest.mark.parametrize("case", Z2_CASES, ids=str)
def test_z2_derivatives_are_the_brute_force_ones(case):
    """R[f](x, dy)_i = parity(∂_i f(x) ∧ dy) and D[f](x, v) = Σ_i v_i ∂_i f(x) over Z2,
    with ∂_i f(x) = f(x) xor f(x xor e_i)."""
    rng = np.random.default_rng(2)
    fn = function(case.prim, case.ps, case.types)
    wrt = tuple(k for k, t in enumerate(case.types) if t.dtype is DType.BOOL)
    vf = vjp_function(fn, wrt, "r", algebra=Z2, cotangent_param=True)
    jf = jvp_function(fn, wrt, "d", Z2)
    check_function(vf)
    check_function(jf)
    for _ in range(4):
        xs = case.sample(rng)
        out = np.asarray(evaluate(fn, xs))
        dy = bits(rng, out.shape)
        vs = [bits(rng, np.shape(xs[k])) for k in wrt]
        _, grads = evaluate(vf, [*xs, dy])
        grads = grads if len(wrt) > 1 else (grads,)
        _, tangent = evaluate(jf, [*xs, *vs])
        want_tangent = np.zeros(out.shape, bool)
        for k, g, v in zip(wrt, grads, vs):
            partial = _brute_derivative(fn, xs, k)            # shape: x_k's + out's
            by_bit = partial.reshape((-1,) + out.shape)
            want = (by_bit & dy).reshape(by_bit.shape[0], -1).sum(1) % 2 == 1
            assert np.asarray(g).dtype == np.bool_ and np.shape(g) == np.shape(xs[k])
            np.testing.assert_array_equal(g, want.reshape(np.shape(xs[k])))
            chosen = by_bit & v.reshape((-1,) + (1,) * out.ndim)
            want_tangent ^= chosen.sum(0) % 2 == 1
        np.testing.assert_array_equal(tangent, want_tangent)


def test_z2_rules_are_the_paper_ones():
    """R[AND](x1, x2, d) = (x2 d, x1 d); R[XOR](x1, x2, d) = (d, d); R[NOT](x, d) = d."""
    x1, x2, d = np.array([0, 1, 0, 1], bool), np.array([0, 0, 1, 1], bool), np.array([1, 1, 1, 0], bool)
    for prim, want in ((P.AND, (x2 & d, x1 & d)), (P.XOR, (d, d))):
        vf = vjp_function(function(prim, (), (b8(4), b8(4))), (0, 1), "r", algebra=Z2, cotangent_param=True)
        _, grads = evaluate(vf, [x1, x2, d])
        for g, w in zip(grads, want):
            np.testing.assert_array_equal(g, w)
    vf = vjp_function(function(P.NOT, (), (b8(4),)), (0,), "r", algebra=Z2, cotangent_param=True)
    np.testing.assert_array_equal(evaluate(vf, [x1, d])[1], d)


def test_booleans_carry_no_real_derivative():
    fn = function(P.AND, (), (b8(3), b8(3)))
    vf = vjp_function(fn, (0, 1), "r", cotangent_param=True)
    _, (g0, g1) = evaluate(vf, [np.ones(3, bool), np.ones(3, bool), np.ones(3)])
    np.testing.assert_array_equal(g0, 0.0)
    np.testing.assert_array_equal(g1, 0.0)


def test_z2_refuses_matmul_of_bools():
    fn = function(P.MATMUL, (), (b8(2, 3), b8(3)))
    with pytest.raises(DerivativeError, match="matmul"):
        vjp_function(fn, (0, 1), "r", algebra=Z2, cotangent_param=True)
    with pytest.raises(DerivativeError, match="matmul"):
        jvp_function(fn, (0,), "d", Z2)


def _optimised(source: str, name: str):
    import catad
    stages = catad.stages(source)
    return next(f for f in stages.optimised.functions if f.name == name)


def _target_prims(fn) -> list[str]:
    from catad.compiler.target import Call
    return [b.expr.prim.name for b in fn.body.bindings if isinstance(b.expr, Call)]


def test_the_cotangent_of_a_matrix_vector_product_needs_no_reshape():
    # z = X @ w: w_bar = z_bar @ X, not (X.T @ z_bar[:, None]).reshape(d)
    fn = _optimised("fn f(w: f64[d], X: f64[n, d]) -> f64 { sum(exp(X @ w)) }\n"
                    "fn g = grad(f, wrt = w);\n", "g")
    assert "reshape" not in _target_prims(fn) and "expand_dims" not in _target_prims(fn)
    assert _target_prims(fn).count("matmul") == 2 and "transpose" not in _target_prims(fn)


def test_the_cotangent_of_a_mean_is_a_division_broadcast_by_numpy():
    # mean(x * y): x_bar = y / n, with no ones, expand_dims or broadcast_to left
    fn = _optimised("fn f(x: f64[n], y: f64[n]) -> f64 { mean(x * y) }\n"
                    "fn g = grad(f, wrt = x);\n", "g")
    assert not {"ones", "expand_dims", "broadcast_to", "reshape"} & set(_target_prims(fn))
    assert _target_prims(fn).count("div") == 1


def test_the_cotangent_of_a_sum_over_leading_axes_needs_no_new_axis():
    # sum over axis 0 of A * B: the cotangent broadcasts along the leading axis by itself
    fn = _optimised("fn f(A: f64[n, m], B: f64[n, m]) -> f64[m] { sum(A * B, axis = 0) }\n"
                    "fn g = vjp(f, wrt = A);\n", "g")
    assert not {"expand_dims", "broadcast_to"} & set(_target_prims(fn))


def test_the_reverse_loop_reads_the_states_the_forward_loop_stored():
    # the new state tanh(...) of each step is not computed again for its adjoint
    fn = _optimised("fn f(W: f64[h, h], xs: f64[t, h]) -> f64[h] {\n"
                    "    fold(zeros(h), xs, |s, x| tanh(W @ s + x))\n}\n"
                    "fn g = vjp(f, wrt = W);\n", "g")
    from catad.compiler.target_print import format_target_function
    assert format_target_function(fn).count("tanh(") == 1
    # and the weights' cotangent is one product after the loop, not one per step
    assert _target_prims(fn).count("matmul") == 1
