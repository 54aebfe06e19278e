"""Unary form (UNF): catad's point-free core IR, after Huot & Shaikhha.

A UNF term has no variables. It runs on a typed *stack* of values, the
context, and every instruction returns its whole input context plus its
result. Writing `Γ = A1..An` for a context (bottom first):

    term ::= Var(i)                     Γ ⊢ Γ, Ai          copy entry i (0 = bottom)
           | Prim(prim, params, n)      Γ, B1..Bn ⊢ Γ, B1..Bn, C
                                        apply prim to the top n entries
           | Seq(terms)                 t1 ; t2 ; ... composition (left to right)
           | Tuple(n)                   Γ, B1..Bn ⊢ Γ, (B1, .., Bn)   consumes n
           | Get(k)                     Γ, (B..) ⊢ Γ, (B..), Bk
           | Drop(keep, count)          Γ1, Γ2, Γ3 ⊢ Γ1, Γ3   |Γ2| = count, |Γ3| = keep
                                        (the paper's proj: forget the middle)
           | If(then, orelse)           Γ, bool ⊢ Γ, bool, C
                                        then, orelse: Γ, bool ⊢ Γ, bool, C
           | Build(lo, hi, body)        Γ ⊢ Γ, C[hi - lo]
                                        body: Γ, i64 ⊢ Γ, i64, C     (i64 = the index)
           | Map(n, body)               Γ, B1[k]..Bn[k] ⊢ Γ, B1[k]..Bn[k], C[k]
                                        body: Γ, B1[k]..Bn[k], B1..Bn ⊢ (same), C
           | Reduce(body)               Γ, B[k], B ⊢ Γ, B[k], B, B     (array, unit; result)
                                        body: Γ, B[k], B, B, B ⊢ (same), B   (acc, x)
           | Loop(body, stacked)        Γ, S, X[T] ⊢ Γ, S, X[T], R     (init, xs; result)
                                        R = S (fold), S stacked over T (scan), or
                                        (stacked: one flag per item of a tuple S)
                                        item by item, stacked or of the last state
                                        body: Γ, S, X[T], S, X ⊢ (same), S   (acc, x)
                                        `associative` (a fold made from a `reduce`,
                                        X = S): the body is associative, so the fold
                                        may be bracketed any way (reverse mode uses
                                        prefix and suffix scans); the meaning is the fold's.
                                        `names`: names for the code printed (`LoopNames`)
           | Custom(name, n, body)      Γ, A1..An ⊢ Γ, A1..An, B
                                        the call of user function `name`, which has a
                                        derivative rule, on the top n entries; its meaning
                                        is body: Γ, A1..An ⊢ (same), B, which reads only
                                        the top n entries of Γ, A1..An (and its own);
                                        `lanes` (after vectorisation): the call is made
                                        once per lane of a comprehension, see `Lanes`

Bodies see the whole enclosing context (closures are free) and leave it
below their result; the instruction keeps only that result. `Var` indices
count from the bottom, so a term keeps its meaning when more entries are
pushed above the ones it reads: the paper's shift `~e` is the identity here.

`Custom` only marks where the derivative comes from a user's rule
(compiler/custom_rules.py): every pass but forward and reverse mode treats it
as its body.

A function is `UFunction(name, params, result, body, sizes)` with
`params ⊢ body : params, result`. The lemma of the paper,
`Γ ⊢ e : B  ⟹  Γ ⊢ UNF(e) : Γ, B`, is what `unary_check` verifies.

`hint` (a source name for the value an instruction pushes) and `span` (the
source it came from) ride along for readable output; they never change
meaning and do not take part in equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import assert_never

from .errors import NO_SPAN, Span
from .primitives import Params, Primitive, substitute_dims as substitute_params
from .typed import SizeBinding
from .types import Dim, Stacking, Type


@dataclass(frozen=True)
class Instr:
    hint: str | None = field(default=None, kw_only=True, compare=False)
    span: Span = field(default=NO_SPAN, kw_only=True, compare=False)


@dataclass(frozen=True)
class Var(Instr):
    index: int


@dataclass(frozen=True)
class Prim(Instr):
    prim: Primitive
    params: Params
    arity: int


@dataclass(frozen=True)
class Seq(Instr):
    terms: tuple["Term", ...]


@dataclass(frozen=True)
class Tuple(Instr):
    n: int


@dataclass(frozen=True)
class Get(Instr):
    k: int


@dataclass(frozen=True)
class Drop(Instr):
    keep: int
    count: int


@dataclass(frozen=True)
class If(Instr):
    then: "Term"
    orelse: "Term"


@dataclass(frozen=True)
class Build(Instr):
    lo: Dim
    hi: Dim
    body: "Term"


@dataclass(frozen=True)
class Map(Instr):
    n: int
    body: "Term"


@dataclass(frozen=True)
class Reduce(Instr):
    body: "Term"


@dataclass(frozen=True)
class LoopNames:
    """What the code printed calls a loop's values, where something names them (None
    where nothing does): its state and item (a lambda's parameters, `|state, x|`),
    and each item of a tuple state (a reverse loop's `state_bar, W_bar`). Names
    have no meaning: loops that differ only in them are equal."""

    state: str | None = None
    x: str | None = None
    items: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Loop(Instr):
    body: "Term"
    stacked: Stacking
    associative: bool = field(default=False, kw_only=True)
    names: LoopNames = field(default=LoopNames(), kw_only=True, compare=False)


Level = int | tuple["Level", ...]
"""How many leading batch axes a value has: an int for an array, one per item of a tuple."""


@dataclass(frozen=True)
class Lanes:
    """A `Custom` call that vectorisation batched: made once per lane of a nest of
    comprehensions, all lanes at once. Each argument is stored as vectorisation
    stores values (compiler/vectorise.py): `levels[i]` leading batch axes (axis j
    for nest depth j + 1, length 1 where the argument is the same along it), then
    the lane's value. The result has `depth` = max(levels) batch axes, at their
    full lengths. The rule applies to each lane; `masked`: the call is in a
    branch that some lanes do not take (their indices may be out of range)."""

    levels: tuple[Level, ...]
    masked: bool = False

    @property
    def depth(self) -> int:
        return max((_deepest(level) for level in self.levels), default=0)


def _deepest(level: Level) -> int:
    return level if isinstance(level, int) else max((_deepest(x) for x in level), default=0)


@dataclass(frozen=True)
class Custom(Instr):
    name: str
    n: int
    body: "Term"
    lanes: Lanes | None = field(default=None, kw_only=True)


Term = Var | Prim | Seq | Tuple | Get | Drop | If | Build | Map | Reduce | Loop | Custom


def seq(*terms: Term) -> Term:
    """Compose terms, flattening nested sequences; `seq(t)` is `t`."""
    flat: list[Term] = []
    for t in terms:
        if isinstance(t, Seq):
            flat.extend(t.terms)
        else:
            flat.append(t)
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))


@dataclass(frozen=True)
class UFunction:
    name: str
    params: tuple[tuple[str, Type], ...]
    result: Type
    body: Term
    sizes: tuple[SizeBinding, ...]
    span: Span = field(default=NO_SPAN, kw_only=True, compare=False)


@dataclass(frozen=True)
class UProgram:
    functions: tuple[UFunction, ...]
    rules: tuple[tuple[str, str, str], ...] = ()  # (function, "jvp" | "vjp", rule function)

    def function(self, name: str) -> UFunction:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)


def shift(term: Term, offset: int) -> Term:
    """`term` moved `offset` entries up the stack: run it above `offset` more
    entries than it was made for (every Var reads `offset` higher). Used to
    inline a function's body at any height."""
    if offset == 0:
        return term
    match term:
        case Var(i):
            return Var(i + offset, hint=term.hint, span=term.span)
        case Seq(terms):
            return Seq(tuple(shift(t, offset) for t in terms), hint=term.hint, span=term.span)
        case If(then, orelse):
            return If(shift(then, offset), shift(orelse, offset), hint=term.hint, span=term.span)
        case Build(lo, hi, body):
            return Build(lo, hi, shift(body, offset), hint=term.hint, span=term.span)
        case Map(n, body):
            return Map(n, shift(body, offset), hint=term.hint, span=term.span)
        case Reduce(body):
            return Reduce(shift(body, offset), hint=term.hint, span=term.span)
        case Loop(body, stacked):
            return Loop(shift(body, offset), stacked, associative=term.associative,
                        names=term.names, hint=term.hint, span=term.span)
        case Custom(name, n, body):
            return Custom(name, n, shift(body, offset), lanes=term.lanes, hint=term.hint,
                          span=term.span)
        case Prim() | Tuple() | Get() | Drop():
            return term
        case _:
            assert_never(term)


def substitute_dims(term: Term, subst: dict[str, Dim]) -> Term:
    """`term` with the size variables in every `Dim` (bounds, primitive params) substituted."""
    if not subst:
        return term
    match term:
        case Prim(params=ps):
            return replace(term, params=substitute_params(ps, subst))
        case Seq(terms=terms):
            return replace(term, terms=tuple(substitute_dims(t, subst) for t in terms))
        case If(then=then, orelse=orelse):
            return replace(term, then=substitute_dims(then, subst),
                           orelse=substitute_dims(orelse, subst))
        case Build(lo=lo, hi=hi, body=body):
            return replace(term, lo=lo.substitute(subst), hi=hi.substitute(subst),
                           body=substitute_dims(body, subst))
        case Map(body=body) | Reduce(body=body) | Loop(body=body) | Custom(body=body):
            return replace(term, body=substitute_dims(body, subst))
        case Var() | Tuple() | Get() | Drop():
            return term
        case _:
            assert_never(term)
