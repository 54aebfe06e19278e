"""A readable, indented text form of the syntax trees (`catad show --stage ast|typed`).

Any tree of frozen dataclasses prints as one node per line, its scalar fields
inline and its child nodes indented below:

    Function name='loss'  @2:1
      Param name='w'  @2:10
        ArrayTypeExpr dtype='f64'
      ...

Types, sizes and primitives print in their own notation (`f64[n, d]`, `n - 1`,
`add`); spans print as `@line:col`. Deterministic: field order is declaration order.
"""

from __future__ import annotations

import dataclasses
import enum

from .errors import Span
from .primitives import Primitive
from .types import ArrayType, Dim, TupleType

_INLINE = (str, int, float, bool, type(None), Dim, ArrayType, TupleType, Primitive, enum.Enum)


def format_tree(node: object) -> str:
    """The indented text form of a tree of dataclasses."""
    lines: list[str] = []
    _format(node, 0, lines, label="")
    return "\n".join(lines) + "\n"


def _inline(value: object) -> str:
    if isinstance(value, (Dim, ArrayType, TupleType, Primitive, enum.Enum)):
        return str(value)
    if isinstance(value, tuple) and all(_is_inline(v) for v in value):
        return "(" + ", ".join(_inline(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _is_inline(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_is_inline(v) for v in value)
    return isinstance(value, _INLINE) and not dataclasses.is_dataclass(value)


def _format(node: object, depth: int, lines: list[str], label: str) -> None:
    pad = "  " * depth + (f"{label}: " if label else "")
    if isinstance(node, tuple) and not _is_inline(node):
        if not node:
            lines.append(pad + "()")
        for item in node:
            _format(item, depth, lines, label)
        return
    if not dataclasses.is_dataclass(node):
        lines.append(pad + _inline(node))
        return
    inline: list[str] = []
    children: list[tuple[str, object]] = []
    span = ""
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if isinstance(value, Span):
            if field.name == "span" and value.line:
                span = f"  @{value}"
            continue
        if _is_inline(value):
            inline.append(f"{field.name}={_inline(value)}")
        else:
            children.append((field.name, value))
    lines.append(pad + type(node).__name__ + "".join(" " + s for s in inline) + span)
    for name, value in children:
        _format(value, depth + 1, lines, name)
