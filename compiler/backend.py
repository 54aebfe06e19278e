"""What a backend of the printer decides, and the vocabulary its tables use.

The printer (`lower.py`) walks the target IR; a `Backend` decides what each
primitive prints as (`forms`, one `Form` per primitive), which runtime
helpers the module may define (`helpers`), its imports, and whether the code
must keep to the array API standard (`portable`), and how a gather of every
row of an array, last first, prints (`reversal`, see `reversals.py`). Two
backends exist:

    numpy_backend.NUMPY          `np.exp(x)`, helpers `_sigmoid(x)`; NumPy only,
                                 and the module needs nothing but NumPy
    array_api_backend.ARRAY_API  `xp.exp(x)`, helpers `_sigmoid(xp, x)`: the
                                 namespace `xp` comes from the inputs, so the
                                 module runs on NumPy, PyTorch, JAX, CuPy, Dask

A form prints from an `Application`: the printed arguments, their types, the
primitive's params, and `ns`, the name the code gives its array namespace.
The builders below (`function`, `infix`, `reduction`, `helper`, ...) make
most forms one line, for every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .names import identifier
from .primitives import Primitive
from .types import ArrayType, Dim, Type

# Python's operator precedence, loosest first: a printed expression knows its own,
# and is parenthesised where it stands in a place that binds tighter.
LOOSEST, COMPARISON, BIT_OR, BIT_XOR, BIT_AND, ADDITIVE, MULTIPLICATIVE, UNARY, POWER, ATOM = range(10)


@dataclass(frozen=True)
class Arg:
    """A printed argument: its text, and how tightly it binds (`ATOM`: a name, a
    literal, a call or a subscript; `UNARY`: `-x`, a negative literal; ...)."""

    text: str
    precedence: int = ATOM
    application: "Application | None" = field(default=None, compare=False)
    """The application this text prints, when it is printed in place (not a name): a
    form that reads it may print the whole differently (NumPy: the sum of a product
    `a * b` as `np.einsum(..., a, b)`, without the product's array)."""
    items: tuple[str, ...] | None = field(default=None, compare=False)
    """The text of each item, when this is a tuple display (`(a, b)`): a loop state
    held in a variable per item is assigned item by item."""

    def __str__(self) -> str:
        return self.text

    def at(self, level: int) -> str:
        """The text, parenthesised unless it binds at least as tightly as `level`."""
        return self.text if self.precedence >= level else f"({self.text})"

    @property
    def operand(self) -> str:
        """The text, safe in any place (as the object of `.T` or `[...]`)."""
        return self.at(ATOM)


@dataclass(frozen=True)
class Application:
    """A primitive applied: the primitive, its params, its printed arguments and their types, and
    how the code names its array namespace (`np`, `xp`) and what a helper call
    passes before its arguments (`""`, `"xp, "`)."""

    prim: Primitive
    params: dict[str, Any]
    args: tuple[Arg, ...]
    arg_types: tuple[Type | None, ...]
    ns: str
    helper_args: str = ""

    def call(self, name: str, *args: object) -> str:
        """`ns.name(a, b, ...)`"""
        return f"{self.ns}.{name}({', '.join(map(str, args))})"


@dataclass(frozen=True)
class Form:
    """How a primitive prints, how tightly that text binds (a callable: per
    application), and the runtime helper that code calls, if any."""

    text: Callable[[Application], str]
    helper: str | Callable[[Application], str | None] | None = None
    precedence: int | Callable[[Application], int] = LOOSEST

    def printed(self, app: Application) -> Arg:
        level = self.precedence if isinstance(self.precedence, int) else self.precedence(app)
        return Arg(self.text(app), level, app)

    def helper_of(self, app: Application) -> str | None:
        """The runtime helper this application's text calls, if any."""
        return self.helper(app) if callable(self.helper) else self.helper


@dataclass(frozen=True)
class Helper:
    """A definition emitted at the top of a module that uses `_name`."""

    name: str
    source: str                  # `{np}`: the namespace's alias; `{xp}`: `Backend.helper_args`
    needs: tuple[str, ...] = ()  # helpers it calls


@dataclass(frozen=True)
class Backend:
    """What the printed module is made of (see the module docstring).

    `portable`: the code keeps to the array API standard. The namespace and
    device are read off the inputs at each function's entry (`xp`, `_device`),
    arrays are made on that device, and no array is iterated over or written
    into: a loop's body is a local step function that `_fold` or `_scan` runs
    over the rows of its sequence (a Python loop, `jax.lax.scan` on JAX)."""

    name: str
    alias: str
    imports: tuple[str, ...]
    forms: Mapping[Primitive, Form]
    helpers: tuple[Helper, ...]
    reversal: Form  # `x[L - 1 - arange(L)]`, L the length of x's leading axis: x reversed along it
    helper_args: str = ""
    portable: bool = False

    def helper_sources(self, used: set[str]) -> list[str]:
        """The definitions of the helpers in `used` and those they need, in table order."""
        by_name = {h.name: h for h in self.helpers}
        needed: set[str] = set()
        pending = list(used)
        while pending:
            name = pending.pop()
            if name not in needed:
                needed.add(name)
                pending.extend(by_name[name].needs)
        return [h.source.replace("{np}", self.alias).replace("{xp}", self.helper_args)
                for h in self.helpers if h.name in needed]


# ---- form builders, shared by the backends ----------------------------------------


def call_form(text: Callable[[Application], str], helper: str | None = None) -> Form:
    """A form whose text is a call or a subscript: it binds as an atom."""
    return Form(text, helper, ATOM)


def dim_text(d: Dim) -> str:
    """A size as a Python expression over the size variables: `n`, `2 * n - 1`."""
    for var in d.variables:
        identifier(var)
    return str(d)


def shape_text(dims: tuple[Dim, ...]) -> str:
    """A shape as a Python tuple: `()`, `(n,)`, `(n, d)`."""
    return tuple_text([dim_text(d) for d in dims])


def axes_text(axes: tuple[int, ...]) -> str:
    return str(axes[0]) if len(axes) == 1 else "(" + ", ".join(map(str, axes)) + ")"


def tuple_text(items: list[str]) -> str:
    """Python tuple display: `()`, `(a,)`, `(a, b)`."""
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def tuple_arg(items: list[str]) -> Arg:
    """A tuple display printed, with the text of each item."""
    return Arg(tuple_text(items), items=tuple(items))


def function(name: str) -> Form:
    """`ns.name(a, b, ...)`"""
    return call_form(lambda app: app.call(name, *app.args))


_INFIX_PRECEDENCE = {"**": POWER, "*": MULTIPLICATIVE, "/": MULTIPLICATIVE, "//": MULTIPLICATIVE,
                     "%": MULTIPLICATIVE, "@": MULTIPLICATIVE, "+": ADDITIVE, "-": ADDITIVE,
                     "&": BIT_AND, "^": BIT_XOR, "|": BIT_OR, "<": COMPARISON, "<=": COMPARISON,
                     ">": COMPARISON, ">=": COMPARISON, "==": COMPARISON, "!=": COMPARISON}


def infix(op: str) -> Form:
    """`a op b`, the operands parenthesised by precedence: left-associative, except
    `**` (right-associative, and `-2.0 ** x` is `-(2.0 ** x)`) and the comparisons
    (which would chain)."""
    level = _INFIX_PRECEDENCE[op]
    if level == POWER:
        left, right = ATOM, UNARY
    elif level == COMPARISON:
        left, right = level + 1, level + 1
    else:
        left, right = level, level + 1
    return Form(lambda app: f"{app.args[0].at(left)} {op} {app.args[1].at(right)}", precedence=level)


def prefix(op: str) -> Form:
    """`op a` (`-(-a)`, not `--a`)"""
    return Form(lambda app: f"{op}{app.args[0].at(POWER)}", precedence=UNARY)


def helper(name: str) -> Form:
    """`_name(x)` (`_name(xp, x)`), a runtime helper emitted at the top of the module."""
    return call_form(lambda app: f"_{name}({app.helper_args}{app.args[0]})", helper=name)


def reduction(name: str) -> Form:
    """`ns.name(x, axis=...)`"""
    return call_form(lambda app: app.call(name, app.args[0], f"axis={axes_text(app.params['axes'])}"))


def helper_over_axes(name: str, key: str) -> Form:
    """`_name(x, axis=...)`, a runtime helper taking the axes in param `key`."""
    def text(app: Application) -> str:
        axes = app.params[key]
        axes = axes_text(axes if isinstance(axes, tuple) else (axes,))
        return f"_{name}({app.helper_args}{app.args[0]}, axis={axes})"
    return call_form(text, helper=name)


def index_items(spec: tuple, x_type: Type | None, indices: tuple[Arg, ...],
                slice_text: Callable[[str, str], str]) -> list[str]:
    """The items of an `index` spec on an array of `x_type`: the index arguments,
    and slices where a bound that is the axis' own start or end is left out
    (trailing whole axes are left out altogether: `A[i]`, not `A[i, :]`)."""
    remaining = iter(indices)
    items: list[str | None] = []
    for axis, item in enumerate(spec):
        if item[0] == "at":
            items.append(str(next(remaining)))
            continue
        _, lo, hi = item
        end = isinstance(x_type, ArrayType) and hi == x_type.shape[axis]
        items.append(None if lo == Dim(0) and end else
                     slice_text("" if lo == Dim(0) else dim_text(lo), "" if end else dim_text(hi)))
    while items and items[-1] is None and any(item is not None for item in items):
        items.pop()
    return [slice_text("", "") if item is None else item for item in items]


def literal_arg(value: bool | int | float, ns: str) -> Arg:
    """A Python literal as code; infinities and nan through the array namespace `ns`."""
    if isinstance(value, bool):
        return Arg(repr(value))
    if isinstance(value, int):
        return Arg(repr(value), UNARY if value < 0 else ATOM)
    if math.isnan(value):
        return Arg(f"{ns}.nan")
    text = repr(abs(value)) if math.isfinite(value) else f"{ns}.inf"
    negative = math.copysign(1.0, value) < 0
    return Arg("-" + text if negative else text, UNARY if negative else ATOM)
