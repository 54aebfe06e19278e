"""Emit unary form from code that names its values.

UNF has no variables, which makes it a good IR to transform and a poor one to
write by hand. A `Builder` lets passes (forward and reverse mode, their rules)
write ordinary-looking code over `Value` handles and emits UNF in SSA style:
every value it makes stays on the stack, at a fixed absolute position, until
`finish` keeps only the results.

    b = Builder((x_type, y_type))
    x, y = b.arg(0), b.arg(1)
    s = b.prim(ADD, (), x, y)            # Var(0); Var(1); add/2; Drop(1, 2)
    term = b.finish(s)                   # ... Drop(1, 1): x, y ⊢ x, y, x + y

A handle is a stack position, so copying a handle emits nothing; reading it
emits a `Var`. Bodies of `If` and `Loop` are built by sub-builders that start
from the current stack, so they can read every value made so far.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from .errors import NO_SPAN, Span
from .prim_types import result_type
from .primitives import Params, Primitive
from .types import BOOL, ArrayType, Stacking, TupleType, Type, loop_result_type
from .unary_check import join_types
from .unary import Custom, Drop, Get, If, Lanes, Loop, LoopNames, Prim, Term, Tuple, Var, seq, shift


@dataclass(frozen=True)
class Value:
    """A value on the builder's stack: its absolute position and its type."""

    pos: int
    type: Type


class Builder:
    def __init__(self, context: tuple[Type, ...], span: Span = NO_SPAN):
        self.base = len(context)
        self.types: list[Type] = list(context)
        self.terms: list[Term] = []
        self.span = span  # the source place of what is emitted, unless told otherwise
        self._made_by: dict[int, int] = {}  # stack position -> index in terms of its instruction

    def hint_of(self, v: Value) -> str | None:
        """The source name of a value this builder made, if it has one."""
        k = self._made_by.get(v.pos)
        return None if k is None else self.terms[k].hint

    def name(self, v: Value, hint: str) -> None:
        """Give the value `v` the source name `hint`, if it was made here without one."""
        k = self._made_by.get(v.pos)
        if k is not None and self.terms[k].hint is None:
            self.terms[k] = dataclasses.replace(self.terms[k], hint=hint)

    def _made(self, instruction: Term, t: Type) -> Value:
        """Append the instruction that pushes the next value (of type t) and return that value."""
        self._made_by[len(self.types)] = len(self.terms)
        self.terms.append(instruction)
        return self._push(t)

    def arg(self, i: int) -> Value:
        """The context entry `i` (0 = bottom)."""
        assert 0 <= i < self.base
        return Value(i, self.types[i])

    def _where(self, span: Span) -> Span:
        return self.span if span == NO_SPAN else span

    def _push(self, t: Type) -> Value:
        self.types.append(t)
        return Value(len(self.types) - 1, t)

    def _read(self, values: tuple[Value, ...]) -> None:
        # the copies stay on the stack only until the consuming instruction drops them
        self.terms.extend(Var(v.pos) for v in values)

    def prim(self, prim: Primitive, params: Params, *args: Value,
             hint: str | None = None, span: Span = NO_SPAN) -> Value:
        """Apply `prim` to `args`; the result stays on the stack."""
        out = result_type(prim, params, tuple(a.type for a in args))
        self._read(args)
        value = self._made(Prim(prim, params, len(args), hint=hint, span=self._where(span)), out)
        if args:
            self.terms.append(Drop(1, len(args)))
        return value

    def tuple(self, *items: Value, hint: str | None = None) -> Value:
        self._read(items)
        return self._made(Tuple(len(items), hint=hint, span=self.span), TupleType(tuple(v.type for v in items)))

    def get(self, t: Value, k: int, hint: str | None = None) -> Value:
        assert isinstance(t.type, TupleType)
        self.terms.append(Var(t.pos))
        value = self._made(Get(k, hint=hint, span=self.span), t.type.items[k])
        self.terms.append(Drop(1, 1))
        return value

    def sub(self, extra: tuple[Type, ...] = ()) -> "Builder":
        """A builder for a body that runs on the current stack plus `extra` entries."""
        return Builder(tuple(self.types) + extra, self.span)

    def if_(self, cond: Value, then: Callable[["Builder"], Value], orelse: Callable[["Builder"], Value],
            hint: str | None = None, span: Span = NO_SPAN) -> Value:
        """`if cond { then(b) } else { orelse(b) }`; each branch returns its result."""
        assert cond.type == BOOL or (isinstance(cond.type, ArrayType) and cond.type.shape == ())
        branches: list[Term] = []
        results: list[Type] = []
        for make in (then, orelse):
            b = self.sub((cond.type,))
            r = make(b)
            results.append(r.type)
            branches.append(b.finish(r))
        joined = join_types(results[0], results[1])  # a weak literal yields to the other branch
        assert joined is not None, f"branches differ: {results[0]} vs {results[1]}"
        self.terms.append(Var(cond.pos))
        value = self._made(If(branches[0], branches[1], hint=hint, span=self._where(span)), joined)
        self.terms.append(Drop(1, 1))
        return value

    def loop(self, init: Value, xs: Value, body: Callable[["Builder", Value, Value], Value], *,
             stacked: Stacking, associative: bool = False, names: LoopNames = LoopNames(),
             hint: str | None = None, span: Span = NO_SPAN) -> Value:
        """fold (stacked=False) or scan over the leading axis of `xs`:
        `body(b, acc, x)` returns the next state (`associative`, `names`: see `unary.Loop`)."""
        assert isinstance(xs.type, ArrayType) and xs.type.rank >= 1
        x_type = ArrayType(xs.type.dtype, xs.type.shape[1:])
        b = self.sub((init.type, xs.type, init.type, x_type))
        acc, x = Value(len(b.types) - 2, init.type), Value(len(b.types) - 1, x_type)
        new = body(b, acc, x)
        term = b.finish(new)
        self.terms.extend([Var(init.pos), Var(xs.pos)])
        value = self._made(Loop(term, stacked, associative=associative, names=names, hint=hint,
                                span=self._where(span)),
                           loop_result_type(init.type, xs.type.shape[0], stacked))
        self.terms.append(Drop(1, 2))
        return value

    def inline(self, term: Term, args: tuple[Value, ...], result: Type) -> Value:
        """`term`, which runs on the arguments alone (`A1..Ak ⊢ A1..Ak, B`, as a
        function's body), run on copies of `args`; its result has type `result`."""
        self._read(args)
        value = self._made(shift(term, len(self.types)), result)
        if args:
            self.terms.append(Drop(1, len(args)))
        return value

    def custom(self, name: str, args: tuple[Value, ...], body: Term, result: Type,
               hint: str | None = None, span: Span = NO_SPAN, lanes: Lanes | None = None) -> Value:
        """The call of user function `name`, which has a derivative rule, on `args`:
        `Custom(name, k, body)`, `body` running on the arguments alone as for `inline`
        (`lanes`: batched, see `Lanes`)."""
        self._read(args)
        marker = Custom(name, len(args), shift(body, len(self.types)), lanes=lanes, hint=hint,
                        span=self._where(span))
        value = self._made(marker, result)
        if args:
            self.terms.append(Drop(1, len(args)))
        return value

    def finish(self, result: Value) -> Term:
        """The term `context ⊢ context, result`: keep only the result above the context."""
        self.terms.append(Var(result.pos))
        made = len(self.types) - self.base
        if made:
            self.terms.append(Drop(1, made))
        return seq(*self.terms) if self.terms else seq()
