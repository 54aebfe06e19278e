"""Typed core -> unary form (UNF), after Huot & Shaikhha's translation.

A term is translated against an `Env`: the absolute stack position
(0 = bottom) of every visible name and the current stack height. The
invariant is the paper's lemma: if `Γ ⊢ e : B` then `Γ ⊢ UNF(e) : Γ, B`.
Because `Var` indices count from the bottom, the paper's shift `~e` is just
translating `e` one entry higher. Writing `h` for the height and `e↑k` for
`e` translated at height `h + k`:

    x                        Var(position of x)
    literal                  Prim(const)
    size expression          Prim(size)
    p(a1..an)                a1 ; a2↑1 ; .. ; an↑(n-1) ; Prim(p, n) ; Drop(1, n)
    (a1..an)                 a1 ; .. ; an↑(n-1) ; Tuple(n)
    t.k                      t ; Get(k) ; Drop(1, 1)
    let x = v; b             v ; b↑1 (x at h) ; Drop(1, 1)
    let (x0..xm-1) = v; b    v ; Get(0) ; (Var(h) ; Get(k) ; Drop(1, 1)) for k >= 1 ;
                             b↑(m+1) (xk at h+1+k) ; Drop(1, m + 1)
    if c {a} else {b}        c ; If(a↑1, b↑1) ; Drop(1, 1)
    for i in lo..hi {b}      Build(lo, hi, b↑1 (i at h))
    map(|x1..xn| b, a1..an)  a1 ; .. ; an↑(n-1) ; Map(n, b↑2n (xj at h+n+j)) ; Drop(1, n)
    reduce(|a, x| b, u, xs)  xs ; u↑1 ; Reduce(b↑4 (a at h+2, x at h+3)) ; Drop(1, 2)
    fold/scan(|a, x| b, s, xs)
                             s ; xs↑1 ; Loop(b↑4 (a at h+2, x at h+3)) ; Drop(1, 2)
    f(a1..an)                a1 ; .. ; an↑(n-1) ; body of f↑n (its params at h..h+n-1,
                             its size variables substituted) ; Drop(1, n)
    f(a1..an), f with a      a1 ; .. ; an↑(n-1) ; Custom(f, n, body of f↑n) ; Drop(1, n)
    derivative rule
    g(a1..an), g a derived   a1 ; .. ; an↑(n-1) ; g's UNF body (made by derive, vectorised)
    function                 shifted up h entries, its size variables substituted ; Drop(1, n)

Calls are inlined; a call of a function with a derivative rule is marked with
`Custom`, so that forward and reverse mode can use the rule; a derived function
is inlined from its UNF, which must be made first (compiler/pipeline.py).
Every `Drop` keeps exactly the top entry, so the value a term leaves is pushed
by its last instruction that is not a `Drop`: that instruction gets the name the source
gives the value as its `hint`: a let's name, or the callee's parameter name
for a call argument (never a name the checker made up, such as `%t1`). Every
instruction carries the span of the typed node it came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import assert_never

from .errors import Span
from .primitives import CONST, SIZE, Params, params
from .primitives import substitute_dims as substitute_param_dims
from .typed import (TCall, TConst, TExpr, TFor, TFunction, TGet, TIf, TLambda, TLet, TLoop, TMap,
                    TPrim, TProgram, TReduce, TSize, TTuple, TVar)
from .types import ArrayType, Dim, Type
from .unary import (Build, Custom, Drop, Get, If, Loop, LoopNames, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, UProgram, Var, seq, shift, substitute_dims)


@dataclass(frozen=True)
class Env:
    """What a term is translated against: where each name lives on the stack."""

    program: TProgram                 # for the callees of calls
    positions: dict[str, int]         # visible name -> absolute stack position
    height: int                       # number of entries on the stack
    subst: dict[str, Dim] = dataclasses.field(default_factory=dict)  # size variables -> caller's
    calls: tuple[str, ...] = ()       # functions being inlined, outermost first
    derived: Mapping[str, UFunction] = dataclasses.field(default_factory=dict)
    # derived functions by name, as derive made them (vectorised): inlined at calls

    def push(self, count: int = 1) -> "Env":
        """The env after `count` unnamed entries are pushed."""
        return dataclasses.replace(self, height=self.height + count)

    def bind(self, *names: str) -> "Env":
        """The env after one entry per name is pushed, `names[k]` at `height + k`."""
        positions = dict(self.positions)
        for k, name in enumerate(names):
            positions[name] = self.height + k
        return dataclasses.replace(self, positions=positions, height=self.height + len(names))

    def dim(self, d: Dim) -> Dim:
        """`d` in the caller's size variables."""
        return d.substitute(self.subst) if self.subst else d


def to_unary(program: TProgram, derived: Mapping[str, UFunction] | None = None) -> UProgram:
    """Translate every function of `program`; calls are inlined, those of the
    `derived` functions too."""
    return UProgram(tuple(to_unary_function(program, f, derived) for f in program.functions),
                    program.rules)


def to_unary_function(program: TProgram, f: TFunction,
                      derived: Mapping[str, UFunction] | None = None) -> UFunction:
    """Translate `f`, one of `program`'s functions; the functions it calls must be
    in `program`, or made already in `derived`."""
    env = Env(program, {}, 0, calls=(f.name,), derived=derived or {}).bind(
        *(name for name, _ in f.params))
    return UFunction(f.name, f.params, f.result, translate(f.body, env), f.sizes, span=f.span)


def translate(expr: TExpr, env: Env) -> Term:
    """UNF(expr): `Γ ⊢ expr : B` gives `Γ ⊢ term : Γ, B`, Γ the `env.height` entries."""
    span = expr.span
    match expr:
        case TVar(name=name):
            assert name in env.positions, f"unbound name {name!r} reached to_unary"
            return Var(env.positions[name], span=span)
        case TConst(value=value):
            return Prim(CONST, _const_params(value, expr.type), 0, span=span)
        case TSize(dim=dim):
            return Prim(SIZE, params(dim=env.dim(dim)), 0, span=span)
        case TPrim(prim=prim, params=ps, args=args):
            ps = substitute_params(ps, env.subst)
            return seq(*_operands(args, env), Prim(prim, ps, len(args), span=span),
                       *_drop(len(args), span))
        case TTuple(items=items):
            return seq(*_operands(items, env), Tuple(len(items), span=span))
        case TGet(tuple=tup, index=k):
            return seq(translate(tup, env), Get(k, span=span), Drop(1, 1, span=span))
        case TLet(names=(name,), value=value, body=body):
            return seq(_named(translate(value, env), name),
                       translate(body, env.bind(name)), Drop(1, 1, span=span))
        case TLet(names=names, value=value, body=body):
            tuple_at = env.height
            parts = [translate(value, env), Get(0, hint=_source_name(names[0]), span=span)]
            for k in range(1, len(names)):
                parts += [Var(tuple_at, span=span), Get(k, hint=_source_name(names[k]), span=span),
                          Drop(1, 1, span=span)]
            return seq(*parts, translate(body, env.push().bind(*names)),
                       Drop(1, len(names) + 1, span=span))
        case TIf(cond=cond, then=then, orelse=orelse):
            inner = env.push()
            return seq(translate(cond, env),
                       If(translate(then, inner), translate(orelse, inner), span=span),
                       Drop(1, 1, span=span))
        case TFor(index=index, lo=lo, hi=hi, body=body):
            return Build(env.dim(lo), env.dim(hi), translate(body, env.bind(index)), span=span)
        case TMap(fn=fn, arrays=arrays):
            n = len(arrays)
            body = _lambda(fn, env.push(n))
            return seq(*_operands(arrays, env), Map(n, body, span=span), Drop(1, n, span=span))
        case TReduce(fn=fn, unit=unit, array=array):
            body = _lambda(fn, env.push(2))
            return seq(*_operands((array, unit), env), Reduce(body, span=span),
                       Drop(1, 2, span=span))
        case TLoop(fn=fn, init=init, xs=xs, stacked=stacked):
            body = _lambda(fn, env.push(2))
            return seq(*_operands((init, xs), env), Loop(body, stacked, names=LoopNames(fn.params[0][0], fn.params[1][0]), span=span),
                       Drop(1, 2, span=span))
        case TCall():
            return _call(expr, env)
        case _:
            assert_never(expr)


def _call(call: TCall, env: Env) -> Term:
    """The arguments, then the callee's body above them (its size variables the
    caller's), then the arguments dropped. A user function's body is translated
    here; a derived function's is its unary form, as derive made it."""
    derived = env.derived.get(call.function)
    callee = derived or env.program.function(call.function)
    assert call.function not in env.calls, f"recursive call of {call.function!r} reached to_unary"
    assert {b.name for b in callee.sizes} <= {var for var, _ in call.subst}, call.subst
    n = len(call.args)
    args = [_named(term, param_name)
            for term, (param_name, _) in zip(_operands(call.args, env), callee.params)]
    subst = {var: env.dim(d) for var, d in call.subst}
    if derived is not None:
        body = shift(substitute_dims(derived.body, subst), env.height)
    else:
        callee_env = Env(env.program, {}, env.height, subst, env.calls + (call.function,),
                         env.derived)
        body = translate(callee.body, callee_env.bind(*(name for name, _ in callee.params)))
        if any(f == call.function for f, _, _ in env.program.rules):
            body = Custom(call.function, n, body, span=call.span)
    return seq(*args, body, *_drop(n, call.span))


def _lambda(fn: TLambda, env: Env) -> Term:
    """The body of `fn` with its parameters bound to the top entries after `env`'s."""
    return translate(fn.body, env.bind(*(name for name, _ in fn.params)))


def _operands(exprs: tuple[TExpr, ...], env: Env) -> list[Term]:
    """Translate `exprs` left to right, each one entry higher than the previous."""
    return [translate(e, env.push(k)) for k, e in enumerate(exprs)]


def _drop(count: int, span: Span) -> tuple[Term, ...]:
    return (Drop(1, count, span=span),) if count else ()


def _const_params(value: bool | int | float, type_: Type) -> Params:
    """`const`'s params: a literal is weak (the default), a strong constant says so."""
    assert isinstance(type_, ArrayType) and type_.shape == (), f"constant of type {type_}"
    if type_.weak:
        return params(value=value, dtype=type_.dtype)
    return params(value=value, dtype=type_.dtype, weak=False)


def _named(term: Term, name: str) -> Term:
    """`term` with `name` as the hint of the instruction that pushes its value."""
    if isinstance(term, Seq):
        k = max(i for i, t in enumerate(term.terms) if not isinstance(t, Drop))
        return Seq((*term.terms[:k], _named(term.terms[k], name), *term.terms[k + 1:]))
    return dataclasses.replace(term, hint=_source_name(name))


def _source_name(name: str) -> str | None:
    """`name` as a hint; None for the checker's hidden names (`%t1`), not in the source."""
    return name if name.isidentifier() else None


def substitute_params(ps: Params, subst: dict[str, Dim]) -> Params:
    """`ps` with every `Dim` inside (nested in tuples too) substituted by `subst`."""
    return substitute_param_dims(ps, subst) if subst else ps
