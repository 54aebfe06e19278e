"""The cost of a target-IR function, in Huot & Shaikhha's model.

A cost is a vector `(moves, adds, mults, nonlinear)`, counted per scalar at
concrete sizes. The paper's unit costs, per element of the result:

    constant, zeros, ones, arange            (1, 0, 0, 0)
    +  -                                     (3, 1, 0, 0)
    *  /                                     (3, 0, 1, 0)
    exp log sin erf ... (one argument)       (2, 0, 0, 1)
    comparisons, where, and/or               (3, 0, 0, 0)  a select is a move
    gelu sigmoid softplus silu elu           what their NumPy code evaluates,
                                             one operation at a time
    index, gather, slices, reshapes          (1, 0, 0, 0)  per element moved
    broadcast_to, concat, stack, transpose   (1, 0, 0, 0)  per element moved
    sum, parity (n inputs, m outputs)        (n, n - m, 0, 0)
    cumsum, cumprod (n items in lines of k)  (n, n - n/k, 0, 0)  as a sum of each prefix
                                             from the previous one
    popcount_le (n inputs, m outputs)        (n + 3m, n - 2m, m, 0)  two counts, scale, compare
    matmul (m x k) @ (k x n)                 (3mkn, mkn, mkn, 0)
    logsumexp, softmax over n inputs         (3n, 2n, n, n)   max, shift, exp, sum, log

A loop costs its trip count times its body (plus 3 moves per step for the
state, as the paper's scans); an `if` the branch taken where the sizes decide
its condition, else the dearer branch. `cost(∇e) <= 4 * 3^p
* cost(e)` (p the array nesting depth) is the cheap-gradient theorem that
tests/test_cost.py checks on random programs.

A primitive is one nonlinear op only where it is one special function (a
NumPy ufunc such as exp, or the erf helper). A composite, such as gelu =
0.5 * x * erfc(-x / sqrt(2)), costs the operations of its NumPy lowering
(`ELEMENTWISE_COSTS`): charged one op, it would make the primal look cheaper
than the code that runs, and its derivative (here an erf, an exp and seven
arithmetic operations) look dear. Every primitive has an entry in a table, so
a new one is refused until it is given a cost (tests/test_cost.py checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import assert_never

import numpy as np

from . import prim_eval
from . import primitives as P
from .simplify import atom_type, binding_types
from .target import (Apply, Atom, Bind, Block, Call, IfElse, Lambda, Lit, LoopE, MakeTuple, Name, Project,
                     TargetFunction)
from .types import ArrayType, TupleType, Type


@dataclass(frozen=True)
class Cost:
    moves: int = 0
    adds: int = 0
    mults: int = 0
    nonlinear: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.moves + other.moves, self.adds + other.adds,
                    self.mults + other.mults, self.nonlinear + other.nonlinear)

    def scale(self, k: int) -> "Cost":
        return Cost(self.moves * k, self.adds * k, self.mults * k, self.nonlinear * k)

    @property
    def total(self) -> int:
        return self.moves + self.adds + self.mults + self.nonlinear

    def __le__(self, other: "Cost") -> bool:
        return (self.moves <= other.moves and self.adds <= other.adds
                and self.mults <= other.mults and self.nonlinear <= other.nonlinear)


# Unit costs per element of a result. An operation reads its arguments and
# writes its result (a move each) and does its arithmetic.
MOVE = Cost(1)
ADD = Cost(3, 1)                # + - and unary minus
MUL = Cost(3, 0, 1)             # * / // %
SELECT = Cost(3)                # comparisons, where, and/or, min/max: a select is a move
FUNCTION = Cost(2, 0, 0, 1)     # one special function of one argument: exp, log, erf, ...
POWER = Cost(3, 0, 1, 1)        # x ** y: a multiplication and a nonlinear op


def _steps(*steps: Cost) -> Cost:
    """The cost of an expression evaluated one operation at a time."""
    return sum(steps, Cost())


_U = P.BY_NAME

# np.logaddexp(0, t), counted as what it computes: log1p(exp(t)). The shift by
# the maximum that keeps it in range is not counted, as exp's own range
# reduction is not.
_LOGADDEXP_ZERO = _steps(FUNCTION, FUNCTION)
_SIGMOID = _steps(ADD, _LOGADDEXP_ZERO, ADD, FUNCTION)         # exp(-logaddexp(0, -x))

ELEMENTWISE_COSTS: dict[P.Primitive, Cost] = {
    # The special functions: one NumPy ufunc each (erf: the `_erf` helper, Cody's
    # rational approximations, as libm's exp is a polynomial): one nonlinear op.
    **{_U[name]: FUNCTION for name in
       ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "erf")},
    # The composites: what their NumPy lowering (numpy_backend.NUMPY_HELPERS)
    # evaluates, one step per operation.
    _U["softplus"]: _LOGADDEXP_ZERO,                            # logaddexp(0, x)
    _U["sigmoid"]: _SIGMOID,
    _U["silu"]: _steps(_SIGMOID, MUL),                          # x * sigmoid(x)
    _U["gelu"]: _steps(ADD, MUL, FUNCTION, MUL, MUL),           # 0.5 * x * erfc(-x / sqrt(2)), erfc
                                                                # a special function as erf is
    _U["elu"]: _steps(SELECT, SELECT, FUNCTION, SELECT),        # where(x > 0, x, expm1(minimum(x, 0)))
    _U["relu"]: SELECT,                                         # maximum(x, 0)
    P.NEG: ADD, P.ADD: ADD, P.SUB: ADD,
    P.MUL: MUL, P.DIV: MUL, P.FLOORDIV: MUL, P.MOD: MUL,
    P.POW: POWER,
    **{prim: SELECT for prim in (*P.COMPARISON, *P.LOGICAL, P.NOT, P.WHERE, P.MINIMUM, P.MAXIMUM,
                                 P.ABS, P.SIGN)},
}
"""The cost per element of the result of each elementwise primitive."""

_MOVES = {P.INDEX, P.GATHER, P.BROADCAST_TO, P.RESHAPE, P.EXPAND_DIMS, P.TRANSPOSE, P.CONCAT,
          P.STACK, P.ASTYPE, P.CONST, P.SIZE, P.ZEROS, P.ONES, P.ARANGE, P.FULL}
_SCATTER = {P.INDEX_ADD, P.GATHER_ADD}
_REDUCE = {P.SUM, P.MEAN, P.PROD, P.MAX, P.MIN, P.PARITY}
_NORMALISE = {P.LOGSUMEXP, P.SOFTMAX}
_SCAN = set(P.SCANS)

COSTED: frozenset[P.Primitive] = frozenset(
    (*ELEMENTWISE_COSTS, *_MOVES, *_SCATTER, *_REDUCE, *_NORMALISE, *_SCAN, P.POPCOUNT_LE,
     P.MATMUL))
"""The primitives the model has a cost for (tests/test_cost.py: all of them)."""


def function_cost(fn: TargetFunction, sizes: Mapping[str, int]) -> Cost:
    """The cost of one call of `fn` with its size variables at `sizes`."""
    return _Costing(binding_types(fn), sizes).block(fn.body)


def _elements(t: Type | None, sizes: Mapping[str, int]) -> int:
    if t is None:
        return 1
    if isinstance(t, TupleType):
        return sum(_elements(x, sizes) for x in t.items)
    return math.prod(d.evaluate(dict(sizes)) for d in t.shape)


KNOWN_LIMIT = 4096
"""The most elements a value the sizes decide may have for the model to compute it
(`2 ** arange(63)`, the rounds of a scan, is 63)."""


class _Costing:
    """The cost of blocks of one function, at concrete sizes. Values the sizes alone
    decide (literals, sizes, `arange`, arithmetic on them: no parameter reaches
    them) are computed as the model goes, `known`, so that an `if` whose condition
    they decide costs the branch taken, and a loop over known items whose body has
    such an `if` is costed step by step: the scans of an associative `reduce`
    (compiler/scans.py) loop over 63 doubling rounds and skip those past
    ceil(log2 n). Any other `if` costs its dearer branch."""

    def __init__(self, types: dict[str, Type], sizes: Mapping[str, int]):
        self.types, self.sizes = types, sizes
        self.known: dict[str, object] = {}

    def block(self, block: Block) -> Cost:
        total = Cost()
        for bind in block.bindings:
            total = total + self.bind(bind)
        return total

    def value(self, atom: Atom) -> object | None:
        """The atom's value, where the sizes decide it."""
        if isinstance(atom, Lit):
            return atom.value
        return self.known.get(atom.id) if isinstance(atom, Name) else None

    def learn(self, name: str, value: object | None) -> None:
        if value is None:
            self.known.pop(name, None)  # a loop's names are bound again each step
        else:
            self.known[name] = value

    def bind(self, bind: Bind) -> Cost:
        expr = bind.expr
        out = _elements(self.types.get(bind.name), self.sizes)
        learned: object | None = None
        match expr:
            case Name() | Lit():
                learned, cost = self.value(expr), Cost(1)
            case MakeTuple() | Project():
                cost = Cost(1)
            case Call(prim, ps, args):
                learned = self.evaluate(prim, ps, args)
                arg_types = [atom_type(a, self.types) for a in args]
                cost = _call(prim, ps, arg_types, [_elements(t, self.sizes) for t in arg_types],
                             out, self.sizes)
            case IfElse(cond, then, orelse):
                decided = self.value(cond)
                if decided is not None:
                    taken = then if bool(decided) else orelse
                    cost = Cost(1) + self.block(taken)
                    learned = self.value(taken.result)
                else:
                    a, b = self.block(then), self.block(orelse)
                    cost = Cost(1) + (a if a.total >= b.total else b)
            case LoopE(init, xs, acc, x, body, _):
                cost = self.loop(init, xs, acc, x, body)
            case Lambda(_, body):
                cost = self.block(body)
            case Apply():
                cost = Cost(1)
            case _:
                assert_never(expr)
        self.learn(bind.name, learned)
        return cost

    def evaluate(self, prim: P.Primitive, ps, args: tuple[Atom, ...]) -> object | None:
        values = [self.value(a) for a in args]
        if any(v is None for v in values) or prim in _NOT_EVALUATED:
            return None
        try:
            value = prim_eval.apply(prim, ps, values, self.sizes)
        except Exception:  # noqa: BLE001 — a value the model cannot compute is not known
            return None
        return value if np.size(value) <= KNOWN_LIMIT else None

    def loop(self, init: Atom, xs: Atom, acc: str, x: str, body: Block) -> Cost:
        xs_type = atom_type(xs, self.types)
        steps = (xs_type.shape[0].evaluate(dict(self.sizes))
                 if isinstance(xs_type, ArrayType) and xs_type.shape else 0)
        items = self.value(xs)
        if items is None or np.ndim(items) == 0 or not _has_if(body) or steps > KNOWN_LIMIT:
            self.learn(acc, None)
            self.learn(x, None)
            return (self.block(body) + Cost(3)).scale(steps)
        total, state = Cost(), self.value(init)
        for item in np.asarray(items):
            self.learn(acc, state)
            self.learn(x, item)
            total = total + self.block(body) + Cost(3)
            state = self.value(body.result)
        return total


_NOT_EVALUATED = {P.INDEX_ADD, P.GATHER_ADD}  # they write into their first argument


def _has_if(block: Block) -> bool:
    for bind in block.bindings:
        match bind.expr:
            case IfElse():
                return True
            case LoopE(body=body) | Lambda(body=body) if _has_if(body):
                return True
    return False


def _call(prim: P.Primitive, ps, arg_types, arg_sizes: list[int], out: int, sizes) -> Cost:
    if prim in ELEMENTWISE_COSTS:
        return ELEMENTWISE_COSTS[prim].scale(out)
    if prim in _MOVES:
        return Cost(out)
    if prim in _SCATTER:
        moved = arg_sizes[1] if len(arg_sizes) > 1 else out
        return Cost(out + 3 * moved, moved)
    if prim in _REDUCE:
        n = arg_sizes[0]
        return Cost(n, max(n - out, 0), out if prim is P.MEAN else 0)
    if prim in _SCAN:  # each item but the first of its line combined with the running value
        length = arg_types[0].shape[P.param(ps, "axis")].evaluate(dict(sizes))
        return Cost(out, out - out // length if length else 0)
    if prim is P.POPCOUNT_LE:  # two counts, a scaling and a comparison
        n = sum(arg_sizes)
        return Cost(n + 3 * out, max(n - 2 * out, 0), out)
    if prim in _NORMALISE:
        n = arg_sizes[0]
        return Cost(3 * n, 2 * n, n, n)
    if prim is P.MATMUL:
        return Cost(3 * _matmul_products(arg_types, out, sizes)) + Cost(
            0, _matmul_products(arg_types, out, sizes), _matmul_products(arg_types, out, sizes))
    raise AssertionError(f"no cost for the primitive {prim.name}")


def _matmul_products(arg_types, out: int, sizes) -> int:
    """Multiply-adds of a matmul: output elements times the contracted length."""
    left = arg_types[0]
    assert isinstance(left, ArrayType) and left.shape
    return out * left.shape[-1].evaluate(dict(sizes))
