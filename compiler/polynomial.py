"""Is a derivative over Z2 defined? A check run before forward or reverse mode over Z2.

Over Z2 catad differentiates *circuits*: bool values made from the bools
differentiated by primitives that are polynomials over Z2 (and, xor, not, or,
comparisons of bools, where, any/all, parity, popcount_le, indexing, shapes).
A bool that depends on them through a number — a count of bools (`sum`), a
cast to i64, an index computed from them, an `if` on them — has no derivative
that these rules compute: the number carries none, so the derivative would be
silently zero. catad refuses it at compile time, at the user's line.

Each stack entry gets a *dependence* on the parameters differentiated:

    NONE               does not depend on them
    POLY               a bool that depends on them through polynomial steps
    Numeric(span)      a number (or an `if` result) that depends on them;
                       `span` is where the dependence left Z2

A Numeric dependence may not flow back into a bool, nor be a result.

A derivative of a derivative (`jvp(vjp(f, wrt = p), wrt = f_bar)`) is checked
the same way: the Z2 derivatives of `min`/`max` of bools and of `popcount_le`
count bools (in O(n), where a polynomial form would take O(n²)), and that of a
gather counts repeated indices, so they are not differentiated again; and,
xor, not, or, where, parity and indexing by constants or sizes are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from . import primitives as P
from .errors import DerivativeError, Span
from .types import ArrayType, DType, TupleType, Type
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var)
from .unary_check import check_term


class _None:
    def __repr__(self) -> str:
        return "NONE"


class _Poly:
    def __repr__(self) -> str:
        return "POLY"


NONE, POLY = _None(), _Poly()


@dataclass(frozen=True)
class Numeric:
    span: Span
    what: str  # the operation where the dependence left Z2, for the message


Dependence = object  # NONE | POLY | Numeric | tuple of those

_HINT = ("write the circuit with and, xor, not, or, where, parity and popcount_le, "
         "whose derivatives over Z2 catad knows (the derivatives of min/max of bools, "
         "popcount_le and gathers count bools: they are not differentiated again)")


def require_polynomial(fn: UFunction, wrt: tuple[int, ...], what: str, declaration: Span, *,
                       derived: bool = False) -> None:
    """Raise DerivativeError if a bool of `fn` (or its result) depends on the
    parameters `wrt` through a value that is not a bool. `what` names the
    derivative for the message (e.g. "vjp of f with respect to p"), `declaration`
    where it is declared; `derived`: `fn` is itself a derivative. Code without a
    source place was made by a derivative rule."""
    walk = _Walk(what, declaration, derived)
    stack: list[Dependence] = [POLY if i in wrt else NONE for i in range(len(fn.params))]
    types = [t for _, t in fn.params]
    walk.run(fn.body, stack, types)
    for dependence, t in _leaves(stack[-1], types[-1]):
        if isinstance(dependence, Numeric):
            raise DerivativeError(
                f"cannot take the {what} over Z2: the result is {t}, which depends on the "
                f"bools differentiated through {dependence.what} here; over Z2 only bools "
                "made by polynomial steps have derivatives", dependence.span, hint=_HINT)


def _leaves(d: Dependence, t: Type):
    if isinstance(t, TupleType):
        items = d if isinstance(d, tuple) else (d,) * len(t.items)
        for x, u in zip(items, t.items):
            yield from _leaves(x, u)
    else:
        yield _any(d), t


def _is_bool(t: Type) -> bool:
    return isinstance(t, ArrayType) and t.dtype is DType.BOOL


def _join(a: Dependence, b: Dependence) -> Dependence:
    """The dependence of a value that is one of two: Numeric > POLY > NONE."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return tuple(_join(x, y) for x, y in zip(a, b))
    if isinstance(a, Numeric):
        return a
    if isinstance(b, Numeric):
        return b
    return POLY if POLY in (a, b) else NONE


def _any(d: Dependence) -> Dependence:
    """The dependence of a whole (possibly tuple) value, joined."""
    if isinstance(d, tuple):
        out: Dependence = NONE
        for x in d:
            out = _join(out, _any(x))
        return out
    return d


@dataclass(frozen=True)
class _Walk:
    what: str
    declaration: Span
    derived: bool  # the function checked is a derivative

    def run(self, term: Term, stack: list[Dependence], types: list[Type]) -> None:
        """Follow `term` on a stack of dependences and the stack of their types."""
        match term:
            case Var(i):
                stack.append(stack[i])
                types.append(types[i])
            case Seq(terms):
                for t in terms:
                    self.run(t, stack, types)
            case Prim(prim, _, n):
                out_type = check_term(term, tuple(types))[-1]
                stack.append(self._prim(term, prim, stack[len(stack) - n:], out_type))
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
                condition = _any(stack[-1])
                results = []
                for branch in (then, orelse):
                    s, ts = list(stack), list(types)
                    self.run(branch, s, ts)
                    results.append((s[-1], ts[-1]))
                out_type = results[0][1]
                if condition is not NONE:
                    self._refuse_if(term, condition, out_type)
                    stack.append(Numeric(term.span, "an `if` on them"))
                else:
                    stack.append(_join(results[0][0], results[1][0]))
                types.append(out_type)
            case Loop(body, _):
                acc = stack[-2]
                out_type = check_term(term, tuple(types))[-1]
                while True:  # dependences only grow, in a lattice of height 3
                    s, ts = list(stack) + [acc, stack[-1]], list(types) + [types[-2], _item(types[-1])]
                    self.run(body, s, ts)
                    grown = _join(acc, s[-1])
                    if grown == acc:
                        break
                    acc = grown
                stack.append(acc)
                types.append(out_type)
            case Custom(body=body):  # over Z2 a call is differentiated through its body
                s, ts = list(stack), list(types)
                self.run(body, s, ts)
                stack.append(s[-1])
                types.append(ts[-1])
            case Build() | Map() | Reduce():
                raise AssertionError("the Z2 check runs on vectorised unary form")
            case _:
                assert_never(term)

    def _prim(self, term: Prim, prim: P.Primitive, args: list[Dependence], out_type: Type) -> Dependence:
        deps = [_any(a) for a in args]
        if all(d is NONE for d in deps):
            return NONE
        numeric = next((d for d in deps if isinstance(d, Numeric)), None)
        if not _is_bool(out_type):
            return numeric or Numeric(term.span, _left_by(prim))
        if numeric is not None and (self.derived or not term.span.line or not numeric.span.line):
            raise DerivativeError(
                f"cannot take the {self.what} over Z2: the derivative it differentiates counts "
                "bools (the Z2 derivatives of min/max of bools, of popcount_le and of gathers "
                "do), and a count has no derivative over Z2", self.declaration,
                notes=(("the count is made for this", numeric.span),) if numeric.span.line else (),
                hint="second derivatives over Z2 go through and, xor, not, or, where, parity "
                     "and indexing")
        if numeric is not None:
            raise DerivativeError(
                f"cannot take the {self.what} over Z2: {_made_by(prim)} makes a bool from "
                f"{numeric.what}, which is not a polynomial over Z2, so its derivative would "
                "be lost", term.span, notes=(("the bools differentiated become a number here",
                                              numeric.span),), hint=_HINT)
        return POLY

    def _refuse_if(self, term: If, condition: Dependence, out_type: Type) -> None:
        if any(_is_bool(t) for _, t in _leaves(NONE, out_type)):
            origin = (("the condition depends on them through this",
                       condition.span),) if isinstance(condition, Numeric) else ()
            raise DerivativeError(
                f"cannot take the {self.what} over Z2: the condition of this `if` depends on "
                "the bools differentiated, and over Z2 the derivative must include the "
                "condition's", term.span, notes=origin,
                hint="write where(c, a, b): over Z2 its derivative with respect to c is (a + b)·ċ")


def _made_by(prim: P.Primitive) -> str:
    if prim in P.COMPARISON:
        return "this comparison"
    if prim is P.ASTYPE:
        return "this cast"
    return f"this `{prim.name}`"


def _left_by(prim: P.Primitive) -> str:
    """How a primitive makes a number of bools, for the message."""
    if prim is P.SUM:
        return "`sum` (a count of bools)"
    if prim is P.ASTYPE:
        return "a cast to a number"
    return f"`{prim.name}` (a number)"


def _item(t: Type) -> Type:
    if isinstance(t, TupleType):
        return TupleType(tuple(_item(x) for x in t.items))
    assert isinstance(t, ArrayType)
    return ArrayType(t.dtype, t.shape[1:])
