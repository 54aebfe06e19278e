"""UNF as text: one instruction per line, bodies indented under their owner.
For `fn f(x: f64[n], c: bool) -> f64[n] { let y = map(x, |a| exp(a)); if c { y }
else { x * 2.0 } }` (the `if` on line 3):

    fn f(x: f64[n], c: bool) -> f64[n]
      sizes: n = x.shape[0]
      [2]  var 0                            # @2:17
      [3]  map/1                            # y @2:13
          [4]  var 3                        # @2:28
          [5]  exp/1                        # @2:24
          [6]  drop 1 keep 1
      [4]  drop 1 keep 1
      [3]  var 1                            # @3:8
      [4]  if                               # @3:5
          then:
            [4]  var 2                      # @3:12
          else:
            [4]  var 0                      # @3:23
            [5]  const 2.0: f64             # @3:27
            [6]  mul/2                      # @3:23
            [7]  drop 2 keep 1
      [5]  drop 1 keep 1
      [4]  drop 1 keep 1

`[k]` is the stack depth before the instruction. A comment shows the hint
(the source name of the value the instruction pushes) and the source place
(not for `drop`, whose place is its owner's).
`If` branches start at the depth of the `if`; a `build` body at one more
(the index), a `map/n` body at n more, `reduce`, `fold` and `scan` bodies at
two more (accumulator, item); a `custom f/n` body (the call of f, whose
derivative is the user's rule) at the depth of the `custom`. The output is
deterministic.
"""

from __future__ import annotations

from typing import Any, assert_never

from .errors import NO_SPAN
from .primitives import CONST, INDEX, SIZE, param
from .types import Dim, DType, TupleType, Type, loop_name
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, UProgram, Var)

_COMMENT_COLUMN = 40
_BODY_INDENT = 4


def format_type(t: Type) -> str:
    """A type as written in the source; a weak (literal) scalar reads `weak f64`."""
    if isinstance(t, TupleType):
        return "(" + ", ".join(format_type(x) for x in t.items) + ")"
    return ("weak " if t.weak else "") + str(t)


def format_type_stack(types: tuple[Type, ...] | list[Type]) -> str:
    """A typed context, bottom first, each entry with its `Var` index: `[0: f64[n], 1: f64]`."""
    return "[" + ", ".join(f"{i}: {format_type(t)}" for i, t in enumerate(types)) + "]"


def format_instruction(term: Term) -> str:
    """The one-line head of an instruction, without its bodies."""
    match term:
        case Var(index=i):
            return f"var {i}"
        case Prim(prim=prim, params=ps) if prim == CONST:
            return f"const {param(ps, 'value')!r}: {param(ps, 'dtype')}"
        case Prim(prim=prim, params=ps) if prim == SIZE:
            return f"size {param(ps, 'dim')}"
        case Prim(prim=prim, params=ps, arity=n) if prim == INDEX:
            return f"index/{n} {_index_spec(param(ps, 'spec'))}"
        case Prim(prim=prim, params=ps, arity=n):
            return " ".join([f"{prim.name}/{n}", *(f"{k}={_param_value(v)}" for k, v in ps)])
        case Seq(terms=terms):
            return f"seq of {len(terms)}"
        case Tuple(n=n):
            return f"tuple/{n}"
        case Get(k=k):
            return f"get {k}"
        case Drop(keep=keep, count=count):
            return f"drop {count} keep {keep}"
        case If():
            return "if"
        case Build(lo=lo, hi=hi):
            return f"build {lo}..{hi}"
        case Map(n=n):
            return f"map/{n}"
        case Reduce():
            return "reduce"
        case Loop(stacked=stacked, associative=associative):
            return "fold associative" if associative else loop_name(stacked)
        case Custom(name=name, n=n):
            return f"custom {name}/{n}"
        case _:
            assert_never(term)


def format_term(term: Term, depth: int = 0) -> str:
    """`term` as lines, its first instruction running on `depth` entries."""
    lines: list[str] = []
    _emit(term, depth, 0, lines)
    return "\n".join(lines)


def format_function(fn: UFunction) -> str:
    params = ", ".join(f"{name}: {format_type(t)}" for name, t in fn.params)
    lines = [f"fn {fn.name}({params}) -> {format_type(fn.result)}"]
    if fn.sizes:
        lines.append("  sizes: " + ", ".join(
            f"{b.name} = {fn.params[b.param][0]}.shape[{b.axis}]" for b in fn.sizes))
    _emit(fn.body, len(fn.params), 2, lines)
    return "\n".join(lines)


def format_program(program: UProgram) -> str:
    return "\n\n".join(format_function(fn) for fn in program.functions) + "\n"


def _emit(term: Term, depth: int, indent: int, lines: list[str]) -> int:
    """Append the lines of `term` to `lines`; return the depth after it."""
    if isinstance(term, Seq):
        if not term.terms:
            lines.append(" " * indent + f"[{depth}]".ljust(4) + " (nothing)")
        for t in term.terms:
            depth = _emit(t, depth, indent, lines)
        return depth
    lines.append(_line(term, depth, indent))
    inner = indent + _BODY_INDENT
    match term:
        case Var() | Prim() | Get():
            return depth + 1
        case Tuple(n=n):
            return depth - n + 1
        case Drop(count=count):
            return depth - count
        case If(then=then, orelse=orelse):
            lines.append(" " * inner + "then:")
            _emit(then, depth, inner + 2, lines)
            lines.append(" " * inner + "else:")
            _emit(orelse, depth, inner + 2, lines)
        case Build(body=body):
            _emit(body, depth + 1, inner, lines)
        case Map(n=n, body=body):
            _emit(body, depth + n, inner, lines)
        case Reduce(body=body) | Loop(body=body):
            _emit(body, depth + 2, inner, lines)
        case Custom(body=body):
            _emit(body, depth, inner, lines)
        case _:
            assert_never(term)
    return depth + 1


def _line(term: Term, depth: int, indent: int) -> str:
    text = " " * indent + f"[{depth}]".ljust(4) + " " + format_instruction(term)
    notes = [n for n in (term.hint, f"@{term.span}" if term.span != NO_SPAN else None) if n]
    if not notes or isinstance(term, Drop):
        return text
    return text.ljust(_COMMENT_COLUMN - 1) + " # " + " ".join(notes)


def _param_value(value: Any) -> str:
    if isinstance(value, tuple):
        inner = ", ".join(_param_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, (Dim, DType)):
        return str(value)
    return repr(value)


def _index_spec(spec: tuple[tuple[Any, ...], ...]) -> str:
    items = ["at" if item[0] == "at" else f"{item[1]}:{item[2]}" for item in spec]
    return "[" + ", ".join(items) + "]"
