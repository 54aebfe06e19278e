"""The type and shape rule of every primitive: `TYPE_RULES[prim](params, arg_types) -> type`.

Rules follow NumPy on symbolic shapes:

* broadcasting: shapes align on the right; two dims fit when they are equal
  `Dim`s or one of them is the literal 1 (`n` and `m` never fit, even though
  they might be equal at run time);
* dtypes promote with `types.promote` (NEP 50: literals are weak). An
  elementwise result is weak when all its arguments are (as in JAX, and as
  `prim_eval` computes literals), so `2.0 * 3.0` is still a literal;
* float-only functions (exp, log, ..., `/`, mean, logsumexp, softmax) turn
  bool and i64 into f64 and keep f32;
* comparisons give bool; and/or/xor/not, parity, popcount_le and the condition
  of `where` need bool;
  `-` and `sign` refuse bool (NumPy has no bool subtract); `//`, `%` and `**`
  compute bool as i64;
* a size (`size`, and so every size variable used as a value) is a strong i64,
  as `prim_eval` computes it;
* reshape compares the products of the dims as polynomials in the size
  variables (`[n, 2 * m]` fits `[2 * n * m]`; `[n]` does not fit `[m]`).

A rule that does not fit raises `PrimTypeError` with a reason (no subject: the
checker prefixes "cannot apply `+` to f64[n] and f64[m]: ") and its `kind`,
"type" or "shape", which the checker turns into TypeMismatchError or ShapeError.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce as fold_left

from . import primitives as P
from .primitives import Params, Primitive, param
from .types import ArrayType, Dim, DType, Shape, TupleType, Type, promote, shape_str

Rule = Callable[[Params, tuple[Type, ...]], Type]


class PrimTypeError(Exception):
    """A primitive applied to arguments that do not fit; `kind` is "type" or "shape"."""

    def __init__(self, message: str, kind: str = "type", hint: str | None = None):
        assert kind in ("type", "shape"), kind
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.hint = hint


# ---- shape helpers -----------------------------------------------------------

_BROADCAST_HINT = "dims fit when they are equal or one of them is 1, comparing from the right"


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting of symbolic shapes; a mismatch names both shapes."""
    return fold_left(_broadcast_two, shapes, ())


def _broadcast_two(a: Shape, b: Shape) -> Shape:
    rank = max(len(a), len(b))
    pa, pb = (Dim(1),) * (rank - len(a)) + a, (Dim(1),) * (rank - len(b)) + b
    out = []
    for x, y in zip(pa, pb):
        if x == y or y == Dim(1):
            out.append(x)
        elif x == Dim(1):
            out.append(y)
        else:
            raise PrimTypeError(f"shapes {shape_str(a)} and {shape_str(b)} do not broadcast "
                                f"({x} and {y} differ)", "shape", _BROADCAST_HINT)
    return tuple(out)


def _broadcasts_to(shape: Shape, target: Shape) -> bool:
    """`shape` broadcasts to exactly `target` (np.broadcast_to)."""
    if len(shape) > len(target):
        return False
    return all(a == b or a == Dim(1) for a, b in zip(shape, target[len(target) - len(shape):]))


def normalize_axis(axis: int, rank: int) -> int:
    """`axis` in 0..rank-1; a negative axis counts from the end, as in NumPy."""
    if not -rank <= axis < rank:
        raise PrimTypeError(f"axis {axis} is out of range for an array of rank {rank}", "shape")
    return axis % rank


def _polynomial(shape: Shape) -> dict[tuple[str, ...], int]:
    """The product of the dims, as {sorted variables of a monomial: coefficient}."""
    product: dict[tuple[str, ...], int] = {(): 1}
    for dim in shape:
        factors = [((), dim.const), *(((var,), c) for var, c in dim.terms)]
        step: dict[tuple[str, ...], int] = {}
        for mono, coeff in product.items():
            for vars_, c in factors:
                key = tuple(sorted(mono + vars_))
                step[key] = step.get(key, 0) + coeff * c
        product = {k: v for k, v in step.items() if v}
    return product


# ---- argument helpers --------------------------------------------------------

def _array(t: Type) -> ArrayType:
    if isinstance(t, TupleType):
        raise PrimTypeError(f"expected an array, got the tuple {t}")
    return t


def _arrays(args: tuple[Type, ...]) -> tuple[ArrayType, ...]:
    return tuple(_array(t) for t in args)


def _promote_all(args: tuple[ArrayType, ...]) -> tuple[DType, bool]:
    dtype, weak = args[0].dtype, args[0].weak
    for t in args[1:]:
        dtype, weak = promote(ArrayType(dtype, (), weak), t)
    return dtype, weak


def _float(dtype: DType) -> DType:
    return dtype if dtype.is_float else DType.F64


def _bool_as_int(dtype: DType) -> DType:
    return DType.I64 if dtype is DType.BOOL else dtype


def _same(dtype: DType) -> DType:
    return dtype


def _need_bool(args: tuple[ArrayType, ...], hint: str) -> None:
    for t in args:
        if t.dtype is not DType.BOOL:
            raise PrimTypeError(f"{t} is not bool", hint=hint)


def _refuse_bool(args: tuple[ArrayType, ...], hint: str) -> None:
    if all(t.dtype is DType.BOOL for t in args):
        raise PrimTypeError("it does not take bool", hint=hint)


def _rank_at_least(t: ArrayType, rank: int) -> None:
    if t.rank < rank:
        raise PrimTypeError(f"it needs an array of rank {rank} or more, got {t}", "shape")


def _shape_param(ps: Params) -> Shape:
    shape = param(ps, "shape")
    for dim in shape:
        if dim.is_constant and dim.const < 0:
            raise PrimTypeError(f"the shape {shape_str(shape)} has a negative dim", "shape")
    return shape


# ---- rule makers -------------------------------------------------------------

def elementwise(result_dtype: Callable[[DType], DType], bool_hint: str | None = None,
                result_bool: bool = False) -> Rule:
    """Broadcast the arguments, promote their dtypes, map the dtype to the result's.

    `bool_hint`: all-bool arguments are refused with this hint. `result_bool`:
    the result is bool whatever the arguments (comparisons)."""
    def rule(ps: Params, args: tuple[Type, ...]) -> Type:
        arrays = _arrays(args)
        if bool_hint is not None:
            _refuse_bool(arrays, bool_hint)
        dtype, weak = _promote_all(arrays)
        shape = broadcast_shapes(*(t.shape for t in arrays))
        return ArrayType(DType.BOOL if result_bool else result_dtype(dtype), shape, weak)
    return rule


def elementwise_float(ps: Params, args: tuple[Type, ...]) -> Type:
    """exp, log, ...: bool and i64 become f64, f32 stays f32."""
    (x,) = _arrays(args)
    return ArrayType(_float(x.dtype), x.shape, x.weak)


def logical(ps: Params, args: tuple[Type, ...]) -> Type:
    """and, or, xor, not: bool arguments, broadcast."""
    arrays = _arrays(args)
    _need_bool(arrays, "and, or, xor and not take bools; compare first, e.g. `x > 0.0`")
    return ArrayType(DType.BOOL, broadcast_shapes(*(t.shape for t in arrays)),
                     all(t.weak for t in arrays))


def where(ps: Params, args: tuple[Type, ...]) -> Type:
    cond, a, b = _arrays(args)
    _need_bool((cond,), "the condition of where is a bool array, e.g. `x > 0.0`")
    dtype, weak = promote(a, b)
    return ArrayType(dtype, broadcast_shapes(cond.shape, a.shape, b.shape), weak and cond.weak)


def reduction(result_dtype: Callable[[DType], DType]) -> Rule:
    """sum, mean, ...: the `axes` (non-negative, sorted, at least one) are removed."""
    def rule(ps: Params, args: tuple[Type, ...]) -> Type:
        (x,) = _arrays(args)
        axes = param(ps, "axes")
        if not axes or list(axes) != sorted(set(axes)):
            raise PrimTypeError(f"axes {axes} must be distinct, sorted and at least one", "shape")
        for axis in axes:
            if not 0 <= axis < x.rank:
                raise PrimTypeError(f"axis {axis} is out of range for an array of rank {x.rank}",
                                    "shape")
        shape = tuple(d for k, d in enumerate(x.shape) if k not in axes)
        return ArrayType(result_dtype(x.dtype), shape)
    return rule


_COUNT_HINT = "parity and popcount_le count bools; compare first, e.g. `x > 0.0`"


def parity(ps: Params, args: tuple[Type, ...]) -> Type:
    """parity: a reduction of bools to bools."""
    _need_bool(_arrays(args), _COUNT_HINT)
    return reduction(_same)(ps, args)


def popcount_le(ps: Params, args: tuple[Type, ...]) -> Type:
    """`scale * count(a) <= count(b)` along the last axes; the other axes broadcast."""
    a, b = _arrays(args)
    _need_bool((a, b), _COUNT_HINT)
    for t in (a, b):
        _rank_at_least(t, 1)
    scale = param(ps, "scale")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 0:
        raise PrimTypeError(f"the scale {scale!r} must be an int >= 0")
    return ArrayType(DType.BOOL, broadcast_shapes(a.shape[:-1], b.shape[:-1]))


# ---- the rules that are not made by a helper ----------------------------------

def const(ps: Params, args: tuple[Type, ...]) -> Type:
    """A scalar of `dtype`, weak unless the param `weak` is False."""
    value, dtype = param(ps, "value"), param(ps, "dtype")
    python = {DType.BOOL: (bool,), DType.I64: (int,), DType.F32: (int, float),
              DType.F64: (int, float)}[dtype]
    if not isinstance(value, python) or (dtype is not DType.BOOL and isinstance(value, bool)):
        raise PrimTypeError(f"the constant {value!r} is not a {dtype}")
    weak = dict(ps).get("weak", True)
    return ArrayType(dtype, (), weak)


def filled(ps: Params, args: tuple[Type, ...]) -> Type:
    """zeros, ones: `dtype[shape]` from the params."""
    return ArrayType(param(ps, "dtype"), _shape_param(ps))


def size(ps: Params, args: tuple[Type, ...]) -> Type:
    return ArrayType(DType.I64)


def full(ps: Params, args: tuple[Type, ...]) -> Type:
    (value,) = _arrays(args)
    if value.rank:
        raise PrimTypeError(f"the fill value must be a scalar, got {value}", "shape")
    return ArrayType(value.dtype, _shape_param(ps))


def arange(ps: Params, args: tuple[Type, ...]) -> Type:
    length = param(ps, "hi") - param(ps, "lo")
    if length.is_constant and length.const < 0:
        raise PrimTypeError(f"the range {param(ps, 'lo')}..{param(ps, 'hi')} is empty "
                            "backwards", "shape")
    return ArrayType(DType.I64, (length,))


def astype(ps: Params, args: tuple[Type, ...]) -> Type:
    (x,) = _arrays(args)
    return ArrayType(param(ps, "dtype"), x.shape)


def softmax(ps: Params, args: tuple[Type, ...]) -> Type:
    (x,) = _arrays(args)
    axis = param(ps, "axis")
    if not 0 <= axis < x.rank:
        raise PrimTypeError(f"axis {axis} is out of range for an array of rank {x.rank}", "shape")
    return ArrayType(_float(x.dtype), x.shape)


def scan(ps: Params, args: tuple[Type, ...]) -> Type:
    """cumsum, cumprod: the shape and dtype kept; numbers only (the library counts
    bools as i64s first, as `sum` does)."""
    (x,) = _arrays(args)
    if x.dtype is DType.BOOL:
        raise PrimTypeError("running sums and products take numbers, not bools", "type",
                            "convert first, e.g. `i64(p)`")
    axis = param(ps, "axis")
    if not 0 <= axis < x.rank:
        raise PrimTypeError(f"axis {axis} is out of range for an array of rank {x.rank}", "shape")
    return ArrayType(x.dtype, x.shape)


def matmul(ps: Params, args: tuple[Type, ...]) -> Type:
    """NumPy's matmul: a vector is a matrix of one row (left) or column (right)."""
    a, b = _arrays(args)
    if a.rank == 0 or b.rank == 0:
        raise PrimTypeError("matmul needs arrays of rank 1 or more", "shape",
                            "use `*` to multiply by a scalar")
    inner_b = b.shape[-2] if b.rank >= 2 else b.shape[0]
    if a.shape[-1] != inner_b:
        raise PrimTypeError(f"the inner dims of {shape_str(a.shape)} and {shape_str(b.shape)} "
                            f"differ ({a.shape[-1]} and {inner_b})", "shape",
                            "`a @ b` needs the last dim of a to equal the first dim of a vector b, "
                            "or the second-to-last dim of b")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    rows = a.shape[-2:-1] if a.rank >= 2 else ()
    cols = b.shape[-1:] if b.rank >= 2 else ()
    return ArrayType(promote(a, b)[0], batch + rows + cols)


def transpose(ps: Params, args: tuple[Type, ...]) -> Type:
    (x,) = _arrays(args)
    perm = param(ps, "perm")
    if sorted(perm) != list(range(x.rank)):
        raise PrimTypeError(f"{perm} is not a permutation of the {x.rank} axes", "shape")
    return ArrayType(x.dtype, tuple(x.shape[k] for k in perm))


def expand_dims(ps: Params, args: tuple[Type, ...]) -> Type:
    (x,) = _arrays(args)
    axis = param(ps, "axis")
    if not 0 <= axis <= x.rank:
        raise PrimTypeError(f"a new axis {axis} is out of range for a result of rank "
                            f"{x.rank + 1}", "shape")
    return ArrayType(x.dtype, x.shape[:axis] + (Dim(1),) + x.shape[axis:])


def broadcast_to(ps: Params, args: tuple[Type, ...]) -> Type:
    (x,) = _arrays(args)
    shape = _shape_param(ps)
    if not _broadcasts_to(x.shape, shape):
        raise PrimTypeError(f"{shape_str(x.shape)} does not broadcast to {shape_str(shape)}",
                            "shape", _BROADCAST_HINT)
    return ArrayType(x.dtype, shape)


def reshape(ps: Params, args: tuple[Type, ...]) -> Type:
    (x,) = _arrays(args)
    shape = _shape_param(ps)
    if _polynomial(x.shape) != _polynomial(shape):
        raise PrimTypeError(f"cannot reshape {shape_str(x.shape)} to {shape_str(shape)}: the "
                            "numbers of elements differ", "shape")
    return ArrayType(x.dtype, shape)


def stack(ps: Params, args: tuple[Type, ...]) -> Type:
    arrays = _nonempty(args)
    for t in arrays[1:]:
        if t.shape != arrays[0].shape:
            raise PrimTypeError(f"stacked arrays need one shape, got {shape_str(arrays[0].shape)} "
                                f"and {shape_str(t.shape)}", "shape")
    axis = param(ps, "axis")
    rank = arrays[0].rank
    if not 0 <= axis <= rank:
        raise PrimTypeError(f"axis {axis} is out of range for a result of rank {rank + 1}",
                            "shape")
    shape = arrays[0].shape
    return ArrayType(_promote_all(arrays)[0], shape[:axis] + (Dim(len(arrays)),) + shape[axis:])


def concat(ps: Params, args: tuple[Type, ...]) -> Type:
    arrays = _nonempty(args)
    axis = param(ps, "axis")
    first = arrays[0]
    if not 0 <= axis < first.rank:
        raise PrimTypeError(f"axis {axis} is out of range for an array of rank {first.rank}",
                            "shape")
    for t in arrays[1:]:
        if t.rank != first.rank or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if k != axis):
            raise PrimTypeError(f"concatenated arrays differ off axis {axis}: "
                                f"{shape_str(first.shape)} and {shape_str(t.shape)}", "shape")
    length = sum((t.shape[axis] for t in arrays), Dim(0))
    return ArrayType(_promote_all(arrays)[0],
                     first.shape[:axis] + (length,) + first.shape[axis + 1:])


def index(ps: Params, args: tuple[Type, ...]) -> Type:
    """`x[spec]`: an `at` item removes its axis, a slice keeps `hi - lo` entries."""
    if not args:
        raise PrimTypeError("index needs the array to index")
    x, *at = _arrays(args)
    spec = param(ps, "spec")
    if len(spec) > x.rank:
        raise PrimTypeError(f"{len(spec)} indices for an array of rank {x.rank}", "shape")
    if len(at) != sum(item[0] == "at" for item in spec):
        raise PrimTypeError(f"{len(at)} index arguments for the spec {spec}")
    for t in at:
        if t.dtype is not DType.I64 or t.rank:
            raise PrimTypeError(f"an index must be an i64 scalar, got {t}")
    shape: list[Dim] = []
    for axis, (item, dim) in enumerate(zip(spec, x.shape)):
        if item[0] == "slice":
            shape.append(_slice_length(axis, dim, item[1], item[2]))
    return ArrayType(x.dtype, tuple(shape) + x.shape[len(spec):])


def _slice_length(axis: int, dim: Dim, lo: Dim, hi: Dim) -> Dim:
    """`hi - lo`, refused when a constant difference shows it out of range."""
    for gap in (lo, dim - hi, hi - lo):
        if gap.is_constant and gap.const < 0:
            raise PrimTypeError(f"the slice {lo}:{hi} is out of range for axis {axis} of "
                                f"size {dim}", "shape")
    return hi - lo


def gather(ps: Params, args: tuple[Type, ...]) -> Type:
    """`x[i1, ..., ik]`, NumPy advanced indexing with i64 index arrays."""
    if len(args) < 2:
        raise PrimTypeError("gather needs an array and at least one index array")
    x, *indices = _arrays(args)
    if len(indices) > x.rank:
        raise PrimTypeError(f"{len(indices)} index arrays for an array of rank {x.rank}", "shape")
    for t in indices:
        if t.dtype is not DType.I64:
            raise PrimTypeError(f"index arrays must be i64, got {t}")
    return ArrayType(x.dtype, broadcast_shapes(*(t.shape for t in indices))
                     + x.shape[len(indices):])


def scatter_add(region: Rule) -> Rule:
    """index_add, gather_add (target, value, *indices): target's type; value must fit
    into the region `region(target, *indices)` it is added to."""
    def rule(ps: Params, args: tuple[Type, ...]) -> Type:
        if len(args) < 2:
            raise PrimTypeError("it needs a target and a value to add")
        target, value = _arrays(args[:2])
        shape = _array(region(ps, (target, *args[2:]))).shape
        if not _broadcasts_to(value.shape, shape):
            raise PrimTypeError(f"the value {value} does not fit the region {shape_str(shape)} "
                                "it is added to", "shape", _BROADCAST_HINT)
        if promote(target, value)[0] is not target.dtype:
            raise PrimTypeError(f"a {value.dtype} value cannot be added into {target}")
        return ArrayType(target.dtype, target.shape)
    return rule


def _nonempty(args: tuple[Type, ...]) -> tuple[ArrayType, ...]:
    if not args:
        raise PrimTypeError("it needs at least one array")
    return _arrays(args)


# ---- the table ---------------------------------------------------------------

_NO_BOOL_SUB = "booleans have no `-`; use `xor` (or `not` for negation)"

TYPE_RULES: dict[Primitive, Rule] = {
    **{prim: elementwise_float for prim in P.UNARY_FLOAT},
    P.NEG: elementwise(_same, bool_hint=_NO_BOOL_SUB),
    P.ABS: elementwise(_same),
    P.SIGN: elementwise(_same, bool_hint="sign is for numbers"),
    P.NOT: logical,
    P.ADD: elementwise(_same),
    P.SUB: elementwise(_same, bool_hint=_NO_BOOL_SUB),
    P.MUL: elementwise(_same),
    P.DIV: elementwise(_float),
    P.POW: elementwise(_bool_as_int),
    P.FLOORDIV: elementwise(_bool_as_int),
    P.MOD: elementwise(_bool_as_int),
    P.MINIMUM: elementwise(_same),
    P.MAXIMUM: elementwise(_same),
    **{prim: elementwise(_same, result_bool=True) for prim in P.COMPARISON},
    **{prim: logical for prim in P.LOGICAL},
    P.WHERE: where,
    P.CONST: const,
    P.SIZE: size,
    P.ZEROS: filled,
    P.ONES: filled,
    P.ARANGE: arange,
    P.FULL: full,
    P.ASTYPE: astype,
    P.SUM: reduction(_bool_as_int),
    P.MEAN: reduction(_float),
    P.PROD: reduction(_bool_as_int),
    P.MAX: reduction(_same),
    P.MIN: reduction(_same),
    P.LOGSUMEXP: reduction(_float),
    P.SOFTMAX: softmax,
    P.CUMSUM: scan,
    P.CUMPROD: scan,
    P.PARITY: parity,
    P.POPCOUNT_LE: popcount_le,
    P.MATMUL: matmul,
    P.TRANSPOSE: transpose,
    P.EXPAND_DIMS: expand_dims,
    P.BROADCAST_TO: broadcast_to,
    P.RESHAPE: reshape,
    P.STACK: stack,
    P.CONCAT: concat,
    P.INDEX: index,
    P.GATHER: gather,
    P.INDEX_ADD: scatter_add(index),
    P.GATHER_ADD: scatter_add(gather),
}


def result_type(prim: Primitive, ps: Params, arg_types: tuple[Type, ...]) -> Type:
    """The type of `prim` with params `ps` applied to arguments of `arg_types`."""
    if prim.arity is not None and len(arg_types) != prim.arity:
        raise PrimTypeError(f"{prim.name} takes {prim.arity} argument"
                            f"{'' if prim.arity == 1 else 's'}, got {len(arg_types)}")
    return TYPE_RULES[prim](ps, arg_types)
