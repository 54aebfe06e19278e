"""Which gathers of a target-IR function read an array back to front.

Reverse mode runs a scan's steps last to first and stacks what each step makes in
the order it ran; the adjoint of the scanned sequence is then put back in order
by a gather of every row, last first:

    t29 = arange(0, t); t32 = size(t - 1); t68 = sub(t32, t29); xs_bar = gather(t75, t68)

that is `t75[t - 1 - arange(t)]`, a copy through an index array. Where the index
is exactly `L - 1 - arange(L)` and L is the length of the array's leading axis,
the printer prints the array reversed instead (`Backend.reversal`: NumPy's view
`t75[::-1]`, `xp.flip(t75, axis=0)` on the array API), and leaves out the index
arrays that nothing else reads (`unread`).
"""

from __future__ import annotations

from collections import Counter

from . import primitives as P
from .primitives import param
from .simplify import Reader, atom_type, leading_dim
from .target import Atom, Call, Expr, Lit, Name
from .types import Dim, Type


def reversed_array(expr: Expr, defined: dict[str, Expr], types: dict[str, Type]) -> Atom | None:
    """The array `expr` reads back to front along its leading axis, if it is a gather
    `x[L - 1 - arange(L)]` of every row of x, last first (`defined`: the
    function's definitions)."""
    match expr:
        case Call(P.GATHER, _, (x, Name(index))):
            t = atom_type(x, types)
            if t is not None and _reversed_count(index, defined) == leading_dim(t):
                return x
    return None


def _reversed_count(index: str, defined: dict[str, Expr]) -> Dim | None:
    """L where `index` is bound to `(L - 1) - arange(0, L)`."""
    match defined.get(index):
        case Call(P.SUB, _, (last, Name(steps))):
            arange = defined.get(steps)
            if isinstance(arange, Call) and arange.prim is P.ARANGE and param(arange.params, "lo") == Dim(0):
                count = param(arange.params, "hi")
                if _size_value(last, defined) == count - 1:
                    return count
    return None


def _size_value(atom: Atom, defined: dict[str, Expr]) -> Dim | None:
    """The size an int atom is known to hold: a literal, `size(d)`, sums and
    differences of them."""
    match atom:
        case Lit(value) if isinstance(value, int) and not isinstance(value, bool):
            return Dim.of(value)
        case Name(id):
            match defined.get(id):
                case Call(P.SIZE, ps, ()):
                    return param(ps, "dim")
                case Call(P.ADD | P.SUB as prim, _, (a, b)):
                    left, right = _size_value(a, defined), _size_value(b, defined)
                    if left is not None and right is not None:
                        return left + right if prim is P.ADD else left - right
    return None


def unread(defined: dict[str, Expr], read_by: dict[str, list[Reader]], types: dict[str, Type]) -> frozenset[str]:
    """The calls of a function (`defined`: its definitions, `read_by`: its readers)
    whose values the printed code does not read once the reversed gathers print as
    reversals: their indices, and what only those read."""
    reads = Counter({name: len(found) for name, found in read_by.items()})
    pending = []
    for expr in defined.values():
        if reversed_array(expr, defined, types) is not None:
            pending.append(expr.args[1].id)
    found: set[str] = set()
    while pending:
        name = pending.pop()
        reads[name] -= 1
        expr = defined.get(name)
        if reads[name] == 0 and isinstance(expr, Call):
            found.add(name)
            pending.extend(a.id for a in expr.args if isinstance(a, Name))
    return frozenset(found)
