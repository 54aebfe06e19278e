"""Is a derivative over Z2 defined? A check run before forward or reverse mode over Z2.

Over Z2 catad differentiates *circuits*: bool values made from the bools
differentiated by primitives that are polynomials over Z2 (and, xor, not, or,
comparisons of bools, where, any/all, parity, popcount_le, indexing, shapes).
A bool that depends on them through a number — a count of bools (`sum`), a
cast to i64, an index computed from them, an `if` on them — has no derivative
that these rules compute: the number carries none, so the derivative would be
silently zero. catad refuses it at compile time, at the user's line.

Each stack entry gets a *dependence* on the parameters differentiated
(compiler/dependence.py walks the body):

    NONE               does not depend on them
    POLY               a bool that depends on them through polynomial steps
    Numeric(span)      a number (or an `if` result) that depends on them;
                       `span` is where the dependence left Z2

A Numeric dependence may not flow back into a bool, nor be a result.

A derivative of a derivative (`jvp(vjp(f, wrt = p), wrt = f_bar)`) is checked
the same way: the Z2 derivatives of `min`/`max` of bools and of `popcount_le`
count bools (in O(n), where a polynomial form would take O(n²)), and that of a
gather counts repeated indices, so they are not differentiated again; and,
xor, not, or, where, parity and indexing by constants or sizes are.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import primitives as P
from .dependence import NONE, Dependence, DependenceWalk, Level
from .errors import DerivativeError, Span
from .types import ArrayType, DType, Type
from .unary import Custom, If, Prim, UFunction

POLY = Level("POLY")


@dataclass(frozen=True)
class Numeric:
    span: Span
    what: str  # the operation where the dependence left Z2, for the message


_HINT = ("write the circuit with and, xor, not, or, where, parity and popcount_le, "
         "whose derivatives over Z2 catad knows (the derivatives of min/max of bools, "
         "popcount_le and gathers count bools: they are not differentiated again)")


def require_polynomial(fn: UFunction, wrt: tuple[int, ...], what: str, declaration: Span, *,
                       derived: bool = False) -> None:
    """Raise DerivativeError if a bool of `fn` (or its result) depends on the
    parameters `wrt` through a value that is not a bool. `what` names the
    derivative for the message (e.g. "vjp of f with respect to p"), `declaration`
    where it is declared; `derived`: `fn` is itself a derivative. Code without a
    source place was made by a derivative rule."""
    for dependence, t in _Z2Walk(what, declaration, derived).result(fn, wrt):
        if isinstance(dependence, Numeric):
            raise DerivativeError(
                f"cannot take the {what} over Z2: the result is {t}, which depends on the "
                f"bools differentiated through {dependence.what} here; over Z2 only bools "
                "made by polynomial steps have derivatives", dependence.span, hint=_HINT)


def _is_bool(t: Type) -> bool:
    return isinstance(t, ArrayType) and t.dtype is DType.BOOL


@dataclass(frozen=True)
class _Z2Walk(DependenceWalk):
    what: str
    declaration: Span
    derived: bool  # the function checked is a derivative

    check_name = "Z2 check"
    differentiated = POLY

    def rank(self, d: Dependence) -> int:
        return 2 if isinstance(d, Numeric) else 1 if d is POLY else 0

    def prim(self, term: Prim, args: list[Dependence], arg_types: list[Type],
             out_type: Type) -> Dependence:
        deps = [self.whole(a) for a in args]
        if all(d is NONE for d in deps):
            return NONE
        numeric = next((d for d in deps if isinstance(d, Numeric)), None)
        if not _is_bool(out_type):
            return numeric or Numeric(term.span, _left_by(term.prim))
        if numeric is not None and (self.derived or not term.span.line or not numeric.span.line):
            raise DerivativeError(
                f"cannot take the {self.what} over Z2: the derivative it differentiates counts "
                "bools (the Z2 derivatives of min/max of bools, of popcount_le and of gathers "
                "do), and a count has no derivative over Z2", self.declaration,
                notes=(("the count is made for this", numeric.span),) if numeric.span.line else (),
                hint="second derivatives over Z2 go through and, xor, not, or, where, parity "
                     "and indexing")
        if numeric is not None:
            raise DerivativeError(
                f"cannot take the {self.what} over Z2: {_made_by(term.prim)} makes a bool from "
                f"{numeric.what}, which is not a polynomial over Z2, so its derivative would "
                "be lost", term.span, notes=(("the bools differentiated become a number here",
                                              numeric.span),), hint=_HINT)
        return POLY

    def choose(self, term: If, condition: Dependence, then: Dependence, orelse: Dependence,
               out_type: Type) -> Dependence:
        if condition is NONE:
            return self.join(then, orelse)
        if any(_is_bool(t) for _, t in self.leaves(NONE, out_type)):
            origin = (("the condition depends on them through this",
                       condition.span),) if isinstance(condition, Numeric) else ()
            raise DerivativeError(
                f"cannot take the {self.what} over Z2: the condition of this `if` depends on "
                "the bools differentiated, and over Z2 the derivative must include the "
                "condition's", term.span, notes=origin,
                hint="write where(c, a, b): over Z2 its derivative with respect to c is (a + b)·ċ")
        return Numeric(term.span, "an `if` on them")

    def call(self, term: Custom, stack: list[Dependence], types: list[Type]) -> Dependence:
        # over Z2 a call is differentiated through its body
        s, ts = list(stack), list(types)
        self.walk(term.body, s, ts)
        return s[-1]


def _made_by(prim: P.Primitive) -> str:
    if prim in P.COMPARISON:
        return "this comparison"
    if prim is P.ASTYPE:
        return "this cast"
    return f"this `{prim.name}`"


def _left_by(prim: P.Primitive) -> str:
    """How a primitive makes a number of bools, for the message."""
    if prim is P.SUM:
        return "`sum` (a count of bools)"
    if prim is P.ASTYPE:
        return "a cast to a number"
    return f"`{prim.name}` (a number)"

