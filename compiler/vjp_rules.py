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
a reduction's cotangent is `ct` put back along the reduced axes (only where
NumPy's broadcasting would not: a sum over leading axes needs no new axis),
times the group's weights (a real max or min: `ct / count` selected at its
tied items); a mean's is `ct / n`; a cumprod's divides where that is exact
(`revcumsum(ȳ y) / x`, and at a line's zero the running product without it),
else solves the transpose of its tangent's linear recurrence, the recurrence
run from the other end. What is
left are the transposes of the linear primitives:

    transpose       the inverse permutation
    expand_dims     reshape back                broadcast_to, full   unbroadcast
    reshape         reshape back                astype               cast back
    stack, concat   index the slab of each argument
    index           index_add into zeros        gather    gather_add into zeros
    index_add       (ct, index(ct))             gather_add (ct, gather(ct))
    matmul          ct @ bᵀ and aᵀ @ ct; a vector's products written directly
                    (w̄ = z̄ @ X, outer products as `*`), and batch axes an operand is
                    broadcast along contracted by the product itself
    where(c, a, b)  (0, where(c, ct, 0), where(c, 0, ct)); over Z2 the
                    condition's cotangent is (a + b)·ct
    cumsum          the running sum the other way (reverse flipped)

The choices at non-differentiable points are those of `jvp_rules`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from . import primitives as P
from .algebra import ZERO, Algebra, Deriv
from .jvp_rules import (ELEMENTWISE_SCALES, REDUCTION_WEIGHTS, Application, RunningProduct, Sym,
                        adds_by_parity, algebra_sum, any_all_weights, cast, cumprod_by_division,
                        cumprod_operand, cumprod_recurrence, derivative_type, extremum_ties,
                        index_or_region, is_z2_logic, keep_axes, literal, ors_bools, per_tie,
                        popcount_le_partials, refuse_bool_in_z2, regrouped, softmax_times,
                        z2_times)
from .primitives import Params, Primitive, params
from .scans import shifted
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
    if a == b:  # where(c, a, a): a's cotangent is all of ct, not two selections added
        return ct if k == 1 else ZERO
    zero = literal(s.b, False if ct.type.dtype is DType.BOOL else 0.0)
    return s.b.prim(P.WHERE, (), c, *((ct, zero) if k == 1 else (zero, ct)))


def _spread(s: Application, ct: Value) -> Value:
    """`ct` broadcastable over each group of the reduction."""
    return regrouped(s.b, ct, s.param("axes"))


def _sum(s: Application, ct: Value) -> Value:
    return s.b.prim(P.BROADCAST_TO, params(shape=s.args[0].type.shape), _spread(s, ct))


def _mean(s: Application, ct: Value) -> Value:
    """ct / count, spread over each group."""
    x = s.args[0].type
    dims = [x.shape[a] for a in s.param("axes")]
    if all(d.is_constant for d in dims):
        count = literal(s.b, float(math.prod(d.const for d in dims)))
    else:
        sizes = [s.b.prim(P.SIZE, params(dim=d)) for d in dims]
        total = sizes[0]
        for size in sizes[1:]:
            total = s.b.prim(P.MUL, (), total, size)
        count = total if ct.type.dtype is DType.F64 else cast(s.b, total, ct.type.dtype)  # f64 / i64 is f64
    share = s.b.prim(P.DIV, (), ct, count)
    return s.b.prim(P.BROADCAST_TO, params(shape=x.shape), _spread(s, share))


def _weighted(s: Application, ct: Value) -> Value:
    """ct spread over each group, times the group's weights (prod, logsumexp)."""
    return s.alg.mul(s.b, _spread(s, ct), REDUCTION_WEIGHTS[s.prim](s))


def _extremum(s: Application, ct: Value) -> Value:
    """max (min): ct shared by the tied items, `where(hit, ct / count, 0)`; of bools
    over Z2, ct times the weights of any (all)."""
    if is_z2_logic(s):
        return s.alg.mul(s.b, _spread(s, ct), any_all_weights(s))
    hit, count = extremum_ties(s)
    return hit.where(s.sym(_spread(s, per_tie(s, ct, count))), 0.0).value


def _softmax(s: Application, ct: Value) -> Value:
    return softmax_times(s, ct)


def _cumsum(s: Application, ct: Value) -> Value:
    """The transpose of a running sum is the running sum the other way: x̄_j = Σ_{i >= j} ȳ_i
    (exclusive: i > j)."""
    return s.b.prim(P.CUMSUM, params(axis=s.param("axis"), reverse=not s.param("reverse"),
                                     exclusive=s.param("exclusive")), ct)


def _cumprod(s: Application, ct: Value) -> Value:
    """ā_j = Σ_{i>=j} ȳ_i ∂y_i/∂a_j for y = cumprod(a) (`cumprod_operand`): by division,
    revcumsum(ȳ y) / a where a ≠ 0 and revcumsum(ȳ · skipping) at a line's zero, else
    by the tangent's recurrence transposed (`cumprod_by_division`); an exclusive
    cumprod moves ā back (x̄_j = ā_{j+1}, 0 last)."""
    a = cumprod_operand(s)

    def by_division(p: RunningProduct) -> Sym:
        g = p.sym(ct)
        return p.nonzero.where(p.running_sum(g * p.y, backwards=True) / p.safe,
                               p.running_sum(g * p.skipping, backwards=True))

    bar = cumprod_by_division(s, a, by_division,
                              lambda b: cumprod_recurrence(b, s, a, ct, transposed=True))
    if not s.param("exclusive"):
        return bar
    return shifted(s.b, bar, s.param("axis"), False, not s.param("reverse"))


def _popcount_le(s: Application, ct: Value, k: int) -> Value:
    """ct spread along the counted axis, times ∂y/∂a (k = 0) or ∂y/∂b (k = 1), over Z2."""
    spread = s.b.prim(P.EXPAND_DIMS, params(axis=ct.type.rank), ct)
    return s.alg.mul(s.b, spread, popcount_le_partials(s)[k])


# ---- linear algebra and shape ---------------------------------------------------------

def _swap_last(b: Builder, x: Value) -> Value:
    r = x.type.rank
    return b.prim(P.TRANSPOSE, params(perm=tuple(range(r - 2)) + (r - 1, r - 2)), x)


def _matmul(s: Application, ct: Value, k: int) -> Value:
    """ā = ct @ bᵀ, b̄ = aᵀ @ ct. A vector operand is not promoted to a matrix
    and back: its products are written directly (`w̄ = z̄ @ X` for `z = X @ w`,
    an outer product as a broadcast `*`); batch axes that an operand is
    broadcast along are contracted in the product (`_product_cotangent`)."""
    refuse_bool_in_z2(s, "NumPy's matmul of bools is OR of ANDs, not a sum over Z2")
    b, alg = s.b, s.alg
    x, y = s.args
    rx, ry = x.type.rank, y.type.rank
    if rx == 1 and ry == 1:                          # x · y: x̄ = ct y, ȳ = x ct
        return alg.mul(b, ct, y) if k == 0 else alg.mul(b, x, ct)
    if ry == 1 and k == 0:                           # (.., m, j) @ (j,): x̄ = ct[.., None] y
        return alg.mul(b, b.prim(P.EXPAND_DIMS, params(axis=ct.type.rank), ct), y)
    if rx == 1 and k == 1:                           # (j,) @ (.., j, n): ȳ = x[:, None] ct[.., None, :]
        column = b.prim(P.EXPAND_DIMS, params(axis=1), x)
        return alg.mul(b, column, b.prim(P.EXPAND_DIMS, params(axis=ct.type.rank - 1), ct))
    if ry == 1 and rx == 2:                          # (m, j) @ (j,): ȳ = ct @ x
        return b.prim(P.MATMUL, (), ct, x)
    if rx == 1 and ry == 2:                          # (j,) @ (j, n): x̄ = y @ ct
        return b.prim(P.MATMUL, (), y, ct)
    # matrices (vectors with batched matrices promoted: a row [1, j], a column [j, 1])
    g = ct
    if rx == 1:
        g = b.prim(P.EXPAND_DIMS, params(axis=g.type.rank - 1), g)
    if ry == 1:
        g = b.prim(P.EXPAND_DIMS, params(axis=g.type.rank), g)
    rows = x if rx >= 2 else b.prim(P.EXPAND_DIMS, params(axis=0), x)
    cols = y if ry >= 2 else b.prim(P.EXPAND_DIMS, params(axis=1), y)
    if k == 0:
        bar = _product_cotangent(b, alg, g, _swap_last(b, cols), derivative_type(alg, rows.type))
    else:
        bar = _product_cotangent(b, alg, _swap_last(b, rows), g, derivative_type(alg, cols.type))
    original = s.args[k].type
    return bar if bar.type.shape == original.shape else b.prim(P.RESHAPE, params(shape=original.shape), bar)


def _aligned(v: Value, batch: int) -> list[Dim | None]:
    """The batch dims of a matrix (stack) `v`, right-aligned to `batch` axes (None: absent)."""
    own = v.type.shape[:-2]
    return [None] * (batch - len(own)) + list(own)


def _product_cotangent(b: Builder, alg: Algebra, left: Value, right: Value, target: ArrayType) -> Value:
    """`left @ right` summed over the batch axes that `target` (the operand whose
    cotangent this is) is broadcast along, in its shape. An axis only one factor
    varies along is summed in that factor first; an axis both vary along is
    contracted by the product itself (moved next to the inner axis and merged
    with it), so no stack of products is made only to be summed."""
    batch = max(left.type.rank, right.type.rank, target.rank) - 2
    ls, rs = _aligned(left, batch), _aligned(right, batch)
    ts = [None] * (batch - target.rank + 2) + list(target.shape[:-2])
    alone_l, alone_r, both = [], [], []
    for i in range(batch):
        varies_l, varies_r = ls[i] not in (None, Dim(1)), rs[i] not in (None, Dim(1))
        if ts[i] not in (None, Dim(1)) or not (varies_l or varies_r):
            continue
        (both if varies_l and varies_r else alone_l if varies_l else alone_r).append(i)
    left = _summed_keeping_rank(b, alg, left, [i - (batch - left.type.rank + 2) for i in alone_l])
    right = _summed_keeping_rank(b, alg, right, [i - (batch - right.type.rank + 2) for i in alone_r])
    merged = _merged_size([ls[i] for i in both] + [left.type.shape[-1]])
    if both and merged is not None:
        left = _inner_merged(b, left, [i - (batch - left.type.rank + 2) for i in both], merged, last=True)
        right = _inner_merged(b, right, [i - (batch - right.type.rank + 2) for i in both], merged, last=False)
    product = b.prim(P.MATMUL, (), left, right)
    if both and merged is None:
        return unbroadcast(b, alg, product, target)
    if product.type.shape != target.shape:
        product = b.prim(P.RESHAPE, params(shape=target.shape), product)
    return cast(b, product, target.dtype)


def _summed_keeping_rank(b: Builder, alg: Algebra, v: Value, axes: list[int]) -> Value:
    """`v` summed over `axes`, which stay with length 1."""
    return keep_axes(b, algebra_sum(b, alg, v, tuple(axes)), tuple(axes)) if axes else v


def _merged_size(dims: list[Dim]) -> Dim | None:
    """The product of `dims`, when it is a size (at most one is not a constant)."""
    total = Dim(1)
    for d in dims:
        if d.is_constant:
            total = total.scale(d.const)
        elif total.is_constant:
            total = d.scale(total.const)
        else:
            return None
    return total


def _inner_merged(b: Builder, v: Value, axes: list[int], merged: Dim, *, last: bool) -> Value:
    """Matrix stack `v` with its batch `axes` moved next to its inner axis (the last
    one when `last`, else the second to last) and merged with it into `merged`."""
    r = v.type.rank
    rest = [a for a in range(r - 2) if a not in axes]
    perm = rest + ([r - 2] + axes + [r - 1] if last else axes + [r - 2, r - 1])
    moved = v if perm == list(range(r)) else b.prim(P.TRANSPOSE, params(perm=tuple(perm)), v)
    shape = tuple(v.type.shape[a] for a in rest)
    shape += (v.type.shape[r - 2], merged) if last else (merged, v.type.shape[r - 1])
    return moved if moved.type.shape == shape else b.prim(P.RESHAPE, params(shape=shape), moved)


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
    """ct; over Z2, for index_add of bools (an OR), ct·(1 + v) in the region."""
    if s.prim is P.INDEX_ADD and ors_bools(s):
        region = s.b.prim(P.INDEX, s.ps, ct, *s.args[2:])
        return s.alg.add(s.b, ct, index_or_region(s, s.alg.mul(s.b, region, s.args[1])))
    refuse_bool_in_z2(s, "np.add.at of bools ORs repeated indices together")
    return ct


def _scatter_value(read: Primitive) -> Callable[[Application, Value], Value]:
    """index_add / gather_add: the value's cotangent is ct read where it was added;
    over Z2, for index_add of bools (an OR), times 1 + t there."""
    def cotangent(s: Application, ct: Value) -> Value:
        region = s.b.prim(read, s.ps, ct, *s.args[2:])
        if s.prim is P.INDEX_ADD and ors_bools(s):
            target = s.b.prim(P.INDEX, s.ps, s.args[0], *s.args[2:])
            return s.alg.mul(s.b, region, s.b.prim(P.NOT, (), target))
        refuse_bool_in_z2(s, "np.add.at of bools ORs repeated indices together")
        return region
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
    P.MAX: defvjp(_extremum),
    P.MIN: defvjp(_extremum),
    P.SOFTMAX: defvjp(_softmax),
    P.CUMSUM: defvjp(_cumsum),
    P.CUMPROD: defvjp(_cumprod),
    P.PARITY: defvjp(_sum),
    P.POPCOUNT_LE: deftranspose(_popcount_le),
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
