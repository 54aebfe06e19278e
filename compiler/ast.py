"""The surface syntax tree, as the parser builds it. Every node keeps its `Span`.

    program  ::= (fn | derived)*
    fn       ::= Function(name, params: Param*, result: TypeExpr, body: Block)
    derived  ::= DerivedFunction(name, call: Call)       fn g = grad(f, wrt = (a, b));
    param    ::= Param(name, type: TypeExpr)
    type     ::= ScalarTypeExpr(dtype)                       f64
               | ArrayTypeExpr(dtype, dims: DimExpr*)          f64[n, 3]
               | TupleTypeExpr(items: type*)                 (f64, i64[n])
    dim      ::= DimExpr(text-free tree of Expr: Name | IntLit | BinOp(+,-,*))
    block    ::= Block(lets: Let*, result: expr)             { let ...; expr }
    let      ::= Let(target: Pattern, value: expr)
    pattern  ::= NamePattern(name) | TuplePattern(items: pattern*)
    expr     ::= Name(id) | IntLit(value) | FloatLit(value) | BoolLit(value)
               | BinOp(op, left, right)     op in + - * / // % ** @ < <= > >= == != and or
               | UnaryOp(op, operand)       op in - not
               | Call(func: str, args: expr*, kwargs: Keyword*)   f(x, axis = 1)
               | TupleExpr(items)
               | Index(base, items: IndexItem*)               a[i], A[i, 1:]
               | If(cond, then: Block, orelse: Block)
               | For(index: str, lo: expr, hi: expr, body: Block)   for i in lo..hi { ... }
               | Lambda(params: str*, body: expr)             |x, y| body
               | BlockExpr(block)                            { let ...; expr } as an expression
    index    ::= At(expr) | Slice(lo: expr?, hi: expr?)
    keyword  ::= Keyword(name, value: expr)

`map`, `map2`, `reduce`, `fold`, `scan`, `where` and every library function are
plain `Call`s: the checker gives them meaning. Names are kept exactly as the
user wrote them; the lowering mangles what Python could misread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import NO_SPAN, Span


@dataclass(frozen=True)
class Node:
    span: Span = field(default=NO_SPAN, kw_only=True, compare=False)


# ---- types -------------------------------------------------------------------

@dataclass(frozen=True)
class ScalarTypeExpr(Node):
    dtype: str  # "f64" | "f32" | "i64" | "bool"


@dataclass(frozen=True)
class ArrayTypeExpr(Node):
    dtype: str
    dims: tuple["Expr", ...]  # each a size expression: Name, IntLit, BinOp of + - * on those


@dataclass(frozen=True)
class TupleTypeExpr(Node):
    items: tuple["TypeExpr", ...]


TypeExpr = ScalarTypeExpr | ArrayTypeExpr | TupleTypeExpr


# ---- expressions -------------------------------------------------------------

@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class IntLit(Node):
    value: int


@dataclass(frozen=True)
class FloatLit(Node):
    value: float


@dataclass(frozen=True)
class BoolLit(Node):
    value: bool


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # "-" | "not"
    operand: "Expr"


@dataclass(frozen=True)
class Keyword(Node):
    name: str
    value: "Expr"


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple["Expr", ...]
    kwargs: tuple[Keyword, ...] = ()
    func_span: Span = field(default=NO_SPAN, compare=False)  # where the function's name is


@dataclass(frozen=True)
class TupleExpr(Node):
    items: tuple["Expr", ...]


@dataclass(frozen=True)
class At(Node):
    index: "Expr"


@dataclass(frozen=True)
class Slice(Node):
    lo: "Expr | None"
    hi: "Expr | None"


IndexItem = At | Slice


@dataclass(frozen=True)
class Index(Node):
    base: "Expr"
    items: tuple[IndexItem, ...]


@dataclass(frozen=True)
class NamePattern(Node):
    name: str


@dataclass(frozen=True)
class TuplePattern(Node):
    items: tuple["Pattern", ...]


Pattern = NamePattern | TuplePattern


@dataclass(frozen=True)
class Let(Node):
    target: Pattern
    value: "Expr"


@dataclass(frozen=True)
class Block(Node):
    lets: tuple[Let, ...]
    result: "Expr"


@dataclass(frozen=True)
class BlockExpr(Node):
    block: Block


@dataclass(frozen=True)
class If(Node):
    cond: "Expr"
    then: Block
    orelse: Block


@dataclass(frozen=True)
class For(Node):
    index: str
    lo: "Expr"
    hi: "Expr"
    body: Block


@dataclass(frozen=True)
class Lambda(Node):
    params: tuple[str, ...]
    body: "Expr"


Expr = (Name | IntLit | FloatLit | BoolLit | BinOp | UnaryOp | Call | TupleExpr | Index
        | If | For | Lambda | BlockExpr)


# ---- program -----------------------------------------------------------------

@dataclass(frozen=True)
class Param(Node):
    name: str
    type: TypeExpr


@dataclass(frozen=True)
class Function(Node):
    name: str
    params: tuple[Param, ...]
    result: TypeExpr
    body: Block
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class DerivedFunction(Node):
    """`fn loss_grad = grad(loss, wrt = (w, b));` — a function made by a transformation."""

    name: str
    call: Call
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Program(Node):
    functions: tuple[Function | DerivedFunction, ...]
