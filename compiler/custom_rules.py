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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import assert_never

from .algebra import REALS, ZERO, Algebra, Deriv
from .forward import tangent_type
from .reverse import vjp_function
from .to_unary import substitute_params
from .types import Dim, Type, substitute_type
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var, seq, shift)
from .unary_builder import Builder, Value
from .unary_check import check_term

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
        every function by name, in the form the transformations run on (vectorised)."""
        self._rules: dict[str, _Rule] = {}
        for name, kind, rule in rules:
            assert kind in KINDS, kind
            f = functions[name]
            real = tuple(i for i, (_, t) in enumerate(f.params) if REALS.carries(t))
            self._rules[name] = _Rule(kind, f, functions[rule], real)
        self._derived: dict[str, UFunction] = {}  # f -> the vjp of its rule
        self._deriving: list[str] = []            # jvp rules whose reverse is being made

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
        return b.custom(term.name, args, body, result, hint=term.hint, span=term.span)

    def tangent(self, b: Builder, name: str, primals: tuple[Value, ...],
                tangents: tuple[Deriv, ...]) -> Value:
        """D[f](primals, tangents): the tangent of a call of `name`."""
        r = self._rules[name]
        subst = _sizes(r.function, primals)
        dots = [REALS.materialise(b, tangents[i], self._tangent_type(r, i, subst))
                for i in r.real]
        if r.kind == "jvp":
            return _inline(b, r.rule, (*primals, *dots), subst)
        w = REALS.zeros(b, tangent_type(substitute_type(r.function.result, subst), REALS))
        v = dots[0] if len(dots) == 1 else b.tuple(*dots)
        return b.get(_inline(b, self._vjp_of_rule(r), (*primals, w, v), subst), 1)

    def cotangents(self, b: Builder, name: str, primals: tuple[Value, ...],
                   cotangent: Deriv) -> tuple[Deriv, ...]:
        """R[f](primals, cotangent): the cotangents of the arguments of a call of `name`
        (ZERO for those that are not real)."""
        r = self._rules[name]
        subst = _sizes(r.function, primals)
        w = REALS.materialise(b, cotangent,
                              tangent_type(substitute_type(r.function.result, subst), REALS))
        if r.kind == "vjp":
            bars = _inline(b, r.rule, (*primals, w), subst)
        else:
            zeros = [REALS.zeros(b, self._tangent_type(r, i, subst)) for i in r.real]
            bars = b.get(_inline(b, self._vjp_of_rule(r), (*primals, *zeros, w), subst), 1)
        items = (bars,) if len(r.real) == 1 else REALS.split(b, bars)
        out: list[Deriv] = [ZERO] * len(primals)
        for i, bar in zip(r.real, items):
            out[i] = bar
        return tuple(out)

    def _tangent_type(self, r: _Rule, i: int, subst: dict[str, Dim]) -> Type:
        return tangent_type(substitute_type(r.function.params[i][1], subst), REALS)

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


def _sizes(f: UFunction, args: tuple[Value, ...]) -> dict[str, Dim]:
    """f's size variables in terms of the caller's, read off the arguments' types."""
    return {s.name: args[s.param].type.shape[s.axis] for s in f.sizes}


def _inline(b: Builder, fn: UFunction, args: tuple[Value, ...], subst: dict[str, Dim]) -> Value:
    """`fn` applied to `args` (of the caller, whose sizes `subst` gives fn's), inline."""
    return b.inline(substitute_dims(fn.body, subst), args, substitute_type(fn.result, subst))


def substitute_dims(term: Term, subst: dict[str, Dim]) -> Term:
    """`term` with the size variables in every `Dim` (bounds, primitive params) substituted."""
    if not subst:
        return term
    match term:
        case Prim(params=ps):
            return dataclasses.replace(term, params=substitute_params(ps, subst))
        case Seq(terms=terms):
            return dataclasses.replace(term, terms=tuple(substitute_dims(t, subst) for t in terms))
        case If(then=then, orelse=orelse):
            return dataclasses.replace(term, then=substitute_dims(then, subst),
                                       orelse=substitute_dims(orelse, subst))
        case Build(lo=lo, hi=hi, body=body):
            return dataclasses.replace(term, lo=lo.substitute(subst), hi=hi.substitute(subst),
                                       body=substitute_dims(body, subst))
        case Map(body=body) | Reduce(body=body) | Loop(body=body) | Custom(body=body):
            return dataclasses.replace(term, body=substitute_dims(body, subst))
        case Var() | Tuple() | Get() | Drop():
            return term
        case _:
            assert_never(term)
