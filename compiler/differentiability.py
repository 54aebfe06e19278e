"""Is a real derivative meaningful? A check run before forward or reverse mode.

A derivative that passes through an operation whose derivative is zero
wherever it exists (a comparison turned back into a number, `sign`, floor
division, a cast to an integer) is not wrong everywhere, but it is useless and
almost always a mistake: catad refuses it at compile time, at the user's line,
instead of returning a zero.

Each stack entry gets a *dependence* on the parameters differentiated
(compiler/dependence.py walks the body):

    NONE                 does not depend on them
    Discrete(span)       a bool or integer that depends on them, or a value
                         computed or chosen from such only; `span` is where the
                         dependence became discrete (a comparison, a cast)
    SMOOTH               depends on them through differentiable operations

Discrete values may decide things — the condition of `if` or `where`, an
index — since the derivative of each piece is still right; they may not
flow back into a real value on their own, which is where the error is
reported. A value chosen by a discrete condition depends on the parameters
through it: `if c { a } else { b }` is judged as `where(c, a, b)`, so a
choice between values that do not depend on them is a step function.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import primitives as P
from .dependence import NONE, Dependence, DependenceWalk, Level
from .errors import DerivativeError, Span
from .types import ArrayType, Type
from .unary import Custom, If, Prim, UFunction

SMOOTH = Level("SMOOTH")


@dataclass(frozen=True)
class Discrete:
    span: Span
    what: str  # the operation that made it discrete, for the message


# piecewise-constant operations on reals: their derivative is zero almost everywhere
_FLAT = frozenset({P.SIGN, P.FLOORDIV})
# argument positions that only select (their derivative is not needed)
_SELECTORS = {P.WHERE: (0,), P.INDEX: None, P.GATHER: None, P.INDEX_ADD: None, P.GATHER_ADD: None}


def require_differentiable(fn: UFunction, wrt: tuple[int, ...], what: str, *,
                           subject: str = "the result") -> None:
    """Raise DerivativeError if a real result of `fn` depends on its parameters
    `wrt` only through operations with a zero derivative. `what` names the
    derivative for the message (e.g. "grad of loss with respect to w"),
    `subject` the result of `fn` (e.g. "its gradient" for a Hessian)."""
    for dependence, t in _RealWalk().result(fn, wrt):
        if isinstance(dependence, Discrete) and _is_real(t):
            raise DerivativeError(
                f"cannot take the {what}: {subject} depends on the parameters differentiated "
                f"only through {dependence.what} here, whose derivative is zero wherever it exists",
                dependence.span,
                hint="use where(c, a, b) to choose between real values that depend on them, or "
                     "declare a custom_vjp rule (e.g. a straight-through estimator)")


class _RealWalk(DependenceWalk):
    check_name = "differentiability check"
    differentiated = SMOOTH

    def rank(self, d: Dependence) -> int:
        return 2 if d is SMOOTH else 1 if isinstance(d, Discrete) else 0

    def prim(self, term: Prim, args: list[Dependence], arg_types: list[Type],
             out_type: Type) -> Dependence:
        deps = [self.whole(a) for a in args]
        if all(d is NONE for d in deps):
            return NONE
        selectors = _SELECTORS.get(term.prim, ())
        if selectors is None:  # every argument after the array(s) is an index
            selectors = tuple(range(2 if term.prim in (P.INDEX_ADD, P.GATHER_ADD) else 1,
                                    len(args)))
        if any(d is SMOOTH for k, d in enumerate(deps) if k not in selectors):
            if term.prim in _FLAT or not _is_real(out_type):
                return Discrete(term.span, _discrete_name(term.prim))
            return SMOOTH
        for d in deps:  # a value chosen, cast or computed from discrete ones stays discrete
            if isinstance(d, Discrete):
                return d
        return NONE

    def choose(self, term: If, condition: Dependence, then: Dependence, orelse: Dependence,
               out_type: Type) -> Dependence:
        # as for where(c, a, b): chosen by a condition on the parameters, the value
        # depends on them through the condition at least
        return self.join(self.join(then, orelse), condition)

    def call(self, term: Custom, stack: list[Dependence], types: list[Type]) -> Dependence:
        # the derivative is the user's rule: trusted, as smooth as its arguments
        return self.whole(tuple(stack[len(stack) - term.n:]))


def _is_real(t: Type) -> bool:
    return isinstance(t, ArrayType) and t.dtype.is_float


def _discrete_name(prim: P.Primitive) -> str:
    if prim in P.COMPARISON:
        return "a comparison"
    if prim is P.ASTYPE:
        return "a cast to an integer or bool"
    return f"`{prim.name}`"
