"""The AST printed back as catad source, in one canonical style.

    format_program(program) -> str      every item, a blank line between two
    format_expr(expr) -> str            one expression (blocks over several lines)

Style: four-space indents; spaces around binary operators, `=` of keyword
arguments and after commas; `-x` and `not x`; a block on one line,
`{ result }`, when it has no `let`s and its result fits on one line, and
over several lines otherwise (function bodies always are); `else { if ... }`
is written `else if ...`, which parses to the same tree.

Parentheses appear only where the precedence of grammar/catad.lark needs
them. Its levels, loosest first, are the `_LEVEL` table below: a binary
operator's operands are printed at its own level on the side it associates
to and one level tighter on the other, comparisons (non-associative) take
sums on both sides, `**` takes a postfix expression on its left and a
negation on its right. Comments and the original layout are not kept; for
any tree the parser can produce, `parse(format_program(tree)) == tree`
(spans aside). Trees it cannot produce (a negative literal, a one-item
tuple, a non-finite float) print as their nearest source or raise ValueError.
"""

from __future__ import annotations

import math
from typing import assert_never

from . import ast

INDENT = "    "

# Binding levels, loosest first (grammar/catad.lark, `?expr` down to `?atom`).
_LAMBDA, _OR, _XOR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _NEGATION, _POWER, _POSTFIX, _ATOM = (
    range(12))

_LEVEL: dict[str, int] = {
    "or": _OR, "xor": _XOR, "and": _AND,
    "<": _COMPARE, "<=": _COMPARE, ">": _COMPARE, ">=": _COMPARE, "==": _COMPARE, "!=": _COMPARE,
    "+": _SUM, "-": _SUM,
    "*": _PRODUCT, "/": _PRODUCT, "//": _PRODUCT, "%": _PRODUCT, "@": _PRODUCT,
    "**": _POWER,
}


def format_program(program: ast.Program) -> str:
    """The source of `program`: its items in order, separated by blank lines."""
    return "\n\n".join(_item(item) for item in program.functions) + "\n"


def format_expr(expr: ast.Expr) -> str:
    """The source of one expression, at the top level (no outer parentheses)."""
    return _expr(expr, _LAMBDA, "")


def format_type(texpr: ast.TypeExpr) -> str:
    """`f64`, `f64[n, 3]`, `(f64, i64[n])`."""
    match texpr:
        case ast.ScalarTypeExpr(dtype=dtype):
            return dtype
        case ast.ArrayTypeExpr(dtype=dtype, dims=dims):
            return f"{dtype}[{', '.join(format_expr(d) for d in dims)}]"
        case ast.TupleTypeExpr(items=items):
            return f"({', '.join(format_type(t) for t in items)})"
        case _:
            assert_never(texpr)


# ---- items -------------------------------------------------------------------

def _item(item: ast.Function | ast.DerivedFunction) -> str:
    match item:
        case ast.Function(name=name, params=params, result=result, body=body):
            signature = ", ".join(f"{p.name}: {format_type(p.type)}" for p in params)
            body_text = _block(body, "", inline=False)
            return f"fn {name}({signature}) -> {format_type(result)} {body_text}"
        case ast.DerivedFunction(name=name, call=call):
            return f"fn {name} = {_expr(call, _LAMBDA, '')};"
        case _:
            assert_never(item)


def _block(block: ast.Block, indent: str, *, inline: bool = True) -> str:
    """`{ ... }` opened on the current line; `indent` is that line's indentation."""
    inner = indent + INDENT
    result = _expr(block.result, _LAMBDA, inner)
    if inline and not block.lets and "\n" not in result:
        return f"{{ {result} }}"
    lines = [f"{inner}let {_pattern(let.target)} = {_expr(let.value, _LAMBDA, inner)};"
             for let in block.lets]
    lines.append(inner + result)
    return "{\n" + "\n".join(lines) + "\n" + indent + "}"


def _pattern(pattern: ast.Pattern) -> str:
    match pattern:
        case ast.NamePattern(name=name):
            return name
        case ast.TuplePattern(items=items):
            return f"({', '.join(_pattern(p) for p in items)})"
        case _:
            assert_never(pattern)


# ---- expressions -------------------------------------------------------------

def _expr(e: ast.Expr, level: int, indent: str) -> str:
    """`e` in a position that needs binding `level` or tighter, parenthesised if looser."""
    own, text = _bare(e, indent)
    return text if own >= level else f"({text})"


def _bare(e: ast.Expr, indent: str) -> tuple[int, str]:
    """The level of `e` and its text without outer parentheses."""
    match e:
        case ast.Name(id=name):
            return _ATOM, name
        case ast.IntLit(value=value):
            return (_ATOM, str(value)) if value >= 0 else (_NEGATION, f"-{-value}")
        case ast.FloatLit(value=value):
            return _float(value)
        case ast.BoolLit(value=value):
            return _ATOM, "true" if value else "false"
        case ast.BinOp(op=op, left=left, right=right):
            return _binop(op, left, right, indent)
        case ast.UnaryOp(op="-", operand=operand):
            return _NEGATION, "-" + _expr(operand, _NEGATION, indent)
        case ast.UnaryOp(op="not", operand=operand):
            return _NOT, "not " + _expr(operand, _NOT, indent)
        case ast.UnaryOp(op=op):
            raise ValueError(f"no unary operator {op!r} in catad")
        case ast.Call(func=func, args=args, kwargs=kwargs):
            items = [_expr(a, _LAMBDA, indent) for a in args]
            items += [f"{k.name} = {_expr(k.value, _LAMBDA, indent)}" for k in kwargs]
            return _ATOM, f"{func}({', '.join(items)})"
        case ast.TupleExpr(items=items):
            if len(items) < 2:
                raise ValueError(f"catad has no tuples of {len(items)} items")
            return _ATOM, f"({', '.join(_expr(x, _LAMBDA, indent) for x in items)})"
        case ast.Index(base=base, items=items):
            parts = ", ".join(_index_item(item, indent) for item in items)
            return _POSTFIX, f"{_expr(base, _POSTFIX, indent)}[{parts}]"
        case ast.If():
            return _ATOM, _if(e, indent)
        case ast.For(index=index, lo=lo, hi=hi, body=body):
            bounds = f"{_expr(lo, _LAMBDA, indent)}..{_expr(hi, _LAMBDA, indent)}"
            return _ATOM, f"for {index} in {bounds} {_block(body, indent)}"
        case ast.Lambda(params=params, body=body):
            return _LAMBDA, f"|{', '.join(params)}| {_expr(body, _LAMBDA, indent)}"
        case ast.BlockExpr(block=block):
            return _ATOM, _block(block, indent)
        case _:
            assert_never(e)


def _float(value: float) -> tuple[int, str]:
    if not math.isfinite(value):
        raise ValueError(f"catad has no literal for {value}")
    text = repr(abs(value))  # shortest round-trip form: 1.0, 0.001, 1e-05, 2.5e+16
    return (_ATOM, text) if math.copysign(1.0, value) > 0 else (_NEGATION, "-" + text)


def _binop(op: str, left: ast.Expr, right: ast.Expr, indent: str) -> tuple[int, str]:
    level = _LEVEL.get(op)
    if level is None:
        raise ValueError(f"no binary operator {op!r} in catad")
    if level == _COMPARE:  # non-associative: sums on both sides
        sides = (_SUM, _SUM)
    elif level == _POWER:  # right-associative: postfix ** negation
        sides = (_POSTFIX, _NEGATION)
    else:  # left-associative: the right operand binds one level tighter
        sides = (level, level + 1)
    return level, f"{_expr(left, sides[0], indent)} {op} {_expr(right, sides[1], indent)}"


def _index_item(item: ast.IndexItem, indent: str) -> str:
    match item:
        case ast.At(index=index):
            return _expr(index, _LAMBDA, indent)
        case ast.Slice(lo=lo, hi=hi):
            lo_text = "" if lo is None else _expr(lo, _LAMBDA, indent)
            hi_text = "" if hi is None else _expr(hi, _LAMBDA, indent)
            return f"{lo_text}:{hi_text}"
        case _:
            assert_never(item)


def _if(e: ast.If, indent: str) -> str:
    head = f"if {_expr(e.cond, _LAMBDA, indent)} {_block(e.then, indent)} else "
    orelse = e.orelse
    if not orelse.lets and isinstance(orelse.result, ast.If):
        return head + _if(orelse.result, indent)
    return head + _block(orelse, indent)
