"""Which logsumexps of a target-IR function have their softmax weights computed too.

The derivative of `l = logsumexp(x, axes)` weights each item by `exp(x - l)`
(`jvp_rules.REDUCTION_WEIGHTS`), which both modes emit as

    l = logsumexp(x, axes); s = expand_dims(l, k); t = sub(x, s); w = exp(t)

a second pass of `exp` over x after the helper computing l has already made
`e = exp(x - max)` and its sum. Where such a `w` is bound in the block of its
logsumexp, the NumPy printer prints both as one call, `l, w = _logsumexp_weights(x,
axis=k)`, whose weights are `e / sum(e)` (as accurate as `exp(x - l)` or more:
no rounding of `x - l`; nan where `exp(x - l)` is: a row all -inf or holding +inf),
and leaves out `s` and `t` where nothing else reads them (`shared_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import primitives as P
from .primitives import param
from .simplify import Reader, atom_type
from .target import Atom, Block, Call, Expr, Name, inner_blocks
from .types import ArrayType, Dim, Type

_EXP = P.BY_NAME["exp"]


@dataclass(frozen=True)
class Weights:
    """The softmax weights `exp(x - l)` of a logsumexp `l`, printed with it."""

    name: str
    lse_read: bool  # whether anything printed reads l itself (else: `_, w = ...`)


def shared_weights(body: Block, read_by: dict[str, list[Reader]],
                   types: dict[str, Type]) -> tuple[dict[str, Weights], frozenset[str]]:
    """The logsumexps of `body` (`read_by`: its readers) whose weights are bound in
    their block, with the weights; and the steps between them (`x - l`, `l` with its
    axes put back) that nothing else reads, which are not printed."""
    found: dict[str, Weights] = {}
    unread: set[str] = set()

    def only_reader(name: str, reader: str) -> bool:
        return [r.name for r in read_by.get(name, [])] == [reader]

    def block(b: Block) -> None:
        here = {bind.name: bind.expr for bind in b.bindings}
        for bind in b.bindings:
            match bind.expr:
                case Call(prim, _, (Name(t),)) if prim is _EXP:
                    match here.get(t):
                        case Call(P.SUB, _, (x, Name(s))):
                            steps = _regrouping_steps(s, here)
                            lse = steps.pop() if steps else None
                            if lse is None or lse in found or not _regroups(lse, s, x, here, types):
                                continue
                            chain = [bind.name, t, *steps]
                            for reader, name in zip(chain, chain[1:]):
                                if not only_reader(name, reader):
                                    break
                                unread.add(name)
                            found[lse] = Weights(bind.name, any(r.name not in unread for r in read_by[lse]))
            for inner in inner_blocks(bind.expr):
                block(inner)

    block(body)
    return found, frozenset(unread)


def _regrouping_steps(s: str, here: dict[str, Expr]) -> list[str]:
    """The names from `s` down through reshapes (`expand_dims`, `reshape`) bound in
    the block, ending at a logsumexp; empty where they end elsewhere."""
    steps = [s]
    while True:
        match here.get(steps[-1]):
            case Call(P.EXPAND_DIMS | P.RESHAPE, _, (Name(a),)):
                steps.append(a)
            case Call(P.LOGSUMEXP, _, _):
                return steps
            case _:
                return []


def _regroups(lse: str, s: str, x: Atom, here: dict[str, Expr], types: dict[str, Type]) -> bool:
    """Whether `s`, `lse` reshaped, broadcasts against `x` as each group's logsumexp:
    `lse` is `logsumexp(x, axes)` and s has x's shape with `axes` of length 1 (leading
    ones may be left out). Reshapes keep the order of the items, so that shape says
    where each of lse's items goes."""
    match here[lse]:
        case Call(_, ps, (arg,)) if arg == x:
            tx, ts = atom_type(x, types), types.get(s)
            if not (isinstance(tx, ArrayType) and isinstance(ts, ArrayType)) or ts.rank > tx.rank:
                return False
            axes = param(ps, "axes")
            grouped = tuple(Dim(1) if k in axes else d for k, d in enumerate(tx.shape))
            return (Dim(1),) * (tx.rank - ts.rank) + ts.shape == grouped
    return False
