"""How the values of a function depend on the parameters differentiated: a walk
over vectorised unary form, shared by the two checks run before a derivative
is built (differentiability.py over the reals, polynomial.py over Z2).

Both follow the function's body on a stack of *dependences*, one per stack
entry (a tuple of them for a tuple value), beside the stack of the entries'
types, and both track a chain of three:

                      bottom   middle                    top
    over the reals    NONE     Discrete(span)            SMOOTH
    over Z2           NONE     POLY                      Numeric(span)

They differ only in what a primitive, an `if` and a call of a function with a
derivative rule do to dependences, which a subclass of `DependenceWalk` says;
the walk (variables, sequences, tuples, drops, the fixpoint of a loop's state)
is here once. A join keeps the higher of two dependences, and the first of
two equal ones, so that a message names the first place a dependence arose.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import assert_never

from .types import ArrayType, TupleType, Type
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var)
from .unary_check import check_term


class Level:
    """A dependence without a place: NONE, or a check's own (SMOOTH, POLY)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NONE = Level("NONE")

Dependence = object  # NONE | a check's levels and dataclasses | a tuple of those


class DependenceWalk(ABC):
    """Follow a function's body on a stack of dependences. `check_name` names the
    check in internal errors; `differentiated` is the dependence of a parameter
    differentiated."""

    check_name: str
    differentiated: Dependence

    @abstractmethod
    def rank(self, d: Dependence) -> int:
        """0, 1 or 2: the place of `d` (not a tuple) in the check's chain."""

    @abstractmethod
    def prim(self, term: Prim, args: list[Dependence], arg_types: list[Type],
             out_type: Type) -> Dependence:
        """The dependence of a primitive's result, given its arguments'."""

    @abstractmethod
    def choose(self, term: If, condition: Dependence, then: Dependence, orelse: Dependence,
               out_type: Type) -> Dependence:
        """The dependence of an `if`'s result, given its condition's (joined) and
        its branches'."""

    @abstractmethod
    def call(self, term: Custom, stack: list[Dependence], types: list[Type]) -> Dependence:
        """The dependence of a call of a function with a user's derivative rule."""

    # ---- the walk ---------------------------------------------------------------------

    def result(self, fn: UFunction, wrt: tuple[int, ...]) -> Iterator[tuple[Dependence, Type]]:
        """The dependence of each leaf of `fn`'s result on its parameters `wrt`, with
        the leaf's type."""
        stack: list[Dependence] = [self.differentiated if i in wrt else NONE
                                   for i in range(len(fn.params))]
        types = [t for _, t in fn.params]
        self.walk(fn.body, stack, types)
        return self.leaves(stack[-1], types[-1])

    def walk(self, term: Term, stack: list[Dependence], types: list[Type]) -> None:
        """Follow `term` on a stack of dependences and the stack of their types."""
        match term:
            case Var(i):
                stack.append(stack[i])
                types.append(types[i])
            case Seq(terms):
                for t in terms:
                    self.walk(t, stack, types)
            case Prim(_, _, n):
                out_type = check_term(term, tuple(types))[-1]
                stack.append(self.prim(term, stack[len(stack) - n:], types[len(types) - n:],
                                       out_type))
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
                condition = self.whole(stack[-1])
                results = []
                for branch in (then, orelse):
                    s, ts = list(stack), list(types)
                    self.walk(branch, s, ts)
                    results.append((s[-1], ts[-1]))
                out_type = results[0][1]
                stack.append(self.choose(term, condition, results[0][0], results[1][0], out_type))
                types.append(out_type)
            case Loop(body, _):
                acc = stack[-2]
                out_type = check_term(term, tuple(types))[-1]
                while True:  # dependences only grow, in a chain of three: a fixpoint comes
                    s, ts = list(stack) + [acc, stack[-1]], list(types) + [types[-2], _item(types[-1])]
                    self.walk(body, s, ts)
                    grown = self.join(acc, s[-1])
                    if grown == acc:
                        break
                    acc = grown
                stack.append(acc)
                types.append(out_type)
            case Custom():
                out_type = check_term(term, tuple(types))[-1]
                stack.append(self.call(term, stack, types))
                types.append(out_type)
            case Build() | Map() | Reduce():
                raise AssertionError(f"the {self.check_name} runs on vectorised unary form")
            case _:
                assert_never(term)

    # ---- dependences --------------------------------------------------------------------

    def join(self, a: Dependence, b: Dependence) -> Dependence:
        """The dependence of a value that is one of two, or made from both, leaf by
        leaf (one that is not a tuple stands for every leaf): the higher, or the
        first of two equal ones."""
        if isinstance(a, tuple) or isinstance(b, tuple):
            n = len(a) if isinstance(a, tuple) else len(b)
            return tuple(self.join(x, y) for x, y in zip(_spread(a, n), _spread(b, n)))
        return b if self.rank(b) > self.rank(a) else a

    def whole(self, d: Dependence) -> Dependence:
        """The dependence of a whole (possibly tuple) value, joined."""
        if isinstance(d, tuple):
            out: Dependence = NONE
            for x in d:
                out = self.join(out, self.whole(x))
            return out
        return d

    def leaves(self, d: Dependence, t: Type) -> Iterator[tuple[Dependence, Type]]:
        """Each leaf of a value of type `t` with its dependence."""
        if isinstance(t, TupleType):
            for x, u in zip(_spread(d, len(t.items)), t.items):
                yield from self.leaves(x, u)
        else:
            yield self.whole(d), t


def _spread(d: Dependence, n: int) -> tuple:
    return d if isinstance(d, tuple) else (d,) * n


def _item(t: Type) -> Type:
    """The type of one item of the array(s) of type `t`."""
    if isinstance(t, TupleType):
        return TupleType(tuple(_item(x) for x in t.items))
    assert isinstance(t, ArrayType)
    return ArrayType(t.dtype, t.shape[1:])
