"""The typed core language: what the checker produces from the surface AST.

Names are resolved, library calls are primitives with normalised params,
every node carries its `Type` and the `Span` it came from. Sugar is gone:
`a - b` is `TPrim(SUB, (), (a, b))`, `outer(a, b)` is a product of expanded
arrays, `x[i, 1:]` is an `index` primitive, a block is nested `TLet`s.

    texpr ::= TVar(name)                                   a let-bound name or parameter
            | TConst(value)                                bool | int | float literal
            | TSize(dim)                                   a size expression as an i64
            | TPrim(prim, params, args: texpr*)
            | TTuple(items: texpr*)
            | TGet(tuple: texpr, index: int)
            | TLet(names: str*, value: texpr, body: texpr) one name binds the value;
                                                           several destructure a tuple
            | TIf(cond: texpr, then: texpr, orelse: texpr) cond: a bool scalar
            | TFor(index: str, lo: Dim, hi: Dim, body)     [body for index in lo..hi-1]
            | TMap(fn: TLambda, arrays: texpr*)            map (1 array), map2 (2), ...
                                                           over the leading axis
            | TReduce(fn: TLambda, unit: texpr, array)     fold an associative fn over the
                                                           leading axis, unit its identity
            | TLoop(fn: TLambda, init, xs, stacked: bool)  fold (stacked=False: the last
                                                           state) or scan (True: all states)
            | TCall(function: str, args: texpr*, subst)    a call of another fn; subst maps
                                                           the callee's size variables
    TLambda(params: (name, type)*, body: texpr)
    TFunction(name, params: (name, type)*, result: type, body, sizes: SizeBinding*)

The result type of a node is `node.type`. `TLet` with several names binds
`names[k]` to item k of the tuple `value`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import NO_SPAN, Span
from .primitives import Params, Primitive
from .types import Dim, Type


@dataclass(frozen=True)
class TNode:
    type: Type
    span: Span = field(default=NO_SPAN, kw_only=True, compare=False)


@dataclass(frozen=True)
class TVar(TNode):
    name: str


@dataclass(frozen=True)
class TConst(TNode):
    value: bool | int | float


@dataclass(frozen=True)
class TSize(TNode):
    dim: Dim


@dataclass(frozen=True)
class TPrim(TNode):
    prim: Primitive
    params: Params
    args: tuple["TExpr", ...]


@dataclass(frozen=True)
class TTuple(TNode):
    items: tuple["TExpr", ...]


@dataclass(frozen=True)
class TGet(TNode):
    tuple: "TExpr"
    index: int


@dataclass(frozen=True)
class TLet(TNode):
    names: tuple[str, ...]
    value: "TExpr"
    body: "TExpr"


@dataclass(frozen=True)
class TIf(TNode):
    cond: "TExpr"
    then: "TExpr"
    orelse: "TExpr"


@dataclass(frozen=True)
class TFor(TNode):
    index: str
    lo: Dim
    hi: Dim
    body: "TExpr"


@dataclass(frozen=True)
class TLambda:
    params: tuple[tuple[str, Type], ...]
    body: "TExpr"
    span: Span = field(default=NO_SPAN, kw_only=True, compare=False)


@dataclass(frozen=True)
class TMap(TNode):
    fn: TLambda
    arrays: tuple["TExpr", ...]


@dataclass(frozen=True)
class TReduce(TNode):
    fn: TLambda
    unit: "TExpr"
    array: "TExpr"


@dataclass(frozen=True)
class TLoop(TNode):
    fn: TLambda
    init: "TExpr"
    xs: "TExpr"
    stacked: bool


@dataclass(frozen=True)
class TCall(TNode):
    function: str
    args: tuple["TExpr", ...]
    subst: tuple[tuple[str, Dim], ...]  # callee size variable -> caller's size


TExpr = TVar | TConst | TSize | TPrim | TTuple | TGet | TLet | TIf | TFor | TMap | TReduce | TLoop | TCall


@dataclass(frozen=True)
class SizeBinding:
    """Size variable `name` is read off `params[param].shape[axis]` at entry."""

    name: str
    param: int
    axis: int


@dataclass(frozen=True)
class TFunction:
    name: str
    params: tuple[tuple[str, Type], ...]
    result: Type
    body: TExpr
    sizes: tuple[SizeBinding, ...]
    span: Span = field(default=NO_SPAN, kw_only=True, compare=False)


@dataclass(frozen=True)
class TProgram:
    functions: tuple[TFunction, ...]  # in source order; callees before callers is not required
    rules: tuple[tuple[str, str, str], ...] = ()
    """User derivative rules, in source order: (function, "jvp" | "vjp", rule function),
    from `fn r = custom_vjp(f, |...| ...);` (the rule function is one of `functions`)."""

    def function(self, name: str) -> TFunction:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)
