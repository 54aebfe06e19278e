"""Scans with an associative operation, as whole-array code: no loop over the items.

Reverse mode differentiates `reduce(xs, unit, |a, b| e)` whose body is not a
known monoid by the rule of Huot & Shaikhha (compiler/reverse.py), which
needs every prefix and every suffix combination of the items. Computed one
item after another they would cost a Python loop over the items; here each is
a *scan* in ceil(log2 n) rounds of whole-array code (Hillis & Steele's
doubling), each round one application of the operation ⊕ to all items at once:

    round d = 1, 2, 4, ... < n      prefix  y[i] = y[i - d] ⊕ y[i]   (i >= d)
                                    suffix  y[i] = y[i] ⊕ y[i + d]   (i < n - d)

Afterwards prefix y[i] = x[0] ⊕ .. ⊕ x[i] and suffix y[i] = x[i] ⊕ .. ⊕ x[n-1]
(inclusive scans), computed with O(n log n) applications of ⊕ in depth
ceil(log2 n), and only associativity is used: never an identity element.

With a constant n of at most 2^UNROLLED_ROUNDS items the rounds are unrolled
and work on slices (`y[:n - d]`, `y[d:]`), so the code has no loop at all.
Otherwise they are a loop over the shifts d = 2^k: the ceil(log2 n) of a
constant n, or, when n is a size variable, all 63 that an array size can
need, each skipped by an `if` once d >= n (a handful of Python iterations
that do nothing). A round of the loop combines y with itself gathered d items
away and keeps the combination where it applies (`where`).

`lanewise` is how ⊕ is applied to all items at once: the operation, written
for one item, under a `Map`, made whole-array code by the vectorisation pass.
Forward and reverse mode use the same scans for an `associative` fold
(`reassociable`), and read their rows with `rows` and `row`.

The derivatives of `cumprod`, where they cannot divide (two zeros in a line,
products that underflow or overflow, items beyond 2^±256:
`jvp_rules.cumprod_by_division`), solve a first-order linear recurrence along
an axis, `r_i = a_i r_{i-1} + c_i` from `r_{-1} = 0`, whose solution is
`r_i = Σ_{j<=i} c_j Π_{j<k<=i} a_k`: exact where a holds zeros, with no
division. It is a scan of the affine maps `r ↦ a r + c`, which compose
associatively, `(a, c) then (a', c') = (a a', a' c + c')`
(`linear_recurrence`, in any `Algebra`: over Z2 with and and xor). `shifted`
moves an array one item along an axis: an exclusive scan is the inclusive
scan of its shifted items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import primitives as P
from .algebra import Algebra
from .primitives import params
from .types import ArrayType, Dim, DType, Type, strip_weak
from .unary import Map, Term
from .unary_builder import Builder, Value
from .vectorise import Emitter, Nest, shift_vars, unbatched, walk

UNROLLED_ROUNDS = 8
"""Constant lengths up to 2^8 items scan in unrolled rounds; longer ones in a loop."""

_SIZE_BITS = 63
"""A size variable is an i64: doubling 63 times reaches any array's length."""

Combine = Callable[[Builder, Value, Value], Value]
"""`combine(b, left, right)`: the array of left[i] ⊕ right[i] (arrays of one length)."""


def lanewise(b: Builder, term: Term, context: Sequence[Value], lanes: Sequence[Value]) -> Value:
    """`term`, written for one item (it runs on `context` and then one item of
    each array in `lanes`, and pushes its result), applied to every item at once:
    the array of its results, as whole-array code."""
    k, m = len(lanes), len(context)
    mapped = Map(k, shift_vars(term, m, k))  # the Map body sees context, the arrays, the items
    em = Emitter([unbatched(v.type) for v in (*context, *lanes)], Nest(0, False))
    walk(em, mapped)
    return b.inline(em.term(), (*context, *lanes), em.stack[-1].type)


def reassociable(unit: Type, xs: Type) -> bool:
    """Whether a fold's initial state and items are arrays of one type, as the
    associative fold of a `reduce` has them (else it is differentiated as any fold)."""
    return (isinstance(unit, ArrayType) and isinstance(xs, ArrayType) and xs.rank >= 1
            and strip_weak(unit) == ArrayType(xs.dtype, xs.shape[1:]))


def rows(b: Builder, array: Value, lo: Dim, hi: Dim) -> Value:
    """`array[lo:hi]` along the leading axis."""
    assert isinstance(array.type, ArrayType)
    return b.prim(P.INDEX, params(spec=(("slice", lo, hi),) + _item_slices(array.type)), array)


def row(b: Builder, array: Value, i: Dim) -> Value:
    """`array[i]`."""
    assert isinstance(array.type, ArrayType)
    at = b.prim(P.SIZE, params(dim=i))
    return b.prim(P.INDEX, params(spec=(("at",),) + _item_slices(array.type)), array, at)


def prefix_scan(b: Builder, combine: Combine, xs: Value) -> Value:
    """y[i] = xs[0] ⊕ .. ⊕ xs[i] along the leading axis."""
    return _scan(b, combine, xs, from_right=False)


def suffix_scan(b: Builder, combine: Combine, xs: Value) -> Value:
    """y[i] = xs[i] ⊕ .. ⊕ xs[n - 1] along the leading axis."""
    return _scan(b, combine, xs, from_right=True)


def _scan(b: Builder, combine: Combine, xs: Value, *, from_right: bool) -> Value:
    assert isinstance(xs.type, ArrayType) and xs.type.rank >= 1
    n = xs.type.shape[0]
    if n.is_constant and n.const <= 2 ** UNROLLED_ROUNDS:
        y, d = xs, 1
        while d < n.const:
            y = _round_on_slices(b, combine, y, d, from_right)
            d *= 2
        return y
    if n.is_constant:  # every round does work
        return _rounds_loop(b, combine, xs, max(n.const - 1, 1).bit_length(), from_right,
                            guarded=False)
    return _rounds_loop(b, combine, xs, _SIZE_BITS, from_right, guarded=True)


def _item_slices(t: ArrayType) -> tuple:
    return tuple(("slice", Dim(0), d) for d in t.shape[1:])


def _round_on_slices(b: Builder, combine: Combine, y: Value, d: int, from_right: bool) -> Value:
    """One round with a constant shift d < n: ⊕ of the overlapping slices, and the
    d items it does not reach kept as they are."""
    assert isinstance(y.type, ArrayType)
    n = y.type.shape[0]
    pairs = combine(b, rows(b, y, Dim(0), n - d), rows(b, y, Dim(d), n))
    if from_right:
        return b.prim(P.CONCAT, params(axis=0), pairs, rows(b, y, n - d, n))
    return b.prim(P.CONCAT, params(axis=0), rows(b, y, Dim(0), Dim(d)), pairs)


def _rounds_loop(b: Builder, combine: Combine, xs: Value, rounds: int, from_right: bool, *,
                 guarded: bool) -> Value:
    """The rounds as a loop over the shifts 1, 2, 4, .. 2^(rounds - 1); `guarded`:
    a round whose shift reaches past the length is skipped."""
    assert isinstance(xs.type, ArrayType)
    n = xs.type.shape[0]
    two = b.prim(P.CONST, params(value=2, dtype=DType.I64))
    shifts = b.prim(P.POW, (), two, b.prim(P.ARANGE, params(lo=Dim(0), hi=Dim(rounds))))

    def round_(lb: Builder, y: Value, d: Value) -> Value:
        if not guarded:
            return _round_by_gather(lb, combine, y, d, from_right)
        reaches = lb.prim(P.LT, (), d, lb.prim(P.SIZE, params(dim=n)))
        return lb.if_(reaches, lambda sb: _round_by_gather(sb, combine, y, d, from_right),
                      lambda sb: y)

    return b.loop(xs, shifts, round_, stacked=False)


def _round_by_gather(b: Builder, combine: Combine, y: Value, d: Value, from_right: bool) -> Value:
    """One round with a shift 1 <= d < n known at run time: y combined with y gathered
    d items away, kept where that partner exists. The other items are combined with
    a neighbour instead (and the result discarded), so that no item is ever
    combined with itself: the unit ⊕ the unit may not be finite (log-sum-exp
    with a unit of -inf), though the body may be applied to it on either side."""
    assert isinstance(y.type, ArrayType)
    n = y.type.shape[0]
    at = b.prim(P.ARANGE, params(lo=Dim(0), hi=n))
    one = b.prim(P.CONST, params(value=1, dtype=DType.I64))
    if from_right:
        ahead = b.prim(P.ADD, (), at, d)
        applies = b.prim(P.LT, (), ahead, b.prim(P.SIZE, params(dim=n)))
        partner = b.prim(P.WHERE, (), applies, ahead, b.prim(P.SUB, (), at, one))
        combined = combine(b, y, b.prim(P.GATHER, params(clip=False), y, partner))
    else:
        applies = b.prim(P.GE, (), at, d)
        partner = b.prim(P.WHERE, (), applies, b.prim(P.SUB, (), at, d), b.prim(P.ADD, (), at, one))
        combined = combine(b, b.prim(P.GATHER, params(clip=False), y, partner), y)
    if y.type.rank > 1:
        applies = b.prim(P.RESHAPE, params(shape=(n,) + (Dim(1),) * (y.type.rank - 1)), applies)
    return b.prim(P.WHERE, (), applies, combined, y)


# ---- linear recurrences along an axis ------------------------------------------------

def _to_front(b: Builder, v: Value, axis: int) -> Value:
    """`v` with `axis` moved first (its own inverse is `_from_front`)."""
    if axis == 0:
        return v
    perm = (axis, *(k for k in range(v.type.rank) if k != axis))
    return b.prim(P.TRANSPOSE, params(perm=perm), v)


def _from_front(b: Builder, v: Value, axis: int) -> Value:
    if axis == 0:
        return v
    perm = (*range(1, axis + 1), 0, *range(axis + 1, v.type.rank))
    return b.prim(P.TRANSPOSE, params(perm=perm), v)


def _part(b: Builder, pairs: Value, k: int) -> Value:
    """`pairs[:, k]`: the a (k = 0) or c (k = 1) of each affine map."""
    assert isinstance(pairs.type, ArrayType)
    at = b.prim(P.CONST, params(value=k, dtype=DType.I64))
    return b.prim(P.INDEX, params(spec=(("slice", Dim(0), pairs.type.shape[0]), ("at",))), pairs, at)


def linear_recurrence(b: Builder, alg: Algebra, a: Value, c: Value, axis: int, reverse: bool) -> Value:
    """`r_i = a_i r_{i-1} + c_i` along `axis` from `r_{-1} = 0` (reverse: `r_i = a_i
    r_{i+1} + c_i` from the end), in `alg`; `a` and `c` of one shape. The pairs
    (a_i, c_i) are stacked on a second axis and composed by a prefix (suffix) scan:
    the map applied first, then the other, is `(a, c) then (a', c') = (a a', a' c + c')`,
    and r is the c of each composition."""
    def combine(cb: Builder, left: Value, right: Value) -> Value:
        first, then = (right, left) if reverse else (left, right)
        a1, c1, a2, c2 = _part(cb, first, 0), _part(cb, first, 1), _part(cb, then, 0), _part(cb, then, 1)
        composed = (alg.mul(cb, a1, a2), alg.add(cb, alg.mul(cb, a2, c1), c2))
        return cb.prim(P.STACK, params(axis=1), *composed)

    pairs = b.prim(P.STACK, params(axis=1), _to_front(b, a, axis), _to_front(b, c, axis))
    scanned = (suffix_scan if reverse else prefix_scan)(b, combine, pairs)
    return _from_front(b, _part(b, scanned, 1), axis)


def shifted(b: Builder, v: Value, axis: int, identity: bool, reverse: bool) -> Value:
    """`v` moved one item along `axis`, `identity` (0 or 1 in v's dtype) first and the
    last item dropped (reverse: towards the start, the identity last). Written as
    `concat(identity, v)[0:n]` (reverse: `concat(v, identity)[1:n + 1]`), right for an
    empty axis too."""
    t = v.type
    assert isinstance(t, ArrayType)
    n = t.shape[axis]
    slab = b.prim(P.ONES if identity else P.ZEROS,
                  params(shape=t.shape[:axis] + (Dim(1),) + t.shape[axis + 1:], dtype=t.dtype))
    joined = b.prim(P.CONCAT, params(axis=axis), *((v, slab) if reverse else (slab, v)))
    lo = Dim(1) if reverse else Dim(0)
    spec = tuple(("slice", Dim(0), d) for d in t.shape[:axis]) + (("slice", lo, lo + n),)
    return b.prim(P.INDEX, params(spec=spec), joined)
