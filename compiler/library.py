"""The library: the functions a catad program may call by name.

    LIBRARY[name] = LibraryFunction(name, usage, summary, args, keywords, check)

`args` is the (least, most) number of positional arguments (most `None`: no
limit) and `keywords` the keyword arguments it accepts; the checker verifies
both before it calls `check(c, call, keywords)`, which type-checks the call
through `c`, a `CallChecker` (the checker in the scope of the call), and
returns the typed node the call becomes. The table is declarative: each entry
is made by a small helper per family (`_elementwise`, `_reduction`, ...), so
the language reference can be generated from `usage` and `summary`.

Arguments that are not values are read from the syntax: `axis = k` is an int
literal (negative counts from the end) or a tuple of them; `dtype = f32` is one
of the four dtype names; shapes are size expressions or tuples of them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from . import ast
from . import primitives as P
from .errors import ShapeError, TypeMismatchError
from .prim_types import PrimTypeError, normalize_axis, result_type
from .primitives import Params, Primitive, params
from .source_print import format_expr
from .typed import TExpr, TLambda, TLoop, TMap, TReduce
from .types import ArrayType, Dim, DType, Shape, TupleType, Type, loop_result_type, promote


class CallChecker(Protocol):
    """What a library function asks of the checker, in the scope of its call."""

    def value(self, expr: ast.Expr) -> TExpr:
        """`expr` type-checked as a value."""

    def size(self, expr: ast.Expr, what: str) -> Dim:
        """`expr` read as a size expression (`what` names it in errors)."""

    def function(self, expr: ast.Expr, param_types: tuple[Type, ...], what: str) -> TLambda:
        """`expr`, which must be a lambda of `len(param_types)` parameters, checked."""

    def apply(self, prim: Primitive, ps: Params, args: tuple[TExpr, ...],
              nodes: tuple[ast.Expr, ...] = ()) -> TExpr:
        """`prim` applied to `args`, its type from its rule (`nodes`: where args came from)."""

    def coerce(self, expr: TExpr, target: Type, what: str, node: ast.Node) -> TExpr:
        """`expr` as a value of `target` (a safe promotion at most), or an error."""


Check = Callable[[CallChecker, ast.Call, Mapping[str, ast.Expr]], TExpr]


@dataclass(frozen=True)
class LibraryFunction:
    name: str
    usage: str                      # how a call looks, e.g. "sum(x, axis = k)"
    summary: str                    # one sentence for the reference
    args: tuple[int, int | None]    # least and most positional arguments
    keywords: tuple[str, ...]
    check: Check


# ---- reading arguments from the syntax ------------------------------------------

def _int_literal(expr: ast.Expr, what: str) -> int:
    match expr:
        case ast.IntLit(value=value):
            return value
        case ast.UnaryOp(op="-", operand=ast.IntLit(value=value)):
            return -value
    raise TypeMismatchError(f"{what} must be an int literal such as 0 or -1", expr.span)


def _axis(call: ast.Call, expr: ast.Expr, x: ArrayType, rank: int) -> int:
    """The axis literal `expr` of an array `x`, checked against `rank`."""
    try:
        return normalize_axis(_int_literal(expr, "axis"), rank)
    except PrimTypeError as err:
        raise ShapeError(f"cannot apply `{call.func}` to {x}: {err.message}", expr.span) from None


def _axes(call: ast.Call, expr: ast.Expr, x: ArrayType) -> tuple[int, ...]:
    """`axis = k` or `axis = (k1, k2)`: sorted non-negative axes of `x`."""
    items = expr.items if isinstance(expr, ast.TupleExpr) else (expr,)
    axes = [_axis(call, item, x, x.rank) for item in items]
    for k, axis in enumerate(axes):
        if axis in axes[:k]:
            raise ShapeError(f"axis {axis} is given twice", items[k].span)
    return tuple(sorted(axes))


_DTYPES = {d.value: d for d in DType}


def _dtype(expr: ast.Expr) -> DType:
    if isinstance(expr, ast.Name) and expr.id in _DTYPES:
        return _DTYPES[expr.id]
    close = (difflib.get_close_matches(expr.id, list(_DTYPES), n=1, cutoff=0.5)
             if isinstance(expr, ast.Name) else [])
    raise TypeMismatchError("dtype must be one of f64, f32, i64, bool", expr.span,
                            hint=f"did you mean {close[0]}?" if close else None)


def _shape(c: CallChecker, expr: ast.Expr) -> Shape:
    items = expr.items if isinstance(expr, ast.TupleExpr) else (expr,)
    return tuple(c.size(item, "a dim of a shape") for item in items)


def _array(call: ast.Call, value: TExpr, node: ast.Expr, min_rank: int = 0) -> ArrayType:
    """The type of an argument that must be an array of rank `min_rank` or more."""
    t = value.type
    if isinstance(t, TupleType):
        raise TypeMismatchError(f"`{call.func}` takes arrays, but this argument is the tuple {t}",
                                node.span)
    if t.rank < min_rank:
        raise ShapeError(f"`{call.func}` needs an array of rank {min_rank} or more here, got {t}",
                         node.span)
    return t


def _items(c: CallChecker, call: ast.Call) -> tuple[tuple[TExpr, ...], ArrayType]:
    """The arrays of `stack((a, b, ...))`, and the type of the first."""
    arg = call.args[0]
    if not isinstance(arg, ast.TupleExpr):
        raise TypeMismatchError(f"`{call.func}` takes a tuple of arrays", arg.span,
                                hint=f"write {call.func}((a, b), axis = 0)")
    values = tuple(c.value(item) for item in arg.items)
    types = [_array(call, v, item) for v, item in zip(values, arg.items)]
    return values, types[0]


# ---- families ----------------------------------------------------------------

def _elementwise(prim: Primitive) -> Check:
    def check(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
        return c.apply(prim, (), tuple(c.value(a) for a in call.args), call.args)
    return check


def _cast(dtype: DType) -> Check:
    def check(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
        return c.apply(P.ASTYPE, params(dtype=dtype), (c.value(call.args[0]),), call.args)
    return check


def _reduction(prim: Primitive) -> Check:
    """Over all axes, or those of `axis = k` / `axis = (k1, k2)`; a scalar is its own total."""
    def check(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
        x = c.value(call.args[0])
        t = _array(call, x, call.args[0])
        axes = _axes(call, kw["axis"], t) if "axis" in kw else tuple(range(t.rank))
        if axes:
            return c.apply(prim, params(axes=axes), (x,), call.args)
        total = result_type(prim, params(axes=(0,)), (ArrayType(t.dtype, (Dim(1),)),))
        if total.dtype is t.dtype:
            return x
        return c.apply(P.ASTYPE, params(dtype=total.dtype), (x,), call.args)
    return check


def _softmax(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    x = c.value(call.args[0])
    t = _array(call, x, call.args[0], min_rank=1)
    axis = _axis(call, kw["axis"], t, t.rank) if "axis" in kw else t.rank - 1
    return c.apply(P.SOFTMAX, params(axis=axis), (x,), call.args)


def _scan(prim: Primitive) -> Check:
    """Along `axis = k`, which a vector may leave out (its one axis) and a matrix
    must give: unlike a reduction's, there is no scan over all axes at once."""
    def check(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
        x = c.value(call.args[0])
        t = _array(call, x, call.args[0], min_rank=1)
        if "axis" not in kw and t.rank > 1:
            raise ShapeError(f"`{call.func}` of {t} needs the axis to run along", call.span,
                             hint=f"write {call.func}({format_expr(call.args[0])}, axis = 0) "
                                  f"(or another axis)")
        axis = _axis(call, kw["axis"], t, t.rank) if "axis" in kw else 0
        if t.dtype is DType.BOOL:  # counted, as `sum` and `prod` of bools and NumPy's scans
            x = c.apply(P.ASTYPE, params(dtype=DType.I64), (x,), call.args)
        return c.apply(prim, params(axis=axis, reverse=False, exclusive=False), (x,), call.args)
    return check


def _popcount_le(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    """popcount_le(a, b, scale = k): `k * count(a) <= count(b)` along the last axes."""
    scale = _int_literal(kw["scale"], "scale") if "scale" in kw else 1
    if scale < 0:
        raise TypeMismatchError("scale must be an int >= 0", kw["scale"].span)
    return c.apply(P.POPCOUNT_LE, params(scale=scale), tuple(c.value(a) for a in call.args),
                   call.args)


def _dot(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    args = tuple(c.value(a) for a in call.args)
    for value, node in zip(args, call.args):
        if _array(call, value, node, min_rank=1).rank > 2:
            raise ShapeError(f"`dot` takes vectors and matrices, got {value.type}", node.span,
                             hint="use `@` for batched products")
    return c.apply(P.MATMUL, (), args, call.args)


def _transpose(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    x = c.value(call.args[0])
    t = _array(call, x, call.args[0])
    if "axes" not in kw:
        perm = tuple(reversed(range(t.rank)))
    else:
        items = kw["axes"].items if isinstance(kw["axes"], ast.TupleExpr) else (kw["axes"],)
        perm = tuple(_axis(call, item, t, t.rank) for item in items)
    return c.apply(P.TRANSPOSE, params(perm=perm), (x,), call.args)


def _outer(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    """outer(a, b) = a[:, None] * b[None, :]."""
    a, b = (c.value(arg) for arg in call.args)
    for value, node in zip((a, b), call.args):
        if _array(call, value, node).rank != 1:
            raise ShapeError(f"`outer` takes two vectors, got {value.type}", node.span)
    column = c.apply(P.EXPAND_DIMS, params(axis=1), (a,), call.args[:1])
    row = c.apply(P.EXPAND_DIMS, params(axis=0), (b,), call.args[1:])
    return c.apply(P.MUL, (), (column, row), call.args)


def _filled(prim: Primitive) -> Check:
    def check(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
        dtype = _dtype(kw["dtype"]) if "dtype" in kw else DType.F64
        return c.apply(prim, params(shape=_shape(c, call.args[0]), dtype=dtype), ())
    return check


def _full(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    shape = _shape(c, call.args[0])
    value = c.value(call.args[1])
    if "dtype" in kw:
        value = c.apply(P.ASTYPE, params(dtype=_dtype(kw["dtype"])), (value,), call.args[1:])
    return c.apply(P.FULL, params(shape=shape), (value,), call.args[1:])


def _arange(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    bounds = [c.size(arg, "a bound of arange") for arg in call.args]
    lo, hi = bounds if len(bounds) == 2 else (Dim(0), bounds[0])
    return c.apply(P.ARANGE, params(lo=lo, hi=hi), ())


def _stack(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    values, first = _items(c, call)
    axis = _axis(call, kw["axis"], first, first.rank + 1) if "axis" in kw else 0
    return c.apply(P.STACK, params(axis=axis), values, call.args[0].items)


def _concat(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    values, first = _items(c, call)
    if first.rank == 0:
        raise ShapeError("`concat` joins arrays of rank 1 or more, got a scalar", call.span,
                         hint="use stack to make an array of scalars")
    axis = _axis(call, kw["axis"], first, first.rank) if "axis" in kw else 0
    return c.apply(P.CONCAT, params(axis=axis), values, call.args[0].items)


# ---- higher-order ------------------------------------------------------------

def _leading(call: ast.Call, values: tuple[TExpr, ...], nodes: tuple[ast.Expr, ...]
             ) -> tuple[Dim, tuple[ArrayType, ...]]:
    """The common leading dim of the arrays a map or loop runs over, and their items' types."""
    types = [_array(call, v, node, min_rank=1) for v, node in zip(values, nodes)]
    for t, node in zip(types[1:], nodes[1:]):
        if t.shape[0] != types[0].shape[0]:
            raise ShapeError(f"`{call.func}` runs over arrays of one length, but {types[0]} and "
                             f"{t} have leading dims {types[0].shape[0]} and {t.shape[0]}",
                             node.span, notes=((f"the first array is {types[0]}", nodes[0].span),))
    return types[0].shape[0], tuple(ArrayType(t.dtype, t.shape[1:]) for t in types)


def _map(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    """map(xs, ys, ..., |x, y, ...| body), map2(xs, ys, |x, y| body)."""
    *nodes, fn = call.args
    values = tuple(c.value(node) for node in nodes)
    length, items = _leading(call, values, tuple(nodes))
    lam = c.function(fn, items, f"the function of `{call.func}`")
    body = lam.body.type
    if isinstance(body, TupleType):
        raise TypeMismatchError(f"the function of `{call.func}` must return an array, but it "
                                f"returns the tuple {body}", _body(fn).span)
    return TMap(ArrayType(body.dtype, (length, *body.shape)), lam, values, span=call.span)


def _reduce(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
    """reduce(xs, unit, |a, b| body): body associative with identity unit."""
    xs_node, unit_node, fn = call.args
    xs = c.value(xs_node)
    _, (item,) = _leading(call, (xs,), (xs_node,))
    unit = c.coerce(c.value(unit_node), item, "the unit of `reduce`", unit_node)
    lam = c.function(fn, (item, item), "the function of `reduce`")
    body = c.coerce(lam.body, item, "the result of the function of `reduce`", _body(fn))
    return TReduce(item, replace(lam, body=body), unit, xs, span=call.span)


def _loop(stacked: bool) -> Check:
    """fold / scan(init, xs, |acc, x| body): the state type is the least type that holds
    the init and the result of a step (a weak literal init takes the step's dtype)."""
    def check(c: CallChecker, call: ast.Call, kw: Mapping[str, ast.Expr]) -> TExpr:
        init_node, xs_node, fn = call.args
        init, xs = c.value(init_node), c.value(xs_node)
        length, (item,) = _leading(call, (xs,), (xs_node,))
        state = init.type
        while True:
            lam = c.function(fn, (state, item), f"the function of `{call.func}`")
            joined = _join_state(call, state, lam.body.type, fn)
            if joined == state:
                break
            state = joined
        what = f"the state of `{call.func}`"
        body = c.coerce(lam.body, state, what, _body(fn))
        init = c.coerce(init, state, what, init_node)
        result = loop_result_type(state, length, stacked)
        return TLoop(result, replace(lam, body=body), init, xs, stacked, span=call.span)
    return check


def _join_state(call: ast.Call, state: Type, step: Type, fn: ast.Expr) -> Type:
    """The least strong type holding the state so far and a step's result."""
    match state, step:
        case ArrayType(), ArrayType() if state.shape == step.shape:
            return ArrayType(promote(state, step)[0], state.shape)
        case ArrayType(), ArrayType():
            raise ShapeError(f"the state of `{call.func}` must keep its shape, but it starts as "
                             f"{state} and a step returns {step}", _body(fn).span,
                             notes=((f"the state starts here, as {state}", call.args[0].span),))
        case TupleType(), TupleType() if len(state.items) == len(step.items):
            return TupleType(tuple(_join_state(call, a, b, fn)
                                   for a, b in zip(state.items, step.items)))
    raise TypeMismatchError(f"the state of `{call.func}` must keep its type, but it starts as "
                            f"{state} and a step returns {step}", _body(fn).span)


def _body(fn: ast.Expr) -> ast.Node:
    return fn.body if isinstance(fn, ast.Lambda) else fn


# ---- the table ---------------------------------------------------------------

_UNARY = {
    "exp": "e to the power x", "log": "natural logarithm", "log1p": "log(1 + x), accurate "
    "near 0", "expm1": "exp(x) - 1, accurate near 0", "sqrt": "square root",
    "sin": "sine", "cos": "cosine", "tan": "tangent", "tanh": "hyperbolic tangent",
    "sigmoid": "1 / (1 + exp(-x))", "softplus": "log(1 + exp(x))", "relu": "max(x, 0)",
    "gelu": "x * Phi(x), Phi the normal CDF", "silu": "x * sigmoid(x)",
    "elu": "x if x > 0 else exp(x) - 1", "erf": "the error function",
}
_OTHER_ELEMENTWISE = {
    "abs": (P.ABS, "x", "absolute value"),
    "sign": (P.SIGN, "x", "-1, 0 or 1"),
    "pow": (P.POW, "a, b", "a ** b"),
    "minimum": (P.MINIMUM, "a, b", "the smaller, elementwise"),
    "maximum": (P.MAXIMUM, "a, b", "the larger, elementwise"),
    "where": (P.WHERE, "c, a, b", "a where the bool c holds, else b"),
}
_REDUCTIONS = {
    P.SUM: "sum", P.MEAN: "mean (ints give f64)", P.PROD: "product", P.MAX: "maximum",
    P.MIN: "minimum", P.LOGSUMEXP: "log(sum(exp(x))), computed stably",
    P.PARITY: "xor of bools (true when an odd number are), Z2's sum",
}


def _table() -> dict[str, LibraryFunction]:
    entries = [
        *(LibraryFunction(name, f"{name}(x)", summary, (1, 1), (), _elementwise(P.BY_NAME[name]))
          for name, summary in _UNARY.items()),
        *(LibraryFunction(name, f"{name}({args})", summary, (args.count(",") + 1,) * 2, (),
                          _elementwise(prim))
          for name, (prim, args, summary) in _OTHER_ELEMENTWISE.items()),
        *(LibraryFunction(d.value, f"{d.value}(x)", f"x converted to {d.value}", (1, 1), (),
                          _cast(d)) for d in (DType.F64, DType.F32, DType.I64, DType.BOOL)),
        *(LibraryFunction(p.name, f"{p.name}(x, axis = k)",
                          f"{summary} over all axes, or over axis k (an int or a tuple of ints)",
                          (1, 1), ("axis",), _reduction(p)) for p, summary in _REDUCTIONS.items()),
        LibraryFunction("softmax", "softmax(x, axis = -1)",
                        "exp(x) / sum(exp(x)) along one axis (default the last)",
                        (1, 1), ("axis",), _softmax),
        LibraryFunction("cumsum", "cumsum(x, axis = k)",
                        "running sums along axis k (a vector's may be left out); of bools, "
                        "running counts (i64)", (1, 1), ("axis",), _scan(P.CUMSUM)),
        LibraryFunction("cumprod", "cumprod(x, axis = k)",
                        "running products along axis k (a vector's may be left out); of "
                        "bools, as i64s", (1, 1), ("axis",), _scan(P.CUMPROD)),
        LibraryFunction("popcount_le", "popcount_le(a, b, scale = 1)",
                        "the threshold gate scale * (trues in a) <= (trues in b), counting bools "
                        "along the last axis", (2, 2), ("scale",), _popcount_le),
        LibraryFunction("dot", "dot(a, b)", "matrix product of vectors and matrices (as a @ b)",
                        (2, 2), (), _dot),
        LibraryFunction("transpose", "transpose(a, axes = (1, 0))",
                        "the axes permuted (default: reversed)", (1, 1), ("axes",), _transpose),
        LibraryFunction("outer", "outer(a, b)", "the matrix a[i] * b[j] of two vectors",
                        (2, 2), (), _outer),
        LibraryFunction("zeros", "zeros(shape, dtype = f64)",
                        "an array of 0s; shape is a size or a tuple of sizes",
                        (1, 1), ("dtype",), _filled(P.ZEROS)),
        LibraryFunction("ones", "ones(shape, dtype = f64)",
                        "an array of 1s; shape is a size or a tuple of sizes",
                        (1, 1), ("dtype",), _filled(P.ONES)),
        LibraryFunction("full", "full(shape, value, dtype = f64)",
                        "an array filled with a scalar (of its dtype unless dtype is given)",
                        (2, 2), ("dtype",), _full),
        LibraryFunction("arange", "arange(lo, hi)", "the i64s lo, ..., hi - 1 (lo defaults to 0)",
                        (1, 2), (), _arange),
        LibraryFunction("stack", "stack((a, b, ...), axis = 0)",
                        "arrays of one shape joined along a new axis", (1, 1), ("axis",), _stack),
        LibraryFunction("concat", "concat((a, b, ...), axis = 0)",
                        "arrays joined along an existing axis", (1, 1), ("axis",), _concat),
        LibraryFunction("map", "map(xs, ys, ..., |x, y, ...| e)",
                        "[e for the items x, y, ... of xs, ys, ... along their leading axis]",
                        (2, None), (), _map),
        LibraryFunction("map2", "map2(xs, ys, |x, y| e)", "map over two arrays",
                        (3, 3), (), _map),
        LibraryFunction("reduce", "reduce(xs, unit, |a, b| e)",
                        "combine the items of xs with an associative e whose identity is unit",
                        (3, 3), (), _reduce),
        LibraryFunction("fold", "fold(init, xs, |acc, x| e)",
                        "the last state of acc = e for each item x of xs, in order",
                        (3, 3), (), _loop(stacked=False)),
        LibraryFunction("scan", "scan(init, xs, |acc, x| e)",
                        "every state of acc = e for each item x of xs, stacked along a new "
                        "leading axis", (3, 3), (), _loop(stacked=True)),
    ]
    return {entry.name: entry for entry in entries}


LIBRARY: dict[str, LibraryFunction] = _table()
