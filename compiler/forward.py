"""Forward mode: the tangent functor on (vectorised) unary form.

Every stack entry `A` becomes a pair: its value and its tangent `Ȧ` (symbolically
`ZERO` when it cannot depend on the inputs being differentiated). The functor
is defined once per instruction, and composition goes to composition:

    Var(i)          (x, ẋ) copied — a copy costs nothing
    Prim(p)         the primitive's tangent rule, `jvp_rules.JVP_RULES[p]`
    Tuple / Get     tangents tupled / projected alongside
    Drop            forgets the tangents with the values
    If(a, b)        the branch taken carries its own tangent
    Loop(body)      the state is carried with its tangent; an `associative` fold
                    (a reduce, r = u ⊕ x1 ⊕ .. ⊕ xn) is computed by prefix scans
                    P_i = u ⊕ .. ⊕ xi instead, with no loop over the items, and
                    its tangent, as in reverse mode, from suffix scans
                    S_i = xi ⊕ .. ⊕ xn: step i adds ṫ_i = ∂_{x,c}(P_{i-1} ⊕ xi)(ẋi, ċ)
                    (ṫ_0 = u̇), which reaches r through r = P_i ⊕ S_{i+1}:
                    ṙ = Σ_{i<n} ∂_a(P_i ⊕ S_{i+1}) ṫ_i + ṫ_n (compiler/scans.py)
    Custom(f)       a call of f with a user's rule: the call is kept for the value
                    (marked) and the tangent comes from the rule (`custom_rules`);
                    without `rules`, or over Z2, the body as usual
    Seq             composition

It runs after vectorisation, so there is no Build or Map left: their tangents
are the tangents of the whole-array programs they became (vmap and AD commute).
The output is UNF again, so forward mode nests with itself and with reverse mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

from .algebra import REALS, ZERO, Algebra, Deriv
from .errors import DerivativeError
from .jvp_rules import JVP_RULES, algebra_sum
from .primitives import ARANGE, CONCAT, EXPAND_DIMS, INDEX, params
from .scans import lanewise, prefix_scan, reassociable, row, rows, suffix_scan
from .types import ArrayType, Dim, Stacking, TupleType, Type, strip_weak
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var)
from .unary_builder import Builder, Value

if TYPE_CHECKING:
    from .custom_rules import CustomRules

Entry = tuple[Value, Deriv]  # a value and its tangent


def jvp_function(fn: UFunction, wrt: tuple[int, ...], name: str, algebra: Algebra = REALS,
                 rules: CustomRules | None = None) -> UFunction:
    """`name(params..., t1, ..., tk) -> (value, tangent)`: the derivative of `fn`
    at `params` in the direction of the tangents `t_j` of the parameters `wrt`;
    calls marked `Custom` take their derivatives from `rules`."""
    types = tuple(t for _, t in fn.params)
    b = Builder(types + tuple(types[i] for i in wrt))
    stack: list[Entry] = [(b.arg(i), ZERO) for i in range(len(types))]
    for k, i in enumerate(wrt):
        stack[i] = (b.arg(i), b.arg(len(types) + k))
    Tangents(b, algebra, rules).run(fn.body, stack)
    value, tangent = stack[-1]
    out = b.tuple(value, algebra.materialise(b, tangent, tangent_type(value.type, algebra)))
    tangent_params = tuple((fn.params[i][0] + "_dot", types[i]) for i in wrt)
    return UFunction(name, fn.params + tangent_params, out.type, b.finish(out), fn.sizes, span=fn.span)


def tangent_type(t: Type, algebra: Algebra) -> Type:
    if isinstance(t, TupleType):
        return TupleType(tuple(tangent_type(x, algebra) for x in t.items))
    return ArrayType(algebra.derivative_dtype(t), t.shape)


@dataclass
class Tangents:
    b: Builder
    algebra: Algebra
    rules: CustomRules | None = None

    def run(self, term: Term, stack: list[Entry]) -> None:
        """Interpret `term` on `stack`, emitting values and tangents into the builder."""
        match term:
            case Var(i):
                stack.append(stack[i])
            case Seq(terms):
                for t in terms:
                    self.run(t, stack)
            case Prim(prim, ps, n):
                args = stack[len(stack) - n:]
                rule = JVP_RULES.get(prim)
                if rule is None:
                    raise DerivativeError(f"no tangent rule for the primitive {prim.name}", term.span)
                primals = tuple(v for v, _ in args)
                tangents = tuple(d for _, d in args)
                if all(d is ZERO for d in tangents):
                    stack.append((self.b.prim(prim, ps, *primals, hint=term.hint, span=term.span), ZERO))
                else:
                    value, dot = rule(self.b, self.algebra, ps, primals, tangents, term)
                    if term.hint and isinstance(dot, Value):
                        self.b.name(dot, term.hint + "_dot")
                    stack.append((value, dot))
            case Tuple(n):
                items = stack[len(stack) - n:]
                del stack[len(stack) - n:]
                value = self.b.tuple(*(v for v, _ in items), hint=term.hint)
                dots = tuple(d for _, d in items)
                stack.append((value, ZERO if all(d is ZERO for d in dots) else dots))
            case Get(k):
                value, dot = stack[-1]
                item = self.b.get(value, k, hint=term.hint)
                stack.append((item, ZERO if dot is ZERO else self.algebra.split(self.b, dot)[k]))
            case Drop(keep, count):
                del stack[len(stack) - keep - count:len(stack) - keep]
            case If(then, orelse):
                self._if(term, then, orelse, stack)
            case Loop(body, False) if term.associative and reassociable(stack[-2][0].type,
                                                                        stack[-1][0].type):
                self._associative_fold(term, body, stack)
            case Loop(body, stacked):
                self._loop(term, body, stacked, stack)
            case Custom(name, n, body):
                if self.rules is None or not self.rules.applies(name, self.algebra):
                    self.run(body, stack)
                    return
                args = stack[len(stack) - n:]
                primals = tuple(v for v, _ in args)
                tangents = tuple(d for _, d in args)
                value = self.rules.call(self.b, term, primals, len(stack) - n)
                if all(d is ZERO for d in tangents):
                    stack.append((value, ZERO))
                    return
                dot = self.rules.tangent(self.b, term, primals, tangents, value)
                if term.hint:
                    self.b.name(dot, term.hint + "_dot")
                stack.append((value, dot))
            case Build() | Map() | Reduce():
                raise AssertionError("forward mode runs on vectorised unary form")
            case _:
                assert_never(term)

    def _if(self, term: If, then: Term, orelse: Term, stack: list[Entry]) -> None:
        cond, _ = stack[-1]
        result: list[Type] = []

        def branch(body: Term):
            def make(b: Builder) -> Value:
                inner = Tangents(b, self.algebra, self.rules)
                # the branch runs on the stack with the condition on top: here its copy
                local = list(stack[:-1])
                local.append((Value(len(b.types) - 1, cond.type), ZERO))
                inner.run(body, local)
                value, dot = local[-1]
                result.append(value.type)
                return b.tuple(value, self.algebra.materialise(b, dot, tangent_type(value.type, self.algebra)))
            return make

        pair = self.b.if_(cond, branch(then), branch(orelse), hint=term.hint, span=term.span)
        value = self.b.get(pair, 0, hint=term.hint)
        dot = self.b.get(pair, 1, hint=term.hint and term.hint + "_dot")
        stack.append((value, dot if self.algebra.carries(value.type) else ZERO))

    def _loop(self, term: Loop, body: Term, stacked: Stacking, stack: list[Entry]) -> None:
        """Carry (state, state tangent); a tangent of the sequence is read by index.
        A loop stacking some items of its tuple state carries the state's items, then
        their tangents, each tangent stacked as its item is."""
        (init, init_dot), (xs, xs_dot) = stack[-2], stack[-1]
        alg, b = self.algebra, self.b
        state_dot_type = tangent_type(init.type, alg)
        per_item = not isinstance(stacked, bool)
        carry0 = b.tuple(init, alg.materialise(b, init_dot, state_dot_type))
        if per_item:
            carry0 = _items_then_tangents(b, carry0)
        assert isinstance(xs.type, ArrayType)
        steps = b.prim(ARANGE, params(lo=Dim(0), hi=xs.type.shape[0]))

        def step(lb: Builder, carry: Value, t: Value) -> Value:
            if per_item:
                carry = _state_and_tangents(lb, carry)
            acc, acc_dot = lb.get(carry, 0), lb.get(carry, 1)
            x = lb.prim(INDEX, params(spec=(("at",),) + _full_slices(xs.type)), xs, t)
            x_dot = ZERO if xs_dot is ZERO else lb.prim(
                INDEX, params(spec=(("at",),) + _full_slices(xs.type)), xs_dot, t)
            # the body's context is Γ, init, xs, acc, x
            local = list(stack) + [(acc, acc_dot), (x, x_dot)]
            Tangents(lb, alg, self.rules).run(body, local)
            new, new_dot = local[-1]
            carried = lb.tuple(new, alg.materialise(lb, new_dot, state_dot_type))
            return _items_then_tangents(lb, carried) if per_item else carried

        if per_item:
            assert isinstance(stacked, tuple)
            out = _state_and_tangents(b, b.loop(carry0, steps, step, stacked=stacked + stacked, span=term.span))
        else:
            out = b.loop(carry0, steps, step, stacked=stacked, hint=term.hint, span=term.span)
        value, dot = b.get(out, 0, hint=term.hint), b.get(out, 1)
        stack.append((value, dot if alg.carries(value.type) else ZERO))

    def _associative_fold(self, term: Loop, body: Term, stack: list[Entry]) -> None:
        """The rule of the module docstring: no loop over the items."""
        alg, b = self.algebra, self.b
        context = tuple(v for v, _ in stack)
        (unit, unit_dot), (xs, xs_dot) = stack[-2], stack[-1]
        n = xs.type.shape[0]

        def combine(lb: Builder, left: Value, right: Value) -> Value:
            return lanewise(lb, body, context, (left, right))

        outer_span, b.span = b.span, term.span
        items = b.prim(CONCAT, params(axis=0), b.prim(EXPAND_DIMS, params(axis=0), unit), xs)
        prefixes = prefix_scan(b, combine, items)
        value = row(b, prefixes, n)
        if term.hint:
            b.name(value, term.hint)
        # the tangents of the context entries (by position), which the body may read
        read = {v.pos: alg.materialise(b, d, tangent_type(v.type, alg)) for v, d in stack
                if d is not ZERO}
        if not read or not alg.carries(value.type):
            stack.append((value, ZERO))
            b.span = outer_span
            return
        state = tangent_type(unit.type, alg)
        before = rows(b, prefixes, Dim(0), n)
        lanes = (before, xs) if xs_dot is ZERO else (before, xs, xs_dot)
        adds = lanewise(b, self._step_tangent(body, context, read, xs_dot is not ZERO),
                        (*context, *read.values()), lanes)
        steps = b.prim(CONCAT, params(axis=0),
                       b.prim(EXPAND_DIMS, params(axis=0), alg.materialise(b, unit_dot, state)), adds)
        suffixes = suffix_scan(b, combine, xs)
        carried = lanewise(b, self._step_tangent(body, context, {}, False, of_acc=True), context,
                           (before, suffixes, rows(b, steps, Dim(0), n)))
        dot = alg.add(b, algebra_sum(b, alg, carried, (0,)), row(b, steps, n))
        b.span = outer_span
        stack.append((value, dot))

    def _step_tangent(self, body: Term, context: tuple[Value, ...], read: dict[int, Value],
                      items_move: bool, *, of_acc: bool = False) -> Term:
        """The tangent of one application a ⊕ x of an associative fold's body, as a
        term for `lanewise`. Without `of_acc` it runs on `context`, the tangents
        `read` (of the context values, by position), a, x and, if `items_move`, ẋ,
        and pushes the tangent for ȧ = 0; with `of_acc` it runs on `context`, a, x,
        ȧ and pushes the tangent for ẋ = 0 and no other tangent."""
        alg = self.algebra
        state = strip_weak(context[-2].type)
        dot_type = tangent_type(state, alg)
        extra = (state, state, dot_type) if of_acc or items_move else (state, state)
        tb = Builder(tuple(v.type for v in context) + tuple(d.type for d in read.values()) + extra)
        m, k = len(context), len(read)
        dots = {pos: tb.arg(m + j) for j, pos in enumerate(read)}
        local: list[Entry] = [(tb.arg(i), dots.get(v.pos, ZERO)) for i, v in enumerate(context)]
        a, x = tb.arg(m + k), tb.arg(m + k + 1)
        moving = tb.arg(m + k + 2) if len(extra) == 3 else ZERO
        local += [(a, moving), (x, ZERO)] if of_acc else [(a, ZERO), (x, moving)]
        Tangents(tb, alg, self.rules).run(body, local)
        return tb.finish(alg.materialise(tb, local[-1][1], dot_type))


def _items_then_tangents(b: Builder, carry: Value) -> Value:
    """(state, tangent) of a tuple state, as one tuple: its items, then theirs."""
    state, tangent = b.get(carry, 0), b.get(carry, 1)
    n = len(state.type.items)
    return b.tuple(*(b.get(state, k) for k in range(n)), *(b.get(tangent, k) for k in range(n)))


def _state_and_tangents(b: Builder, flat: Value) -> Value:
    """The inverse of `_items_then_tangents`."""
    n = len(flat.type.items) // 2
    return b.tuple(b.tuple(*(b.get(flat, k) for k in range(n))),
                   b.tuple(*(b.get(flat, n + k) for k in range(n))))


def _full_slices(t: ArrayType) -> tuple:
    """Index items keeping every axis after the leading one."""
    return tuple(("slice", Dim(0), d) for d in t.shape[1:])
