"""Common-subexpression elimination on (vectorised) unary form.

Why before differentiation. The target simplifier shares a subexpression
written twice, but only after the derivatives are made: by then reverse mode
has run the adjoint of each occurrence separately, and the two adjoints differ
(each receives its own cotangent), so nothing is left to share.
`sin(dot(x, A @ x)) * cos(dot(x, A @ x))` costs 70 and its gradient 367; with
`A @ x` and the dot shared first, the cotangents of both uses meet in one
value and its adjoint runs once. Derived functions run this pass on the
function they transform (compiler/derive.py).

How. The term is run symbolically on a stack of `Value` handles, as reverse
mode's forward sweep does, and emitted again through a `Builder` (SSA: every
value keeps one stack position). An instruction is looked up, before it is
emitted, by what determines its result:

    Prim(p, params, n)     p, params (floats by their bits: 0.0 is not -0.0),
                           and the values of its n arguments
    Tuple(n)               the values of its items
    Get(k)                 the tuple's value and k; of a tuple made here, the
                           item itself
    If / Loop / Custom     its bodies, with each read of an entry below them
                           standing for the value read, and the values of its
                           operands (the condition; the state and sequence;
                           the arguments): the same loop at another height is
                           the same key

A hit pushes the value already made and emits nothing; `Var` copies and
`Drop`s only move handles. Every primitive is pure, so equal keys mean equal
values. Lookups see the values made in enclosing scopes: a body of `If` or
`Loop` starts with a copy of the table, and what it adds is forgotten when it
ends (the branch may not be taken; the loop body's values change per step).
A `Custom` body, which must read only its arguments, is shared within itself
alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, assert_never

from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var, shift)
from .unary_builder import Builder, Value


def share_subexpressions(fn: UFunction) -> UFunction:
    """`fn` computing each distinct subexpression once (same meaning, same type)."""
    types = tuple(t for _, t in fn.params)
    b = Builder(types)
    stack = [b.arg(i) for i in range(len(types))]
    _Sharing(b, _Table()).run(fn.body, stack)
    return UFunction(fn.name, fn.params, fn.result, b.finish(stack[-1]), fn.sizes, span=fn.span)


@dataclass
class _Table:
    """The values made so far in one scope, by key; and the items of the tuples made."""

    values: dict[Hashable, Value] = field(default_factory=dict)
    tuples: dict[int, tuple[Value, ...]] = field(default_factory=dict)

    def inner(self) -> "_Table":
        """The table of a body: sees this one, and adds to a copy."""
        return _Table(dict(self.values), dict(self.tuples))


@dataclass
class _Sharing:
    b: Builder
    table: _Table

    def run(self, term: Term, stack: list[Value]) -> None:
        b, table = self.b, self.table
        match term:
            case Var(i):
                stack.append(stack[i])
            case Seq(terms):
                for t in terms:
                    self.run(t, stack)
            case Drop(keep, count):
                del stack[len(stack) - keep - count:len(stack) - keep]
            case Prim(prim, ps, n):
                args = tuple(stack[len(stack) - n:])
                key = ("prim", prim, _frozen(ps), _positions(args))
                stack.append(self._once(key, lambda: b.prim(prim, ps, *args, hint=term.hint,
                                                             span=term.span)))
            case Tuple(n):
                items = tuple(stack[len(stack) - n:])
                del stack[len(stack) - n:]
                out = self._once(("tuple", _positions(items)), lambda: b.tuple(*items, hint=term.hint))
                table.tuples[out.pos] = items
                stack.append(out)
            case Get(k):
                tup = stack[-1]
                if tup.pos in table.tuples:
                    stack.append(table.tuples[tup.pos][k])
                else:
                    stack.append(self._once(("get", tup.pos, k), lambda: b.get(tup, k, hint=term.hint)))
            case If():
                key = self._structured(term, stack, operands=1)
                stack.append(self._once(key, lambda: self._if(term, stack)))
            case Loop():
                key = self._structured(term, stack, operands=2)
                stack.append(self._once(key, lambda: self._loop(term, stack)))
            case Custom(_, n, body):
                key = self._structured(term, stack, operands=n)
                args = tuple(stack[len(stack) - n:])
                own = shift(body, -(len(stack) - n))  # the body on its arguments alone
                stack.append(self._once(key, lambda: self._custom(term, own, args)))
            case Build() | Map() | Reduce():
                raise AssertionError("common-subexpression elimination runs on vectorised unary form")
            case _:
                assert_never(term)

    def _once(self, key: Hashable, make) -> Value:
        """The value of `key`, made by `make()` the first time in this scope."""
        found = self.table.values.get(key)
        if found is None:
            found = self.table.values[key] = make()
        return found

    def _structured(self, term: If | Loop | Custom, stack: list[Value], operands: int) -> Hashable:
        """The key of an instruction with bodies, at any height: its bodies with their
        reads of the stack below replaced by the values read, and its operands."""
        return ("body", _canonical(term, len(stack), stack),
                _positions(tuple(stack[len(stack) - operands:])))

    def _if(self, term: If, stack: list[Value]) -> Value:
        context = tuple(stack)

        def branch(body: Term):
            def make(sb: Builder) -> Value:
                # the branch runs on the context with the condition on top: its copy
                local = list(context[:-1]) + [Value(len(sb.types) - 1, context[-1].type)]
                _Sharing(sb, self.table.inner()).run(body, local)
                return local[-1]
            return make

        return self.b.if_(context[-1], branch(term.then), branch(term.orelse), hint=term.hint,
                          span=term.span)

    def _loop(self, term: Loop, stack: list[Value]) -> Value:
        context = tuple(stack)

        def step(lb: Builder, acc: Value, x: Value) -> Value:
            local = list(context) + [acc, x]
            _Sharing(lb, self.table.inner()).run(term.body, local)
            return local[-1]

        return self.b.loop(context[-2], context[-1], step, stacked=term.stacked,
                           associative=term.associative, names=term.names, hint=term.hint, span=term.span)

    def _custom(self, term: Custom, own: Term, args: tuple[Value, ...]) -> Value:
        types = tuple(a.type for a in args)
        inner = Builder(types)
        local = [inner.arg(i) for i in range(len(types))]
        _Sharing(inner, _Table()).run(own, local)
        body = inner.finish(local[-1])
        return self.b.custom(term.name, args, body, local[-1].type, hint=term.hint, span=term.span,
                             lanes=term.lanes)


def _canonical(term: Term, height: int, stack: list[Value]) -> Hashable:
    """`term`, running above `height` entries of `stack`, as a key: a read of an entry
    below is the value read; a read above, its distance from `height` (the same
    body at another height reads its own entries at other indices)."""
    match term:
        case Var(i):
            return ("value", stack[i].pos) if i < height else ("own", i - height)
        case Seq(terms):
            return ("seq", *(_canonical(t, height, stack) for t in terms))
        case Prim(prim, ps, n):
            return ("prim", prim, _frozen(ps), n)
        case If(then, orelse):
            return ("if", _canonical(then, height, stack), _canonical(orelse, height, stack))
        case Loop(body, stacked):
            return ("loop", stacked, _canonical(body, height, stack))
        case Custom(name, n, body):
            return ("custom", name, n, term.lanes, _canonical(body, height, stack))
        case Build(lo, hi, body):
            return ("build", lo, hi, _canonical(body, height, stack))
        case Map(n, body):
            return ("map", n, _canonical(body, height, stack))
        case Reduce(body):
            return ("reduce", _canonical(body, height, stack))
        case Tuple() | Get() | Drop():
            return term
        case _:
            assert_never(term)


def _positions(values: tuple[Value, ...]) -> tuple[int, ...]:
    return tuple(v.pos for v in values)


def _frozen(value: Any) -> Hashable:
    """A key for a param value that tells apart what `==` confuses: 0.0 and -0.0,
    1 and 1.0 and True (NaN, unequal to itself, is keyed by its bits too)."""
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, (bool, int)):
        return (type(value).__name__, value)
    return value
