"""The primitives: tiny named values, nothing more.

Every interpretation of a primitive lives in one table, in one module, keyed by
the `Primitive` objects defined here:

    prim_types.TYPE_RULES      type and shape rule        (params, arg types) -> type
    prim_eval.EVALUATE         NumPy reference semantics  (params, *values) -> value
    vectorise.BATCHING_RULES   rule for a batched (vmapped) application
    lower.NUMPY                the NumPy code it prints as

`tests/test_primitive_tables.py` asserts that every table covers `ALL`.

Params are a tuple of `(name, value)` pairs with hashable values (see
`Params`). The conventions, by family:

    elementwise           no params; NumPy broadcasting between the arguments
    const                 value: bool | int | float, dtype: DType; 0 arguments
                          optional weak: bool (default True: a literal, weak under NEP 50)
    size                  dim: Dim — the value of a size expression, an i64
    astype                dtype: DType
    sum mean prod max min logsumexp
                          axes: tuple[int, ...] — non-negative, sorted, at least one
    softmax               axis: int (non-negative)
    cumsum cumprod        axis: int (non-negative), reverse: bool, exclusive: bool —
                          running sums (products) along `axis`, the shape kept: item i
                          combines the items up to i (reverse: from i to the end;
                          exclusive: i itself left out, the identity where none is).
                          Numbers only: the library converts bools to i64 first
    parity                axes (as sum): whether an odd number of the bools on the
                          axes are true; XOR over them, Z2's sum
    popcount_le           scale: int (>= 0) — popcount_le(a, b) of bool arrays
                          a[..., m], b[..., k]: `scale * count(a) <= count(b)`, the
                          counts taken along the last axis, the other axes broadcast;
                          a threshold gate (Wilson & Zanasi's pseudo-linear model)
    matmul                no params; NumPy's matmul (vectors promoted, batch broadcast)
    transpose             perm: tuple[int, ...]
    expand_dims           axis: int (position of the new axis in the result)
    broadcast_to          shape: tuple[Dim, ...]
    reshape               shape: tuple[Dim, ...]
    zeros ones            shape: tuple[Dim, ...], dtype: DType; 0 arguments
    full                  shape: tuple[Dim, ...]; 1 argument (the scalar fill value)
    arange                lo: Dim, hi: Dim; 0 arguments; i64[hi - lo]
    stack concat          axis: int; any number (>= 1) of arguments
    index                 spec: tuple[IndexItem, ...] — one per leading axis of the
                          first argument; the remaining arguments are the i64
                          scalar indices, in order, for the `("at",)` items
    gather                clip: bool — `x[i1, ..., ik]`, NumPy advanced indexing on
                          the first k axes of x with k >= 1 i64 index arrays that
                          broadcast together: result shape = broadcast(idx shapes)
                          + x.shape[k:]. The vectorised form of `index`. With clip,
                          indices are clipped into range (for untaken branches).
    where                 no params; where(cond, a, b), broadcasting
    index_add             spec (as index) — index_add(target, value, *at_indices):
                          a copy of target with value added into target[spec]; the
                          transpose of `index` (type: target's)
    gather_add            clip: bool — gather_add(target, value, i1, ..., ik): a copy
                          of target with value scatter-added at [i1, ..., ik]
                          (np.add.at; repeated indices accumulate); the transpose
                          of `gather` (type: target's)

IndexItem is `("at",)` (an i64 index argument, removes the axis) or
`("slice", lo: Dim, hi: Dim)` (keeps `hi - lo` entries; lo, hi already
resolved against the axis size, step 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .types import Dim


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int | None  # None: any number of arguments

    def __repr__(self) -> str:
        return self.name


Params = tuple[tuple[str, Any], ...]


def params(**kwargs: Any) -> Params:
    """Params in a canonical order (sorted by name), so equal params compare equal."""
    return tuple(sorted(kwargs.items()))


def param(ps: Params, name: str) -> Any:
    for key, value in ps:
        if key == name:
            return value
    raise KeyError(name)


def substitute_dims(value: Any, subst: "dict[str, Dim]") -> Any:
    """A param value (or whole params) with every `Dim` inside, nested in tuples
    too, substituted by `subst`: sizes renamed, instantiated or inlined."""
    if isinstance(value, Dim):
        return value.substitute(subst)
    if isinstance(value, tuple):
        return tuple(substitute_dims(v, subst) for v in value)
    return value


def _prims(arity: int | None, *names: str) -> tuple[Primitive, ...]:
    return tuple(Primitive(n, arity) for n in names)


# elementwise, one argument: float -> float unless noted
UNARY_FLOAT = _prims(1, "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh",
                     "sigmoid", "softplus", "relu", "gelu", "silu", "elu", "erf")
NEG, ABS, SIGN, NOT = _prims(1, "neg", "abs", "sign", "not")  # neg/abs/sign: any numeric; not: bool

# elementwise, two arguments
ARITHMETIC = ADD, SUB, MUL, DIV, POW, FLOORDIV, MOD, MINIMUM, MAXIMUM = _prims(
    2, "add", "sub", "mul", "div", "pow", "floordiv", "mod", "minimum", "maximum")
COMPARISON = LT, LE, GT, GE, EQ, NE = _prims(2, "lt", "le", "gt", "ge", "eq", "ne")
LOGICAL = AND, OR, XOR = _prims(2, "and", "or", "xor")
WHERE = Primitive("where", 3)

# leaves
CONST = Primitive("const", 0)
SIZE = Primitive("size", 0)
ZEROS, ONES, ARANGE = _prims(0, "zeros", "ones", "arange")
FULL = Primitive("full", 1)
ASTYPE = Primitive("astype", 1)

# reductions and normalisations
REDUCTIONS = SUM, MEAN, PROD, MAX, MIN, LOGSUMEXP = _prims(1, "sum", "mean", "prod", "max", "min", "logsumexp")
SOFTMAX = Primitive("softmax", 1)

# scans: running sums and products along one axis
SCANS = CUMSUM, CUMPROD = _prims(1, "cumsum", "cumprod")

# bool reductions: Z2's sum, and a threshold gate on two counts
PARITY = Primitive("parity", 1)
POPCOUNT_LE = Primitive("popcount_le", 2)

# linear algebra and shape
MATMUL = Primitive("matmul", 2)
TRANSPOSE, EXPAND_DIMS, BROADCAST_TO, RESHAPE = _prims(1, "transpose", "expand_dims", "broadcast_to", "reshape")
STACK, CONCAT = _prims(None, "stack", "concat")

# indexing
INDEX = Primitive("index", None)
GATHER = Primitive("gather", None)
INDEX_ADD = Primitive("index_add", None)
GATHER_ADD = Primitive("gather_add", None)

ALL: tuple[Primitive, ...] = (
    *UNARY_FLOAT, NEG, ABS, SIGN, NOT, *ARITHMETIC, *COMPARISON, *LOGICAL, WHERE,
    CONST, SIZE, ZEROS, ONES, ARANGE, FULL, ASTYPE, *REDUCTIONS, SOFTMAX, *SCANS,
    PARITY, POPCOUNT_LE, MATMUL, TRANSPOSE, EXPAND_DIMS, BROADCAST_TO, RESHAPE, STACK, CONCAT,
    INDEX, GATHER, INDEX_ADD, GATHER_ADD,
)

BY_NAME: dict[str, Primitive] = {p.name: p for p in ALL}
assert len(BY_NAME) == len(ALL), "primitive names must be unique"

ELEMENTWISE: frozenset[Primitive] = frozenset(
    (*UNARY_FLOAT, NEG, ABS, SIGN, NOT, *ARITHMETIC, *COMPARISON, *LOGICAL, WHERE, ASTYPE))
