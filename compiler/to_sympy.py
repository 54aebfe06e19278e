"""The target IR at concrete sizes as SymPy expressions: the oracle derivatives
are checked against.

Why the target IR (before simplification): every function, derived ones
too, has one; once the sizes are fixed its arrays have static shapes, and
no comprehension is left, so every binding is one whole-array primitive.
The vectorised UNF would do as well but is point-free; the target IR names
every value and keeps its source span, so a translation error points at
the user's line. The oracle shares only the program with catad's
derivatives, none of their rules: SymPy differentiates each scalar formula
and the chain rule is applied here, element by element.

Arrays are unrolled into scalars. Every scalar is a *slot* of one `Graph`:

    slot  ::= input          a SymPy symbol, named after its parameter and
                             index (`X_0_1`)
            | constant       a number that does not depend on the inputs
            | element of a node
    node  ::= Node(template, kinds, args, out)
              element e is `template` with its placeholders u0, u1, ...
              replaced by the slots `args[e]`; it is written to slot `out[e]`

A primitive applied to arrays becomes one node: all its elements share one
template (`sigmoid`: `1/(1 + exp(-u0))`; a matmul entry: `u0*u2 + u1*u3`),
so SymPy builds, differentiates and lambdifies each template once, not once
per element, and sharing is kept: an element is read by its slot, never
copied into the expressions that use it, so nothing swells. Moving data
(reshape, transpose, index, gather, stack...) makes no node at all: it moves
slot numbers.

Values that do not depend on the inputs are computed at once with the
reference semantics (`prim_eval`): sizes, indices, masks, `arange`, the
constant branches of an `if`. Integers and booleans computed from real
inputs are symbolic (a comparison `u0 < u1`, a floor); a branch whose
condition depends on real inputs becomes `Piecewise`. An index computed
from real inputs cannot be expressed (`UnsupportedError` names the
primitive). Loops are unrolled; above `MAX_OPERATIONS` unrolled scalar
operations, or past the time budget, `TooLargeForSympy` is raised, never a
hang.

    to_sympy(fn, sizes, fixed)      the function at concrete sizes
    tangent(graph, value, seeds)    forward derivative: the partial derivatives
                                    of each template by `sympy.diff`, chained
                                    along the graph; it adds nodes, so it nests
    evaluate(sf, args[, batch])     numbers: each template by `lambdify(...,
                                    cse=True)`, vectorised over its elements
                                    (and over a batch of arguments)
    expressions(sf, max_terms)      the result as SymPy expressions over the
                                    input symbols, for small sizes (listings)

`SYMPY[prim]` is the translation of each primitive.
"""

from __future__ import annotations

import enum
import functools
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

import numpy as np
import sympy

from . import primitives as P
from .errors import ShapeError, Span, UnsupportedError
from .prim_eval import apply as apply_numerically
from .prim_eval import numpy_dtype
from .prim_types import PrimTypeError, result_type
from .primitives import Params, Primitive, substitute_dims
from .target import (Apply, Atom, Block, Call, Expr, IfElse, Lambda, Lit, LoopE, MakeTuple, Name,
                     Project, TargetFunction)
from .types import ArrayType, Dim, DType, Stacking, TupleType, Type, substitute_type

MAX_OPERATIONS = 20_000  # unrolled scalar operations of one function
TIME_BUDGET = 20.0       # seconds for translating and differentiating one function


class TooLargeForSympy(Exception):
    """The function unrolls to more operations, or takes longer, than allowed."""


class Kind(enum.Enum):
    """What a slot holds: SymPy needs to know, to differentiate and to print."""

    REAL = "real"
    INT = "int"
    BOOL = "bool"


# the assumptions of a symbol of each kind (a boolean one is a plain symbol)
_ASSUMPTIONS: dict[Kind, dict[str, bool]] = {Kind.REAL: {"real": True}, Kind.INT: {"integer": True}, Kind.BOOL: {}}


def kind_of(dtype: DType) -> Kind:
    return {DType.BOOL: Kind.BOOL, DType.I64: Kind.INT}.get(dtype, Kind.REAL)


@functools.cache
def placeholder(kind: Kind, position: int) -> sympy.Symbol:
    """The template argument `u<position>`, of `kind`."""
    return sympy.Symbol(f"u{position}", **_ASSUMPTIONS[kind])


def placeholders(kinds: Sequence[Kind]) -> tuple[sympy.Symbol, ...]:
    return tuple(placeholder(k, i) for i, k in enumerate(kinds))


# ---- the graph ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Node:
    template: sympy.Basic
    kinds: tuple[Kind, ...]  # of the placeholders u0, u1, ...
    args: np.ndarray         # int64 [elements, len(kinds)]: the slots each element reads
    out: np.ndarray          # int64 [elements]: the slots it writes


class Graph:
    """Every scalar of one function and of the derivatives taken of it."""

    def __init__(self, deadline: float):
        self.kinds: list[Kind] = []
        self.inputs: dict[int, sympy.Symbol] = {}
        self.constants: dict[int, bool | int | float] = {}
        self.nodes: list[Node] = []
        self.operations = 0  # elements of all nodes
        self.deadline = deadline
        self._constant_slots: dict[tuple[Kind, str], int] = {}
        self._names: set[str] = set()

    def _slot(self, kind: Kind) -> int:
        self.kinds.append(kind)
        return len(self.kinds) - 1

    def input(self, name: str, kind: Kind) -> int:
        """A new input slot: a symbol called `name` (made unique with primes)."""
        while name in self._names:
            name += "'"
        self._names.add(name)
        slot = self._slot(kind)
        self.inputs[slot] = sympy.Symbol(name, **_ASSUMPTIONS[kind])
        return slot

    def constant(self, value: bool | int | float, kind: Kind) -> int:
        """The slot of a constant (one per distinct value and kind)."""
        value = {Kind.REAL: float, Kind.INT: int, Kind.BOOL: bool}[kind](value)
        key = (kind, repr(value))
        if key not in self._constant_slots:
            slot = self._slot(kind)
            self.constants[slot] = value
            self._constant_slots[key] = slot
        return self._constant_slots[key]

    def node(self, template: sympy.Basic, kinds: tuple[Kind, ...], args: np.ndarray, kind: Kind) -> np.ndarray:
        """The slots of `template` applied to each row of `args`. A template that is
        one of its placeholders, or a number, makes no node."""
        args = np.asarray(args, dtype=np.int64).reshape(-1, len(kinds))
        us = placeholders(kinds)
        if template in us:
            return args[:, us.index(template)].copy()
        if isinstance(template, sympy.Number | sympy.logic.boolalg.BooleanAtom):
            value = bool(template) if kind is Kind.BOOL else float(template)
            return np.full(len(args), self.constant(value, kind), dtype=np.int64)
        if time.monotonic() > self.deadline:
            raise TooLargeForSympy("took longer than its time budget")
        out = np.array([self._slot(kind) for _ in range(len(args))], dtype=np.int64)
        self.nodes.append(Node(template, kinds, args, out))
        self.operations += len(args)
        return out


# ---- values -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Slots:
    """An array whose elements are slots of the graph."""

    ids: np.ndarray  # int64, the array's shape
    dtype: DType


@dataclass(frozen=True, eq=False)
class _Closure:
    params: tuple[str, ...]
    body: Block


# A value: Slots, a concrete NumPy value or Python scalar (weak), a tuple of values,
# or a closure (a Lambda of the target IR).
Value = Any


def _concrete_dtype(value: Any) -> tuple[DType, bool]:
    """The dtype of a concrete value, and whether it is weak (a Python scalar)."""
    if type(value) in (bool, int, float):
        return {bool: DType.BOOL, int: DType.I64, float: DType.F64}[type(value)], True
    kind = np.asarray(value).dtype
    if kind == np.bool_:
        return DType.BOOL, False
    if kind.kind in "iu":
        return DType.I64, False
    return (DType.F32 if kind == np.float32 else DType.F64), False


def _array_type(value: Value) -> ArrayType:
    if isinstance(value, Slots):
        return ArrayType(value.dtype, tuple(Dim(s) for s in value.ids.shape))
    dtype, weak = _concrete_dtype(value)
    return ArrayType(dtype, tuple(Dim(s) for s in np.shape(value)), weak)


def _leaves(value: Value) -> list[Value]:
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def value_type(value: Value) -> Type:
    """The type of a value (tuples item by item)."""
    if isinstance(value, tuple):
        return TupleType(tuple(value_type(v) for v in value))
    t = _array_type(value)
    return ArrayType(t.dtype, t.shape)


# ---- the function --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SymbolicFunction:
    """A function at concrete sizes: its parameters' values (Slots of input
    symbols for real leaves, the fixed values otherwise) and its result."""

    name: str
    params: tuple[tuple[str, Type], ...]  # at concrete sizes
    inputs: tuple[Value, ...]
    result: Value
    graph: Graph


def input_value(graph: Graph, name: str, t: Type) -> Value:
    """Fresh input symbols for a value of type `t` (`name_0_1`...; tuples `name_k_...`)."""
    if isinstance(t, TupleType):
        return tuple(input_value(graph, f"{name}_{k}", item) for k, item in enumerate(t.items))
    shape = tuple(d.const for d in t.shape)
    ids = np.array([graph.input("_".join((name, *map(str, index))), kind_of(t.dtype))
                    for index in np.ndindex(shape)], dtype=np.int64).reshape(shape)
    return Slots(ids, t.dtype)


def _parameter_value(graph: Graph, name: str, t: Type, fixed: Any) -> Value:
    """Input symbols for the float leaves of a parameter; `fixed` for the others."""
    if isinstance(t, TupleType):
        return tuple(_parameter_value(graph, f"{name}_{k}", item, None if fixed is None else fixed[k])
                     for k, item in enumerate(t.items))
    if t.dtype.is_float:
        return input_value(graph, name, t)
    if fixed is None:
        raise ValueError(f"the {t} parameter {name} needs a fixed value")
    return np.asarray(fixed, dtype=numpy_dtype(t.dtype))


def to_sympy(fn: TargetFunction, sizes: Mapping[str, int], fixed: Mapping[str, Any] | None = None, *,
             max_operations: int = MAX_OPERATIONS, time_budget: float = TIME_BUDGET) -> SymbolicFunction:
    """`fn` at `sizes` (its size variables by their names in `fn`): the float
    leaves of its parameters become symbols, the others take their values
    from `fixed` (by parameter name). Raises `TooLargeForSympy`, or
    `UnsupportedError` for a primitive that cannot be expressed."""
    missing = [s.name for s in fn.sizes if s.name not in sizes]
    assert not missing, f"to_sympy: no value for the sizes {missing} of {fn.name}"
    dims = {name: Dim(value) for name, value in sizes.items()}
    graph = Graph(time.monotonic() + time_budget)
    params = tuple((p, substitute_type(t, dims)) for p, t in fn.params)
    inputs = tuple(_parameter_value(graph, p, t, (fixed or {}).get(p)) for p, t in params)
    translator = _Translator(graph, dims, max_operations)
    env: dict[str, Value] = {p: v for (p, _), v in zip(params, inputs)}
    result = translator.block(fn.body, env)
    return SymbolicFunction(fn.name, params, inputs, result, graph)


@dataclass
class _Translator:
    graph: Graph
    dims: dict[str, Dim]
    max_operations: int

    def block(self, block: Block, env: dict[str, Value]) -> Value:
        for bind in block.bindings:
            env[bind.name] = self.expr(bind.expr, env, bind.span)
            if self.graph.operations > self.max_operations:
                raise TooLargeForSympy(f"unrolls to more than {self.max_operations} operations")
            if time.monotonic() > self.graph.deadline:
                raise TooLargeForSympy("took longer than its time budget")
        return self.atom(block.result, env)

    def atom(self, atom: Atom, env: dict[str, Value]) -> Value:
        match atom:
            case Name(id):
                return env[id]
            case Lit(value):
                return value
            case _:
                assert_never(atom)

    def expr(self, expr: Expr, env: dict[str, Value], span: Span) -> Value:
        match expr:
            case Name() | Lit():
                return self.atom(expr, env)
            case Call(prim, ps, args):
                return self.call(prim, ps, tuple(self.atom(a, env) for a in args), span)
            case MakeTuple(items):
                return tuple(self.atom(a, env) for a in items)
            case Project(tup, k):
                return self.atom(tup, env)[k]
            case IfElse(cond, then, orelse):
                return self.branch(self.atom(cond, env), then, orelse, env, span)
            case LoopE(init, xs, acc, x, body, stacked):
                return self.loop(self.atom(init, env), self.atom(xs, env), acc, x, body, stacked, env)
            case Lambda(params, body):
                return _Closure(params, body)
            case Apply(fn, args):
                closure = self.atom(fn, env)
                for p, a in zip(closure.params, args):
                    env[p] = self.atom(a, env)
                return self.block(closure.body, env)
            case _:
                assert_never(expr)

    def call(self, prim: Primitive, ps: Params, args: tuple[Value, ...], span: Span) -> Value:
        ps = tuple((k, _at_sizes(v, self.dims)) for k, v in ps)
        try:
            out = result_type(prim, ps, tuple(_array_type(a) for a in args))
        except PrimTypeError as err:  # sizes that break an assumption of the program
            sizes = ", ".join(f"{name} = {dim.const}" for name, dim in self.dims.items())
            raise ShapeError(f"at the sizes {sizes}, {err.message}", span,
                             hint="these sizes do not fit the program: choose others") from None
        assert isinstance(out, ArrayType)
        return SYMPY[prim](_Context(self.graph, span), prim, ps, args, out)

    def branch(self, cond: Value, then: Block, orelse: Block, env: dict[str, Value], span: Span) -> Value:
        known = _known(self.graph, cond)
        if known is not None:
            return self.block(then if bool(known) else orelse, env)
        a, b = self.block(then, env), self.block(orelse, env)
        return _zip_leaves(lambda x, y: self.call(P.WHERE, (), (cond, x, y), span), a, b)

    def loop(self, init: Value, xs: Value, acc: str, x: str, body: Block, stacked: Stacking,
             env: dict[str, Value]) -> Value:
        state, states = init, []
        for k in range(_array_type(_leaves(xs)[0]).shape[0].const):
            env[acc], env[x] = state, _row(xs, k)
            state = self.block(body, env)
            states.append(state)
        if not isinstance(stacked, bool):  # item by item
            return tuple(self._stacked([after[k] for after in states], init[k]) if item else state[k]
                         for k, item in enumerate(stacked))
        return self._stacked(states, init) if stacked else state

    def _stacked(self, states: list[Value], init: Value) -> Value:
        """`states` stacked; a scan over no steps: no states, of the state's type."""
        if not states:
            return _map_leaves(lambda v: np.zeros((0, *_shape(_array_type(v))), numpy_dtype(_array_type(v).dtype)),
                               init)
        return _stack_leaves(self.graph, states)


def _at_sizes(value: Any, dims: dict[str, Dim]) -> Any:
    """A param value with every `Dim` (nested in tuples too) at the concrete sizes."""
    return substitute_dims(value, dims)


def _row(value: Value, k: int) -> Value:
    if isinstance(value, tuple):
        return tuple(_row(v, k) for v in value)
    if isinstance(value, Slots):
        return Slots(value.ids[k], value.dtype)
    return np.asarray(value)[k]


def _zip_leaves(f: Callable[[Value, Value], Value], a: Value, b: Value) -> Value:
    if isinstance(a, tuple):
        return tuple(_zip_leaves(f, x, y) for x, y in zip(a, b))
    return f(a, b)


def _stack_leaves(graph: Graph, states: list[Value]) -> Value:
    """The states of a scan stacked on a new leading axis (tuples item by item)."""
    if isinstance(states[0], tuple):
        return tuple(_stack_leaves(graph, [s[k] for s in states]) for k in range(len(states[0])))
    if not any(isinstance(s, Slots) for s in states):
        return np.stack([np.asarray(s) for s in states])
    dtype = next(s.dtype for s in states if isinstance(s, Slots))  # the loop state's type
    return Slots(np.stack([_as_slots(graph, s, dtype).ids for s in states]), dtype)


# ---- the translations -------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    graph: Graph
    span: Span

    def unsupported(self, prim: Primitive, what: str) -> UnsupportedError:
        return UnsupportedError(f"{prim.name} {what} cannot be expressed in SymPy", self.span)


Translation = Callable[[_Context, Primitive, Params, tuple[Value, ...], ArrayType], Value]


def _as_slots(graph: Graph, value: Value, dtype: DType | None = None) -> Slots:
    """`value` as Slots of `dtype` (default: its own): constants get slots; a
    symbolic value of another kind is converted as `astype` would."""
    if not isinstance(value, Slots):
        own, _ = _concrete_dtype(value)
        array = np.asarray(value)
        kind = kind_of(dtype or own)
        ids = np.array([graph.constant(v, kind) for v in array.ravel().tolist()],
                       dtype=np.int64).reshape(array.shape)
        return Slots(ids, dtype or own)
    if dtype is None or kind_of(dtype) == kind_of(value.dtype) or (
            kind_of(dtype), kind_of(value.dtype)) == (Kind.REAL, Kind.INT):
        return Slots(value.ids, dtype or value.dtype)
    source = kind_of(value.dtype)
    template = _conversion(source, kind_of(dtype))
    ids = graph.node(template, (source,), value.ids.reshape(-1, 1), kind_of(dtype))
    return Slots(ids.reshape(value.ids.shape), dtype)


@functools.cache
def _conversion(source: Kind, target: Kind) -> sympy.Basic:
    """`astype` on one placeholder of kind `source`."""
    u = placeholder(source, 0)
    if target is Kind.BOOL:
        return sympy.Ne(u, 0)
    if source is Kind.BOOL:
        return sympy.Piecewise((1, u), (0, True))
    if source is Kind.REAL and target is Kind.INT:  # truncation towards zero
        return sympy.Piecewise((sympy.floor(u), u >= 0), (sympy.ceiling(u), True))
    return u


def _known(graph: Graph, value: Value) -> Any:
    """The concrete value of `value` (Slots of constants count), or None."""
    if not isinstance(value, Slots):
        return value
    if all(int(s) in graph.constants for s in value.ids.ravel()):
        return np.vectorize(graph.constants.__getitem__, otypes=[numpy_dtype(value.dtype)])(value.ids) \
            if value.ids.size else np.zeros(value.ids.shape, numpy_dtype(value.dtype))
    return None


def _shape(t: ArrayType) -> tuple[int, ...]:
    return tuple(d.const for d in t.shape)


def _numeric(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    """The reference semantics: for arguments that do not depend on the inputs."""
    return apply_numerically(prim, ps, args)


def _concrete_first(rule: Translation) -> Translation:
    """`rule` for symbolic arguments; the reference semantics when none is."""
    def translate(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
        if not any(isinstance(a, Slots) for a in args):
            return _numeric(ctx, prim, ps, args, out)
        return rule(ctx, prim, ps, args, out)
    return translate


@functools.cache
def _template(formula: Callable[..., sympy.Basic], kinds: tuple[Kind, ...]) -> sympy.Basic:
    return sympy.sympify(formula(*placeholders(kinds)))


def _node(ctx: _Context, formula: Callable[..., sympy.Basic], columns: list[Slots], out: ArrayType) -> Slots:
    """One node: `formula` applied to the broadcast columns, element by element."""
    shape = _shape(out)
    kinds = tuple(kind_of(c.dtype) for c in columns)
    args = np.stack([np.broadcast_to(c.ids, shape).ravel() for c in columns], axis=1) \
        if columns else np.zeros((int(np.prod(shape)), 0), np.int64)
    ids = ctx.graph.node(_template(formula, kinds), kinds, args, kind_of(out.dtype))
    return Slots(ids.reshape(shape), out.dtype)


# elementwise arithmetic on bools only: NumPy gives bools (add is or, mul is and)
_BOOL_ARITHMETIC: dict[Primitive, Callable[..., sympy.Basic]] = {
    P.ADD: sympy.Or, P.MUL: sympy.And, P.MAXIMUM: sympy.Or, P.MINIMUM: sympy.And, P.ABS: lambda u: u,
}


class Bools(enum.Enum):
    """How an elementwise primitive takes bool arguments."""

    ARITHMETIC = "arithmetic"  # as 0 and 1, except all-bool (add is or, mul is and: NumPy)
    NUMBERS = "numbers"        # as 0 and 1 (comparisons)
    LOGICAL = "logical"        # as they are (and, or, xor, not)


def elementwise(formula: Callable[..., sympy.Basic], bools: Bools = Bools.ARITHMETIC) -> Translation:
    """An elementwise primitive: `formula` of one placeholder per argument."""
    def rule(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
        columns = [_as_slots(ctx.graph, a) for a in args]
        if bools is Bools.LOGICAL:
            return _node(ctx, formula, columns, out)
        if bools is Bools.ARITHMETIC and out.dtype is DType.BOOL:
            if prim not in _BOOL_ARITHMETIC:
                raise ctx.unsupported(prim, "of booleans")
            return _node(ctx, _BOOL_ARITHMETIC[prim], columns, out)
        numbers = [_as_slots(ctx.graph, c, DType.I64) if c.dtype is DType.BOOL else c for c in columns]
        return _node(ctx, formula, numbers, out)
    return rule


def _where(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    cond, a, b = args
    known = _known(ctx.graph, cond)
    if known is not None:  # the condition does not depend on the inputs: pick element by element
        ids = np.where(known, *(np.broadcast_to(_as_slots(ctx.graph, v, out.dtype).ids, _shape(out))
                                for v in (a, b)))
        return Slots(np.asarray(ids, dtype=np.int64), out.dtype)
    columns = [_as_slots(ctx.graph, cond), _as_slots(ctx.graph, a, out.dtype), _as_slots(ctx.graph, b, out.dtype)]
    return _node(ctx, _select_bools if out.dtype is DType.BOOL else _select, columns, out)


def _select(c: sympy.Basic, x: sympy.Basic, y: sympy.Basic) -> sympy.Basic:
    return sympy.Piecewise((x, c), (y, True))


def _select_bools(c: sympy.Basic, x: sympy.Basic, y: sympy.Basic) -> sympy.Basic:
    return (c & x) | (~c & y)


def _astype(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    return _as_slots(ctx.graph, args[0], out.dtype)


def _rows(ids: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """[kept elements, reduced elements]: the reduced axes moved last and flattened."""
    moved = np.moveaxis(ids, axes, tuple(range(ids.ndim - len(axes), ids.ndim)))
    count = int(np.prod([ids.shape[a] for a in axes]))
    return moved.reshape(-1, count)


def reduction(formula: Callable[[list[sympy.Basic]], sympy.Basic]) -> Translation:
    """A reduction over `axes`: `formula` of the list of reduced placeholders
    (bools count as 0 and 1)."""
    def rule(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
        x = _as_slots(ctx.graph, args[0])
        x = _as_slots(ctx.graph, x, DType.I64) if x.dtype is DType.BOOL else x
        return _reduce(ctx, formula, x, dict(ps)["axes"], out)
    return rule


def _reduce(ctx: _Context, formula, x: Slots, axes: tuple[int, ...], out: ArrayType) -> Slots:
    rows = _rows(x.ids, axes)
    kinds = (kind_of(x.dtype),) * rows.shape[1]
    template = _list_template(formula, kinds)
    ids = ctx.graph.node(template, kinds, rows, kind_of(out.dtype))
    return Slots(ids.reshape(_shape(out)), out.dtype)


def pairwise(pair: Callable[[sympy.Basic, sympy.Basic], sympy.Basic],
             of_bools: Callable[[list[sympy.Basic]], sympy.Basic]) -> Translation:
    """max, min: a tree of two-argument `pair` nodes (the derivative of Max(u0, ..., uK)
    is a Heaviside of a Max, which SymPy prints as a Piecewise over every order of
    the arguments); bools go to `of_bools`."""
    def rule(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
        x = _as_slots(ctx.graph, args[0])
        if x.dtype is DType.BOOL:
            return _reduce(ctx, of_bools, x, dict(ps)["axes"], out)
        rows, kind = _rows(x.ids, dict(ps)["axes"]), kind_of(x.dtype)
        template = _template(pair, (kind, kind))
        while rows.shape[1] > 1:
            half = rows.shape[1] // 2
            paired = ctx.graph.node(template, (kind, kind), rows[:, :2 * half].reshape(-1, 2), kind)
            rows = np.concatenate([paired.reshape(-1, half), rows[:, 2 * half:]], axis=1)
        return Slots(rows.reshape(_shape(out)), out.dtype)
    return rule


@functools.cache
def _list_template(formula: Callable[[list[sympy.Basic]], sympy.Basic], kinds: tuple[Kind, ...]) -> sympy.Basic:
    return sympy.sympify(formula(list(placeholders(kinds))))


def _logsumexp(us: list[sympy.Basic]) -> sympy.Basic:
    return sympy.log(sympy.Add(*(sympy.exp(u) for u in us)))


def _softmax_entry(us: list[sympy.Basic]) -> sympy.Basic:
    """exp(u0) / sum(exp(u1..uK)): u0 is the entry, u1..uK its whole row."""
    return sympy.exp(us[0]) / sympy.Add(*(sympy.exp(u) for u in us[1:]))


def _softmax(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    x = _as_slots(ctx.graph, args[0], out.dtype)
    axis = dict(ps)["axis"]
    rows = _rows(x.ids, (axis,))
    count = rows.shape[1]
    entries = np.concatenate([rows.reshape(-1, 1), np.repeat(rows, count, axis=0)], axis=1)
    kinds = (Kind.REAL,) * (count + 1)
    ids = ctx.graph.node(_list_template(_softmax_entry, kinds), kinds, entries, Kind.REAL)
    moved = np.moveaxis(x.ids, axis, -1).shape
    return Slots(np.moveaxis(ids.reshape(moved), -1, axis), out.dtype)


def _scan(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    """Running sums (products) along the axis: entry i is
    entry i - 1 combined with item i, one two-argument node per position (from the
    end when reverse); exclusive entries are the inclusive ones moved one place,
    the identity first."""
    x = _as_slots(ctx.graph, args[0])
    p, kind = dict(ps), kind_of(x.dtype)
    combine = operator.add if prim is P.CUMSUM else operator.mul
    moved = np.moveaxis(x.ids, p["axis"], -1)
    rows = moved.reshape(-1, moved.shape[-1])
    if p["reverse"]:
        rows = rows[:, ::-1]
    identity = ctx.graph.constant(prim is P.CUMPROD, kind)
    columns = [np.full(len(rows), identity, dtype=np.int64)]
    template = _template(combine, (kind, kind))
    for k in range(rows.shape[1]):
        columns.append(ctx.graph.node(template, (kind, kind), np.stack([columns[-1], rows[:, k]], axis=1), kind))
    kept = columns[:-1] if p["exclusive"] else columns[1:]
    ids = np.stack(kept, axis=1) if kept else np.zeros(rows.shape, dtype=np.int64)
    if p["reverse"]:
        ids = ids[:, ::-1]
    return Slots(np.moveaxis(ids.reshape(moved.shape), -1, p["axis"]), out.dtype)


def _xor_all(us: list[sympy.Basic]) -> sympy.Basic:
    return sympy.Xor(*us)


def _parity(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    return _reduce(ctx, _xor_all, _as_slots(ctx.graph, args[0]), dict(ps)["axes"], out)


@functools.cache
def _popcount_template(scale: int, m: int, k: int) -> sympy.Basic:
    """scale * count(u0..u(m-1)) <= count(um..u(m+k-1)), the u bools."""
    us = placeholders((Kind.BOOL,) * (m + k))
    return sympy.Le(scale * _count(us[:m]), _count(us[m:]))


def _count(bits: Sequence[sympy.Basic]) -> sympy.Basic:
    """How many of the bools `bits` hold."""
    return sympy.Add(*(sympy.Piecewise((1, u), (0, True)) for u in bits))


def _popcount_le(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    a, b = (_as_slots(ctx.graph, v) for v in args)
    lead = _shape(out)
    m, k = a.ids.shape[-1], b.ids.shape[-1]
    rows = np.concatenate([np.broadcast_to(a.ids, (*lead, m)).reshape(-1, m),
                           np.broadcast_to(b.ids, (*lead, k)).reshape(-1, k)], axis=1)
    template = _popcount_template(dict(ps)["scale"], m, k)
    ids = ctx.graph.node(template, (Kind.BOOL,) * (m + k), rows, Kind.BOOL)
    return Slots(ids.reshape(lead), out.dtype)


def inner_products(graph: Graph, a: np.ndarray, b: np.ndarray, kinds: tuple[Kind, Kind] = (Kind.REAL, Kind.REAL),
                   kind: Kind = Kind.REAL) -> np.ndarray:
    """Slots of `sum_k a[e, k] * b[e, k]` for each row e of the slot arrays a, b."""
    count = a.shape[1]
    all_kinds = (kinds[0],) * count + (kinds[1],) * count
    template = _list_template(_dot, all_kinds)
    return graph.node(template, all_kinds, np.concatenate([a, b], axis=1), kind)


def _dot(us: list[sympy.Basic]) -> sympy.Basic:
    half = len(us) // 2
    return sympy.Add(*(x * y for x, y in zip(us[:half], us[half:])))


def _matmul(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    if out.dtype is DType.BOOL:
        raise ctx.unsupported(prim, "of booleans")
    a, b = (_as_slots(ctx.graph, v) for v in args)
    a, b = (_as_slots(ctx.graph, v, DType.I64) if v.dtype is DType.BOOL else v for v in (a, b))
    left = a.ids[None, :] if a.ids.ndim == 1 else a.ids          # [..., n, k]
    right = b.ids[:, None] if b.ids.ndim == 1 else b.ids         # [..., k, m]
    rows = left[..., :, None, :]                                  # [..., n, 1, k]
    columns = np.swapaxes(right, -1, -2)[..., None, :, :]         # [..., 1, m, k]
    rows, columns = np.broadcast_arrays(rows, columns)
    count = rows.shape[-1]
    ids = inner_products(ctx.graph, rows.reshape(-1, count), columns.reshape(-1, count),
                         (kind_of(a.dtype), kind_of(b.dtype)), kind_of(out.dtype))
    return Slots(ids.reshape(_shape(out)), out.dtype)


def _moving(move: Callable[..., np.ndarray]) -> Translation:
    """A primitive that only moves elements: `move(ps, *slot arrays)`."""
    def rule(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
        ids = move(dict(_resolved(ps)), *(_as_slots(ctx.graph, a, out.dtype).ids for a in args))
        return Slots(np.array(ids, dtype=np.int64).reshape(_shape(out)), out.dtype)
    return rule


def _resolved(ps: Params) -> Params:
    """Params with every (constant) Dim as an int."""
    def value(v: Any) -> Any:
        if isinstance(v, Dim):
            assert v.is_constant
            return v.const
        return tuple(map(value, v)) if isinstance(v, tuple) else v
    return tuple((k, value(v)) for k, v in ps)


def _indices(ctx: _Context, prim: Primitive, values: tuple[Value, ...]) -> list[np.ndarray]:
    """Index arguments as integers: they must not depend on the inputs."""
    out = []
    for v in values:
        known = _known(ctx.graph, v)
        if known is None:
            raise ctx.unsupported(prim, "with an index computed from the real inputs")
        out.append(np.asarray(known, dtype=np.int64))
    return out


def _key(ps: dict, shape: tuple[int, ...], indices: list[np.ndarray]) -> tuple:
    """The NumPy index of an `index` spec or of a `gather` (clipped with `clip`)."""
    if "spec" in ps:
        at = iter(indices)
        return tuple(int(next(at)) if item[0] == "at" else slice(item[1], item[2]) for item in ps["spec"])
    if ps["clip"]:
        return tuple(np.clip(i, 0, shape[j] - 1) for j, i in enumerate(indices))
    return tuple(indices)


def _indexing(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    x = _as_slots(ctx.graph, args[0])
    key = _key(dict(_resolved(ps)), x.ids.shape, _indices(ctx, prim, args[1:]))
    return Slots(np.array(x.ids[key], dtype=np.int64).reshape(_shape(out)), out.dtype)


def _scatter_add(ctx: _Context, prim: Primitive, ps: Params, args: tuple[Value, ...], out: ArrayType) -> Value:
    """index_add / gather_add: each element of the target plus the values added there."""
    target, value = (_as_slots(ctx.graph, v, out.dtype) for v in args[:2])
    key = _key(dict(_resolved(ps)), target.ids.shape, _indices(ctx, prim, args[2:]))
    positions = np.arange(target.ids.size).reshape(target.ids.shape)[key]
    added: list[list[int]] = [[] for _ in range(target.ids.size)]
    for position, slot in zip(np.ravel(positions), np.broadcast_to(value.ids, np.shape(positions)).ravel()):
        added[position].append(int(slot))
    width = max(map(len, added)) + 1
    zero = ctx.graph.constant(0, kind_of(out.dtype))
    rows = np.array([[t, *a] + [zero] * (width - 1 - len(a)) for t, a in zip(target.ids.ravel(), added)],
                    dtype=np.int64)
    kinds = (kind_of(out.dtype),) * width
    ids = ctx.graph.node(_list_template(_sum, kinds), kinds, rows, kind_of(out.dtype))
    return Slots(ids.reshape(target.ids.shape), out.dtype)


def _sum(us: list[sympy.Basic]) -> sympy.Basic:
    return sympy.Add(*us)


def _unary(f: Callable[[sympy.Basic], sympy.Basic]) -> Translation:
    return _concrete_first(elementwise(f))


_FLOAT_FUNCTIONS: dict[str, Callable[[sympy.Basic], sympy.Basic]] = {
    "exp": sympy.exp,
    "log": sympy.log,
    "log1p": lambda u: sympy.log(1 + u),
    "expm1": lambda u: sympy.exp(u) - 1,
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "tanh": sympy.tanh,
    "sigmoid": lambda u: 1 / (1 + sympy.exp(-u)),
    "softplus": lambda u: sympy.log(1 + sympy.exp(u)),
    "relu": lambda u: sympy.Max(u, 0),
    "gelu": lambda u: u * (1 + sympy.erf(u / sympy.sqrt(2))) / 2,
    "silu": lambda u: u / (1 + sympy.exp(-u)),
    "elu": lambda u: sympy.Piecewise((u, u > 0), (sympy.exp(u) - 1, True)),
    "erf": sympy.erf,
}

SYMPY: dict[Primitive, Translation] = {
    **{p: _unary(_FLOAT_FUNCTIONS[p.name]) for p in P.UNARY_FLOAT},
    P.NEG: _unary(lambda u: -u),
    P.ABS: _unary(sympy.Abs),
    P.SIGN: _unary(sympy.sign),
    P.NOT: _concrete_first(elementwise(sympy.Not, Bools.LOGICAL)),
    P.ADD: _concrete_first(elementwise(lambda a, b: a + b)),
    P.SUB: _concrete_first(elementwise(lambda a, b: a - b)),
    P.MUL: _concrete_first(elementwise(lambda a, b: a * b)),
    P.DIV: _concrete_first(elementwise(lambda a, b: a / b)),
    P.POW: _concrete_first(elementwise(lambda a, b: a ** b)),
    P.FLOORDIV: _concrete_first(elementwise(lambda a, b: sympy.floor(a / b))),
    P.MOD: _concrete_first(elementwise(lambda a, b: a - b * sympy.floor(a / b))),
    P.MINIMUM: _concrete_first(elementwise(sympy.Min)),
    P.MAXIMUM: _concrete_first(elementwise(sympy.Max)),
    P.LT: _concrete_first(elementwise(sympy.Lt, Bools.NUMBERS)),
    P.LE: _concrete_first(elementwise(sympy.Le, Bools.NUMBERS)),
    P.GT: _concrete_first(elementwise(sympy.Gt, Bools.NUMBERS)),
    P.GE: _concrete_first(elementwise(sympy.Ge, Bools.NUMBERS)),
    P.EQ: _concrete_first(elementwise(sympy.Eq, Bools.NUMBERS)),
    P.NE: _concrete_first(elementwise(sympy.Ne, Bools.NUMBERS)),
    P.AND: _concrete_first(elementwise(sympy.And, Bools.LOGICAL)),
    P.OR: _concrete_first(elementwise(sympy.Or, Bools.LOGICAL)),
    P.XOR: _concrete_first(elementwise(sympy.Xor, Bools.LOGICAL)),
    P.WHERE: _concrete_first(_where),
    # leaves have no arguments: always the reference semantics
    P.CONST: _numeric,
    P.SIZE: _numeric,
    P.ZEROS: _numeric,
    P.ONES: _numeric,
    P.ARANGE: _numeric,
    P.FULL: _concrete_first(_moving(lambda ps, x: np.full(ps["shape"], x))),
    P.ASTYPE: _concrete_first(_astype),
    P.SUM: _concrete_first(reduction(_sum)),
    P.MEAN: _concrete_first(reduction(lambda us: sympy.Add(*us) / len(us))),
    P.PROD: _concrete_first(reduction(lambda us: sympy.Mul(*us))),
    P.MAX: _concrete_first(pairwise(sympy.Max, lambda us: sympy.Or(*us))),
    P.MIN: _concrete_first(pairwise(sympy.Min, lambda us: sympy.And(*us))),
    P.LOGSUMEXP: _concrete_first(reduction(_logsumexp)),
    P.SOFTMAX: _concrete_first(_softmax),
    P.CUMSUM: _concrete_first(_scan),
    P.CUMPROD: _concrete_first(_scan),
    P.PARITY: _concrete_first(_parity),
    P.POPCOUNT_LE: _concrete_first(_popcount_le),
    P.MATMUL: _concrete_first(_matmul),
    P.TRANSPOSE: _concrete_first(_moving(lambda ps, x: np.transpose(x, ps["perm"]))),
    P.EXPAND_DIMS: _concrete_first(_moving(lambda ps, x: np.expand_dims(x, ps["axis"]))),
    P.BROADCAST_TO: _concrete_first(_moving(lambda ps, x: np.broadcast_to(x, ps["shape"]))),
    P.RESHAPE: _concrete_first(_moving(lambda ps, x: np.reshape(x, ps["shape"]))),
    P.STACK: _concrete_first(_moving(lambda ps, *xs: np.stack(xs, axis=ps["axis"]))),
    P.CONCAT: _concrete_first(_moving(lambda ps, *xs: np.concatenate(xs, axis=ps["axis"]))),
    P.INDEX: _concrete_first(_indexing),
    P.GATHER: _concrete_first(_indexing),
    P.INDEX_ADD: _concrete_first(_scatter_add),
    P.GATHER_ADD: _concrete_first(_scatter_add),
}


# ---- derivatives --------------------------------------------------------------------


@functools.cache
def partial_derivative(template: sympy.Basic, kinds: tuple[Kind, ...], k: int) -> sympy.Basic:
    """`sympy.diff(template, u_k)`. An integer-valued function of reals (floor,
    sign) is locally constant: its derivative is 0 almost everywhere."""
    d = sympy.diff(template, placeholder(kinds[k], k))
    d = d.replace(lambda e: isinstance(e, sympy.Derivative) and (
        e.expr.is_integer or isinstance(e.expr, sympy.floor | sympy.ceiling | sympy.sign)), lambda e: sympy.S.Zero)
    d = d.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: sympy.S.Zero).doit()
    if d.has(sympy.Derivative, sympy.Subs):
        raise UnsupportedError(f"SymPy leaves the derivative of {template} by u{k} unevaluated")
    return d


def tangent(graph: Graph, value: Value, seeds: Mapping[int, int]) -> Value:
    """The forward derivative of `value`: given the tangent slot of some slots
    (`seeds`, e.g. inputs to their tangent inputs), the tangent of each leaf:
    Slots for float leaves (the zero constant where no seed reaches), zeros
    for the others. Each node's tangent is a new
    node: the sum over its real arguments of the template's partial derivative
    times the argument's tangent."""
    zero = graph.constant(0.0, Kind.REAL)
    size = len(graph.kinds)
    tangents = np.full(size, -1, dtype=np.int64)
    for slot, t in seeds.items():
        tangents[slot] = t
    for node in _schedule(graph, _slots_of(value)):
        if graph.kinds[node.out[0]] is not Kind.REAL:
            continue
        dots = tangents[node.args]
        active = [k for k, kind in enumerate(node.kinds) if kind is Kind.REAL and (dots[:, k] >= 0).any()]
        partials = [(k, partial_derivative(node.template, node.kinds, k)) for k in active]
        partials = [(k, d) for k, d in partials if d != 0]
        if not partials:
            continue
        n = len(node.kinds)
        template = sympy.Add(*(d * placeholder(Kind.REAL, n + j) for j, (_, d) in enumerate(partials)))
        kinds = node.kinds + (Kind.REAL,) * len(partials)
        columns = np.where(dots[:, [k for k, _ in partials]] >= 0, dots[:, [k for k, _ in partials]], zero)
        tangents[node.out] = graph.node(template, kinds, np.concatenate([node.args, columns], axis=1), Kind.REAL)

    def leaf(v: Value) -> Value:
        t = _array_type(v)
        if not t.dtype.is_float:
            return np.zeros(_shape(t))
        if not isinstance(v, Slots):
            return Slots(np.full(_shape(t), zero, dtype=np.int64), t.dtype)
        ids = tangents[v.ids]
        return Slots(np.where(ids >= 0, ids, zero), v.dtype)
    return _map_leaves(leaf, value)


def _map_leaves(f: Callable[[Value], Value], value: Value) -> Value:
    if isinstance(value, tuple):
        return tuple(_map_leaves(f, v) for v in value)
    return f(value)


# ---- evaluation ------------------------------------------------------------------------

_MODULES = [{"erf": np.vectorize(math.erf, otypes=[np.float64])}, "numpy"]


@functools.cache
def _lambdified(template: sympy.Basic, kinds: tuple[Kind, ...]) -> Callable[..., Any]:
    return sympy.lambdify(placeholders(kinds), template, modules=_MODULES, cse=True)


def evaluate(sf: SymbolicFunction, args: Sequence[Any], batch: int | None = None) -> Any:
    """`sf.result` at `args` (one per parameter; fixed leaves are not read). With
    `batch`, the float leaves of the arguments have a leading axis of that length
    (or 1, broadcast), and so has every leaf of the result: one pass over the graph
    evaluates them all."""
    graph, count = sf.graph, batch or 1
    values = np.zeros((len(graph.kinds), count))
    if graph.constants:
        values[np.fromiter(graph.constants, dtype=np.int64)] = np.array(
            [float(v) for v in graph.constants.values()])[:, None]
    for param, arg in zip(sf.inputs, args):
        for leaf, given in zip(_leaves(param), _leaves(_structure(param, arg))):
            if isinstance(leaf, Slots):
                given = np.asarray(given, dtype=np.float64)
                given = np.broadcast_to(given if batch else given[None], (count, *leaf.ids.shape))
                values[leaf.ids.ravel()] = given.reshape(count, -1).T
    with np.errstate(all="ignore"):
        for node in _schedule(graph, _slots_of(sf.result)):
            columns = [values[node.args[:, k]] for k in range(len(node.kinds))]
            columns = [c != 0 if kind is Kind.BOOL else c for c, kind in zip(columns, node.kinds)]
            result = np.asarray(_lambdified(node.template, node.kinds)(*columns), dtype=np.float64)
            values[node.out] = (result != 0) if graph.kinds[node.out[0]] is Kind.BOOL else result

    def leaf(v: Value) -> Any:
        if not isinstance(v, Slots):
            return np.broadcast_to(v, (count, *np.shape(v))) if batch else v
        out = np.moveaxis(values[v.ids], -1, 0)
        out = np.rint(out).astype(np.int64) if v.dtype is DType.I64 else out.astype(numpy_dtype(v.dtype))
        return out if batch else out[0]
    return _map_leaves(leaf, sf.result)


def _slots_of(value: Value) -> np.ndarray:
    """Every slot of the Slots leaves of `value`."""
    ids = [leaf.ids.ravel() for leaf in _leaves(value) if isinstance(leaf, Slots)]
    return np.concatenate(ids) if ids else np.zeros(0, np.int64)


def _structure(like: Value, arg: Any) -> Value:
    """`arg` split into tuples as `like` is (arguments come as lists or tuples)."""
    if isinstance(like, tuple):
        return tuple(_structure(l, a) for l, a in zip(like, arg))
    return arg


def _schedule(graph: Graph, outputs: np.ndarray) -> list[Node]:
    """The nodes the slots `outputs` depend on, in order."""
    needed = np.zeros(len(graph.kinds), dtype=bool)
    needed[outputs] = True
    kept = []
    for node in reversed(graph.nodes):
        if needed[node.out].any():
            kept.append(node)
            needed[node.args.ravel()] = True
    return kept[::-1]


# ---- expressions ---------------------------------------------------------------------------


def expressions(sf: SymbolicFunction, max_terms: int = MAX_OPERATIONS) -> Value:
    """`sf.result` as SymPy expressions over the input symbols: object arrays
    (tuples item by item). An expression repeats what the graph shares, so it
    can be far larger than the graph: past `max_terms` terms (counted on the
    graph first) `TooLargeForSympy` is raised. For listings at small sizes."""
    graph = sf.graph
    nodes = _schedule(graph, _slots_of(sf.result))
    terms = np.ones(len(graph.kinds))  # the size of each slot's expression, as a tree
    for node in nodes:
        base, uses = _tree_size(node.template, node.kinds)
        terms[node.out] = base + terms[node.args] @ np.array(uses, dtype=np.float64)
        if terms[node.out].max() > max_terms:
            raise TooLargeForSympy(f"its expressions grow past {max_terms} terms")
    exprs: dict[int, sympy.Basic] = dict(graph.inputs)
    for slot, value in graph.constants.items():
        exprs[slot] = _number(value)
    for node in nodes:
        us = placeholders(node.kinds)
        for row, out in zip(node.args, node.out):
            exprs[int(out)] = node.template.xreplace({u: exprs[int(a)] for u, a in zip(us, row)})
        if time.monotonic() > graph.deadline:
            raise TooLargeForSympy("took longer than its time budget")

    def leaf(v: Value) -> np.ndarray:
        if isinstance(v, Slots):
            return np.vectorize(lambda s: exprs[int(s)], otypes=[object])(v.ids) if v.ids.size \
                else np.empty(v.ids.shape, object)
        return np.vectorize(_number, otypes=[object])(np.asarray(v)) if np.size(v) \
            else np.empty(np.shape(v), object)
    return _map_leaves(leaf, sf.result)


@functools.cache
def _tree_size(template: sympy.Basic, kinds: tuple[Kind, ...]) -> tuple[int, tuple[int, ...]]:
    """The terms of `template` other than its placeholders, and how often each placeholder occurs."""
    terms = list(sympy.preorder_traversal(template))
    uses = tuple(sum(t == u for t in terms) for u in placeholders(kinds))
    return len(terms) - sum(uses), uses


def _number(value: Any) -> sympy.Basic:
    """A constant as SymPy shows it best: bools, integers (also integral floats), floats."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, bool):
        return sympy.true if value else sympy.false
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53):
        return sympy.Integer(int(value))
    return sympy.Float(value)

