"""The target IR: a small functional language of whole-array operations.

UNF is point-free; the target IR names every value again, so that it can be
simplified and printed as Python. It is in A-normal form: arguments are
atoms, every intermediate has a name, and a block is a list of bindings
followed by its result — SSA that reads like the Python it becomes.

    atom    ::= Name(id) | Lit(value)                 value: bool | int | float
    expr    ::= atom
              | Call(prim, params, args: atom*)       a whole-array primitive
              | MakeTuple(items: atom*)
              | Project(tuple: atom, k)
              | IfElse(cond: atom, then: block, orelse: block)
              | LoopE(init, xs: atom, acc, x: str, body: block, stacked)
                                                      fold (stacked=False) or scan
              | Lambda(params: str*, body: block)     continuations of reverse mode;
              | Apply(fn: atom, args: atom*)          simplification removes them
    block   ::= Block(bindings: Bind*, result: atom)
    bind    ::= Bind(name, expr, span)                names are unique in a function

`TargetFunction` adds the parameters, their types, the size variables and
where they are read from; `TargetProgram` is an ordered list of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import NO_SPAN, Span
from .primitives import Params, Primitive
from .typed import SizeBinding
from .types import Type


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Lit:
    value: bool | int | float


Atom = Name | Lit


@dataclass(frozen=True)
class Call:
    prim: Primitive
    params: Params
    args: tuple[Atom, ...]


@dataclass(frozen=True)
class MakeTuple:
    items: tuple[Atom, ...]


@dataclass(frozen=True)
class Project:
    tuple: Atom
    k: int


@dataclass(frozen=True)
class IfElse:
    cond: Atom
    then: "Block"
    orelse: "Block"


@dataclass(frozen=True)
class LoopE:
    init: Atom
    xs: Atom
    acc: str
    x: str
    body: "Block"
    stacked: bool
    names: tuple[str | None, ...] = field(default=(), compare=False)
    """What the code printed calls each item of a tuple state, where something
    names it (`unary.LoopNames.items`): for the printer, no meaning."""


@dataclass(frozen=True)
class Lambda:
    params: tuple[str, ...]
    body: "Block"


@dataclass(frozen=True)
class Apply:
    fn: Atom
    args: tuple[Atom, ...]


Expr = Name | Lit | Call | MakeTuple | Project | IfElse | LoopE | Lambda | Apply


@dataclass(frozen=True)
class Bind:
    name: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Block:
    bindings: tuple[Bind, ...]
    result: Atom


def inner_blocks(expr: Expr) -> tuple[Block, ...]:
    """The blocks an expression holds: an `if`'s branches, a loop's or a lambda's body."""
    match expr:
        case IfElse(_, then, orelse):
            return then, orelse
        case LoopE(body=body) | Lambda(body=body):
            return (body,)
    return ()


def definitions(block: Block) -> dict[str, Expr]:
    """The expression bound to each name in `block` and the blocks in it."""
    found: dict[str, Expr] = {}

    def walk(b: Block) -> None:
        for bind in b.bindings:
            found[bind.name] = bind.expr
            for inner in inner_blocks(bind.expr):
                walk(inner)
    walk(block)
    return found


def with_inner_blocks(bind: Bind, rewrite: Callable[[Block, bool], Block], in_loop: bool) -> Bind:
    """`bind` with each block it holds rewritten by `rewrite(block, in_loop)`: a
    loop's body with `in_loop` true, an `if`'s branches and a lambda's body with
    `in_loop` as it is (the passes that rewrite loop bodies alone)."""
    match bind.expr:
        case LoopE(body=body) as loop:
            return dataclasses.replace(bind, expr=dataclasses.replace(loop, body=rewrite(body, True)))
        case IfElse(cond, then, orelse):
            return dataclasses.replace(bind, expr=IfElse(cond, rewrite(then, in_loop), rewrite(orelse, in_loop)))
        case Lambda(ps, body):
            return dataclasses.replace(bind, expr=Lambda(ps, rewrite(body, in_loop)))
    return bind


@dataclass(frozen=True)
class TargetFunction:
    name: str
    params: tuple[tuple[str, Type], ...]  # (python-safe name, type)
    source_params: tuple[str, ...]        # the names as the user wrote them
    result: Type
    sizes: tuple[SizeBinding, ...]
    body: Block
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class TargetProgram:
    functions: tuple[TargetFunction, ...]
