"""User-declared derivative rules: `custom_vjp` and `custom_jvp`.

    fn ste(x: f64[n]) -> f64[n] { where(x > 0.0, 1.0, -1.0) }
    fn ste_vjp = custom_vjp(ste, |x, y_bar| y_bar);              # R[ste](x, w) = w
    fn my_exp_jvp = custom_jvp(my_exp, |x, x_dot| x_dot * my_exp(x));

The checker makes each rule an ordinary function named after the declaration
(a vjp rule takes f's parameters and the result's cotangent and returns the
cotangents of f's real parameters, a tuple when there are several; a jvp rule
takes f's parameters and one tangent per real parameter and returns the
result's tangent) and records `(f, kind, rule)` in `TProgram.rules`.
`to_unary` marks every call of f with `Custom(f, n, body)`. Forward and
reverse mode ask `CustomRules` for the derivative of a marked call. One rule
serves both modes, by the laws of reverse derivative categories (Cockett et
al., 2019; REFERENCES.md §3):

    vjp rule R[f](x, w)   reverse   R[f], inlined
                          forward   D[f](x, v) = π_w R[R[f]]((x, 0), v): the vjp of
                                    the rule with respect to w, at w = 0, seeded with v
    jvp rule D[f](x, v)   forward   D[f], inlined
                          reverse   R[f](x, w) = π_v R[D[f]]((x, 0), w)

The derived rules assume what the laws say of a derivative: R[f](x, w) is
linear in w and D[f](x, v) linear in v. While the reverse rule of f is being
made from its jvp rule, calls of f inside that rule are differentiated
through f's body (they only feed the cotangent of x, which is discarded),
so a rule may call its own function without an endless regress.

Rules are over the reals: derivatives over Z2 differentiate f's body. A
marked call keeps its marker in the code forward and reverse mode emit for
values, so the rule also defines every higher derivative.

A call inside a comprehension on values that vary with the index reaches
forward and reverse mode batched: vectorisation made it once for all lanes
and recorded how its arguments are batched (`unary.Lanes`). Its derivative is
the rule applied lane by lane: the rule's code (or the vjp of it, as above),
run through `vectorise.vectorise_lanes` with its arguments batched as the
call's were, tangents as their primals, a zero tangent or cotangent made for
one lane and shared by all. The cotangent of an argument that is the same in
several lanes is the sum of theirs (`Emitter.fit`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .algebra import REALS, ZERO, Algebra, Deriv
from .forward import tangent_type
from .reverse import vjp_function
from .types import Dim, TupleType, Type, substitute_type
from .unary import (Custom, Drop, Get, Lanes, Level, UFunction, Var, seq, shift,
                    substitute_dims)
from .unary_builder import Builder, Value
from .unary_check import check_term
from .vectorise import vectorise_lanes

KINDS = ("jvp", "vjp")


@dataclass(frozen=True)
class _Rule:
    kind: str              # "jvp" | "vjp"
    function: UFunction    # f
    rule: UFunction        # the user's rule, an ordinary function
    real: tuple[int, ...]  # f's parameters that have tangents and cotangents


class CustomRules:
    """The derivative rules of a program, as forward and reverse mode use them."""

    def __init__(self, rules: Iterable[tuple[str, str, str]], functions: Mapping[str, UFunction]):
        """`rules`: (function, kind, rule function) as in `UProgram.rules`; `functions`:
        every function by name, in the form the transformations run on (vectorised).
        `functions` may grow after (the front end makes functions in dependency
        order): a rule is used once both its function and its rule function are there."""
        self._pending = list(rules)
        self._functions = functions
        self._known: dict[str, _Rule] = {}
        self._derived: dict[str, UFunction] = {}  # f -> the vjp of its rule
        self._deriving: list[str] = []            # jvp rules whose reverse is being made

    @property
    def _rules(self) -> dict[str, _Rule]:
        """The rules whose functions are made, by the name of the function."""
        if self._pending:
            waiting = []
            for name, kind, rule in self._pending:
                assert kind in KINDS, kind
                if name in self._functions and rule in self._functions:
                    f = self._functions[name]
                    real = tuple(i for i, (_, t) in enumerate(f.params) if REALS.carries(t))
                    self._known[name] = _Rule(kind, f, self._functions[rule], real)
                else:
                    waiting.append((name, kind, rule))
            self._pending = waiting
        return self._known

    def applies(self, name: str, algebra: Algebra) -> bool:
        """Whether a marked call of `name` takes its derivative from a rule."""
        return algebra is REALS and name in self._rules and name not in self._deriving

    def marked(self, fn: UFunction) -> UFunction:
        """`fn` with its body marked as a call of `fn`, if it has a rule: so that
        differentiating f itself uses its rule."""
        if fn.name not in self._rules:
            return fn
        n = len(fn.params)
        call = Custom(fn.name, n, shift(fn.body, n), span=fn.span)
        return dataclasses.replace(fn, body=seq(*(Var(i) for i in range(n)), call, Drop(1, n)))

    def call(self, b: Builder, term: Custom, args: tuple[Value, ...], height: int) -> Value:
        """The marked call `term`, whose arguments were at `height`.., made again on `args`."""
        body = shift(term.body, -height)
        result = check_term(body, tuple(a.type for a in args))[-1]
        return b.custom(term.name, args, body, result, hint=term.hint, span=term.span,
                        lanes=term.lanes)

    def tangent(self, b: Builder, term: Custom, primals: tuple[Value, ...],
                tangents: tuple[Deriv, ...], out: Value) -> Value:
        """D[f](primals, tangents): the tangent of the marked call `term` of f, whose
        value is `out`."""
        r = self._rules[term.name]
        site = _Site(b, r, primals, term.lanes)
        dots = [site.tangent(i, tangents[i]) for i in r.real]
        result = (out.type, site.depth)
        if r.kind == "jvp":
            return site.apply(r.rule, (*site.args, *dots), result)
        w = REALS.zeros(b, tangent_type(site.lane_type(r.function.result), REALS))
        v = dots[0] if len(dots) == 1 else (b.tuple(*(d for d, _ in dots)),
                                            tuple(level for _, level in dots))
        return site.apply(self._vjp_of_rule(r), (*site.args, (w, 0), v), result, pick=1)

    def cotangents(self, b: Builder, term: Custom, primals: tuple[Value, ...], out: Value,
                   cotangent: Deriv) -> tuple[Deriv, ...]:
        """R[f](primals, cotangent): the cotangents of the arguments of the marked call
        `term` of f, whose value is `out` (ZERO for those that are not real)."""
        r = self._rules[term.name]
        site = _Site(b, r, primals, term.lanes)
        w = (REALS.materialise(b, cotangent, tangent_type(out.type, REALS)), site.depth)
        if r.kind == "vjp":
            bars = site.apply(r.rule, (*site.args, w), site.cotangents())
        else:
            zeros = [site.tangent(i, ZERO) for i in r.real]
            bars = site.apply(self._vjp_of_rule(r), (*site.args, *zeros, w), site.cotangents(),
                              pick=1)
        items = (bars,) if len(r.real) == 1 else REALS.split(b, bars)
        out_bars: list[Deriv] = [ZERO] * len(primals)
        for i, bar in zip(r.real, items):
            out_bars[i] = bar
        return tuple(out_bars)

    def _vjp_of_rule(self, r: _Rule) -> UFunction:
        """The rule's vjp with respect to its cotangent (vjp rule) or its tangents (jvp
        rule): `(f's params, w or tangents, out_bar) -> (value, their cotangents)`."""
        name = r.function.name
        if name in self._derived:
            return self._derived[name]
        n = len(r.function.params)
        outermost = not self._deriving
        if r.kind == "vjp":
            made = vjp_function(r.rule, (n,), f"{r.rule.name}_jvp", cotangent_param=True,
                                rules=self)
        else:
            self._deriving.append(name)
            try:
                made = vjp_function(r.rule, tuple(range(n, n + len(r.real))),
                                    f"{r.rule.name}_vjp", cotangent_param=True, rules=self)
            finally:
                self._deriving.pop()
        if outermost:  # one made inside another's derivation may differ: not kept
            self._derived[name] = made
        return made


Stored = tuple[Value, Level]
"""A value and its batch axes (see `Lanes`): 0 for one lane's value."""


class _Site:
    """A marked call of f whose derivative a rule gives: its arguments, f's size
    variables in the caller's terms, and its `Lanes` when it is made lane by lane."""

    def __init__(self, b: Builder, r: _Rule, primals: tuple[Value, ...], lanes: Lanes | None):
        self.b, self.r, self.primals, self.lanes = b, r, primals, lanes
        levels: tuple[Level, ...] = lanes.levels if lanes else (0,) * len(primals)
        self.args: tuple[Stored, ...] = tuple(zip(primals, levels))
        self.depth = lanes.depth if lanes else 0  # the batch axes of the call's value
        # f's size variables, read off the lanes of the arguments (past their batch axes)
        self.subst: dict[str, Dim] = {
            s.name: primals[s.param].type.shape[_array_level(levels[s.param]) + s.axis]
            for s in r.function.sizes}

    def lane_type(self, t: Type) -> Type:
        """A type of f's signature in the caller's sizes: the type of one lane's value."""
        return substitute_type(t, self.subst)

    def tangent(self, i: int, d: Deriv) -> Stored:
        """The tangent `d` of argument i as one value: a zero is one lane's zero."""
        primal, level = self.args[i]
        if d is ZERO or not level:
            t = tangent_type(self.lane_type(self.r.function.params[i][1]), REALS)
            return REALS.materialise(self.b, d, t), 0
        return REALS.materialise(self.b, d, tangent_type(primal.type, REALS)), level

    def cotangents(self) -> tuple[Type, Level]:
        """How the cotangents of f's real parameters are stored: as the arguments are."""
        items = [(tangent_type(self.args[i][0].type, REALS), self.args[i][1]) for i in self.r.real]
        if len(items) == 1:
            return items[0]
        return TupleType(tuple(t for t, _ in items)), tuple(level for _, level in items)

    def apply(self, fn: UFunction, args: tuple[Stored, ...], result: tuple[Type, Level],
              pick: int | None = None) -> Value:
        """`fn` (its item `pick` when it returns a tuple) applied to `args`, inline: once,
        or lane by lane when the call has `Lanes`, its result stored as `result` says."""
        body = substitute_dims(fn.body, self.subst)
        values = tuple(v for v, _ in args)
        if self.lanes is None:
            made = self.b.inline(body, values, substitute_type(fn.result, self.subst))
            return made if pick is None else self.b.get(made, pick)
        if pick is not None:
            body = seq(body, Get(pick), Drop(1, 1))
        lanes = vectorise_lanes(body, tuple((v.type, level) for v, level in args), result,
                                self.lanes.masked)
        return self.b.inline(lanes, values, result[0])


def _array_level(level: Level) -> int:
    assert isinstance(level, int), "a size variable is read off an array parameter"
    return level
