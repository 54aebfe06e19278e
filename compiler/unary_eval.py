"""The reference interpreter of UNF: every instruction run literally, per element.

`evaluate(fn, args)` binds the size variables from the arguments' shapes,
checks every parameter's shape, runs the body on the stack `[args...]` and
returns the value on top. `run(term, stack, sizes)` runs one term and returns
the whole output stack. Vectorised and compiled code is tested against this
interpreter, so it is written for clarity, not speed:

    Var(i)           push stack[i]
    Prim(p, ps, n)   push prim_eval.apply(p, ps, top n entries, sizes)
    Tuple(n)         replace the top n entries by the Python tuple of them
    Get(k)           push item k of the tuple on top
    Drop(keep, n)    delete the n entries below the top `keep`
    If(a, b)         run a if the bool on top is true, else b (only that one)
    Build(lo, hi, b) for i in lo..hi-1: run b on stack + [i]; stack the results
    Map(n, b)        for j along the top n arrays: run b on stack + [a1[j]..an[j]]
    Reduce(b)        acc = unit; for each item x: acc = b on stack + [acc, x]
    Loop(b, scan)    as Reduce from the initial state; a scan stacks every state
                     (per-item stacking: the stacked items, the last state's others)
    Custom(f, n, b)  run b (a derivative rule changes derivatives, not values)

A body runs on a copy of the stack and only its top value is kept.
Results are stacked on a new leading axis; tuples are stacked item by item,
into a tuple of arrays (and `Map`, `Reduce` and `Loop` index a tuple of arrays
item by item too). An empty `Build` or `Map` has no result to take the item
shape from, so the item type is inferred with `unary_check` at the concrete
shapes and sizes, and the result is an empty array of that item shape.

Values are as in `prim_eval`: NumPy arrays and scalars, Python scalars for
literals, Python tuples for tuples. The index of a `Build` is an `np.int64`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, assert_never

import numpy as np

from .prim_eval import apply, is_weak, numpy_dtype
from .types import I64, ArrayType, Dim, DType, TupleType, Type, scalar, shape_str
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var)
from .unary_check import UnaryTypeError, check_term, element_type
from .unary_print import format_instruction

_DTYPES: dict[np.dtype, DType] = {numpy_dtype(d): d for d in DType}
_WEAK_DTYPES: dict[type, DType] = {bool: DType.BOOL, int: DType.I64, float: DType.F64}


def evaluate(fn: UFunction, args: Sequence[Any], sizes: Mapping[str, int] | None = None) -> Any:
    """`fn` applied to `args`. `sizes` may give size variables in advance; a size
    read off an argument must agree with it. A wrong argument raises ValueError
    naming the parameter."""
    if len(args) != len(fn.params):
        raise ValueError(f"{fn.name} takes {len(fn.params)} arguments, got {len(args)}")
    values = [_argument(name, t, a) for (name, t), a in zip(fn.params, args)]
    bound = dict(sizes or {})
    for b in fn.sizes:
        name, t = fn.params[b.param]
        size = np.shape(values[b.param])[b.axis]
        if bound.setdefault(b.name, size) != size:
            raise ValueError(f"parameter {name}: axis {b.axis} has {size} items, but the size "
                             f"{b.name} is {bound[b.name]}")
    for (name, t), value in zip(fn.params, values):
        _check_shape(name, t, value, bound)
    return run(fn.body, values, bound)[-1]


def run(term: Term, stack: Sequence[Any], sizes: Mapping[str, int]) -> list[Any]:
    """The output stack of `term` run on `stack` (which is not changed)."""
    out = list(stack)
    _execute(term, out, sizes)
    return out


def type_of_value(value: Any) -> Type:
    """The concrete type of a value: constant dims, weak for a Python scalar."""
    if isinstance(value, tuple):
        return TupleType(tuple(type_of_value(v) for v in value))
    if is_weak(value):
        return scalar(_WEAK_DTYPES[type(value)], weak=True)
    a = np.asarray(value)
    if a.dtype not in _DTYPES:
        raise TypeError(f"a value of NumPy dtype {a.dtype} has no catad type")
    return ArrayType(_DTYPES[a.dtype], tuple(Dim(s) for s in a.shape))


def _execute(term: Term, stack: list[Any], sizes: Mapping[str, int]) -> None:
    """Run `term` on `stack`, in place."""
    match term:
        case Var(index=i):
            if not 0 <= i < len(stack):
                raise UnaryTypeError(f"var {i}: the stack has {len(stack)} entries")
            stack.append(stack[i])
        case Prim(prim=prim, params=ps, arity=n):
            _need(term, stack, n)
            stack.append(apply(prim, ps, stack[len(stack) - n:], sizes))
        case Seq(terms=terms):
            for t in terms:
                _execute(t, stack, sizes)
        case Tuple(n=n):
            _need(term, stack, n)
            cut = len(stack) - n
            items = tuple(stack[cut:])
            del stack[cut:]
            stack.append(items)
        case Get(k=k):
            _need(term, stack, 1)
            if not isinstance(stack[-1], tuple) or not 0 <= k < len(stack[-1]):
                raise UnaryTypeError(f"get {k}: the top of the stack is not a tuple of more "
                                     f"than {k} items")
            stack.append(stack[-1][k])
        case Drop(keep=keep, count=count):
            if keep < 0 or count < 0:
                raise UnaryTypeError(f"{format_instruction(term)}: a negative count")
            _need(term, stack, keep + count)
            del stack[len(stack) - keep - count:len(stack) - keep]
        case If(then=then, orelse=orelse):
            _need(term, stack, 1)
            stack.append(_body(then if stack[-1] else orelse, list(stack), sizes))
        case Build(lo=lo, hi=hi, body=body):
            first, end = lo.evaluate(dict(sizes)), hi.evaluate(dict(sizes))
            if end < first:
                raise ValueError(f"build {lo}..{hi}: the range {first}..{end} is backwards")
            items = [_body(body, stack + [np.int64(i)], sizes) for i in range(first, end)]
            stack.append(_stack(items) if items else
                         _empty_result(body, _types(stack) + (I64,), sizes))
        case Map(n=n, body=body):
            _need(term, stack, n)
            arrays = stack[len(stack) - n:]
            length = _length(term, arrays)
            items = [_body(body, stack + [_item(a, j) for a in arrays], sizes)
                     for j in range(length)]
            stack.append(_stack(items) if items else _empty_result(
                body, _types(stack) + tuple(element_type(type_of_value(a)) for a in arrays), sizes))
        case Reduce(body=body):
            _need(term, stack, 2)
            array, acc = stack[-2:]
            for j in range(_length(term, [array])):
                acc = _body(body, stack + [acc, _item(array, j)], sizes)
            stack.append(acc)
        case Loop(body=body, stacked=stacked):
            _need(term, stack, 2)
            acc, xs = stack[-2:]
            states = []
            for t in range(_length(term, [xs])):
                acc = _body(body, stack + [acc, _item(xs, t)], sizes)
                states.append(acc)
            if isinstance(stacked, bool):
                stack.append((_stack(states) if states else _empty_like(stack[-2])) if stacked else acc)
            else:  # item by item: stacked, or of the last state
                stack.append(tuple((_stack([after[k] for after in states]) if states else _empty_like(acc[k]))
                                   if item else acc[k] for k, item in enumerate(stacked)))
        case Custom(n=n, body=body):
            _need(term, stack, n)
            stack.append(_body(body, list(stack), sizes))
        case _:
            assert_never(term)


def _body(body: Term, stack: list[Any], sizes: Mapping[str, int]) -> Any:
    """Run a body on `stack` (a copy the caller made) and take the one value it pushes."""
    depth = len(stack)
    _execute(body, stack, sizes)
    if len(stack) != depth + 1:
        raise UnaryTypeError(f"a body run on {depth} entries left {len(stack)}")
    return stack[-1]


def _need(term: Term, stack: list[Any], n: int) -> None:
    if n > len(stack):
        raise UnaryTypeError(f"{format_instruction(term)}: needs {n} entries, but the stack "
                             f"has {len(stack)}")


# ---- arrays of values ----------------------------------------------------------

def _length(term: Term, arrays: Sequence[Any]) -> int:
    """The common length of the leading axes of `arrays` (tuples: of their items)."""
    lengths = {_leading(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"{type(term).__name__}: arrays of different lengths "
                         f"{sorted(lengths)}")
    return lengths.pop()


def _leading(value: Any) -> int:
    if isinstance(value, tuple):
        lengths = {_leading(v) for v in value}
        if len(lengths) != 1:
            raise ValueError(f"a tuple of arrays of different lengths {sorted(lengths)}")
        return lengths.pop()
    shape = np.shape(value)
    if not shape:
        raise UnaryTypeError("a scalar has no items to run over")
    return shape[0]


def _item(value: Any, j: int) -> Any:
    if isinstance(value, tuple):
        return tuple(_item(v, j) for v in value)
    return value[j]


def _stack(items: list[Any]) -> Any:
    """Values of one type stacked on a new leading axis; tuples item by item."""
    if isinstance(items[0], tuple):
        return tuple(_stack([item[k] for item in items]) for k in range(len(items[0])))
    return np.stack(items)


def _empty_like(value: Any) -> Any:
    """No values like `value`, stacked: an array of leading length 0."""
    if isinstance(value, tuple):
        return tuple(_empty_like(v) for v in value)
    a = np.asarray(value)
    return np.zeros((0,) + a.shape, a.dtype)


def _empty_result(body: Term, context: tuple[Type, ...], sizes: Mapping[str, int]) -> Any:
    """The stacked results of no runs of `body`: its result type, inferred on the
    concrete `context`, with a leading axis of length 0."""
    item = check_term(body, context, {name: Dim(int(value)) for name, value in sizes.items()})[-1]
    return _zeros_stacked(item)


def _zeros_stacked(t: Type) -> Any:
    if isinstance(t, TupleType):
        return tuple(_zeros_stacked(x) for x in t.items)
    return np.zeros((0,) + tuple(d.evaluate({}) for d in t.shape), numpy_dtype(t.dtype))


def _types(stack: list[Any]) -> tuple[Type, ...]:
    return tuple(type_of_value(v) for v in stack)


# ---- arguments -----------------------------------------------------------------

def _argument(name: str, t: Type, value: Any) -> Any:
    """`value` as a value of type `t`: arrays converted to t's dtype (a cast that
    would change the kind of number, as float to int, is refused)."""
    if isinstance(t, TupleType):
        if not isinstance(value, (tuple, list)) or len(value) != len(t.items):
            raise ValueError(f"parameter {name}: expected a tuple {t}, got {type(value).__name__}")
        return tuple(_argument(f"{name}[{k}]", x, v) for k, (x, v) in enumerate(zip(t.items, value)))
    a = np.asarray(value)
    target = numpy_dtype(t.dtype)
    if not np.can_cast(a.dtype, target, casting="same_kind"):
        raise ValueError(f"parameter {name}: expected {t}, got values of dtype {a.dtype}")
    a = a.astype(target)
    return a if a.ndim else a[()]


def _check_shape(name: str, t: Type, value: Any, sizes: Mapping[str, int]) -> None:
    if isinstance(t, TupleType):
        for k, (x, v) in enumerate(zip(t.items, value)):
            _check_shape(f"{name}[{k}]", x, v, sizes)
        return
    unknown = sorted({v for d in t.shape for v in d.variables} - set(sizes))
    if unknown:
        raise ValueError(f"parameter {name}: the size {', '.join(unknown)} of its type {t} "
                         "is not known")
    expected = tuple(d.evaluate(dict(sizes)) for d in t.shape)
    if np.shape(value) != expected:
        raise ValueError(f"parameter {name}: expected shape {shape_str(t.shape)} = {expected}, "
                         f"got {np.shape(value)}")
