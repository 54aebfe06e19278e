"""Is a real derivative meaningful? A check run before forward or reverse mode.

A derivative that passes through an operation whose derivative is zero
wherever it exists (a comparison turned back into a number, `sign`, floor
division, a cast to an integer) is not wrong everywhere, but it is useless and
almost always a mistake: catad refuses it at compile time, at the user's line,
instead of returning a zero.

Each stack entry gets a *dependence* on the parameters differentiated:

    NONE                 does not depend on them
    SMOOTH               depends on them through differentiable operations
    Discrete(span)       a bool or integer that depends on them; `span` is where
                         the dependence became discrete (a comparison, a cast)

Discrete values may decide things — the condition of `if` or `where`, an
index — since the derivative of each piece is still right; they may not
flow back into a real value, which is where the error is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from . import primitives as P
from .errors import DerivativeError, Span
from .types import ArrayType, TupleType, Type
from .unary_check import check_term
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var)


class _None:
    def __repr__(self) -> str:
        return "NONE"


class _Smooth:
    def __repr__(self) -> str:
        return "SMOOTH"


NONE, SMOOTH = _None(), _Smooth()


@dataclass(frozen=True)
class Discrete:
    span: Span
    what: str  # the operation that made it discrete, for the message


Dependence = object  # NONE | SMOOTH | Discrete | tuple of those

# piecewise-constant operations on reals: their derivative is zero almost everywhere
_FLAT = frozenset({P.SIGN, P.FLOORDIV})
# argument positions that only select (their derivative is not needed)
_SELECTORS = {P.WHERE: (0,), P.INDEX: None, P.GATHER: None, P.INDEX_ADD: None, P.GATHER_ADD: None}


def require_differentiable(fn: UFunction, wrt: tuple[int, ...], what: str) -> None:
    """Raise DerivativeError if a real result of `fn` depends on its parameters
    `wrt` only through operations with a zero derivative. `what` names the
    derivative for the message (e.g. "grad of loss with respect to w")."""
    stack: list[Dependence] = [SMOOTH if i in wrt else NONE for i in range(len(fn.params))]
    types = [t for _, t in fn.params]
    _walk(fn.body, stack, types)
    for dependence, t in _leaves(stack[-1], types[-1]):
        if isinstance(dependence, Discrete) and _is_real(t):
            raise DerivativeError(
                f"cannot take the {what}: the result depends on the parameters differentiated "
                f"only through {dependence.what} here, whose derivative is zero wherever it exists",
                dependence.span,
                hint="use where(c, a, b) to choose between real values that depend on them, or "
                     "declare a custom_vjp rule (e.g. a straight-through estimator)")


def _leaves(d: Dependence, t: Type):
    if isinstance(t, TupleType):
        items = d if isinstance(d, tuple) else (d,) * len(t.items)
        for x, u in zip(items, t.items):
            yield from _leaves(x, u)
    else:
        yield _any(d), t


def _is_real(t: Type) -> bool:
    return isinstance(t, ArrayType) and t.dtype.is_float


def _join(a: Dependence, b: Dependence) -> Dependence:
    """The dependence of a value that is one of two: SMOOTH > Discrete > NONE."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return tuple(_join(x, y) for x, y in zip(a, b))
    if a is SMOOTH or b is SMOOTH:
        return SMOOTH
    return a if isinstance(a, Discrete) else b


def _any(d: Dependence) -> Dependence:
    """The dependence of a whole (possibly tuple) value, joined."""
    if isinstance(d, tuple):
        out: Dependence = NONE
        for x in d:
            out = _join(out, _any(x))
        return out
    return d


def _walk(term: Term, stack: list[Dependence], types: list[Type]) -> None:
    """Follow `term` on a stack of dependences and the stack of their types."""
    match term:
        case Var(i):
            stack.append(stack[i])
            types.append(types[i])
        case Seq(terms):
            for t in terms:
                _walk(t, stack, types)
        case Prim(prim, _, n):
            out_type = check_term(term, tuple(types))[-1]
            args = stack[len(stack) - n:]
            arg_types = types[len(types) - n:]
            stack.append(_prim(term, prim, args, arg_types, out_type))
            types.append(out_type)
        case Tuple(n):
            items = tuple(stack[len(stack) - n:])
            item_types = tuple(types[len(types) - n:])
            del stack[len(stack) - n:], types[len(types) - n:]
            stack.append(items)
            types.append(TupleType(item_types))
        case Get(k):
            d, t = stack[-1], types[-1]
            stack.append(d[k] if isinstance(d, tuple) else d)
            types.append(t.items[k] if isinstance(t, TupleType) else t)
        case Drop(keep, count):
            del stack[len(stack) - keep - count:len(stack) - keep]
            del types[len(types) - keep - count:len(types) - keep]
        case If(then, orelse):
            results = []
            for branch in (then, orelse):
                s, ts = list(stack), list(types)
                _walk(branch, s, ts)
                results.append((s[-1], ts[-1]))
            stack.append(_join(results[0][0], results[1][0]))
            types.append(results[0][1])
        case Loop(body, _):
            acc = stack[-2]
            out_type = check_term(term, tuple(types))[-1]
            for _ in range(4):  # the dependence of the state reaches a fixpoint quickly
                s, ts = list(stack) + [acc, stack[-1]], list(types) + [types[-2], _item(types[-1])]
                _walk(body, s, ts)
                new = _join(acc, s[-1])
                if new == acc:
                    break
                acc = new
            stack.append(acc)
            types.append(out_type)
        case Custom(n=n):  # a call whose derivative is the user's rule: trusted
            out_type = check_term(term, tuple(types))[-1]
            deps = [_any(d) for d in stack[len(stack) - n:]]
            discrete = [d for d in deps if isinstance(d, Discrete)]
            stack.append(SMOOTH if SMOOTH in deps else discrete[0] if discrete else NONE)
            types.append(out_type)
        case Build() | Map() | Reduce():
            raise AssertionError("the differentiability check runs on vectorised unary form")
        case _:
            assert_never(term)


def _prim(term: Prim, prim: P.Primitive, args: list[Dependence], arg_types: list[Type],
              out_type: Type) -> Dependence:
        deps = [_any(a) for a in args]
        if all(d is NONE for d in deps):
            return NONE
        selectors = _SELECTORS.get(prim, ())
        if selectors is None:  # every argument after the array(s) is an index
            selectors = tuple(range(2 if prim in (P.INDEX_ADD, P.GATHER_ADD) else 1, len(args)))
        if any(d is SMOOTH for k, d in enumerate(deps) if k not in selectors):
            if prim in _FLAT or not _is_real(out_type):
                return Discrete(term.span, _discrete_name(prim))
            return SMOOTH
        for d in deps:  # a value chosen, cast or computed from discrete ones stays discrete
            if isinstance(d, Discrete):
                return d
        return NONE


def _discrete_name(prim: P.Primitive) -> str:
    if prim in P.COMPARISON:
        return "a comparison"
    if prim is P.ASTYPE:
        return "a cast to an integer or bool"
    return f"`{prim.name}`"


def _item(t: Type) -> Type:
    if isinstance(t, TupleType):
        return TupleType(tuple(_item(x) for x in t.items))
    assert isinstance(t, ArrayType)
    return ArrayType(t.dtype, t.shape[1:])
