"""The text form of the target IR (`catad show --stage target|opt`).

One binding per line, in the IR's own notation rather than Python's, so that
what the simplifier did can be read off before the printer to NumPy runs:

    fn loss(w: f64[d], b: f64, X: f64[n, d], y: f64[n]) -> f64
      sizes d = w.shape[0], n = X.shape[0]
      t1 = matmul(X, w)
      z = add(t1, b)
      ...
      return t4
"""

from __future__ import annotations

from typing import assert_never

from .target import (Apply, Atom, Bind, Block, Call, Expr, IfElse, Lambda, Lit, LoopE, MakeTuple,
                     Name, Project, TargetFunction, TargetProgram)
from .types import loop_name


def format_target_program(program: TargetProgram) -> str:
    return "\n".join(format_target_function(fn) for fn in program.functions)


def format_target_function(fn: TargetFunction) -> str:
    params = ", ".join(f"{name}: {typ}" for name, typ in fn.params)
    lines = [f"fn {fn.name}({params}) -> {fn.result}"]
    if fn.sizes:
        lines.append("  sizes " + ", ".join(
            f"{s.name} = {fn.params[s.param][0]}.shape[{s.axis}]" for s in fn.sizes))
    _block(fn.body, 1, lines)
    return "\n".join(lines) + "\n"


def _atom(a: Atom) -> str:
    match a:
        case Name(id):
            return id
        case Lit(value):
            return repr(value)
        case _:
            assert_never(a)


def _params(ps: tuple) -> str:
    return "".join(f", {k}={v if not isinstance(v, tuple) else '(' + ', '.join(map(str, v)) + ')'}"
                   for k, v in ps)


def _block(block: Block, depth: int, lines: list[str]) -> None:
    for bind in block.bindings:
        _bind(bind, depth, lines)
    lines.append("  " * depth + "return " + _atom(block.result))


def _bind(bind: Bind, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    expr: Expr = bind.expr
    match expr:
        case Name() | Lit():
            lines.append(f"{pad}{bind.name} = {_atom(expr)}")
        case Call(prim, ps, args):
            lines.append(f"{pad}{bind.name} = {prim.name}({', '.join(map(_atom, args))}{_params(ps)})")
        case MakeTuple(items):
            lines.append(f"{pad}{bind.name} = ({', '.join(map(_atom, items))}{',' if len(items) == 1 else ''})")
        case Project(t, k):
            lines.append(f"{pad}{bind.name} = {_atom(t)}.{k}")
        case IfElse(cond, then, orelse):
            lines.append(f"{pad}{bind.name} = if {_atom(cond)}:")
            _block(then, depth + 1, lines)
            lines.append(f"{pad}else:")
            _block(orelse, depth + 1, lines)
        case LoopE(init, xs, acc, x, body, stacked):
            kind = loop_name(stacked)
            lines.append(f"{pad}{bind.name} = {kind} {acc} = {_atom(init)}, {x} in {_atom(xs)}:")
            _block(body, depth + 1, lines)
        case Lambda(params, body):
            lines.append(f"{pad}{bind.name} = lambda {', '.join(params)}:")
            _block(body, depth + 1, lines)
        case Apply(fn, args):
            lines.append(f"{pad}{bind.name} = {_atom(fn)}({', '.join(map(_atom, args))})")
        case _:
            assert_never(expr)
