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
    popcount_le (n inputs, m outputs)        (n + 3m, n - 2m, m, 0)  two counts, scale, compare
    matmul (m x k) @ (k x n)                 (3mkn, mkn, mkn, 0)
    logsumexp, softmax over n inputs         (3n, 2n, n, n)   max, shift, exp, sum, log

A loop costs its trip count times its body (plus 3 moves per step for the
state, as the paper's scans); an `if` the dearer branch. `cost(∇e) <= 4 * 3^p
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

from . import primitives as P
from .simplify import atom_type, binding_types
from .target import (Apply, Bind, Block, Call, IfElse, Lambda, Lit, LoopE, MakeTuple, Name, Project,
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

COSTED: frozenset[P.Primitive] = frozenset(
    (*ELEMENTWISE_COSTS, *_MOVES, *_SCATTER, *_REDUCE, *_NORMALISE, P.POPCOUNT_LE, P.MATMUL))
"""The primitives the model has a cost for (tests/test_cost.py: all of them)."""


def function_cost(fn: TargetFunction, sizes: Mapping[str, int]) -> Cost:
    """The cost of one call of `fn` with its size variables at `sizes`."""
    types = binding_types(fn)
    return _block(fn.body, types, sizes)


def _elements(t: Type | None, sizes: Mapping[str, int]) -> int:
    if t is None:
        return 1
    if isinstance(t, TupleType):
        return sum(_elements(x, sizes) for x in t.items)
    return math.prod(d.evaluate(dict(sizes)) for d in t.shape)


def _block(block: Block, types: dict[str, Type], sizes: Mapping[str, int]) -> Cost:
    total = Cost()
    for bind in block.bindings:
        total = total + _bind(bind, types, sizes)
    return total


def _bind(bind: Bind, types: dict[str, Type], sizes: Mapping[str, int]) -> Cost:
    expr = bind.expr
    out = _elements(types.get(bind.name), sizes)
    match expr:
        case Name() | Lit() | MakeTuple() | Project():
            return Cost(1)
        case Call(prim, ps, args):
            arg_sizes = [_elements(atom_type(a, types), sizes) for a in args]
            return _call(prim, ps, [atom_type(a, types) for a in args], arg_sizes, out, sizes)
        case IfElse(_, then, orelse):
            a, b = _block(then, types, sizes), _block(orelse, types, sizes)
            return Cost(1) + (a if a.total >= b.total else b)
        case LoopE(_, xs, _, _, body, _):
            xs_type = atom_type(xs, types)
            steps = (xs_type.shape[0].evaluate(dict(sizes))
                     if isinstance(xs_type, ArrayType) and xs_type.shape else 0)
            return (_block(body, types, sizes) + Cost(3)).scale(steps)
        case Lambda(_, body):
            return _block(body, types, sizes)
        case Apply():
            return Cost(1)
        case _:
            assert_never(expr)


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
