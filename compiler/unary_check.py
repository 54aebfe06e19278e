"""The UNF type checker: `Γ ⊢ term : Γ'` for the stack typing of `unary.py`.

`check_term(term, Γ)` returns the output context Γ' or raises `UnaryTypeError`,
an internal error (UNF is made by the compiler, never written by a user)
naming the instruction, why it does not fit, and the stack it met; an error
inside a body says which bodies it is in. `check_function` verifies the
paper's lemma for a whole function: `params ⊢ body : params, result`.

Beyond the rules in `unary.py`:

* Types of a value that may come from two places (the branches of `If`, the
  unit and the items of `Reduce`, the state of `Loop` before and after a
  step) are *joined*: equal types, or types that differ only by weakness,
  where a weak literal yields to the strong type it promotes to (NEP 50).
* `C[k]` for a tuple `C` is a tuple of arrays, each with the leading axis
  `k` (structure of arrays): this is what `scan` of a tuple state gives, and
  `Build`, `Map`, `Reduce` and `Loop` read and make tuples of arrays so too.
* `sizes_known` maps the size variables in scope to what they stand for
  (each to itself for a function; to constants when checking against
  concrete values, as the evaluator does). Every `Dim` of the term (`Build`
  bounds, primitive params) is substituted by it, and one that names another
  variable is an error. `None` leaves every `Dim` as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, assert_never

from .prim_types import PrimTypeError, result_type
from .types import (BOOL, I64, ArrayType, Dim, TupleType, Type, loop_result_type, promote, stacked_type,
                    strip_weak)
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, UProgram, Var)
from .unary_print import format_instruction, format_type, format_type_stack

Context = tuple[Type, ...]
SizesKnown = Mapping[str, Dim | int] | Iterable[str] | None


class UnaryTypeError(Exception):
    """An ill-typed UNF term: a bug in the pass that produced it."""


def check_term(term: Term, context: Iterable[Type], sizes_known: SizesKnown = None) -> Context:
    """The output context of `term` run on `context` (bottom first)."""
    return _check(term, tuple(context), _substitution(sizes_known))


def check_function(fn: UFunction) -> None:
    """Verify `params ⊢ body : params, result` (results compared up to weakness),
    and that the size bindings read plain size variables off array parameters."""
    context = tuple(t for _, t in fn.params)
    for b in fn.sizes:
        where = f"size {b.name} is read off parameter {b.param}, axis {b.axis}"
        if not 0 <= b.param < len(fn.params):
            _function_error(fn, f"{where}, but there are {len(fn.params)} parameters")
        t = context[b.param]
        if not isinstance(t, ArrayType) or not 0 <= b.axis < t.rank or t.shape[b.axis] != Dim.of(b.name):
            _function_error(fn, f"{where}, which has type {format_type(t)}")
    known = {b.name for b in fn.sizes}
    for name, t in (*fn.params, ("the result", fn.result)):
        unknown = sorted(set(_type_variables(t)) - known)
        if unknown:
            _function_error(fn, f"{name} has type {format_type(t)} but {', '.join(unknown)} "
                                "is not bound to a parameter's axis")
    try:
        out = check_term(fn.body, context, known)
    except UnaryTypeError as err:
        raise UnaryTypeError(f"in fn {fn.name}: {err}") from None
    if len(out) != len(context) + 1 or out[:-1] != context:
        _function_error(fn, f"the body must leave the parameters and push the result, but turns "
                            f"{format_type_stack(context)} into {format_type_stack(out)}")
    if strip_weak(out[-1]) != strip_weak(fn.result):
        _function_error(fn, f"the body computes {format_type(out[-1])}, but the declared result "
                            f"is {format_type(fn.result)}")


def check_program(program: UProgram) -> None:
    for fn in program.functions:
        check_function(fn)


# ---- types of arrays of values -------------------------------------------------

def element_type(t: Type) -> Type | None:
    """The type of one item along the leading axis, or None for a scalar."""
    if isinstance(t, TupleType):
        items = tuple(element_type(x) for x in t.items)
        return None if not items or None in items else TupleType(items)
    return ArrayType(t.dtype, t.shape[1:]) if t.rank else None


def leading_length(t: Type) -> Dim | None:
    """The length of the leading axis (the same for every item of a tuple), or None."""
    if isinstance(t, TupleType):
        lengths = {leading_length(x) for x in t.items}
        return lengths.pop() if len(lengths) == 1 else None
    return t.shape[0] if t.rank else None


def join_types(a: Type, b: Type) -> Type | None:
    """The type of a value that is an `a` or a `b`, or None when there is none:
    a weak literal yields to the strong type it promotes to."""
    if a == b:
        return a
    if isinstance(a, TupleType) and isinstance(b, TupleType) and len(a.items) == len(b.items):
        items = tuple(join_types(x, y) for x, y in zip(a.items, b.items))
        return None if None in items else TupleType(items)
    if isinstance(a, ArrayType) and isinstance(b, ArrayType) and a.shape == b.shape and a.weak != b.weak:
        strong = b if a.weak else a
        return strong if promote(a, b)[0] is strong.dtype else None
    return None


# ---- the checker -------------------------------------------------------------

def _check(term: Term, ctx: Context, subst: dict[str, Dim] | None) -> Context:
    match term:
        case Var(index=i):
            if not 0 <= i < len(ctx):
                _error(term, ctx, f"reads entry {i} of a stack of {len(ctx)}")
            return ctx + (ctx[i],)
        case Prim(prim=prim, params=ps, arity=n):
            _need(term, ctx, n)
            args = ctx[len(ctx) - n:]
            try:
                return ctx + (result_type(prim, _substitute(term, ctx, ps, subst), args),)
            except PrimTypeError as err:
                _error(term, ctx, f"does not apply to {', '.join(map(format_type, args))}: "
                                  f"{err.message}")
        case Seq(terms=terms):
            for t in terms:
                ctx = _check(t, ctx, subst)
            return ctx
        case Tuple(n=n):
            _need(term, ctx, n)
            cut = len(ctx) - n
            return ctx[:cut] + (TupleType(ctx[cut:]),)
        case Get(k=k):
            _need(term, ctx, 1)
            top = ctx[-1]
            if not isinstance(top, TupleType) or not 0 <= k < len(top.items):
                _error(term, ctx, f"needs a tuple of more than {k} items on top")
            return ctx + (top.items[k],)
        case Drop(keep=keep, count=count):
            if keep < 0 or count < 0:
                _error(term, ctx, "has a negative count")
            _need(term, ctx, keep + count)
            return ctx[:len(ctx) - keep - count] + ctx[len(ctx) - keep:]
        case If(then=then, orelse=orelse):
            _need(term, ctx, 1)
            if strip_weak(ctx[-1]) != BOOL:
                _error(term, ctx, f"needs a bool scalar on top, got {format_type(ctx[-1])}")
            a = _body(term, "then-branch", then, ctx, subst)
            b = _body(term, "else-branch", orelse, ctx, subst)
            return ctx + (_join(term, ctx, a, b, "the branches"),)
        case Build(lo=lo, hi=hi, body=body):
            length = _dim(term, ctx, hi, subst) - _dim(term, ctx, lo, subst)
            if length.is_constant and length.const < 0:
                _error(term, ctx, f"has a backwards range of {length} items")
            item = _body(term, "body", body, ctx + (I64,), subst)
            return ctx + (stacked_type(item, length),)
        case Map(n=n, body=body):
            if n < 1:
                _error(term, ctx, "maps over no arrays")
            _need(term, ctx, n)
            arrays = ctx[len(ctx) - n:]
            length = _length(term, ctx, arrays)
            items = tuple(element_type(t) for t in arrays)
            item = _body(term, "body", body, ctx + items, subst)
            return ctx + (stacked_type(item, length),)
        case Reduce(body=body):
            _need(term, ctx, 2)
            array, unit = ctx[-2:]
            _length(term, ctx, (array,))
            item = element_type(array)
            acc = _join(term, ctx, unit, item, "the unit and the items")
            result = _body(term, "body", body, ctx + (acc, item), subst)
            _join_as(term, ctx, acc, result, "the accumulator and the body's result")
            return ctx + (acc,)
        case Loop(body=body, stacked=stacked):
            _need(term, ctx, 2)
            init, xs = ctx[-2:]
            length = _length(term, ctx, (xs,))
            x = element_type(xs)
            state = init
            after = _body(term, "body", body, ctx + (state, x), subst)
            state = _join(term, ctx, init, after, "the initial state and the body's result")
            if state != init:  # a weak initial state: the next steps start from the joined one
                after = _body(term, "body", body, ctx + (state, x), subst)
                _join_as(term, ctx, state, after, "the state and the body's result")
            if not isinstance(stacked, bool) and not (
                    isinstance(state, TupleType) and len(state.items) == len(stacked)):
                _error(term, ctx, f"stacks items {list(stacked)} of a state of type {format_type(state)}")
            return ctx + (loop_result_type(state, length, stacked),)
        case Custom(n=n, body=body):
            _need(term, ctx, n)
            return ctx + (_body(term, "body", body, ctx, subst),)
        case _:
            assert_never(term)


def _body(owner: Term, label: str, body: Term, ctx: Context, subst: dict[str, Dim] | None) -> Type:
    """The type a body pushes on `ctx`; it must leave `ctx` as it is below."""
    try:
        out = _check(body, ctx, subst)
    except UnaryTypeError as err:
        raise UnaryTypeError(f"in the {label} of {format_instruction(owner)}: {err}") from None
    if len(out) != len(ctx) + 1 or out[:-1] != ctx:
        _error(owner, ctx, f"its {label} must leave its stack and push one value, but turns "
                           f"{format_type_stack(ctx)} into {format_type_stack(out)}")
    return out[-1]


def _length(term: Term, ctx: Context, arrays: tuple[Type, ...]) -> Dim:
    lengths = [leading_length(t) for t in arrays]
    if None in lengths:
        _error(term, ctx, "needs arrays (or tuples of arrays of one length), got "
                          + ", ".join(map(format_type, arrays)))
    if len(set(lengths)) != 1:
        _error(term, ctx, "runs over arrays of different lengths "
                          + ", ".join(str(d) for d in lengths))
    return lengths[0]


def _join(term: Term, ctx: Context, a: Type, b: Type, what: str) -> Type:
    joined = join_types(a, b)
    if joined is None:
        _error(term, ctx, f"{what} have different types {format_type(a)} and {format_type(b)}")
    return joined


def _join_as(term: Term, ctx: Context, a: Type, b: Type, what: str) -> None:
    """`b` must fit where an `a` is expected: joining it with `a` gives `a`."""
    if join_types(a, b) != a:
        _error(term, ctx, f"{what} have different types {format_type(a)} and {format_type(b)}")


def _need(term: Term, ctx: Context, n: int) -> None:
    if n > len(ctx):
        _error(term, ctx, f"needs {n} entries, but the stack has {len(ctx)}")


def _error(term: Term, ctx: Context, reason: str) -> NoReturn:
    raise UnaryTypeError(f"`{format_instruction(term)}` {reason}; stack: {format_type_stack(ctx)}")


def _function_error(fn: UFunction, reason: str) -> NoReturn:
    raise UnaryTypeError(f"in fn {fn.name}: {reason}")


# ---- size variables ------------------------------------------------------------

def _substitution(sizes_known: SizesKnown) -> dict[str, Dim] | None:
    if sizes_known is None:
        return None
    if isinstance(sizes_known, Mapping):
        return {name: value if isinstance(value, Dim) else Dim(int(value))
                for name, value in sizes_known.items()}
    return {name: Dim.of(name) for name in sizes_known}


def _dim(term: Term, ctx: Context, d: Dim, subst: dict[str, Dim] | None) -> Dim:
    if subst is None:
        return d
    unknown = [v for v in d.variables if v not in subst]
    if unknown:
        _error(term, ctx, f"uses the size {d}, but {', '.join(unknown)} is not in scope")
    return d.substitute(subst)


def _substitute(term: Term, ctx: Context, value: Any, subst: dict[str, Dim] | None) -> Any:
    """`value` (params, or a part of them) with every `Dim` substituted by `_dim`."""
    if isinstance(value, Dim):
        return _dim(term, ctx, value, subst)
    if isinstance(value, tuple):
        return tuple(_substitute(term, ctx, v, subst) for v in value)
    return value


def _type_variables(t: Type) -> Iterable[str]:
    if isinstance(t, TupleType):
        for x in t.items:
            yield from _type_variables(x)
    else:
        for d in t.shape:
            yield from d.variables
