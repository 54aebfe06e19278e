"""UNF as a string diagram, written in Graphviz's DOT language.

A UNF term runs on a stack of values; the diagram draws each stack entry as a
wire from the node that made it to the nodes that read it, top to bottom:

    parameter        a blue box at the top: its name over its type
    Var(i)           copy: a black dot on wire i, from which both copies leave
    Prim(p, n)       a yellow box reading the top n wires (numbered when n > 1):
                     the primitive (`+`, `@`, `sum axes=(1,)`) over the value it
                     makes, `z · f64[n]` (its source name, if any, and type);
                     constants and sizes in grey outline boxes
    Tuple(n), Get(k) small boxes `tuple`, `get k`
    Drop(keep, n)    discard: each of the n dropped wires ends, dashed, in a grey dot
    If               a frame holding both branches; a diamond `if` picks the
                     `then` or `else` result by the condition (`?`)
    Build, Map       a frame around the body, with its inputs (the index `i`,
    Reduce, Loop     the items, the accumulator `acc`) drawn inside, and a box
    Custom           under it collecting the body's result; the accumulator of
                     `reduce`, `fold` and `scan` is fed back, dotted
    result           a green box at the bottom

Bodies of `If`, `Build`, ... see the whole enclosing stack, so wires enter
their frames from outside. Each function is one frame, titled with its
signature. Every node carries its kind as its `class` (param, result, prim,
const, copy, discard, tuple, if, bound, collect), which SVG output keeps for
styling. The output is deterministic: node names count up in the order of
the program.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import assert_never

from .primitives import CONST, INDEX, SIZE, param
from .types import I64, Type, loop_name
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, UProgram, Var)
from .unary_check import check_term, element_type
from .unary_print import format_instruction, format_type

# operators read better as their symbols
_SYMBOLS = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "matmul": "@", "neg": "−",
            "pow": "**", "lt": "<", "le": "≤", "gt": ">", "ge": "≥", "eq": "==", "ne": "≠"}

_FONT = "Helvetica"
# nslimit caps dot's placement work at 2 passes per node: small diagrams settle
# well before it, a gradient of a thousand nodes is drawn in seconds, not minutes
_GRAPH_STYLE = (f'fontname="{_FONT}"; fontsize=12; rankdir=TB; nodesep=0.25; ranksep=0.3; '
                'nslimit=2;')
_NODE_STYLE = f'node [fontname="{_FONT}", fontsize=11, margin="0.08,0.03", height=0.3];'
_EDGE_STYLE = f'edge [arrowsize=0.5, color="#404040", fontname="{_FONT}", fontsize=8];'

# node kinds (also the SVG class of each node) and their looks
_STYLES = {
    "param": 'shape=box, style="rounded,filled", fillcolor="#dbe9f6", color="#4a7ab0"',
    "result": 'shape=box, style="rounded,filled", fillcolor="#dcefd8", color="#4f9a45"',
    "prim": 'shape=box, style="rounded,filled", fillcolor="#fff6d8", color="#a08a3c"',
    "const": 'shape=box, style="rounded", color="#a0a0a0", fontcolor="#505050", fontsize=10',
    "tuple": 'shape=box, style="rounded,filled", fillcolor="#eeeeee", color="#909090", fontsize=10',
    "collect": 'shape=box, style="rounded,filled", fillcolor="#f1e3f6", color="#8a5aa0"',
    "bound": 'shape=box, style="rounded,dashed", color="#8a5aa0", fontsize=10',
    "copy": 'shape=point, width=0.09, color="#202020"',
    "discard": 'shape=point, width=0.13, color="#a0a0a0", fillcolor="#ffffff", style=filled',
    "if": 'shape=diamond, style=filled, fillcolor="#f6e0dc", color="#b0584a", fontsize=10, '
          'height=0.4',
}
_DISCARDED = 'style=dashed, color="#a0a0a0", arrowhead=none'
_FRAME = 'style="rounded,dashed"; color="#8a5aa0"; fontcolor="#8a5aa0"; fontsize=10; labeljust=l;'
_BRANCH = 'style="rounded,dotted"; color="#b0584a"; fontcolor="#b0584a"; fontsize=10; labeljust=l;'
_FUNCTION = 'style="rounded"; color="#606060"; fontsize=13; labeljust=l; margin=12;'


@dataclass(frozen=True)
class _Wire:
    """A stack entry: the node it leaves from, and its type."""

    node: str
    type: Type


@dataclass
class _Drawing:
    """DOT statements being written: nodes inside their frames, and the edges, which
    are written after all frames (an edge written inside a frame would pull the
    nodes it names into that frame)."""

    prefix: str
    lines: list[str] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    count: int = 0
    indent: int = 1

    def name(self) -> str:
        self.count += 1
        return f"{self.prefix}_{self.count}"

    def write(self, statement: str) -> None:
        self.lines.append("  " * self.indent + statement)

    def node(self, label: str, kind: str) -> str:
        name = self.name()
        self.write(f'{name} [label={label}, class="{kind}", {_STYLES[kind]}];')
        return name

    def edge(self, wire: _Wire, to: str, attributes: str = "") -> None:
        self.edges.append(f"  {wire.node} -> {to}" + (f" [{attributes}]" if attributes else "") + ";")

    def inputs(self, wires: list[_Wire], to: str) -> None:
        """Edges from `wires` into `to`, numbered by position when there are several."""
        for k, wire in enumerate(wires, start=1):
            self.edge(wire, to, f'headlabel="{k}", labeldistance=1.2' if len(wires) > 1 else "")

    def frame(self, title: str, style: str) -> "_Frame":
        return _Frame(self, title, style)


class _Frame:
    """`with drawing.frame(title, style):` wraps the statements written inside in a cluster."""

    def __init__(self, drawing: _Drawing, title: str, style: str):
        self.drawing, self.title, self.style = drawing, title, style

    def __enter__(self) -> None:
        self.drawing.write(f"subgraph cluster_{self.drawing.name()} {{")
        self.drawing.indent += 1
        self.drawing.write(f"label={_text(self.title)}; {self.style}")

    def __exit__(self, *exc: object) -> None:
        self.drawing.indent -= 1
        self.drawing.write("}")


def program_diagram(program: UProgram) -> str:
    """The DOT text of a diagram of every function of `program`, each in its own frame."""
    lines = ["digraph unf {", f"  {_GRAPH_STYLE}", f"  {_NODE_STYLE}", f"  {_EDGE_STYLE}"]
    for k, fn in enumerate(program.functions):
        lines.extend(_function_lines(fn, f"f{k}"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def function_diagram(fn: UFunction) -> str:
    """The DOT text of a diagram of one function."""
    return program_diagram(UProgram((fn,)))


def _function_lines(fn: UFunction, prefix: str) -> list[str]:
    drawing = _Drawing(prefix)
    params = ", ".join(f"{name}: {format_type(t)}" for name, t in fn.params)
    with drawing.frame(f"fn {fn.name}({params}) -> {format_type(fn.result)}", _FUNCTION):
        stack = [_Wire(drawing.node(_label(name, format_type(t)), "param"), t) for name, t in fn.params]
        if len(stack) > 1:  # parameters side by side, in order
            drawing.write("{rank=same; " + " -> ".join(w.node for w in stack) + " [style=invis]}")
        stack = _draw(fn.body, stack, drawing)
        result = drawing.node(_label("result", format_type(stack[-1].type)), "result")
        drawing.edge(stack[-1], result)
    return drawing.lines + drawing.edges


def _draw(term: Term, stack: list[_Wire], drawing: _Drawing) -> list[_Wire]:
    """Draw `term` run on `stack`; return the stack after it."""
    match term:
        case Seq(terms=terms):
            for t in terms:
                stack = _draw(t, stack, drawing)
            return stack
        case Var(index=i):
            copy = drawing.node('""', "copy")
            drawing.edge(stack[i], copy)
            wire = _Wire(copy, stack[i].type)
            return [*stack[:i], wire, *stack[i + 1:], wire]
        case Prim(arity=n):
            pushed = _pushed(term, stack)
            node = drawing.node(_prim_label(term, pushed), _prim_kind(term))
            drawing.inputs(stack[len(stack) - n:], node)
            return [*stack, _Wire(node, pushed)]
        case Tuple(n=n):
            pushed = _pushed(term, stack)
            node = drawing.node(_label("tuple", _value(term, pushed)), "tuple")
            drawing.inputs(stack[len(stack) - n:], node)
            return [*stack[:len(stack) - n], _Wire(node, pushed)]
        case Get(k=k):
            pushed = _pushed(term, stack)
            node = drawing.node(_label(f"get {k}", _value(term, pushed)), "tuple")
            drawing.edge(stack[-1], node)
            return [*stack, _Wire(node, pushed)]
        case Drop(keep=keep, count=count):
            cut = len(stack) - keep
            for wire in stack[cut - count:cut]:
                drawing.edge(wire, drawing.node('""', "discard"), _DISCARDED)
            return [*stack[:cut - count], *stack[cut:]]
        case If(then=then, orelse=orelse):
            return _draw_if(term, then, orelse, stack, drawing)
        case Build(lo=lo, hi=hi, body=body):
            with drawing.frame(f"build {lo}..{hi}", _FRAME):
                index = _Wire(drawing.node(_label("i", "i64"), "bound"), I64)
                result = _draw(body, [*stack, index], drawing)[-1]
            return _collect(term, f"build {lo}..{hi}", result, stack, drawing)
        case Map(n=n, body=body):
            arrays = stack[len(stack) - n:]
            with drawing.frame(f"map over {n} array{'s' if n > 1 else ''}", _FRAME):
                items = [_item(f"item {k}" if n > 1 else "item", a, drawing)
                         for k, a in enumerate(arrays, start=1)]
                result = _draw(body, [*stack, *items], drawing)[-1]
            return _collect(term, "map", result, stack, drawing)
        case Reduce(body=body):
            return _draw_loop(term, "reduce", body, stack, drawing)
        case Loop(body=body, stacked=stacked):
            return _draw_loop(term, loop_name(stacked), body, stack, drawing)
        case Custom(name=name, body=body):
            with drawing.frame(f"{name}: derivative by the user's rule", _FRAME):
                result = _draw(body, stack, drawing)[-1]
            return _collect(term, f"custom {name}", result, stack, drawing)
        case _:
            assert_never(term)


def _draw_if(term: If, then: Term, orelse: Term, stack: list[_Wire], drawing: _Drawing) -> list[_Wire]:
    results = []
    with drawing.frame("if", _FRAME):
        for title, branch in (("then", then), ("else", orelse)):
            with drawing.frame(title, _BRANCH):
                results.append(_draw(branch, stack, drawing)[-1])
    pushed = _pushed(term, stack)
    pick = drawing.node(_label("if", _value(term, pushed)), "if")
    drawing.edge(stack[-1], pick, 'headlabel="?", labeldistance=1.2')
    drawing.edge(results[0], pick, 'taillabel="then", labeldistance=1.5')
    drawing.edge(results[1], pick, 'taillabel="else", labeldistance=1.5')
    return [*stack, _Wire(pick, pushed)]


def _draw_loop(term: Reduce | Loop, title: str, body: Term, stack: list[_Wire],
               drawing: _Drawing) -> list[_Wire]:
    """reduce (array, unit), fold and scan (init, xs): a step from `acc` and an item
    `x` to the next `acc`, which is fed back."""
    first, second = stack[-2:]
    start, items = (second, first) if isinstance(term, Reduce) else (first, second)
    with drawing.frame(title, _FRAME):
        acc = _Wire(drawing.node(_label("acc", format_type(start.type)), "bound"), start.type)
        drawing.edge(start, acc.node, 'taillabel="start", labeldistance=1.5')
        x = _item("x", items, drawing)
        after = _draw(body, [*stack, acc, x], drawing)[-1]
        drawing.edge(after, acc.node, 'style=dotted, constraint=false, label="next"')
    return _collect(term, title, after, stack, drawing)


def _item(title: str, array: _Wire, drawing: _Drawing) -> _Wire:
    item = element_type(array.type)
    assert item is not None, "items of a scalar"
    node = drawing.node(_label(title, format_type(item)), "bound")
    drawing.edge(array, node)
    return _Wire(node, item)


def _collect(term: Term, title: str, result: _Wire, stack: list[_Wire],
             drawing: _Drawing) -> list[_Wire]:
    """The box under a frame that makes the instruction's value from its body's result."""
    pushed = _pushed(term, stack)
    node = drawing.node(_label(title, _value(term, pushed)), "collect")
    drawing.edge(result, node)
    return [*stack, _Wire(node, pushed)]


def _pushed(term: Term, stack: list[_Wire]) -> Type:
    """The type of the value `term` pushes on `stack`."""
    return check_term(term, [w.type for w in stack])[-1]


def _prim_label(term: Prim, result: Type) -> str:
    if term.prim == CONST:
        return _label(repr(param(term.params, "value")), format_type(result))
    if term.prim == SIZE:
        return _label(f"size {param(term.params, 'dim')}", "i64")
    if term.prim == INDEX:
        return _label(format_instruction(term).replace(f"/{term.arity}", ""), _value(term, result))
    head = format_instruction(term).split(" ", 1)
    name = _SYMBOLS.get(term.prim.name, term.prim.name)
    details = f" {head[1]}" if len(head) > 1 else ""
    return _label(name + details, _value(term, result))


def _prim_kind(term: Prim) -> str:
    return "const" if term.prim in (CONST, SIZE) else "prim"


def _value(term: Term, t: Type) -> str:
    """What a node makes: its source name, if any, and its type."""
    return f"{term.hint} · {format_type(t)}" if term.hint else format_type(t)


def _label(head: str, detail: str) -> str:
    """An HTML-like DOT label: `head` over `detail` in small grey type."""
    return (f"<{html.escape(head)}<br/><font point-size=\"9\" color=\"#606060\">"
            f"{html.escape(detail)}</font>>")


def _text(s: str) -> str:
    """A quoted DOT string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
