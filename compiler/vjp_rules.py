"""Transposed-Jacobian rules: the reverse-mode derivative of every primitive, as IR.

    VJP_RULES[prim](b, alg, ps, args, out, ct, term) -> (cotangent of each argument)

Given the arguments, the result `out` and its cotangent `ct` (never ZERO:
reverse mode skips those), a rule emits `J_prim(args)^T · ct` with `b` in the
algebra `alg`: one cotangent per argument, `ZERO` for an argument the
algebra does not carry (integers, bools over the reals, indices) or where it is
symbolically zero, otherwise a value of *exactly* the argument's shape and
derivative dtype. NumPy broadcasting is transposed by `unbroadcast`: the
cotangent is summed over the axes the argument was broadcast along.

The calculus is shared with forward mode (`jvp_rules`): an elementwise
Jacobian is diagonal, so its transpose is the same scale applied to `ct`;
a reduction's cotangent is `ct` put back along the reduced axes, times the
group's weights. What is left are the transposes of the linear primitives:

    transpose       the inverse permutation
    expand_dims     reshape back                broadcast_to, full   unbroadcast
    reshape         reshape back                astype               cast back
    stack, concat   index the slab of each argument
    index           index_add into zeros        gather    gather_add into zeros
    index_add       (ct, index(ct))             gather_add (ct, gather(ct))
    matmul          ct @ bᵀ and aᵀ @ ct, with NumPy's 1-D promotion undone and
                    broadcast batch axes summed
    where(c, a, b)  (0, where(c, ct, 0), where(c, 0, ct)); over Z2 the
                    condition's cotangent is (a + b)·ct

The choices at non-differentiable points are those of `jvp_rules`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from . import primitives as P
from .algebra import ZERO, Algebra, Deriv
from .jvp_rules import (ELEMENTWISE_SCALES, REDUCTION_WEIGHTS, Application, adds_by_parity,
                        algebra_sum, cast, derivative_type, is_z2_logic, keep_axes, literal,
                        refuse_bool_in_z2, softmax_times, z2_times)
from .primitives import Params, Primitive, params
from .types import ArrayType, Dim, DType
from .unary import Prim
from .unary_builder import Builder, Value

Cotangent = Callable[[Application, Value, int], Deriv]  # (s, ct, k) -> cotangent of argument k
VjpRule = Callable[[Builder, Algebra, Params, tuple[Value, ...], Value, Value, Prim], tuple[Deriv, ...]]


def unbroadcast(b: Builder, alg: Algebra, ct: Value, to_type: ArrayType) -> Value:
    """`ct`, the cotangent of a value broadcast from `to_type`, as a cotangent of
    `to_type`: summed over the axes it was broadcast along, in its shape and
    derivative dtype."""
    assert isinstance(ct.type, ArrayType)
    shape, target = ct.type.shape, to_type.shape
    lead = len(shape) - len(target)
    assert lead >= 0 and all(d == t or t == Dim(1) for d, t in zip(shape[lead:], target)), \
        f"{ct.type} is not a broadcast of {to_type}"
    axes = tuple(range(lead)) + tuple(lead + k for k, t in enumerate(target)
                                      if t == Dim(1) and shape[lead + k] != Dim(1))
    summed = algebra_sum(b, alg, ct, axes)
    if summed.type.shape != target:
        summed = b.prim(P.RESHAPE, params(shape=target), summed)
    return cast(b, summed, alg.derivative_dtype(to_type))


# ---- rule shapes ---------------------------------------------------------------------

def deftranspose(cotangent: Cotangent) -> VjpRule:
    """A rule from `cotangent(s, ct, k)`, asked only for the arguments the algebra
    carries; its answers are un-broadcast to the arguments' types."""
    def rule(b: Builder, alg: Algebra, ps: Params, args: tuple[Value, ...], out: Value, ct: Value,
             term: Prim) -> tuple[Deriv, ...]:
        s = Application(b, alg, ps, args, out, term)
        bars: list[Deriv] = []
        for k, arg in enumerate(args):
            d = cotangent(s, ct, k) if alg.carries(arg.type) else ZERO
            bars.append(ZERO if d is ZERO else unbroadcast(b, alg, d, arg.type))
        return tuple(bars)
    return rule


def defvjp(*per_arg: Callable[[Application, Value], Deriv] | None) -> VjpRule:
    """A rule from one cotangent function per argument (None, or missing: ZERO)."""
    def cotangent(s: Application, ct: Value, k: int) -> Deriv:
        f = per_arg[k] if k < len(per_arg) else None
        return ZERO if f is None else f(s, ct)
    return deftranspose(cotangent)


def nondifferentiable(b: Builder, alg: Algebra, ps: Params, args: tuple[Value, ...], out: Value,
                      ct: Value, term: Prim) -> tuple[Deriv, ...]:
    """A primitive whose result does not vary with its arguments (or has no arguments)."""
    return tuple(ZERO for _ in args)


def _identity(s: Application, ct: Value) -> Value:
    """The cotangent passes as it is (then un-broadcast, cast: broadcast_to, full, astype)."""
    return ct


# ---- elementwise and reductions ----------------------------------------------------

def _elementwise(s: Application, ct: Value, k: int) -> Deriv:
    """∂f/∂x_k · ct (the Jacobian is diagonal), with the truth table for bools over Z2."""
    if is_z2_logic(s):
        return z2_times(s, k, ct)
    scales = ELEMENTWISE_SCALES[s.prim]
    if scales is None:
        return ZERO
    return scales[k](s.sym(ct), s.y, *s.xs).value


def _where(s: Application, ct: Value, k: int) -> Deriv:
    c, a, b = s.args
    if k == 0:
        return s.alg.mul(s.b, s.b.prim(P.XOR, (), a, b), ct) if is_z2_logic(s) else ZERO
    zero = literal(s.b, False if ct.type.dtype is DType.BOOL else 0.0)
    return s.b.prim(P.WHERE, (), c, *((ct, zero) if k == 1 else (zero, ct)))


def _spread(s: Application, ct: Value) -> Value:
    """`ct` with the reduced axes put back (length 1): it broadcasts over each group."""
    return keep_axes(s.b, ct, s.param("axes"))


def _sum(s: Application, ct: Value) -> Value:
    return s.b.prim(P.BROADCAST_TO, params(shape=s.args[0].type.shape), _spread(s, ct))


def _mean(s: Application, ct: Value) -> Value:
    x = s.args[0].type
    dims = [x.shape[a] for a in s.param("axes")]
    if all(d.is_constant for d in dims):
        count = literal(s.b, float(math.prod(d.const for d in dims)))
    else:
        sizes = [s.b.prim(P.SIZE, params(dim=d)) for d in dims]
        total = sizes[0]
        for size in sizes[1:]:
            total = s.b.prim(P.MUL, (), total, size)
        count = cast(s.b, total, ct.type.dtype)
    share = s.b.prim(P.DIV, (), _spread(s, ct), count)
    return s.b.prim(P.BROADCAST_TO, params(shape=x.shape), share)


def _weighted(s: Application, ct: Value) -> Value:
    """ct spread over each group, times the group's weights (prod, max, min, logsumexp)."""
    return s.alg.mul(s.b, _spread(s, ct), REDUCTION_WEIGHTS[s.prim](s))


def _softmax(s: Application, ct: Value) -> Value:
    return softmax_times(s, ct)


# ---- linear algebra and shape ---------------------------------------------------------

def _swap_last(b: Builder, x: Value) -> Value:
    r = x.type.rank
    return b.prim(P.TRANSPOSE, params(perm=tuple(range(r - 2)) + (r - 1, r - 2)), x)


def _matmul(s: Application, ct: Value, k: int) -> Value:
    """ā = ct @ bᵀ, b̄ = aᵀ @ ct on NumPy's promoted operands (a vector a is a
    row [1, k], a vector b a column [k, 1]), summed over broadcast batch axes."""
    refuse_bool_in_z2(s, "NumPy's matmul of bools is OR of ANDs, not a sum over Z2")
    b = s.b
    x, y = s.args
    g = ct
    if x.type.rank == 1:
        g = b.prim(P.EXPAND_DIMS, params(axis=g.type.rank - (1 if y.type.rank >= 2 else 0)), g)
    if y.type.rank == 1:
        g = b.prim(P.EXPAND_DIMS, params(axis=g.type.rank), g)
    rows = x if x.type.rank >= 2 else b.prim(P.EXPAND_DIMS, params(axis=0), x)
    cols = y if y.type.rank >= 2 else b.prim(P.EXPAND_DIMS, params(axis=1), y)
    if k == 0:
        bar, promoted, original = b.prim(P.MATMUL, (), g, _swap_last(b, cols)), rows, x
    else:
        bar, promoted, original = b.prim(P.MATMUL, (), _swap_last(b, rows), g), cols, y
    bar = unbroadcast(b, s.alg, bar, derivative_type(s.alg, promoted.type))
    if promoted is not original:
        bar = b.prim(P.RESHAPE, params(shape=original.type.shape), bar)
    return bar


def _transpose(s: Application, ct: Value) -> Value:
    perm = s.param("perm")
    inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
    return s.b.prim(P.TRANSPOSE, params(perm=inverse), ct)


def _reshape_back(s: Application, ct: Value) -> Value:
    """expand_dims, reshape: the cotangent in the argument's shape."""
    return s.b.prim(P.RESHAPE, params(shape=s.args[0].type.shape), ct)


def _leading_slices(shape: tuple[Dim, ...]) -> tuple:
    return tuple(("slice", Dim(0), d) for d in shape)


def _stack(s: Application, ct: Value, k: int) -> Value:
    """Argument k's slab: ct[..., k, ...] at `axis`."""
    axis = s.param("axis")
    spec = _leading_slices(s.out.type.shape[:axis]) + (("at",),)
    return s.b.prim(P.INDEX, params(spec=spec), ct, literal(s.b, k))


def _concat(s: Application, ct: Value, k: int) -> Value:
    """Argument k's slab: ct[..., lo:hi, ...] at `axis`."""
    axis = s.param("axis")
    lo = sum((a.type.shape[axis] for a in s.args[:k]), Dim(0))
    hi = lo + s.args[k].type.shape[axis]
    spec = _leading_slices(s.out.type.shape[:axis]) + (("slice", lo, hi),)
    return s.b.prim(P.INDEX, params(spec=spec), ct)


# ---- indexing ------------------------------------------------------------------------

def _index(s: Application, ct: Value) -> Value:
    """index_add(zeros, ct, *at): each position read once, so bools over Z2 too."""
    zeros = s.alg.zeros(s.b, derivative_type(s.alg, s.args[0].type))
    return s.b.prim(P.INDEX_ADD, s.ps, zeros, ct, *s.args[1:])


def _gather(s: Application, ct: Value) -> Value:
    """gather_add(zeros, ct, *indices): repeated indices accumulate. Over Z2 they
    accumulate by parity, so bools are counted as i64."""
    x, indices = s.args[0].type, s.args[1:]
    if adds_by_parity(s.alg):
        zeros = s.b.prim(P.ZEROS, params(shape=x.shape, dtype=DType.I64))
        counts = s.b.prim(P.GATHER_ADD, s.ps, zeros, cast(s.b, ct, DType.I64), *indices)
        return cast(s.b, s.b.prim(P.MOD, (), counts, literal(s.b, 2)), DType.BOOL)
    zeros = s.alg.zeros(s.b, derivative_type(s.alg, x))
    return s.b.prim(P.GATHER_ADD, s.ps, zeros, ct, *indices)


def _scatter_target(s: Application, ct: Value) -> Value:
    refuse_bool_in_z2(s, "adding bools is OR, not XOR")
    return ct


def _scatter_value(read: Primitive) -> Callable[[Application, Value], Value]:
    """index_add / gather_add: the value's cotangent is ct read where it was added."""
    def cotangent(s: Application, ct: Value) -> Value:
        refuse_bool_in_z2(s, "adding bools is OR, not XOR")
        return s.b.prim(read, s.ps, ct, *s.args[2:])
    return cotangent


VJP_RULES: dict[Primitive, VjpRule] = {
    **{prim: deftranspose(_elementwise) for prim in ELEMENTWISE_SCALES},
    P.WHERE: deftranspose(_where),
    P.CONST: nondifferentiable,
    P.SIZE: nondifferentiable,
    P.ZEROS: nondifferentiable,
    P.ONES: nondifferentiable,
    P.ARANGE: nondifferentiable,
    P.FULL: defvjp(_identity),
    P.ASTYPE: defvjp(_identity),
    P.SUM: defvjp(_sum),
    P.MEAN: defvjp(_mean),
    **{prim: defvjp(_weighted) for prim in REDUCTION_WEIGHTS},
    P.SOFTMAX: defvjp(_softmax),
    P.MATMUL: deftranspose(_matmul),
    P.TRANSPOSE: defvjp(_transpose),
    P.EXPAND_DIMS: defvjp(_reshape_back),
    P.BROADCAST_TO: defvjp(_identity),
    P.RESHAPE: defvjp(_reshape_back),
    P.STACK: deftranspose(_stack),
    P.CONCAT: deftranspose(_concat),
    P.INDEX: defvjp(_index),
    P.GATHER: defvjp(_gather),
    P.INDEX_ADD: defvjp(_scatter_target, _scatter_value(P.INDEX)),
    P.GATHER_ADD: defvjp(_scatter_target, _scatter_value(P.GATHER)),
}
