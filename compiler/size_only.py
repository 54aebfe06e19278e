"""Which values of a target-IR function depend on its sizes alone.

A value is *size-only* when it is an integer or bool scalar computed from the
sizes (`size(n)`), integer and bool literals and other size-only values by
Python-exact arithmetic, comparisons and logic, or chosen between two of them by
an `if` on one:

    t = size(n); k = t - 1; first = k == 0; m = if first { 0 } else { k }

All of them are known once the arguments' shapes are, and shapes are static
under `jax.jit`: the array API module prints them as Python ints and bools
(`k = t - 1`, not `xp.asarray(t) - 1`), so an `if` on one is a Python `if`
under `jax.jit` too (no `jax.lax.cond`, which traces both branches), and an
index made of them needs no `_int`. A value read off data is not size-only, nor
is a loop's state or item: `jax.lax.scan` traces both, also where the loop runs
over `arange(k)`.

The arithmetic kept is the one on which Python ints agree with NumPy's int64:
`+ - *`, negation, `min`, `max`, comparisons, `& | ^` and `not`; `//` and `%`
only by a non-zero literal (by zero NumPy gives 0, Python raises); no `/` or
`**` (floats, and int64 overflow). `PYTHON_FORMS` prints them on Python values.
"""

from __future__ import annotations

from . import primitives as P
from .backend import ATOM, COMPARISON, LOOSEST, MULTIPLICATIVE, UNARY, ADDITIVE, Arg, Form, infix, prefix
from .primitives import param
from .target import Atom, Block, Call, IfElse, Lambda, Lit, LoopE, Name, TargetFunction
from .types import ArrayType, Dim, DType, Type

_EXACT = frozenset((P.ADD, P.SUB, P.MUL, P.NEG, P.MINIMUM, P.MAXIMUM, *P.COMPARISON, *P.LOGICAL, P.NOT))
_BY_LITERAL = frozenset((P.FLOORDIV, P.MOD))  # exact only by a non-zero literal


def is_size_only(atom: Atom, found: set[str] | frozenset[str]) -> bool:
    """Whether `atom` is size-only: an int or bool literal, or a name in `found`."""
    if isinstance(atom, Lit):
        return isinstance(atom.value, (bool, int))
    return atom.id in found


def python_exact(prim: P.Primitive, args: tuple[Atom, ...]) -> bool:
    """Whether `prim` on these arguments computes on Python ints and bools what it
    does on NumPy's int64 and bool: `+ - *`, `min`, ..., `//` and `%` by a non-zero
    literal."""
    if prim in _BY_LITERAL:
        return isinstance(args[1], Lit) and isinstance(args[1].value, int) and args[1].value != 0
    return prim in _EXACT


def size_only(fn: TargetFunction, types: dict[str, Type]) -> frozenset[str]:
    """The names of `fn` bound to size-only values (`types`: every binding's type)."""
    found: set[str] = set()

    def known(atom: Atom) -> bool:
        return is_size_only(atom, found)

    def scalar(name: str) -> bool:
        t = types.get(name)
        return isinstance(t, ArrayType) and t.shape == () and t.dtype in (DType.I64, DType.BOOL)

    def block(b: Block) -> None:
        for bind in b.bindings:
            expr = bind.expr
            match expr:
                case Name() | Lit():
                    decided = known(expr)
                case Call(P.SIZE, _, ()):
                    decided = True
                case Call(P.CONST, ps, ()):
                    decided = param(ps, "dtype") in (DType.I64, DType.BOOL)
                case Call(prim, _, args) if python_exact(prim, args):
                    decided = all(map(known, args))
                case IfElse(cond, then, orelse):
                    block(then)
                    block(orelse)
                    decided = known(cond) and known(then.result) and known(orelse.result)
                case LoopE(body=body) | Lambda(body=body):
                    block(body)
                    decided = False
                case _:
                    decided = False
            if decided and scalar(bind.name):
                found.add(bind.name)

    block(fn.body)
    return frozenset(found)


def dim_arg(d: Dim) -> Arg:
    """A size as a Python expression (`n`, `c - 2`, `2 * n`), with how tightly it binds."""
    text = str(d)
    terms = len(d.terms) + (1 if d.const or not d.terms else 0)
    if terms > 1:
        return Arg(text, ADDITIVE)
    if text.startswith("-"):
        return Arg(text, UNARY)
    return Arg(text, MULTIPLICATIVE if " " in text else ATOM)


def _call(name: str) -> Form:
    return Form(lambda app: f"{name}({', '.join(map(str, app.args))})", precedence=ATOM)


PYTHON_FORMS: dict[P.Primitive, Form] = {
    P.SIZE: Form(lambda app: dim_arg(app.params["dim"]).text,
                 precedence=lambda app: dim_arg(app.params["dim"]).precedence),
    P.CONST: Form(lambda app: repr({DType.BOOL: bool, DType.I64: int}[app.params["dtype"]](app.params["value"])),
                  precedence=lambda app: UNARY if app.params["value"] < 0 else ATOM),
    P.ADD: infix("+"), P.SUB: infix("-"), P.MUL: infix("*"), P.NEG: prefix("-"),
    P.FLOORDIV: infix("//"), P.MOD: infix("%"),
    P.MINIMUM: _call("min"), P.MAXIMUM: _call("max"),
    P.LT: infix("<"), P.LE: infix("<="), P.GT: infix(">"), P.GE: infix(">="), P.EQ: infix("=="),
    P.NE: infix("!="), P.AND: infix("&"), P.OR: infix("|"), P.XOR: infix("^"),
    P.NOT: Form(lambda app: f"not {app.args[0].at(COMPARISON)}", precedence=LOOSEST),
}
"""How a size-only call prints on Python ints and bools."""
