"""Simplification of the target IR: rewrite rules run to a fixed point.

Each rule looks at one binding (with what is known about the names in scope)
and returns the bindings that replace it, or None. A round walks the function
front to back, trying the rules in order on every binding until none fires
(the replacements are tried again), then deletes the bindings nobody uses;
rounds repeat until the function stops changing.

A rule may only fire when the result keeps the original's shape and dtype
(NumPy broadcasting makes `x + zeros(n)` an array even for a scalar x), so
the rules consult the type of every binding, from `prim_types.result_type`.
`binding_types` is that typing, for other passes too.

The rules, in `RULES` order, by family: the paper's partial evaluation (copies,
beta, branches and tuples on known values, constants, `x * 1`, `x + 0`, ...);
literal algebra (`2 * (0.5 * x) -> x`, `sum(-a) -> -sum(a)`, a literal scales the
smaller factor of a product); shapes (reshape, transpose and broadcast chains
composed; an explicit broadcast that NumPy's broadcasting does anyway dropped;
elementwise work done before a broadcast); products (a stack of matrix-vector
products with one matrix is one product, the transpose of a product with a
transposed factor, the identity matrix of a tangent basis, a scaling by a diagonal
beside a product added to its matrices, and in reverse the diagonal's cotangent read
off the matrices' one); reductions (a sum or
mean taken before the linear work that made its argument, so that the full-size
argument is never made: split over a sum of terms, before a factor that is the
same along the summed axes, a transpose, or the rows of a product; the normalised
exponentials of a softmax written by hand sum to one); indexing (a gather or
scatter of every item in order is a reshape, a row of a row one index, a constant row
of a scatter at a constant row the row added to); loops (invariants hoisted, a scan
item read only at its last state not stacked, state items nobody reads dropped,
an item each step returns unchanged its initial value, a stacked item no step
makes — a value, a row of an array at the step's own row — made once after the
loop, accumulated outer products summed by one
product after the loop, an invariant added at every step added once times the
length, an item every step makes by adding values into zeros at one place carried
as the values); and sharing of
equal expressions. Rules that only pay when a value has no other reader consult
`Facts.readers`, taken as each round begins; they stay correct whatever it says.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

from . import primitives as P
from .names import Namer, is_temporary
from .prim_types import PrimTypeError, result_type
from .primitives import param, params
from .target import (Apply, Atom, Bind, Block, Call, Expr, IfElse, Lambda, Lit, LoopE, MakeTuple,
                     Name, Project, TargetFunction, definitions)
from .types import (ArrayType, Dim, DType, Stacking, TupleType, Type, item_stacked, loop_result_type, scalar,
                    stacking)

# ---- types of the target IR --------------------------------------------------


def literal_type(value: bool | int | float) -> ArrayType:
    """A Python literal is a weak scalar (NEP 50)."""
    dtype = DType.BOOL if isinstance(value, bool) else DType.I64 if isinstance(value, int) else DType.F64
    return scalar(dtype, weak=True)


def atom_type(atom: Atom, types: Mapping[str, Type]) -> Type | None:
    match atom:
        case Name(id):
            return types.get(id)
        case Lit(value):
            return literal_type(value)
        case _:
            assert_never(atom)


def expr_type(expr: Expr, types: Mapping[str, Type]) -> Type | None:
    """The type of `expr`, the names in it typed by `types` (also those bound in
    its blocks); None where something is unknown (the parameters of a lambda)."""
    match expr:
        case Name() | Lit():
            return atom_type(expr, types)
        case Call(prim, ps, args):
            arg_types = tuple(atom_type(a, types) for a in args)
            if any(t is None for t in arg_types):
                return None
            return result_type(prim, ps, arg_types)
        case MakeTuple(items):
            item_types = tuple(atom_type(a, types) for a in items)
            return None if any(t is None for t in item_types) else TupleType(item_types)
        case Project(tup, k):
            t = atom_type(tup, types)
            return t.items[k] if isinstance(t, TupleType) else None
        case IfElse(then=then):
            return atom_type(then.result, types)
        case LoopE(init=init, xs=xs, stacked=stacked):
            state, sequence = atom_type(init, types), atom_type(xs, types)
            if state is None or sequence is None:
                return None if stacked is not False else state
            return loop_result_type(state, leading_dim(sequence), stacked)
        case Lambda() | Apply():
            return None
        case _:
            assert_never(expr)


def leading_dim(t: Type) -> Dim:
    """The length of the leading axis of an array, or of a tuple's arrays."""
    return t.shape[0] if isinstance(t, ArrayType) else leading_dim(t.items[0])


def item_type(t: Type) -> Type:
    """The type of one item along the leading axis (tuples: item by item)."""
    if isinstance(t, ArrayType):
        return ArrayType(t.dtype, t.shape[1:])
    return TupleType(tuple(item_type(x) for x in t.items))


def binding_types(fn: TargetFunction) -> dict[str, Type]:
    """The type of every name of `fn` whose type is known: parameters, bindings
    (in blocks too), loop states and items."""
    types: dict[str, Type] = dict(fn.params)
    _type_block(fn.body, types)
    return types


def _type_block(block: Block, types: dict[str, Type]) -> None:
    for bind in block.bindings:
        match bind.expr:
            case IfElse(then=then, orelse=orelse):
                _type_block(then, types)
                _type_block(orelse, types)
            case LoopE(init=init, xs=xs, acc=acc, x=x, body=body):
                _type_loop_names(init, xs, acc, x, types)
                _type_block(body, types)
            case Lambda(body=body):
                _type_block(body, types)
        t = expr_type(bind.expr, types)
        if t is not None:
            types[bind.name] = t


def _type_loop_names(init: Atom, xs: Atom, acc: str, x: str, types: dict[str, Type]) -> None:
    state, sequence = atom_type(init, types), atom_type(xs, types)
    if state is not None:
        types[acc] = state
    if sequence is not None:
        types[x] = item_type(sequence)


# ---- what is known at a binding ------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """An expression that reads a name, and the name it is bound to (None: the
    expression is a block's result)."""

    name: str | None
    expr: Expr


@dataclass
class Facts:
    """What the rules know at a binding: the type and definition of the names in
    scope, the aliases made by copy propagation, the expressions computed so far
    (for sharing) and who reads each name. Names are unique in a function, so
    only `available` is scoped: a block sees its enclosing block's, not its
    siblings'."""

    namer: Namer
    types: dict[str, Type]
    definitions: dict[str, Expr]
    aliases: dict[str, Atom]
    available: dict[Any, str]
    readers: dict[str, list[Reader]] = dataclasses.field(default_factory=dict)
    # what reads each name, as the round began (a name made in the round has no
    # entry: rules that rely on who reads a value leave such values alone)
    bound: dict[str, Expr] = dataclasses.field(default_factory=dict)
    # the definition of every name of the function as the round began, later
    # bindings' too (rewrites keep a name's value, so it stays true)

    def nested(self) -> "Facts":
        return dataclasses.replace(self, available=dict(self.available))

    def type_of(self, atom: Atom) -> Type | None:
        return atom_type(atom, self.types)

    def definition(self, atom: Atom) -> Expr | None:
        return self.definitions.get(atom.id) if isinstance(atom, Name) else None

    def record(self, bind: Bind) -> None:
        """`bind` is kept: remember its type, its definition, its expression."""
        t = expr_type(bind.expr, self.types)
        if t is not None:
            self.types[bind.name] = t
        self.definitions[bind.name] = bind.expr
        if isinstance(bind.expr, Call | MakeTuple | Project):
            self.available.setdefault(_key(bind.expr), bind.name)


_COMMUTATIVE = frozenset((P.ADD, P.MUL, P.MAXIMUM, P.MINIMUM, P.EQ, P.NE, P.AND, P.OR, P.XOR))


def _key(value: Any) -> Any:
    """A key equal only for identical expressions: `1`, `1.0`, `True`, `-0.0` and
    `0.0` compare equal in Python but are different literals."""
    if isinstance(value, bool | int | float):
        return (type(value).__name__, repr(value))
    if isinstance(value, tuple):
        return tuple(_key(v) for v in value)
    if isinstance(value, Lit):
        return ("lit", _key(value.value))
    if isinstance(value, Call):
        args = _key(value.args)
        if value.prim in _COMMUTATIVE:
            args = tuple(sorted(args, key=repr))
        return ("call", value.prim.name, _key(value.params), args)
    if isinstance(value, MakeTuple):
        return ("tuple", _key(value.items))
    if isinstance(value, Project):
        return ("project", _key(value.tuple), value.k)
    return value  # Name, Dim, DType, str: equality is identity of meaning


# ---- the rules ------------------------------------------------------------------

Rule = Callable[[Bind, Facts], "tuple[Bind, ...] | None"]
Rewrite = Callable[[Expr, Facts], "Expr | None"]


def rewrite(fn: Rewrite) -> Rule:
    """A rule that replaces a binding's expression by another."""
    @functools.wraps(fn)
    def rule(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
        new = fn(bind.expr, facts)
        return None if new is None else (Bind(bind.name, new, bind.span),)
    return rule


def _constant(atom: Atom, facts: Facts) -> bool | int | float | None:
    """The value every element of `atom` has, when it is a known number (not a bool)."""
    value: Any = None
    match atom:
        case Lit(v):
            value = v
        case Name():
            match facts.definition(atom):
                case Call(P.CONST, ps, ()):
                    value = param(ps, "value")
                case Call(P.ZEROS, _, ()):
                    value = 0
                case Call(P.ONES, _, ()):
                    value = 1
                case Call(P.FULL | P.BROADCAST_TO | P.EXPAND_DIMS | P.RESHAPE | P.TRANSPOSE, _,
                          (filler,)):
                    value = _constant(filler, facts)
    return None if isinstance(value, bool) else value


def _is(atom: Atom, facts: Facts, number: int) -> bool:
    value = _constant(atom, facts)
    return value is not None and value == number


def _keeps_type(expr: Expr, atom: Atom, facts: Facts) -> bool:
    """`atom` has the type `expr` has: replacing one by the other changes no shape or dtype."""
    t = expr_type(expr, facts.types)
    return t is not None and t == facts.type_of(atom)


def _typed_as(new: Expr, old: Expr, facts: Facts) -> bool:
    """`new` is well typed and has the type `old` has."""
    try:
        t = expr_type(new, facts.types)
    except PrimTypeError:
        return False
    return t is not None and t == expr_type(old, facts.types)


def propagate_copy(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let x = y; e  ->  e[x := y]
    if isinstance(bind.expr, Name | Lit):
        facts.aliases[bind.name] = bind.expr
        return ()
    return None


def beta_reduce(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let f = |p| body; f(a)  ->  body[p := a]   (the body's names made fresh)
    match bind.expr:
        case Apply(fn, args):
            match facts.definition(fn):
                case Lambda(ps, body):
                    assert len(ps) == len(args), f"{fn} takes {len(ps)} arguments, got {len(args)}"
                    renamed = _Renamer(facts.namer, {p: a for p, a in zip(ps, args)}).block(body)
                    return (*renamed.bindings, Bind(bind.name, renamed.result, bind.span))
    return None


def branch_on_literal(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # if true { a } else { b }  ->  a          if false { a } else { b }  ->  b
    # (a strong bool constant, a folded comparison, decides as a literal does)
    match bind.expr:
        case IfElse(condition, then, orelse):
            cond = condition if isinstance(condition, Lit) else _strong_literal(condition, facts)
            if cond is not None and isinstance(cond.value, bool):
                taken = then if cond.value else orelse
                return (*taken.bindings, Bind(bind.name, taken.result, bind.span))
    return None


def same_branches(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # if c { a } else { a' }  ->  a     (a' is a with its own names renamed: the derivative
    # of a branch that does not read x is zeros in both branches of its adjoint's `if`)
    match bind.expr:
        case IfElse(_, then, orelse) if _alike(then, orelse):
            return (*then.bindings, Bind(bind.name, then.result, bind.span))
    return None


def _alike(a: Block, b: Block) -> bool:
    """Whether blocks `a` and `b` compute the same: binding by binding the same calls,
    tuples and projections of the same atoms, once each block's names are paired in
    order (nested blocks are not compared: not alike)."""
    if len(a.bindings) != len(b.bindings):
        return False
    pairs: dict[str, str] = {}

    def same(x: Atom, y: Atom) -> bool:
        return Name(pairs[x.id]) == y if isinstance(x, Name) and x.id in pairs else x == y

    for p, q in zip(a.bindings, b.bindings):
        match p.expr, q.expr:
            case Call(f, fs, xs), Call(g, gs, ys) if f is g and fs == gs and len(xs) == len(ys):
                alike = all(map(same, xs, ys))
            case MakeTuple(xs), MakeTuple(ys) if len(xs) == len(ys):
                alike = all(map(same, xs, ys))
            case Project(x, k), Project(y, j) if k == j:
                alike = same(x, y)
            case (Name() | Lit()) as x, (Name() | Lit()) as y:
                alike = same(x, y)
            case _:
                alike = False
        if not alike:
            return False
        pairs[p.name] = q.name
    return same(a.result, b.result)


@rewrite
def project_of_tuple(expr: Expr, facts: Facts) -> Expr | None:
    # (a, b).0  ->  a
    match expr:
        case Project(tup, k):
            match facts.definition(tup):
                case MakeTuple(items):
                    return items[k]
    return None


@rewrite
def literal_of_constant(expr: Expr, facts: Facts) -> Expr | None:
    # const(2.0)  ->  2.0   (a weak constant is its Python literal, of the same type)
    match expr:
        case Call(P.CONST, ps, ()):
            dtype = param(ps, "dtype")
            python = {DType.BOOL: bool, DType.I64: int, DType.F32: float, DType.F64: float}[dtype]
            literal = Lit(python(param(ps, "value")))
            if expr_type(expr, facts.types) == literal_type(literal.value):
                return literal
    return None


_FOLDABLE: dict[P.Primitive, Callable[..., Any]] = {
    P.ADD: lambda a, b: a + b, P.SUB: lambda a, b: a - b, P.MUL: lambda a, b: a * b,
    P.DIV: lambda a, b: a / b, P.NEG: lambda a: -a,
}


@rewrite
def fold_constants(expr: Expr, facts: Facts) -> Expr | None:
    # 2.0 * 3.0  ->  6.0      -float64(1.0)  ->  float64(-1.0)
    # (+ - * / and unary -, on int and float literals and f64/i64 scalar constants)
    match expr:
        case Call(prim, _, args) if prim in _FOLDABLE and args:
            values = [_literal_value(a, facts) for a in args]
            if any(v is None or isinstance(v, bool) for v in values):
                return None
            try:
                value = _FOLDABLE[prim](*values)
            except (ZeroDivisionError, OverflowError):
                return None  # left for NumPy's rules at run time
            if isinstance(value, float) and not math.isfinite(value):
                return None
            t = expr_type(expr, facts.types)
            if t == literal_type(value):
                return Lit(value)
            if (isinstance(t, ArrayType) and t.shape == () and not t.weak
                    and (t.dtype is DType.F64 or (t.dtype is DType.I64 and isinstance(value, int)
                                                  and abs(value) < 2 ** 62))):
                return Call(P.CONST, params(value=_python(value, t.dtype), dtype=t.dtype, weak=False), ())
    return None


def _literal_value(atom: Atom, facts: Facts) -> bool | int | float | None:
    """The value of a literal or of a strong f64/i64 scalar constant."""
    if isinstance(atom, Lit):
        return atom.value
    strong = _strong_literal(atom, facts)
    t = facts.type_of(atom)
    if strong is not None and isinstance(t, ArrayType) and t.dtype in (DType.F64, DType.I64):
        return strong.value
    return None


@rewrite
def multiply_by_one(expr: Expr, facts: Facts) -> Expr | None:
    # x * 1  ->  x          1 * x  ->  x
    match expr:
        case Call(P.MUL, _, (a, b)):
            for one, x in ((b, a), (a, b)):
                if _is(one, facts, 1) and _keeps_type(expr, x, facts):
                    return x
    return None


@rewrite
def multiply_by_minus_one(expr: Expr, facts: Facts) -> Expr | None:
    # x * -1  ->  -x          -1 * x  ->  -x
    match expr:
        case Call(P.MUL, _, (a, b)):
            for minus_one, x in ((b, a), (a, b)):
                if _is(minus_one, facts, -1):
                    new = Call(P.NEG, (), (x,))
                    if _typed_as(new, expr, facts):
                        return new
    return None


@rewrite
def multiply_by_zero(expr: Expr, facts: Facts) -> Expr | None:
    # x * 0  ->  0          0 * x  ->  0      (zeros of the product's type; as for
    # symbolic zeros, an inf or nan in x is not propagated)
    match expr:
        case Call(P.MUL, _, (a, b)) if _is(a, facts, 0) or _is(b, facts, 0):
            for zero in (a, b):
                if _is(zero, facts, 0) and _keeps_type(expr, zero, facts):
                    return zero
            t = expr_type(expr, facts.types)
            if isinstance(t, ArrayType):
                return _zeros(t)
    return None


@rewrite
def divide_zero(expr: Expr, facts: Facts) -> Expr | None:
    # 0 / x  ->  0      (zeros of the quotient's type; as for symbolic zeros, a zero, inf or
    # nan x is not propagated: the zero cotangent of a tie count, 0 / count, stays zero)
    match expr:
        case Call(P.DIV, _, (zero, _)) if _is(zero, facts, 0):
            t = expr_type(expr, facts.types)
            if _keeps_type(expr, zero, facts):
                return zero
            if isinstance(t, ArrayType):
                return _zeros(t)
    return None


@rewrite
def add_zero(expr: Expr, facts: Facts) -> Expr | None:
    # x + 0  ->  x          0 + x  ->  x
    match expr:
        case Call(P.ADD, _, (a, b)):
            for zero, x in ((b, a), (a, b)):
                if _is(zero, facts, 0) and _keeps_type(expr, x, facts):
                    return x
    return None


@rewrite
def subtract_zero(expr: Expr, facts: Facts) -> Expr | None:
    # x - 0  ->  x
    match expr:
        case Call(P.SUB, _, (x, zero)) if _is(zero, facts, 0) and _keeps_type(expr, x, facts):
            return x
    return None


@rewrite
def subtract_from_zero(expr: Expr, facts: Facts) -> Expr | None:
    # 0 - x  ->  -x
    match expr:
        case Call(P.SUB, _, (zero, x)) if _is(zero, facts, 0):
            negated = Call(P.NEG, (), (x,))
            t = expr_type(expr, facts.types)
            if t is not None and expr_type(negated, facts.types) == t:
                return negated
    return None


@rewrite
def divide_by_one(expr: Expr, facts: Facts) -> Expr | None:
    # x / 1  ->  x
    match expr:
        case Call(P.DIV, _, (x, one)) if _is(one, facts, 1) and _keeps_type(expr, x, facts):
            return x
    return None


@rewrite
def power_of_one(expr: Expr, facts: Facts) -> Expr | None:
    # x ** 1  ->  x
    match expr:
        case Call(P.POW, _, (x, one)) if _is(one, facts, 1) and _keeps_type(expr, x, facts):
            return x
    return None


@rewrite
def negate_twice(expr: Expr, facts: Facts) -> Expr | None:
    # -(-x)  ->  x
    match expr:
        case Call(P.NEG, _, (inner,)):
            match facts.definition(inner):
                case Call(P.NEG, _, (x,)) if _keeps_type(expr, x, facts):
                    return x
    return None


_RESHAPINGS = frozenset((P.BROADCAST_TO, P.RESHAPE, P.ASTYPE))


@rewrite
def identity_reshaping(expr: Expr, facts: Facts) -> Expr | None:
    # broadcast_to(x, shape(x)) -> x    reshape(x, shape(x)) -> x    astype(x, dtype(x)) -> x
    # transpose(x, (0, 1, ...)) -> x
    match expr:
        case Call(prim, _, (x,)) if prim in _RESHAPINGS and _keeps_type(expr, x, facts):
            return x
        case Call(P.TRANSPOSE, ps, (x,)) if (param(ps, "perm") == tuple(range(len(param(ps, "perm"))))
                                             and _keeps_type(expr, x, facts)):
            return x
    return None


# ---- scalars and literals --------------------------------------------------------


def _python(value: bool | int | float, dtype: DType) -> bool | int | float:
    return {DType.BOOL: bool, DType.I64: int, DType.F32: float, DType.F64: float}[dtype](value)


@rewrite
def scalar_fill(expr: Expr, facts: Facts) -> Expr | None:
    # ones(()) -> float64(1.0)      zeros(()) -> float64(0.0)   (a strong scalar constant)
    match expr:
        case Call(P.ONES | P.ZEROS as prim, ps, ()) if param(ps, "shape") == ():
            dtype = param(ps, "dtype")
            value = _python(1 if prim is P.ONES else 0, dtype)
            return Call(P.CONST, params(value=value, dtype=dtype, weak=False), ())
    return None


def _strong_literal(atom: Atom, facts: Facts) -> Lit | None:
    """The Python literal of `atom` when it is a strong scalar constant (`float64(2.0)`,
    or a constant size, `int64(1)`: the reverse sweep of a loop reads `t - 1`)."""
    match facts.definition(atom):
        case Call(P.CONST, ps, ()) if not dict(ps).get("weak", True):
            return Lit(_python(param(ps, "value"), param(ps, "dtype")))
        case Call(P.SIZE, ps, ()) if param(ps, "dim").is_constant:
            return Lit(param(ps, "dim").const)
        case Call(P.ASTYPE, ps, (Lit(value),)) if param(ps, "dtype") is DType.F64 and not isinstance(value, bool):
            return Lit(float(value))  # `f64(-0.5)`, `f64(2)`: exact
    return None


def _leading_broadcast(atom: Atom, facts: Facts) -> Atom | None:
    """`a` when `atom` is `a` with leading axes added or broadcast only, which NumPy's
    broadcasting adds by itself: broadcast_to(a, s), expand_dims(a, 0), or
    reshape(a, (1, ..., 1) + shape(a))."""
    match facts.definition(atom):
        case Call(P.BROADCAST_TO, _, (a,)):
            return a
        case Call(P.EXPAND_DIMS, ps, (a,)) if param(ps, "axis") == 0:
            return a
        case Call(P.RESHAPE, ps, (a,)):
            t, shape = facts.type_of(a), param(ps, "shape")
            lead = len(shape) - t.rank if isinstance(t, ArrayType) else -1
            if lead >= 0 and shape[lead:] == t.shape and all(d == Dim(1) for d in shape[:lead]):
                return a
    return None


@rewrite
def implicit_broadcast(expr: Expr, facts: Facts) -> Expr | None:
    # x * broadcast_to(a, s) -> x * a      x + expand_dims(a, 0) -> x + a      x * float64(2.0) -> x * 2.0
    # (when the result's type is unchanged: NumPy's broadcasting does the rest)
    match expr:
        case Call(prim, ps, args) if prim in P.ELEMENTWISE and len(args) >= 2:
            for k, arg in enumerate(args):
                for plain in (_leading_broadcast(arg, facts), _strong_literal(arg, facts)):
                    if plain is not None:
                        new = Call(prim, ps, args[:k] + (plain,) + args[k + 1:])
                        if _typed_as(new, expr, facts):
                            return new
    return None


def broadcast_after_elementwise(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # f(broadcast_to(a, s), b) -> broadcast_to(f(a, b), s)   (f computed on the smaller array)
    match bind.expr:
        case Call(prim, ps, args) if prim in P.ELEMENTWISE:
            plain = [_leading_broadcast(a, facts) for a in args]
            if all(p is None for p in plain):
                return None
            small = Call(prim, ps, tuple(a if p is None else p for a, p in zip(args, plain)))
            t, old = _safe_type(small, facts), expr_type(bind.expr, facts.types)
            if (isinstance(t, ArrayType) and isinstance(old, ArrayType) and t.dtype is old.dtype
                    and t.shape != old.shape and _broadcasts(t.shape, old.shape)):
                inner = facts.namer.temporary()
                return (Bind(inner, small, bind.span),
                        Bind(bind.name, Call(P.BROADCAST_TO, params(shape=old.shape), (Name(inner),)),
                             bind.span))
    return None


def _safe_type(expr: Expr, facts: Facts) -> Type | None:
    try:
        return expr_type(expr, facts.types)
    except PrimTypeError:
        return None


def _broadcasts(shape: tuple[Dim, ...], target: tuple[Dim, ...]) -> bool:
    lead = len(target) - len(shape)
    return lead >= 0 and all(a == b or a == Dim(1) for a, b in zip(shape, target[lead:]))


_COMPARE: dict[P.Primitive, Callable[[Any, Any], bool]] = {
    P.LT: lambda a, b: a < b, P.LE: lambda a, b: a <= b, P.GT: lambda a, b: a > b,
    P.GE: lambda a, b: a >= b, P.EQ: lambda a, b: a == b, P.NE: lambda a, b: a != b,
}


@rewrite
def compare_literals(expr: Expr, facts: Facts) -> Expr | None:
    # 2 == 0  ->  False      float64(-0.5) < 0.0  ->  bool(True)   (comparisons of int and
    # float literals and of f64/i64 scalar constants: a strong operand makes a strong bool)
    match expr:
        case Call(prim, _, (a, b)) if prim in _COMPARE:
            x, y = _literal_value(a, facts), _literal_value(b, facts)
            if x is None or y is None or isinstance(x, bool) or isinstance(y, bool):
                return None
            strong = not (isinstance(a, Lit) and isinstance(b, Lit))
            if strong and any(isinstance(v, int) and abs(v) >= 2 ** 53 for v in (x, y)):
                return None  # NumPy compares an int64 beside a float64 as floats, Python exactly
            value, t = _COMPARE[prim](x, y), expr_type(expr, facts.types)
            if t == literal_type(value):
                return Lit(value)
            if isinstance(t, ArrayType) and t.shape == () and not t.weak and t.dtype is DType.BOOL:
                return Call(P.CONST, params(value=value, dtype=DType.BOOL, weak=False), ())
    return None


@rewrite
def logical_with_constant(expr: Expr, facts: Facts) -> Expr | None:
    # False and c  ->  False      True and c  ->  c      True or c  ->  True      False or c  ->  c
    # (on bool scalars; a literal, or a strong bool constant such as a folded comparison)
    match expr:
        case Call(P.AND | P.OR as prim, _, (a, b)):
            t = expr_type(expr, facts.types)
            if not (isinstance(t, ArrayType) and t.dtype is DType.BOOL and t.shape == ()):
                return None
            for known, other in ((a, b), (b, a)):
                literal = known if isinstance(known, Lit) else _strong_literal(known, facts)
                if literal is None or not isinstance(literal.value, bool):
                    continue
                if literal.value is (prim is P.OR):  # the absorbing value decides
                    if t == literal_type(literal.value):
                        return Lit(literal.value)
                    return Call(P.CONST, params(value=literal.value, dtype=DType.BOOL, weak=False), ())
                if _keeps_type(expr, other, facts):
                    return other
    return None


@rewrite
def select_known(expr: Expr, facts: Facts) -> Expr | None:
    # where(true, a, b) -> a      where(false, a, b) -> b      where(c, a, a) -> a
    # where(c, 0, 0.0) -> zeros    (zeros of the selection's type)
    match expr:
        case Call(P.WHERE, _, (cond, a, b)):
            if a == b and _keeps_type(expr, a, facts):
                return a
            t = expr_type(expr, facts.types)
            if _is(a, facts, 0) and _is(b, facts, 0) and isinstance(t, ArrayType) and t.dtype.is_float:
                return _zeros(t)
            if isinstance(cond, Lit) and isinstance(cond.value, bool):
                taken = a if cond.value else b
                if _keeps_type(expr, taken, facts):
                    return taken
    return None


@rewrite
def add_to_itself(expr: Expr, facts: Facts) -> Expr | None:
    # x + x -> 2 * x
    match expr:
        case Call(P.ADD, _, (Name() as a, b)) if a == b:
            new = Call(P.MUL, (), (Lit(2), a))
            if _typed_as(new, expr, facts):
                return new
    return None


def _scaled(atom: Atom, facts: Facts) -> tuple[int | float, Atom] | None:
    """`(c, a)` when `atom` is `c * a` or `a * c` for a number literal c, or `-a` (c = -1)."""
    match facts.definition(atom):
        case Call(P.MUL, _, (Lit(c), a)) | Call(P.MUL, _, (a, Lit(c))) if not isinstance(c, bool):
            return c, a
        case Call(P.NEG, _, (a,)):
            return -1, a
    return None


@rewrite
def collect_literal_factors(expr: Expr, facts: Facts) -> Expr | None:
    # c1 * (c2 * a) -> (c1 c2) * a      c * (-a) -> (-c) * a      -(c * a) -> (-c) * a
    match expr:
        case Call(P.MUL, _, (Lit(c), x)) | Call(P.MUL, _, (x, Lit(c))) if not isinstance(c, bool):
            inner = _scaled(x, facts)
        case Call(P.NEG, _, (x,)):
            c, inner = -1, _scaled(x, facts)
            if inner is not None and inner[0] == -1:
                return None  # -(-a): negate_twice
        case _:
            return None
    if inner is None:
        return None
    factor = c * inner[0]
    if isinstance(factor, float) and not math.isfinite(factor):
        return None
    new = Call(P.MUL, (), (Lit(factor), inner[1]))
    return new if _typed_as(new, expr, facts) else None


@rewrite
def add_negation(expr: Expr, facts: Facts) -> Expr | None:
    # a - (-b) -> a + b      a + (-b) -> a - b      (-a) + b -> b - a
    match expr:
        case Call(P.SUB | P.ADD as prim, _, (a, b)):
            for negated, other, first in ((b, a, True), (a, b, False)):
                if prim is P.SUB and not first:
                    continue
                match facts.definition(negated):
                    case Call(P.NEG, _, (x,)):
                        new = Call(P.ADD if prim is P.SUB else P.SUB, (), (other, x))
                        if _typed_as(new, expr, facts):
                            return new
    return None


def _new_axes_of(atom: Atom, facts: Facts) -> Call | None:
    """The call when `atom` is expand_dims(a, k) or reshape(a, s) that adds unit axes only."""
    match facts.definition(atom):
        case Call(P.EXPAND_DIMS, _, (_,)) as call:
            return call
        case Call(P.RESHAPE, _, (_,)) as call if _unit_axes_added(atom, facts) is not None:
            return call
    return None


def scale_the_smaller_factor(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # c * (a * b) -> (c * a) * b      (c a literal, a broadcast along axes of b: fewer items
    # scaled; the product read by nothing else)
    # c * expand_dims(d * a, k) -> expand_dims((c d) * a, k)   (the literals meet)
    match bind.expr:
        case Call(P.MUL, _, (Lit(c) as lit, x)) | Call(P.MUL, _, (x, Lit(c) as lit)) if not isinstance(c, bool):
            t = expr_type(bind.expr, facts.types)
            inner = facts.definition(x)
            new_axes = _new_axes_of(x, facts)
            if new_axes is not None and _scaled(new_axes.args[0], facts) is not None:
                scaled = facts.namer.temporary()
                return _typed_bindings([(scaled, Call(P.MUL, (), (lit, new_axes.args[0]))),
                                        (bind.name, Call(new_axes.prim, new_axes.params, (Name(scaled),)))],
                                       t, bind.span, facts)
            if not (isinstance(t, ArrayType) and isinstance(inner, Call) and inner.prim is P.MUL
                    and _sole_reader(x, bind.name, facts)):
                return None
            for a, b in (inner.args, reversed(inner.args)):
                ta = facts.type_of(a)
                if (isinstance(ta, ArrayType) and ta.dtype is t.dtype and ta.shape != t.shape
                        and facts.type_of(b) == facts.type_of(x)):
                    scaled = facts.namer.temporary()
                    return _typed_bindings([(scaled, Call(P.MUL, (), (lit, a))),
                                            (bind.name, Call(P.MUL, (), (Name(scaled), b)))],
                                           t, bind.span, facts)
    return None


_LINEAR_REDUCTIONS = frozenset((P.SUM, P.MEAN))


def reduce_before_scaling(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # sum(c * a) -> c * sum(a)      sum(-a) -> -sum(a)      (also mean: the scaling on fewer items)
    match bind.expr:
        case Call(prim, ps, (x,)) if prim in _LINEAR_REDUCTIONS:
            scaled = _scaled(x, facts)
            if scaled is None:
                return None
            c, a = scaled
            reduced = Call(prim, ps, (a,))
            inner = facts.namer.temporary()
            outer = (Call(P.NEG, (), (Name(inner),)) if c == -1 and not isinstance(c, float)
                     else Call(P.MUL, (), (Lit(c), Name(inner))))
            t = _safe_type(reduced, facts)
            old = expr_type(bind.expr, facts.types)
            if t is not None and expr_type(outer, {**facts.types, inner: t}) == old:
                return Bind(inner, reduced, bind.span), Bind(bind.name, outer, bind.span)
    return None


# A sum (or mean) is linear: taken before the linear work that made its argument, it
# leaves that work to the smaller, reduced array, and the full-size argument is never
# made. Only where the argument has no other reader (else it is made anyway).


def _sole_reader(atom: Atom, reader: str, facts: Facts) -> bool:
    """`atom` is a name that only the binding `reader` reads (as the round began)."""
    found = facts.readers.get(atom.id, []) if isinstance(atom, Name) else []
    return len(found) == 1 and found[0].name == reader


def _float_array(atom: Atom, facts: Facts) -> ArrayType | None:
    t = facts.type_of(atom)
    return t if isinstance(t, ArrayType) and t.dtype.is_float else None


def _constant_along(factor: Atom, axes: tuple[int, ...], t: ArrayType, facts: Facts) -> bool:
    """`factor`, broadcast to `t`, is the same along every axis in `axes`: it has no
    such axis of its own, or has it with length 1."""
    tf = facts.type_of(factor)
    if not isinstance(tf, ArrayType) or tf.rank > t.rank:
        return False
    lead = t.rank - tf.rank
    return all(k < lead or tf.shape[k - lead] == Dim(1) for k in axes)


def _early_work(x: Atom, axes: tuple[int, ...], reader: str, facts: Facts) -> tuple | None:
    """How a reduction of `x` over `axes`, in the binding `reader`, goes before the
    linear work that makes x (which nothing else reads), or None:
    ("terms", op, a, b)        x = a + b or a - b, and a's or b's reduction goes early too
    ("transpose", a, perm)     x = transpose(a, perm)
    ("factor", a, c)           x = a * c, c the same along `axes`
    ("scaled", a, c)           x = c * a for a number c, or -a (c = -1)
    ("product", a, b, side)    x = a @ b (stacks of matrices), `axes` holding its
                               "rows" axis, or else its "columns" axis"""
    t = _float_array(x, facts)
    if t is None or not _sole_reader(x, reader, facts):
        return None
    match facts.definition(x):
        case Call(P.ADD | P.SUB as op, _, (a, b)) if facts.type_of(a) == facts.type_of(b) == t:
            if _early_work(a, axes, x.id, facts) or _early_work(b, axes, x.id, facts):
                return ("terms", op, a, b)
        case Call(P.TRANSPOSE, ps, (a,)):
            return ("transpose", a, param(ps, "perm"))
        case Call(P.MUL, _, (p, q)):
            for a, c in ((p, q), (q, p)):
                if facts.type_of(a) == t and _constant_along(c, axes, t, facts):
                    return ("factor", a, c)
        case Call(P.MATMUL, _, (a, b)):
            ta, tb = facts.type_of(a), facts.type_of(b)
            if isinstance(ta, ArrayType) and isinstance(tb, ArrayType) and ta.rank >= 2 and tb.rank >= 2:
                if t.rank - 2 in axes:
                    return ("product", a, b, "rows")
                if t.rank - 1 in axes:
                    return ("product", a, b, "columns")
    scaled = _scaled(x, facts)
    if scaled is not None and facts.type_of(scaled[1]) == t:
        return ("scaled", scaled[1], scaled[0])
    return None


@dataclass
class _EarlyReduction:
    """Builds the bindings of a reduction taken before the linear work, as deep
    as `_early_work` finds it can go."""

    reduce: P.Primitive
    facts: Facts
    binds: list[tuple[str, Expr]] = dataclasses.field(default_factory=list)

    def bind(self, expr: Expr) -> Atom:
        name = self.facts.namer.temporary()
        self.binds.append((name, expr))
        return Name(name)

    def of(self, x: Atom, axes: tuple[int, ...], reader: str) -> Atom:
        """The reduction of `x` over `axes` (read by `reader`), early where it can be."""
        work = _early_work(x, axes, reader, self.facts)
        t = self.facts.type_of(x)
        if work is None or not isinstance(t, ArrayType):
            return self.bind(Call(self.reduce, params(axes=axes), (x,)))
        assert isinstance(x, Name)
        match work:
            case ("terms", op, a, b):
                return self.bind(Call(op, (), (self.of(a, axes, x.id), self.of(b, axes, x.id))))
            case ("transpose", a, perm):
                inner = self.of(a, tuple(sorted(perm[k] for k in axes)), x.id)
                kept = [perm[k] for k in range(len(perm)) if k not in axes]  # a's axes, in x's order
                order = tuple(sorted(kept).index(k) for k in kept)
                if order == tuple(range(len(order))):
                    return inner
                return self.bind(Call(P.TRANSPOSE, params(perm=order), (inner,)))
            case ("factor", a, c):
                tc = self.facts.type_of(c)
                if isinstance(tc, ArrayType) and tc.rank:
                    lead = t.rank - tc.rank
                    kept_shape = tuple(tc.shape[k - lead] for k in range(lead, t.rank) if k not in axes)
                    if kept_shape != tc.shape:
                        c = self.bind(Call(P.RESHAPE, params(shape=kept_shape), (c,)))
                return self.bind(Call(P.MUL, (), (self.of(a, axes, x.id), c)))
            case ("scaled", a, c):
                inner = self.of(a, axes, x.id)
                return self.bind(Call(P.NEG, (), (inner,)) if c == -1 and not isinstance(c, float)
                                 else Call(P.MUL, (), (Lit(c), inner)))
            case ("product", a, b, side):
                rows = side == "rows"
                operand = self.facts.type_of(a if rows else b)
                assert isinstance(operand, ArrayType)
                axis = operand.rank - (2 if rows else 1)  # the summed axis in the operand
                gone = t.rank - (2 if rows else 1)        # and in the product
                summed = self.of(a if rows else b, (axis,), x.id)
                widened = self.bind(Call(P.EXPAND_DIMS, params(axis=axis), (summed,)))
                made = self.bind(Call(P.MATMUL, (), (widened, b) if rows else (a, widened)))
                flat = self.bind(Call(P.RESHAPE, params(shape=t.shape[:gone] + t.shape[gone + 1:]), (made,)))
                rest = tuple(k - (k > gone) for k in axes if k != gone)
                return self.bind(Call(self.reduce, params(axes=rest), (flat,))) if rest else flat
        raise AssertionError(f"unknown early work {work}")


def reduce_before_linear_work(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # sum(a + b) -> sum(a) + sum(b)      (where a's or b's sum goes early too)
    # sum(a * c) -> sum(a) * c'          (c the same along the summed axes, c' c without them)
    # sum(transpose(a, p), axes) -> transpose(sum(a, p[axes]), q)   (q: the kept axes' order)
    # sum(A @ B, rows) -> (sum(A, rows)[.., None, :] @ B)[.., 0, :]   (columns: A @ sum(B)[.., None])
    # (also mean; then the same again on what is summed, as deep as it goes)
    match bind.expr:
        case Call(reduce, ps, (x,)) if reduce in _LINEAR_REDUCTIONS:
            work = _early_work(x, param(ps, "axes"), bind.name, facts)
            if work is None or work[0] == "scaled":
                return None  # reduce_before_scaling's
            early = _EarlyReduction(reduce, facts)
            result = early.of(x, param(ps, "axes"), bind.name)
            binds = early.binds
            if binds and Name(binds[-1][0]) == result:
                binds[-1] = (bind.name, binds[-1][1])
            else:
                binds.append((bind.name, result))
            return _typed_bindings(binds, expr_type(bind.expr, facts.types), bind.span, facts)
    return None


def _over_reciprocal(x: Atom, facts: Facts) -> tuple[Atom, Atom] | None:
    """`(v, d)` when `x` is `v / d` or `v * (1 / d)` (either order)."""
    match facts.definition(x):
        case Call(P.DIV, _, (v, d)):
            return v, d
        case Call(P.MUL, _, (p, q)):
            for v, r in ((p, q), (q, p)):
                match facts.definition(r):
                    case Call(P.DIV, _, (one, d)) if _is(one, facts, 1):
                        return v, d
    return None


def _total_of(d: Atom, facts: Facts) -> tuple[Atom, tuple[int, ...]] | None:
    """`(v, axes)` when `d` is `sum(v, axes)`, or that sum with its axes put back with
    length 1 (expand_dims, reshape) so that it broadcasts against v."""
    match facts.definition(d):
        case Call(P.SUM, ps, (v,)):
            return v, param(ps, "axes")
    found = _unit_axes_added(d, facts)
    t = facts.type_of(d)
    if found is None or not isinstance(t, ArrayType):
        return None
    s, kept = found
    match facts.definition(s):
        case Call(P.SUM, ps, (v,)) if tuple(k for k in range(t.rank) if k not in kept) == param(ps, "axes"):
            return v, param(ps, "axes")
    return None


_EXP = P.BY_NAME["exp"]


def normalised_weights(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # sum(v / sum(v)) -> 1      sum(v * (1 / sum(v))) -> 1      (v = exp(y) >= 0, both sums over
    # the same axes: softmax weights sum to one, the cotangent of the shift of a logsumexp
    # written by hand is 1 - 1; as for symbolic zeros, the nan of an all-zero v is not kept)
    match bind.expr:
        case Call(P.SUM, ps, (x,)):
            found = _over_reciprocal(x, facts)
            total = None if found is None else _total_of(found[1], facts)
            t = expr_type(bind.expr, facts.types)
            if (total is None or total != (found[0], param(ps, "axes")) or not isinstance(t, ArrayType)
                    or not t.dtype.is_float or facts.type_of(x) != facts.type_of(found[0])):
                return None
            match facts.definition(found[0]):
                case Call(prim, _, _) if prim is _EXP:
                    return (Bind(bind.name, _ones(t), bind.span),)
    return None


# ---- shapes ------------------------------------------------------------------------


@rewrite
def reshape_twice(expr: Expr, facts: Facts) -> Expr | None:
    # reshape(reshape(a, s1), s2) -> reshape(a, s2)      reshape(expand_dims(a, k), s) -> reshape(a, s)
    match expr:
        case Call(P.RESHAPE, ps, (inner,)):
            match facts.definition(inner):
                case Call(P.RESHAPE | P.EXPAND_DIMS, _, (a,)):
                    return Call(P.RESHAPE, ps, (a,))
    return None


@rewrite
def new_axis_of_reshape(expr: Expr, facts: Facts) -> Expr | None:
    # expand_dims(reshape(a, s), k) -> reshape(a, s[:k] + (1,) + s[k:])      (also of expand_dims)
    match expr:
        case Call(P.EXPAND_DIMS, _, (inner,)):
            match facts.definition(inner):
                case Call(P.RESHAPE | P.EXPAND_DIMS, _, (a,)):
                    t = expr_type(expr, facts.types)
                    if isinstance(t, ArrayType):
                        return Call(P.RESHAPE, params(shape=t.shape), (a,))
    return None


@rewrite
def broadcast_twice(expr: Expr, facts: Facts) -> Expr | None:
    # broadcast_to(broadcast_to(a, s1), s2) -> broadcast_to(a, s2)   (or of expand_dims(a, 0))
    match expr:
        case Call(P.BROADCAST_TO, ps, (inner,)):
            plain = _leading_broadcast(inner, facts)
            if plain is not None:
                new = Call(P.BROADCAST_TO, ps, (plain,))
                if _typed_as(new, expr, facts):
                    return new
    return None


@rewrite
def new_axis_of_broadcast(expr: Expr, facts: Facts) -> Expr | None:
    # expand_dims(broadcast_to(a, s), k) -> broadcast_to(a, s[:k] + (1,) + s[k:])   (k left of a's axes)
    match expr:
        case Call(P.EXPAND_DIMS, ps, (inner,)):
            match facts.definition(inner):
                case Call(P.BROADCAST_TO, bps, (a,)):
                    shape, k, t = param(bps, "shape"), param(ps, "axis"), facts.type_of(a)
                    if isinstance(t, ArrayType) and k <= len(shape) - t.rank:
                        return Call(P.BROADCAST_TO, params(shape=shape[:k] + (Dim(1),) + shape[k:]), (a,))
    return None


@rewrite
def transpose_twice(expr: Expr, facts: Facts) -> Expr | None:
    # transpose(transpose(a, p), q) -> transpose(a, p∘q)
    match expr:
        case Call(P.TRANSPOSE, ps, (inner,)):
            match facts.definition(inner):
                case Call(P.TRANSPOSE, inner_ps, (a,)):
                    p, q = param(inner_ps, "perm"), param(ps, "perm")
                    return Call(P.TRANSPOSE, params(perm=tuple(p[k] for k in q)), (a,))
    return None


def _is_matrix_transpose(atom: Atom, facts: Facts) -> bool:
    match facts.definition(atom):
        case Call(P.TRANSPOSE, ps, _):
            return param(ps, "perm") == (1, 0)
    return False


def transpose_of_product(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # transpose(a @ b) -> transpose(b) @ transpose(a)   (matrices; when a or b is a transpose,
    # which then cancels)
    match bind.expr:
        case Call(P.TRANSPOSE, ps, (inner,)) if param(ps, "perm") == (1, 0):
            match facts.definition(inner):
                case Call(P.MATMUL, _, (a, b)) if (_is_matrix_transpose(a, facts)
                                                   or _is_matrix_transpose(b, facts)):
                    ta, tb = facts.type_of(a), facts.type_of(b)
                    if not (isinstance(ta, ArrayType) and isinstance(tb, ArrayType)
                            and ta.rank == tb.rank == 2):
                        return None
                    bt, at = facts.namer.temporary(), facts.namer.temporary()
                    swap = params(perm=(1, 0))
                    return (Bind(bt, Call(P.TRANSPOSE, swap, (b,)), bind.span),
                            Bind(at, Call(P.TRANSPOSE, swap, (a,)), bind.span),
                            Bind(bind.name, Call(P.MATMUL, (), (Name(bt), Name(at))), bind.span))
    return None


def _unit_axes_added(atom: Atom, facts: Facts) -> tuple[Atom, list[int]] | None:
    """`(a, axes)` when `atom` is `a` reshaped to its own shape with axes of length 1
    inserted (`a` has none of its own): `axes` are where a's axes are."""
    match facts.definition(atom):
        case Call(P.EXPAND_DIMS | P.RESHAPE, _, (a,)):
            ta, t = facts.type_of(a), facts.type_of(atom)
            if not (isinstance(ta, ArrayType) and isinstance(t, ArrayType)) or Dim(1) in ta.shape:
                return None
            axes = [k for k, d in enumerate(t.shape) if d != Dim(1)]
            if tuple(t.shape[k] for k in axes) == ta.shape:
                return a, axes
    return None


def transpose_unit_axes(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # transpose(reshape(a, s), p) -> reshape(transpose(a, p'), s')   (s: a's shape with axes of
    # length 1 inserted; p' orders a's axes as p does, so the unit axes meet the next reshape)
    match bind.expr:
        case Call(P.TRANSPOSE, ps, (x,)):
            found = _unit_axes_added(x, facts)
            t = expr_type(bind.expr, facts.types)
            if found is None or not isinstance(t, ArrayType):
                return None
            a, axes = found
            order = tuple(axes.index(k) for k in param(ps, "perm") if k in axes)
            if order == tuple(range(len(order))):
                return (Bind(bind.name, Call(P.RESHAPE, params(shape=t.shape), (a,)), bind.span),)
            inner = facts.namer.temporary()
            return (Bind(inner, Call(P.TRANSPOSE, params(perm=order), (a,)), bind.span),
                    Bind(bind.name, Call(P.RESHAPE, params(shape=t.shape), (Name(inner),)), bind.span))
    return None


def _batch_dims(t: ArrayType, batch: int) -> list[Dim | None]:
    """The batch dims of matrix stack type `t`, right-aligned to `batch` axes (None: absent)."""
    own = t.shape[:-2]
    return [None] * (batch - len(own)) + list(own)


def rows_of_one_product(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # A[m, j] @ v[.., j, 1]  ->  (v[.., j] @ Aᵀ)[.., None]        (one product, not one per vector)
    # A[.., m, j] @ v[.., r, .., j, 1], A broadcast along the batch axis r  ->
    #   (v[.., j] with r moved before j) @ Aᵀ, r moved back
    match bind.expr:
        case Call(P.MATMUL, _, (a, v)):
            ta, tv, t = facts.type_of(a), facts.type_of(v), expr_type(bind.expr, facts.types)
            if not (isinstance(ta, ArrayType) and isinstance(tv, ArrayType) and isinstance(t, ArrayType)
                    and ta.rank >= 2 and tv.rank == t.rank >= 3 and tv.shape[-1] == Dim(1)):
                return None
            batch = t.rank - 2
            a_dims, v_dims = _batch_dims(ta, batch), _batch_dims(tv, batch)
            rows = [i for i in range(batch) if a_dims[i] in (None, Dim(1)) and v_dims[i] != Dim(1)]
            fresh = facts.namer.temporary
            vectors, turned, product = fresh(), fresh(), fresh()
            binds: list[tuple[str, Expr]] = [(vectors, Call(P.RESHAPE, params(shape=tv.shape[:-1]), (v,)))]
            if ta.rank == 2 and rows:
                binds += [(turned, Call(P.TRANSPOSE, params(perm=(1, 0)), (a,))),
                          (product, Call(P.MATMUL, (), (Name(vectors), Name(turned)))),
                          (bind.name, Call(P.EXPAND_DIMS, params(axis=batch + 1), (Name(product),)))]
            elif len(rows) == 1:
                r = rows[0]
                others = [i for i in range(batch) if i != r]
                moved, matrices, back = fresh(), fresh(), fresh()
                own = ta.rank - (a_dims[r] is not None)  # the rank of A without the axis r
                back_perm = tuple(others.index(i) if i != r else batch - 1 for i in range(batch))
                a_shape = (ta.shape if a_dims[r] is None
                           else ta.shape[:r - batch - 2] + ta.shape[r - batch - 1:])
                binds += [
                    (moved, Call(P.TRANSPOSE, params(perm=(*others, r, batch)), (Name(vectors),))),
                    (matrices, Call(P.RESHAPE, params(shape=a_shape), (a,))),
                    (turned, Call(P.TRANSPOSE, params(perm=(*range(own - 2), own - 1, own - 2)),
                                  (Name(matrices),))),
                    (product, Call(P.MATMUL, (), (Name(moved), Name(turned)))),
                    (back, Call(P.TRANSPOSE, params(perm=(*back_perm, batch)), (Name(product),))),
                    (bind.name, Call(P.EXPAND_DIMS, params(axis=batch + 1), (Name(back),))),
                ]
            else:
                return None
            return _typed_bindings(binds, t, bind.span, facts)
    return None


def _is_identity(atom: Atom, facts: Facts) -> bool:
    """`atom` is the identity matrix, made as `arange(n) == arange(n)[:, None]`
    (as a number type or bool)."""
    match facts.definition(atom):
        case Call(P.ASTYPE, _, (inner,)):
            return _is_identity(inner, facts)
        case Call(P.EQ, _, (a, b)):
            t = facts.type_of(atom)
            axes = {_arange_axis(a, facts), _arange_axis(b, facts)}
            return (isinstance(t, ArrayType) and t.rank == 2 and t.shape[0] == t.shape[1]
                    and axes == {(t.shape[0], -1), (t.shape[0], -2)})
    return False


@rewrite
def multiply_by_identity(expr: Expr, facts: Facts) -> Expr | None:
    # I @ A -> A      A @ I -> A      (I = arange(n) == arange(n)[:, None], a basis of tangents)
    match expr:
        case Call(P.MATMUL, _, (a, b)):
            for eye, other in ((a, b), (b, a)):
                if _is_identity(eye, facts) and _keeps_type(expr, other, facts):
                    return other
    return None


def row_vectors_product(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # u[.., 1, j] @ A[j, m]  ->  (u[.., j] @ A)[.., None, :]          (one product, not one per vector;
    # A may have batch axes of length 1)
    match bind.expr:
        case Call(P.MATMUL, _, (u, a)):
            tu, ta, t = facts.type_of(u), facts.type_of(a), expr_type(bind.expr, facts.types)
            if not (isinstance(tu, ArrayType) and isinstance(ta, ArrayType) and isinstance(t, ArrayType)
                    and ta.rank >= 2 and all(d == Dim(1) for d in ta.shape[:-2])
                    and tu.rank >= 3 and tu.rank >= ta.rank and tu.shape[-2] == Dim(1)):
                return None
            vectors, matrix, product = (facts.namer.temporary() for _ in range(3))
            rows_shape = tu.shape[:-2] + tu.shape[-1:]
            return _typed_bindings([(vectors, Call(P.RESHAPE, params(shape=rows_shape), (u,))),
                                    (matrix, Call(P.RESHAPE, params(shape=ta.shape[-2:]), (a,))),
                                    (product, Call(P.MATMUL, (), (Name(vectors), Name(matrix)))),
                                    (bind.name, Call(P.RESHAPE, params(shape=t.shape), (Name(product),)))],
                                   t, bind.span, facts)
    return None


# A diagonal matrix is a scaling of columns: x * a = x @ diag(a), a the same along x's
# rows. Where x is also multiplied by a matrix, the two are one product, and the
# diagonal's cotangent, a sum over the rows of g * x, is the diagonal of the product
# of g and x that the matrix's cotangent is. Both trade passes over x (the rows) for
# passes over the matrices, so they fire only where the rows outnumber the columns.


def _outnumbers(rows: Dim, columns: Dim) -> bool:
    """`rows` are taken to outnumber `columns`: compared where both are numbers; a size
    variable (a count of points) is taken as the larger against a number or another
    variable (their dimension), a number never against a variable."""
    if rows.is_constant and columns.is_constant:
        return rows.const > columns.const
    return not rows.is_constant and rows != columns


def _identity_mask(n: Dim, made: list[tuple[str, Expr]], facts: Facts) -> Name:
    """A bool[n, n] identity matrix, `arange(n)[:, None] == arange(n)`, its bindings
    appended to `made`."""
    line, column, mask = (facts.namer.temporary() for _ in range(3))
    made += [(line, Call(P.ARANGE, params(lo=Dim(0), hi=n), ())),
             (column, Call(P.RESHAPE, params(shape=(n, Dim(1))), (Name(line),))),
             (mask, Call(P.EQ, (), (Name(column), Name(line))))]
    return Name(mask)


def _product_of(atom: Atom, facts: Facts) -> tuple[Atom, Atom, tuple[int, ...]] | None:
    """`(x, r, perm)` when `atom` is `x @ r` (perm the identity) or
    `transpose(x @ r, perm)`, the product read by nothing else."""
    definition = facts.definition(atom)
    t = facts.type_of(atom)
    if not isinstance(t, ArrayType):
        return None
    perm = tuple(range(t.rank))
    match definition:
        case Call(P.TRANSPOSE, ps, (product,)) if _sole_reader(product, atom.id, facts):
            perm, definition = param(ps, "perm"), facts.definition(product)
    match definition:
        case Call(P.MATMUL, _, (x, r)):
            return x, r, perm
    return None


def _transposed(atom: Atom, perm: tuple[int, ...], facts: Facts) -> Atom | None:
    """`atom` transposed by `perm`, where that is made already: `atom` itself for the
    identity, else a binding in scope."""
    if perm == tuple(range(len(perm))):
        return atom
    found = facts.available.get(_key(Call(P.TRANSPOSE, params(perm=perm), (atom,))))
    return None if found is None else Name(found)


def diagonal_into_product(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # a * x + transpose(X @ R, p)  ->  transpose(X @ (R + diag(a')), p)   (X = transpose(x, p⁻¹);
    # a' = a in the product's axes, the same along its rows, its batch axes R's: one product,
    # not a scaling and an addition over x; R square)
    match bind.expr:
        case Call(P.ADD, _, (first, second)):
            t = expr_type(bind.expr, facts.types)
            for scaled, product in ((first, second), (second, first)):
                found = _product_of(product, facts)
                if (found is None or not _sole_reader(scaled, bind.name, facts)
                        or not _sole_reader(product, bind.name, facts)):
                    continue
                x_rows, r, perm = found
                match facts.definition(scaled):
                    case Call(P.MUL, _, (f, g)):
                        for a, x in ((f, g), (g, f)):
                            made = _diagonal_into(a, x, x_rows, r, perm, t, bind, facts)
                            if made is not None:
                                return made
    return None


def _diagonal_into(a: Atom, x: Atom, x_rows: Atom, r: Atom, perm: tuple[int, ...], t: Type | None,
                   bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    """`diagonal_into_product` with `a * x` the scaling and `transpose(x_rows @ r, perm)`
    the product, or None where they do not fit."""
    ta, tx, tr = facts.type_of(a), _float_array(x, facts), _float_array(r, facts)
    inverse = tuple(perm.index(k) for k in range(len(perm)))
    if not (isinstance(ta, ArrayType) and tx is not None and tr is not None and t == tx
            and ta.rank <= tx.rank and tr.rank >= 2 and _transposed(x, inverse, facts) == x_rows):
        return None
    rank, columns = tx.rank, tr.shape[-1]
    rows = tx.shape[perm.index(rank - 2)]
    if tr.shape[-2] != columns or not _outnumbers(rows, columns):
        return None
    # a's axes in the diagonal's frame: the product's batch axes, its columns, its rows last;
    # the same along the rows, and along the batch axes that R is broadcast along
    a_full = (Dim(1),) * (rank - ta.rank) + ta.shape
    to_diagonal = tuple(inverse[k] for k in (*range(rank - 2), rank - 1, rank - 2))
    diagonal_shape = tuple(a_full[k] for k in to_diagonal)
    broadcast = rank - tr.rank
    if broadcast < 0 or any(d != Dim(1) for d in (*diagonal_shape[:broadcast], diagonal_shape[-1])):
        return None
    made: list[tuple[str, Expr]] = []
    fresh = facts.namer.temporary
    aligned, turned, scale, diagonal, matrices, product = (fresh() for _ in range(6))
    made += [(aligned, Call(P.RESHAPE, params(shape=a_full), (a,))),
             (turned, Call(P.TRANSPOSE, params(perm=to_diagonal), (Name(aligned),))),
             (scale, Call(P.RESHAPE, params(shape=diagonal_shape[broadcast:]), (Name(turned),)))]
    mask = _identity_mask(columns, made, facts)
    made += [(diagonal, Call(P.WHERE, (), (mask, Name(scale), Lit(0.0)))),
             (matrices, Call(P.ADD, (), (r, Name(diagonal)))),
             (product, Call(P.MATMUL, (), (x_rows, Name(matrices)))),
             (bind.name, Call(P.TRANSPOSE, params(perm=perm), (Name(product),)))]
    binds = [Bind(n, e, bind.span) for n, e in made]
    types = _types_with(binds, facts.types)
    if types is None or types[matrices] != tr or types[bind.name] != t:
        return None
    return tuple(binds)


def diagonal_of_product(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # sum(g * x, axes=(s,))  ->  the diagonal of G @ X, made already     (G = g with the axes
    # (.., e, s), X = x with (.., s, e): its diagonal on e is the sum; a reverse pass's
    # cotangent of a diagonal beside its matrix's)
    match bind.expr:
        case Call(P.SUM, ps, (summed,)) if len(param(ps, "axes")) == 1:
            (s,) = param(ps, "axes")
            t = expr_type(bind.expr, facts.types)
            match facts.definition(summed):
                case Call(P.MUL, _, (g, x)):
                    tg = _float_array(g, facts)
                    if tg is None or tg.rank < 2 or not (tg == facts.type_of(x) == facts.type_of(summed)):
                        return None
                    for e in range(tg.rank):
                        if e != s and _outnumbers(tg.shape[s], tg.shape[e]):
                            made = _diagonal_of(g, x, s, e, tg, t, bind, facts)
                            if made is not None:
                                return made
    return None


def _diagonal_of(g: Atom, x: Atom, s: int, e: int, tg: ArrayType, t: Type | None, bind: Bind,
                 facts: Facts) -> tuple[Bind, ...] | None:
    """`diagonal_of_product` with e the diagonal's axis, or None where no product
    of g and x on it is in scope."""
    batch = [k for k in range(tg.rank) if k not in (s, e)]
    for left, right in ((g, x), (x, g)):
        rows = _transposed(left, (*batch, e, s), facts)
        columns = _transposed(right, (*batch, s, e), facts)
        if rows is None or columns is None:
            continue
        product = facts.available.get(_key(Call(P.MATMUL, (), (rows, columns))))
        if product is None:
            continue
        made: list[tuple[str, Expr]] = []
        mask = _identity_mask(tg.shape[e], made, facts)
        on_diagonal = facts.namer.temporary()
        made.append((on_diagonal, Call(P.WHERE, (), (mask, Name(product), Lit(0.0)))))
        diagonal = Call(P.SUM, params(axes=(tg.rank - 1,)), (Name(on_diagonal),))
        order = tuple((*batch, e).index(k) for k in range(tg.rank) if k != s)
        if order == tuple(range(len(order))):
            made.append((bind.name, diagonal))
        else:
            in_order = facts.namer.temporary()
            made += [(in_order, diagonal), (bind.name, Call(P.TRANSPOSE, params(perm=order), (Name(in_order),)))]
        return _typed_bindings(made, t, bind.span, facts)
    return None


def _types_with(binds: list[Bind], types: Mapping[str, Type]) -> dict[str, Type] | None:
    """`types` and the types of `binds`, in order, or None where one is ill typed."""
    out = dict(types)
    try:
        for b in binds:
            found = expr_type(b.expr, out)
            if found is None:
                return None
            out[b.name] = found
    except PrimTypeError:
        return None
    return out


def _typed_bindings(binds: list[tuple[str, Expr]], t: Type, span: Any,
                    facts: Facts) -> tuple[Bind, ...] | None:
    """`binds` as bindings, when they are well typed and the last has type `t`."""
    return _well_typed([Bind(name, expr, span) for name, expr in binds], t, facts)


def _well_typed(made: list[Bind], t: Type, facts: Facts) -> tuple[Bind, ...] | None:
    """`made`, when its bindings are well typed and the last has type `t`."""
    types = _types_with(made, facts.types)
    if types is None or types[made[-1].name] != t:
        return None
    return tuple(made)


# ---- indexing -------------------------------------------------------------------------


@rewrite
def index_of_broadcast(expr: Expr, facts: Facts) -> Expr | None:
    # broadcast_to(a, (t, ..))[i] -> broadcast_to(a, (..))   (a not varying along the leading axis)
    match expr:
        case Call(P.INDEX, ps, (x, _)):
            spec = param(ps, "spec")
            if spec[0] != ("at",) or any(item[0] != "slice" for item in spec[1:]):
                return None
            match facts.definition(x):
                case Call(P.BROADCAST_TO, bps, (a,)):
                    shape, ta, t = param(bps, "shape"), facts.type_of(a), expr_type(expr, facts.types)
                    if (isinstance(ta, ArrayType) and isinstance(t, ArrayType) and t.shape == shape[1:]
                            and ta.rank < len(shape)):
                        return Call(P.BROADCAST_TO, params(shape=t.shape), (a,))
    return None



@rewrite
def gather_of_broadcast(expr: Expr, facts: Facts) -> Expr | None:
    # broadcast_to(a, (t, ..))[rows] -> broadcast_to(a, (len(rows), ..))   (a not varying along
    # the leading axis; the rows of a reverse loop's stacked items read so)
    match expr:
        case Call(P.GATHER, _, (x, _)):
            match facts.definition(x):
                case Call(P.BROADCAST_TO, bps, (a,)):
                    ta, t = facts.type_of(a), expr_type(expr, facts.types)
                    if isinstance(ta, ArrayType) and isinstance(t, ArrayType) and ta.rank < len(param(bps, "shape")):
                        return Call(P.BROADCAST_TO, params(shape=t.shape), (a,))
    return None


def _arange_axis(atom: Atom, facts: Facts) -> tuple[Dim, int] | None:
    """`(n, k)` when `atom` is `arange(0, n)` laid along its axis k (counted from the
    end, so negative), every other axis of length 1."""
    t = facts.type_of(atom)
    if not isinstance(t, ArrayType):
        return None
    root: Atom = atom
    while True:
        match facts.definition(root):
            case Call(P.RESHAPE | P.EXPAND_DIMS, _, (inner,)):
                root = inner
            case Call(P.ARANGE, ps, ()) if param(ps, "lo") == Dim(0):
                length = param(ps, "hi")
                break
            case _:
                return None
    axes = [k for k, d in enumerate(t.shape) if d != Dim(1)]
    if length == Dim(1) or len(axes) != 1 or t.shape[axes[0]] != length:
        return None
    return length, axes[0] - t.rank


def _in_order(indices: tuple[Atom, ...], x: ArrayType, batch: tuple[Dim, ...], facts: Facts) -> bool:
    """Index arrays `indices` into the leading axes of `x`, broadcast to `batch`, read
    every item once and in order: index k is arange(x.shape[k]) laid along a batch
    axis, those axes increase with k, and every other batch axis has length 1."""
    found = [_arange_axis(i, facts) for i in indices]
    if any(f is None for f in found):
        return False
    positions = [len(batch) + k for _, k in found]  # type: ignore[misc]
    return (all(p >= 0 for p in positions) and all(p < q for p, q in zip(positions, positions[1:]))
            and all(n == x.shape[k] for k, (n, _) in enumerate(found))  # type: ignore[misc]
            and all(d == Dim(1) for p, d in enumerate(batch) if p not in positions))


@rewrite
def index_of_arange(expr: Expr, facts: Facts) -> Expr | None:
    # arange(0, n)[i] -> i
    match expr:
        case Call(P.INDEX, _, (x, i)):
            match facts.definition(x):
                case Call(P.ARANGE, ps, ()) if param(ps, "lo") == Dim(0) and _keeps_type(expr, i, facts):
                    return i
    return None


@rewrite
def gather_in_order(expr: Expr, facts: Facts) -> Expr | None:
    # x[arange(n)[:, None], arange(k)] -> reshape(x, (n, k, ...))   (every item read once, in order)
    match expr:
        case Call(P.GATHER, _, (x, *indices)):
            t, xt = expr_type(expr, facts.types), facts.type_of(x)
            if isinstance(t, ArrayType) and isinstance(xt, ArrayType):
                batch = t.shape[:t.rank - (xt.rank - len(indices))]
                if _in_order(tuple(indices), xt, batch, facts):
                    return Call(P.RESHAPE, params(shape=t.shape), (x,))
    return None


def scatter_in_order(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # gather_add(t, v, arange(n)[:, None], arange(k)) -> t + reshape(v, shape(t))   (each item once)
    match bind.expr:
        case Call(P.GATHER_ADD, _, (target, value, *indices)):
            t, v = facts.type_of(target), facts.type_of(value)
            if isinstance(t, ArrayType) and isinstance(v, ArrayType):
                batch = v.shape[:v.rank - (t.rank - len(indices))]
                if v.rank >= t.rank - len(indices) and _in_order(tuple(indices), t, batch, facts):
                    moved = facts.namer.temporary()
                    total = Call(P.ADD, (), (target, Name(moved)))
                    reshaped = Call(P.RESHAPE, params(shape=t.shape), (value,))
                    if expr_type(total, {**facts.types, moved: _safe_type(reshaped, facts)}) == t:
                        return Bind(moved, reshaped, bind.span), Bind(bind.name, total, bind.span)
    return None


_SCATTERS = frozenset((P.INDEX_ADD, P.GATHER_ADD))


def _scatter_into_zeros(atom: Atom, facts: Facts) -> bool:
    """`atom` is values scattered into zeros: index_add(0, v, i), or more added to one."""
    match facts.definition(atom):
        case Call(prim, _, (target, *_)) if prim in _SCATTERS:
            return _is(target, facts, 0) or _scatter_into_zeros(target, facts)
    return False


def add_into_scatter(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # x + index_add(0, v, i) -> index_add(x, v, i)      (also gather_add; and
    # x + index_add(y, v, i) -> index_add(x + y, v, i) when y is scattered into zeros too)
    match bind.expr:
        case Call(P.ADD, _, (a, b)):
            for x, scattered in ((a, b), (b, a)):
                match facts.definition(scattered):
                    case Call(prim, ps, (target, value, *indices)) if prim in _SCATTERS:
                        if _is(target, facts, 0):
                            new = Call(prim, ps, (x, value, *indices))
                            if _typed_as(new, bind.expr, facts):
                                return (Bind(bind.name, new, bind.span),)
                        elif _scatter_into_zeros(target, facts):
                            total = facts.namer.temporary()
                            scatter = Call(prim, ps, (Name(total), value, *indices))
                            made = _typed_bindings([(total, Call(P.ADD, (), (x, target))), (bind.name, scatter)],
                                                   expr_type(bind.expr, facts.types), bind.span, facts)
                            if made is not None:
                                return made
    return None


def _rows_scattered(expr: Expr | None, rows: Dim, facts: Facts) -> dict[int, Atom] | None:
    """{k: v} when `expr` is zeros with whole rows v added at constant rows k
    (index_add(index_add(zeros, v0, 0), v1, 1), ...), each row once."""
    found: dict[int, Atom] = {}
    while True:
        match expr:
            case Call(P.INDEX_ADD, ps, (target, value, at)):
                spec, k, t = param(ps, "spec"), _constant(at, facts), facts.type_of(target)
                if (not isinstance(t, ArrayType) or spec[0] != ("at",) or not isinstance(k, int)
                        or not 0 <= k < rows.const or k in found
                        or any(item != ("slice", Dim(0), d) for item, d in zip(spec[1:], t.shape[1:]))):
                    return None
                found[k] = value
                if _is(target, facts, 0):
                    return found
                expr = facts.definition(target)
            case _:
                return None


@rewrite
def rows_into_zeros(expr: Expr, facts: Facts) -> Expr | None:
    # index_add(index_add(zeros((2, ..)), a, 0), b, 1) -> stack((a, b))   (every row added once)
    match expr:
        case Call(P.INDEX_ADD, _, (_, _, _)):
            t = expr_type(expr, facts.types)
            if not (isinstance(t, ArrayType) and t.rank >= 1 and t.shape[0].is_constant):
                return None
            found = _rows_scattered(expr, t.shape[0], facts)
            if found is None or len(found) != t.shape[0].const:
                return None
            row = ArrayType(t.dtype, t.shape[1:])
            if not all(facts.type_of(v) == row for v in found.values()):
                return None
            new = Call(P.STACK, params(axis=0), tuple(found[k] for k in range(len(found))))
            return new if _typed_as(new, expr, facts) else None
    return None


def _whole_slices(spec: tuple, shape: tuple[Dim, ...]) -> bool:
    """Every item of `spec` takes its whole axis of `shape`."""
    return all(item == ("slice", Dim(0), d) for item, d in zip(spec, shape))


def _reads_a_row(expr: Expr, name: str, facts: Facts) -> bool:
    """`expr` is `name[t]`: one whole row of the array `name`."""
    match expr:
        case Call(P.INDEX, ps, (Name(n), _)) if n == name:
            spec, t = param(ps, "spec"), facts.type_of(Name(n))
            return isinstance(t, ArrayType) and spec[:1] == (("at",),) and _whole_slices(spec[1:], t.shape[1:])
    return False


def row_of_scatter(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let s = index_add(zeros((n, ..)), v, i.., spec=(0:n, rest..)); .. s[t] ..
    #   -> .. index_add(zeros((..)), v[t], i.., spec=(rest..)) ..
    # (a row of values added along a whole leading axis is the row of the values added;
    # when every read of s is a row, as a reverse loop reads the cotangent of a loop's
    # stacked states, the (n, ..) array of mostly zeros is never made)
    match bind.expr:
        case Call(P.INDEX, _, (Name(scattered), row)) if _reads_a_row(bind.expr, scattered, facts):
            match facts.definition(Name(scattered)):
                case Call(P.INDEX_ADD, ps, (target, value, *indices)) if _is(target, facts, 0):
                    spec, t, v = param(ps, "spec"), facts.type_of(target), facts.type_of(value)
                    if not (isinstance(t, ArrayType) and isinstance(v, ArrayType) and t.rank >= 1
                            and spec[:1] == (("slice", Dim(0), t.shape[0]),)):
                        return None
                    region = expr_type(Call(P.INDEX, params(spec=spec), (target, *indices)), facts.types)
                    if not (isinstance(region, ArrayType) and v.shape == region.shape):
                        return None  # (the values broadcast along the leading axis)
                    if not all(_reads_a_row(r.expr, scattered, facts) for r in facts.readers.get(scattered, [])):
                        return None
                    zeros, values = facts.namer.temporary(), facts.namer.temporary()
                    row_spec = (("at",),) + tuple(("slice", Dim(0), d) for d in v.shape[1:])
                    return _typed_bindings(
                        [(zeros, _zeros(ArrayType(t.dtype, t.shape[1:]))),
                         (values, Call(P.INDEX, params(spec=row_spec), (value, row))),
                         (bind.name, Call(P.INDEX_ADD, params(spec=spec[1:]), (Name(zeros), Name(values), *indices)))],
                        expr_type(bind.expr, facts.types), bind.span, facts)
    return None


def _leading_rows(spec: tuple, shape: tuple[Dim, ...]) -> int | None:
    """m, when `spec` is m `at` items, then slices that take their whole axes of `shape`."""
    m = 0
    while m < len(spec) and spec[m] == ("at",):
        m += 1
    return m if _whole_slices(spec[m:], shape[m:]) else None


@rewrite
def index_of_index(expr: Expr, facts: Facts) -> Expr | None:
    # x[i][j] -> x[i, j]      (the first index takes leading items and whole axes: one
    # read, not two; a reverse loop reads its forward loop's stacked items so. A value
    # the source names, `let w = main[i]`, keeps its name)
    match expr:
        case Call(P.INDEX, outer, (Name() as inner_name, *js)) if is_temporary(inner_name.id):
            match facts.definition(inner_name):
                case Call(P.INDEX, inner, (x, *i)):
                    t, spec = facts.type_of(x), param(inner, "spec")
                    if not isinstance(t, ArrayType):
                        return None
                    m = _leading_rows(spec, t.shape)
                    if m is None:
                        return None
                    spec_j = param(outer, "spec")
                    new = Call(P.INDEX, params(spec=spec[:m] + spec_j + spec[m + len(spec_j):]), (x, *i, *js))
                    return new if _typed_as(new, expr, facts) else None
    return None


def row_of_row_scatter(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let s = index_add(y, v, k); .. s[k] .. s[j] ..  ->  .. y[k] + v .. y[j] ..
    # (k and j distinct constant rows; y zeros: v and zeros. Where every read of s is a
    # constant row, s itself is never made: no copy of y per scatter)
    match bind.expr:
        case Call(P.INDEX, ps, (Name(scattered), j)) if _reads_a_row(bind.expr, scattered, facts):
            match facts.definition(Name(scattered)):
                case Call(P.INDEX_ADD, scatter_ps, (y, v, k)):
                    t, row = facts.type_of(y), expr_type(bind.expr, facts.types)
                    at, read = _constant(k, facts), _constant(j, facts)
                    if not (isinstance(t, ArrayType) and isinstance(at, int) and isinstance(read, int)
                            and param(scatter_ps, "spec")[:1] == (("at",),)
                            and _whole_slices(param(scatter_ps, "spec")[1:], t.shape[1:])
                            and facts.type_of(v) == row):
                        return None
                    if not all(_reads_a_row(r.expr, scattered, facts)
                               and isinstance(_constant(r.expr.args[1], facts), int)  # type: ignore[union-attr]
                               for r in facts.readers.get(scattered, [])):
                        return None
                    if _is(y, facts, 0):
                        return (Bind(bind.name, v if at == read else _zeros(row), bind.span),)
                    if at != read:
                        return (Bind(bind.name, Call(P.INDEX, ps, (y, j)), bind.span),)
                    y_row = facts.namer.temporary()
                    return _typed_bindings([(y_row, Call(P.INDEX, ps, (y, j))),
                                            (bind.name, Call(P.ADD, (), (Name(y_row), v)))], row, bind.span, facts)
    return None


# ---- tuples and loops ---------------------------------------------------------------


@rewrite
def tuple_of_projections(expr: Expr, facts: Facts) -> Expr | None:
    # (p.0, p.1, ..., p.n-1)  ->  p      (p a tuple of n items)
    match expr:
        case MakeTuple(items) if items:
            sources = [facts.definition(a) for a in items]
            if all(isinstance(d, Project) and d.k == k and d.tuple == sources[0].tuple
                   for k, d in enumerate(sources)):
                tup = sources[0].tuple
                t = facts.type_of(tup)
                if isinstance(t, TupleType) and len(t.items) == len(items):
                    return tup
    return None


_MAY_FAIL = frozenset((P.INDEX, P.GATHER, P.INDEX_ADD, P.GATHER_ADD))


def hoist_invariants(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let r = loop(init, xs, |acc, x| { let a = f(w); body }); ...
    #   -> let a = f(w); let r = loop(init, xs, |acc, x| body)     (f(w) reads neither acc, x
    #   nor the body: computed once; indexing, which may fail, stays where it is, and so
    #   does the tuple a step returns, which the loop rules read item by item)
    match bind.expr:
        case LoopE(body=body):
            inside = _step_names(bind.expr)
            hoisted: list[Bind] = []
            for b in body.bindings:
                movable = (isinstance(b.expr, Call) and b.expr.prim not in _MAY_FAIL
                           or isinstance(b.expr, Project)
                           or isinstance(b.expr, MakeTuple) and Name(b.name) != body.result)
                if movable and not (used_names(b.expr) & inside):
                    hoisted.append(b)
                    inside.discard(b.name)
            if not hoisted:
                return None
            kept = tuple(b for b in body.bindings if b not in hoisted)
            return (*hoisted, Bind(bind.name, dataclasses.replace(bind.expr, body=Block(kept, body.result)),
                                   bind.span))
    return None


def _step_names(loop: LoopE) -> set[str]:
    """The names a step of `loop` binds: its state, its item and its body's bindings."""
    return {loop.acc, loop.x} | {b.name for b in loop.body.bindings}


def _is_last(atom: Atom, length: Dim, facts: Facts) -> bool:
    """`atom` is the index of the last of `length` items."""
    match facts.bound.get(atom.id) if isinstance(atom, Name) else None:
        case Call(P.SIZE, ps, ()):
            return param(ps, "dim") == length - 1
        case Call(P.SUB, _, (Name(n), one)) if _constant(one, facts) == 1:  # size(T) - 1
            match facts.bound.get(n):
                case Call(P.SIZE, ps, ()):
                    return param(ps, "dim") == length
    return False


def _is_no_steps(cond: Atom, length: Dim, facts: Facts) -> bool:
    """`cond` is `size(length) == 0`."""
    match facts.definition(cond):
        case Call(P.EQ, _, (size, zero)) if _constant(zero, facts) == 0:
            match facts.definition(size):
                case Call(P.SIZE, ps, ()):
                    return param(ps, "dim") == length
    return False


@rewrite
def fold_of_no_steps(expr: Expr, facts: Facts) -> Expr | None:
    # if T == 0 { init } else { fold(init, xs) }  ->  fold(init, xs)   (xs of T items:
    # over no steps a fold is its initial state; the state before a reverse loop's
    # first step, read when the forward loop's states were stacked, reads so)
    match expr:
        case IfElse(cond, Block((), init), Block((), Name(r))):
            match facts.definition(Name(r)):
                case LoopE(init=start, xs=xs, stacked=False) if start == init:
                    if _is_no_steps(cond, leading_dim(facts.type_of(xs)), facts):
                        return Name(r)
    return None


def _reads_last_item(reader: Expr, stack: str, t: Type | None, facts: Facts) -> bool:
    """`reader` is `stack[last]`: the last item of `stack` (of type `t`) along its leading axis."""
    match reader:
        case Call(P.INDEX, ps, (Name(s), i)) if s == stack and isinstance(t, ArrayType):
            spec = param(ps, "spec")
            return (spec[0] == ("at",) and all(item[0] == "slice" and item[1] == Dim(0) and item[2] == d
                                               for item, d in zip(spec[1:], t.shape[1:]))
                    and len(spec) == t.rank and _is_last(i, t.shape[0], facts))
    return False


def _only_last_states(scan: str, t: ArrayType, facts: Facts) -> bool:
    """Every reader of the scan `scan`, of type `t`, reads only its last state."""
    found = facts.readers.get(scan, [])
    return bool(found) and all(_reads_last_item(r.expr, scan, t, facts) for r in found)


def unstack_last_states(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let s = scan(init, xs, f); s[last]  ->  let r = fold(init, xs, f); s := broadcast_to(r, (T, ..))
    # (a state read only at its last step need not be stacked: every state may be the last,
    # and index_of_broadcast reads r back; a tuple state item by item: s.k read only at
    # its last state, or not at all, stops being stacked, the other items stay as they are)
    match bind.expr:
        case LoopE(stacked=stacked) as loop if stacked is not False:
            t = expr_type(loop, facts.types)
            if isinstance(t, ArrayType):
                if not _only_last_states(bind.name, t, facts):
                    return None
                flags: Stacking = False
                last: set[int] = set()
            else:
                read = _read_items(bind.name, t, facts)
                if read is None or not facts.readers.get(bind.name):  # (a loop made this round: unknown)
                    return None
                assert isinstance(t, TupleType)
                last = {k for k in range(len(t.items)) if item_stacked(stacked, k)
                        and (k not in read or _only_last_of_item(bind.name, k, t.items[k], facts))}
                if not last:
                    return None
                flags = stacking(tuple(item_stacked(stacked, k) and k not in last for k in range(len(t.items))))
            fresh = facts.namer.temporary
            made = [Bind(fresh(), dataclasses.replace(loop, stacked=flags), bind.span)]
            result = Name(made[0].name)

            def every_state_the_last(value: Atom, stacked_type: Type) -> Atom:
                assert isinstance(stacked_type, ArrayType)
                made.append(Bind(fresh(), Call(P.BROADCAST_TO, params(shape=stacked_type.shape), (value,)),
                                 bind.span))
                return Name(made[-1].name)
            if isinstance(t, ArrayType):
                return (*made[:1], Bind(bind.name, Call(P.BROADCAST_TO, params(shape=t.shape), (result,)),
                                        bind.span))
            if not all(isinstance(t.items[k], ArrayType) for k in last):
                return None
            items: list[Atom] = []
            for k, item in enumerate(t.items):
                made.append(Bind(fresh(), Project(result, k), bind.span))
                items.append(every_state_the_last(Name(made[-1].name), item) if k in last
                             else Name(made[-1].name))
            return (*made, Bind(bind.name, MakeTuple(tuple(items)), bind.span))
    return None


@dataclass(frozen=True)
class _StateBody:
    """A loop body that makes a tuple state item by item from the items `acc.k` of
    the last: its bindings, the tuple it returns, and which names are which `acc.k`."""

    definitions: dict[str, Expr]
    new: MakeTuple
    acc_items: dict[str, int]

    @staticmethod
    def of(loop: LoopE) -> "_StateBody | None":
        """None where the body returns no tuple it makes, or reads acc whole."""
        body = loop.body
        definitions = {b.name: b.expr for b in body.bindings}
        new = definitions.get(body.result.id) if isinstance(body.result, Name) else None
        if not isinstance(new, MakeTuple):
            return None
        acc_items = {b.name: b.expr.k for b in body.bindings
                     if isinstance(b.expr, Project) and b.expr.tuple == Name(loop.acc)}
        rest = Block(tuple(b for b in body.bindings if b.name not in acc_items), Name("_"))
        if loop.acc in used_names(rest):
            return None
        return _StateBody(definitions, new, acc_items)

    def reached(self, atom: Atom) -> set[int]:
        """The items of acc that `atom` depends on."""
        seen: set[str] = set()
        pending = [atom.id] if isinstance(atom, Name) else []
        items: set[int] = set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.acc_items:
                items.add(self.acc_items[name])
            elif name in self.definitions:
                pending.extend(used_names(self.definitions[name]))
        return items


def _state_items_needed(loop: LoopE, read: set[int], facts: Facts) -> set[int] | None:
    """The items of the loop's tuple state that `read` (the items read of its result)
    depend on through the body, or None where the body is not a tuple of items
    computed from `acc.k` projections."""
    state = _StateBody.of(loop)
    if state is None:
        return None
    needed = set(read)
    frontier = list(read)
    while frontier:
        for k in state.reached(state.new.items[frontier.pop()]):
            if k not in needed:
                needed.add(k)
                frontier.append(k)
    return needed


def unused_state_items(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let r = loop((a, b), xs, |acc, x| (f(acc.0, x), g(acc, x))); r.1
    #   -> let r2 = loop(b, xs, ...g...); (zeros, r2)       (an item of the state that neither
    #   the result nor the other items read is dropped; one item left is the state itself,
    #   not a tuple of one)
    match bind.expr:
        case LoopE(init, xs, acc, x, body, stacked):
            t = expr_type(bind.expr, facts.types)
            found = [r.expr for r in facts.readers.get(bind.name, [])]
            if not isinstance(t, TupleType) or not all(isinstance(r, Project) for r in found):
                return None
            needed = _state_items_needed(bind.expr, {r.k for r in found}, facts)  # type: ignore[union-attr]
            if needed is None or len(needed) == len(t.items) or not needed:
                return None
            if not all(isinstance(item, ArrayType) for k, item in enumerate(t.items) if k not in needed):
                return None  # (a dropped item's value is zeros of its type)
            kept = sorted(needed)
            single = len(kept) == 1
            fresh = facts.namer.temporary
            made: list[Bind] = []
            init_items = [_initial_item(init, k, made, bind.span, facts) for k in kept]
            new_init = fresh()
            made.append(Bind(new_init, init_items[0] if single else MakeTuple(tuple(init_items)), bind.span))
            position = {k: j for j, k in enumerate(kept)}

            def item_of(tuple_name: str, k: int) -> Expr:
                return Name(tuple_name) if single else Project(Name(tuple_name), position[k])
            new_body = []
            for b in body.bindings:
                match b.expr:
                    case Project(Name(a), k) if a == acc:
                        if k in position:
                            new_body.append(Bind(b.name, item_of(acc, k), b.span))
                    case MakeTuple(items) if Name(b.name) == body.result:
                        new_body.append(Bind(b.name, items[kept[0]] if single
                                             else MakeTuple(tuple(items[k] for k in kept)), b.span))
                    case _:
                        new_body.append(b)
            reduced = remove_dead_bindings(Block(tuple(new_body), body.result))
            loop = facts.namer.temporary()
            flags = stacking(tuple(item_stacked(stacked, k) for k in kept))
            made.append(Bind(loop, LoopE(Name(new_init), xs, acc, x, reduced, flags,
                                         names=_item_names(bind.expr, kept)), bind.span))
            items: list[Atom] = []
            for k, item in enumerate(t.items):
                name = fresh()
                made.append(Bind(name, item_of(loop, k) if k in position else _zeros(item), bind.span))
                items.append(Name(name))
            return (*made, Bind(bind.name, MakeTuple(tuple(items)), bind.span))
    return None


def _item_names(loop: LoopE, kept: Iterable[int]) -> tuple[str | None, ...]:
    """The names of the items `kept` of `loop`'s state, in that order."""
    return tuple(loop.names[k] if k < len(loop.names) else None for k in kept)


def _initial_item(init: Atom, k: int, made: list[Bind], span: Any, facts: Facts) -> Atom:
    """Item k of a loop's initial tuple `init`: the atom the tuple was made of, or
    its projection, bound at the end of `made`."""
    match facts.definition(init):
        case MakeTuple(items):
            return items[k]
    made.append(Bind(facts.namer.temporary(), Project(init, k), span))
    return Name(made[-1].name)


def _read_items(name: str, t: Type | None, facts: Facts) -> set[int] | None:
    """The items read of the tuple `name`, when it is only read by projections."""
    found = [r.expr for r in facts.readers.get(name, [])]
    if not isinstance(t, TupleType) or not all(isinstance(r, Project) for r in found):
        return None
    return {r.k for r in found}  # type: ignore[union-attr]


def _read_state_items(bind: Bind, facts: Facts) -> tuple[TupleType, set[int], _StateBody] | None:
    """For the loop `bind` makes, when its body makes its tuple state item by item
    (`_StateBody`) and its result is read by projections alone, some: the result's
    type, the items read and the body."""
    assert isinstance(bind.expr, LoopE)
    t = expr_type(bind.expr, facts.types)
    read = _read_items(bind.name, t, facts)
    state = _StateBody.of(bind.expr)
    if not read or state is None:
        return None
    assert isinstance(t, TupleType)
    return t, read, state


def _outer_factors(atom: Atom, facts: Facts, defs: Mapping[str, Expr]) -> tuple[Atom, Atom] | None:
    """`(u, v)` when `atom` is the outer product `u[:, None] * v` of two vectors (either order)."""
    match defs.get(atom.id) if isinstance(atom, Name) else None:
        case Call(P.MUL, _, (a, b)):
            for column, row in ((a, b), (b, a)):
                match defs.get(column.id) if isinstance(column, Name) else None:
                    case Call(P.EXPAND_DIMS, ps, (u,)) if param(ps, "axis") == 1:
                        tu, tv = facts.type_of(u), facts.type_of(row)
                        if (isinstance(tu, ArrayType) and isinstance(tv, ArrayType)
                                and tu.rank == 1 and tv.rank == 1):
                            return u, row
    return None


@dataclass(frozen=True)
class _StepRows:
    """An accumulator that each step adds to at its own row, `t` = the step (or, a
    reverse loop's, T - 1 - the step): `index_add(.. index_add(acc.k, v1, (t, i1..)) ..,
    vm, (t, im..))`. `links`: each addition's spec, value and indices less the row."""

    links: tuple[tuple[tuple, Atom, tuple[Atom, ...]], ...]
    reverse: bool

    def reads(self) -> tuple[Atom, ...]:
        return tuple(a for _, value, indices in self.links for a in (value, *indices))


def _step_row(t: Atom, loop: LoopE, length: Dim, facts: Facts, defs: Mapping[str, Expr]) -> bool | None:
    """Whether the index `t` in the body of `loop` (over `length` steps) is the step
    (False) or T - 1 - the step (True); None if neither."""
    if not isinstance(t, Name):
        return None
    match facts.definition(loop.xs):
        case Call(P.ARANGE, ps, ()) if param(ps, "lo") == Dim(0) and param(ps, "hi") == length:
            pass
        case _:
            return None
    if t.id == loop.x:
        return False
    match defs.get(t.id):
        case Call(P.SUB, _, (last, Name(x))) if x == loop.x and _is_last(last, length, facts):
            return True
    return None


def _rows_added(new_k: Atom, a: str, loop: LoopE, length: Dim, facts: Facts, defs: Mapping[str, Expr],
                uses: Counter[str]) -> _StepRows | None:
    """The `_StepRows` that make `new_k` from the accumulator `a`, each intermediate
    value read once (by the next addition)."""
    links: list[tuple[tuple, Atom, tuple[Atom, ...]]] = []
    rows: set[bool] = set()
    at: Atom = new_k
    while True:
        match defs.get(at.id) if isinstance(at, Name) else None:
            case Call(P.INDEX_ADD, ps, (target, value, t, *indices)) if param(ps, "spec")[0] == ("at",):
                reverse = _step_row(t, loop, length, facts, defs)
                if reverse is None or not isinstance(target, Name) or uses[target.id] != 1:
                    return None
                rows.add(reverse)
                links.append((param(ps, "spec")[1:], value, tuple(indices)))
                at = target
            case _:
                break
    if at != Name(a) or not links or len(rows) != 1:
        return None
    return _StepRows(tuple(reversed(links)), rows.pop())


def accumulated_products(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let r = fold(init, xs, |acc, x| (.., acc.k + u[:, None] * v, ..)); r.k
    #   -> let s = scan(.., xs, |acc, x| (.., u, v, ..)); init.k + s.u.T @ s.v
    # (the sum of the outer products is one matrix product after the loop, not one
    # product and one sum per step; a vector acc.k + e likewise: init.k + sum(s.e, axis=0));
    # an accumulator that each step adds to at its own row t (the step, or T - 1 - the
    # step, over arange(T)), index_add(acc.k, v, (t, i..)), is the rows stacked:
    #   -> let s = scan(.., |acc, x| (.., index_add(zeros, v, (i..)), ..)); init.k + s.row
    # (s.row reversed for a reverse loop): no copy of the whole accumulator per step.
    # The accumulators are items the loop does not stack (unstack_last_states unstacks
    # those read at their last state alone); the other items keep their stacking
    match bind.expr:
        case LoopE(body=body, stacked=stacked):
            found = _read_state_items(bind, facts)
            if found is None:
                return None
            t, read, state = found
            read = {k for k in read if not item_stacked(stacked, k)}
            defs = {b.name: b.expr for b in body.bindings}
            uses = Counter(n for b in body.bindings for n in _used_list(b.expr))
            terms: dict[int, tuple[Atom, ...]] = {}  # item k -> the factors of its term
            rows: dict[int, _StepRows] = {}  # item k -> the rows added to it
            length = leading_dim(facts.type_of(bind.expr.xs))
            accumulators = {k: a for a, k in state.acc_items.items() if uses[a] == 1}
            for k in sorted(read):
                new_k = state.new.items[k]
                if not isinstance(new_k, Name) or uses[new_k.id] != 1 or k not in accumulators:
                    continue
                match defs.get(new_k.id):
                    case Call(P.ADD, _, (Name(a), e)) | Call(P.ADD, _, (e, Name(a))) if a == accumulators[k]:
                        factors = _outer_factors(e, facts, defs)
                        te, tk = facts.type_of(e), t.items[k]
                        if factors is None and not (isinstance(tk, ArrayType) and tk.rank <= 1 and te == tk):
                            return None
                        terms[k] = factors if factors is not None else (e,)
                    case Call(P.INDEX_ADD, _, _):
                        tk = t.items[k]
                        added = _rows_added(new_k, accumulators[k], bind.expr, length, facts, defs, uses)
                        if added is not None and isinstance(tk, ArrayType) and tk.shape[:1] == (length,):
                            rows[k] = added
            if not terms and not rows:
                return None
            taken = terms.keys() | rows.keys()
            for j, item in enumerate(state.new.items):
                if state.reached(item) & (taken - {j}):
                    return None  # another item reads an accumulator
            reads = {**terms, **{k: r.reads() for k, r in rows.items()}}
            for k in reads:
                if any(state.reached(f) & taken for f in reads[k]):
                    return None
            return _fission(bind, state, terms, rows, t, facts)
    return None


def _fission(bind: Bind, state: "_StateBody", terms: dict[int, tuple[Atom, ...]], rows: dict[int, _StepRows],
             t: TupleType, facts: Facts) -> tuple[Bind, ...] | None:
    """The rewrite of `accumulated_products`: a scan that stacks the terms' factors
    and the rows, then each accumulator's total."""
    loop = bind.expr
    assert isinstance(loop, LoopE)
    fresh = facts.namer.temporary
    row_binds: list[Bind] = []  # each step's rows, made from zeros in the body
    for k, added in sorted(rows.items()):
        tk = t.items[k]
        assert isinstance(tk, ArrayType)
        row: Atom = Name(fresh())
        row_binds.append(Bind(row.id, _zeros(ArrayType(tk.dtype, tk.shape[1:])), bind.span))
        for spec, value, indices in added.links:
            made_row = fresh()
            whole = not indices and _whole_slices(spec, tk.shape[1:]) and facts.type_of(value) == \
                ArrayType(tk.dtype, tk.shape[1:])
            add = Call(P.ADD, (), (row, value)) if whole else \
                Call(P.INDEX_ADD, params(spec=spec), (row, value, *indices))
            row_binds.append(Bind(made_row, add, bind.span))
            row = Name(made_row)
        terms = {**terms, k: (row,)}
    row_types = _types_with(row_binds, facts.types)
    if row_types is None:
        return None
    kept = [j for j in range(len(t.items)) if j not in terms]
    factors: list[Atom] = list(dict.fromkeys(f for k in sorted(terms) for f in terms[k]))
    made: list[Bind] = []
    init_items = [_initial_item(loop.init, j, made, bind.span, facts) for j in kept]
    for f in factors:
        ft = atom_type(f, row_types)
        if not isinstance(ft, ArrayType):
            return None
        name = fresh()
        made.append(Bind(name, _zeros(ft), bind.span))
        init_items.append(Name(name))
    new_init = fresh()
    made.append(Bind(new_init, MakeTuple(tuple(init_items)), bind.span))
    position = {k: j for j, k in enumerate(kept)}
    new_body = []
    for b in loop.body.bindings:
        match b.expr:
            case Project(Name(a), k) if a == loop.acc:
                if k in position:
                    new_body.append(Bind(b.name, Project(Name(loop.acc), position[k]), b.span))
            case MakeTuple(items) if Name(b.name) == loop.body.result:
                new_items = tuple(items[j] for j in kept) + tuple(factors)
                new_body += [*row_binds, Bind(b.name, MakeTuple(new_items), b.span)]
            case _:
                new_body.append(b)
    body = remove_dead_bindings(Block(tuple(new_body), loop.body.result))
    if loop.acc in used_names(Block(tuple(b for b in body.bindings if not isinstance(b.expr, Project)),
                                     Name("_"))) and not kept:
        return None
    scan = fresh()  # the kept items stacked as before, the factors stacked
    flags = stacking(tuple(item_stacked(loop.stacked, j) for j in kept) + (True,) * len(factors))
    # the rows added to an accumulator are named after it (`main_bar`, stacked as `main_bars`)
    row_names = {terms[k][0]: name for k, name in enumerate(_item_names(loop, range(len(t.items))))
                 if k in rows and name is not None}
    made.append(Bind(scan, LoopE(Name(new_init), loop.xs, loop.acc, loop.x, body, flags,
                                 names=_item_names(loop, kept) + tuple(row_names.get(f) for f in factors)),
                     bind.span))
    where = {f: len(kept) + i for i, f in enumerate(factors)}
    items: list[Atom] = []
    for k, item in enumerate(t.items):
        if k not in terms:
            name = fresh()
            made.append(Bind(name, Project(Name(scan), position[k]), bind.span))
            items.append(Name(name))
            continue
        parts = []
        for f in terms[k]:
            name = fresh()
            made.append(Bind(name, Project(Name(scan), where[f]), bind.span))
            parts.append(name)
        total = fresh()
        if k in rows and rows[k].reverse:  # the rows of a reverse loop, last step first
            backwards = _rows_of_steps(leading_dim(item), True, made, bind.span, facts)
            made.append(Bind(total, Call(P.GATHER, params(clip=False), (Name(parts[0]), backwards)), bind.span))
        elif k in rows:
            made.append(Bind(total, Name(parts[0]), bind.span))
        elif len(parts) == 2:
            turned = fresh()
            made += [Bind(turned, Call(P.TRANSPOSE, params(perm=(1, 0)), (Name(parts[0]),)), bind.span),
                     Bind(total, Call(P.MATMUL, (), (Name(turned), Name(parts[1]))), bind.span)]
        else:
            made.append(Bind(total, Call(P.SUM, params(axes=(0,)), (Name(parts[0]),)), bind.span))
        final, start = fresh(), _initial_item(loop.init, k, made, bind.span, facts)
        made.append(Bind(final, Call(P.ADD, (), (start, Name(total))), bind.span))
        items.append(Name(final))
    made.append(Bind(bind.name, MakeTuple(tuple(items)), bind.span))
    return _well_typed(made, t, facts)


def _rows_of_steps(length: Dim, reverse: bool, made: list[Bind], span: Any, facts: Facts) -> Name:
    """The row each step of a loop over arange(length) is at, stacked, bound at the end of
    `made`: arange(length), or length - 1 - arange(length) for a reverse loop (`_step_row`)."""
    fresh = facts.namer.temporary
    made.append(Bind(fresh(), Call(P.ARANGE, params(lo=Dim(0), hi=length), ()), span))
    if reverse:
        steps = Name(made[-1].name)
        made.append(Bind(fresh(), Call(P.SIZE, params(dim=length - 1), ()), span))
        made.append(Bind(fresh(), Call(P.SUB, (), (Name(made[-1].name), steps)), span))
    return Name(made[-1].name)


def invariant_state_items(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let r = loop(init, xs, |acc, x| { let a = acc.k; ..; (.., a, ..) })
    #   -> let r2 = loop(init, xs, |acc, x| { let a = init.k; ..; (.., a, ..) }); r := (r2.0, .., init.k, ..)
    # (an item each step returns unchanged is its initial value after every step, and
    # stacked, broadcast_to(init.k, (T, ..)); no step reads it any more, and
    # unused_state_items drops it); a state that is no tuple:
    #   loop(init, xs, |acc, x| acc)  ->  init   (a scan: broadcast_to(init, (T, ..)))
    match bind.expr:
        case LoopE(init, acc=acc, body=body, stacked=stacked) as loop:
            t = expr_type(loop, facts.types)
            if body.result == Name(acc):
                if not isinstance(t, ArrayType):
                    return None
                every_state = Call(P.BROADCAST_TO, params(shape=t.shape), (init,)) if stacked else init
                return _typed_bindings([(bind.name, every_state)], t, bind.span, facts)
            state = _StateBody.of(loop)
            if state is None or not isinstance(t, TupleType):
                return None
            unchanged = {a: k for a, k in state.acc_items.items() if state.new.items[k] == Name(a)}
            if not unchanged:
                return None
            made: list[Bind] = []
            initial = {k: _initial_item(init, k, made, bind.span, facts) for k in sorted(unchanged.values())}
            steps = tuple(Bind(b.name, initial[unchanged[b.name]], b.span) if b.name in unchanged else b
                          for b in body.bindings)
            outside: dict[int, Atom] = {}
            for k, start in initial.items():
                item = t.items[k]
                if not item_stacked(stacked, k):
                    outside[k] = start
                elif isinstance(item, ArrayType):
                    made.append(Bind(facts.namer.temporary(),
                                     Call(P.BROADCAST_TO, params(shape=item.shape), (start,)), bind.span))
                    outside[k] = Name(made[-1].name)
                else:
                    return None
            return _items_outside(bind, dataclasses.replace(loop, body=Block(steps, body.result)), outside,
                                  made, facts)
    return None


def stacked_items_of_no_step(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let r = scan[k](init, arange(T), |acc, i| (.., e, ..)); r.k  ->  the stacked item made
    # once, outside the loop, when e is
    #   v, made by no step                    ->  broadcast_to(v, (T, ..))      (over any xs)
    #   A[t], A made by no step               ->  A[rows]
    # t the step's own row, i (rows = arange(T)) or T - 1 - i (rows = T - 1 - arange(T)), as
    # a reverse loop reads its forward loop's states and items. Item k is then read by no
    # step (nor by another item) and unused_state_items drops it: no copy per step
    match bind.expr:
        case LoopE(stacked=stacked) as loop if stacked is not False:
            found = _read_state_items(bind, facts)
            if found is None:
                return None
            t, read, state = found
            reached = set().union(*map(state.reached, state.new.items))
            made: list[Bind] = []
            outside: dict[int, Atom] = {}
            for k in sorted(read - reached):
                if item_stacked(stacked, k):
                    stack = _stacked_outside(state.new.items[k], loop, t.items[k], state.definitions, bind.span,
                                             facts)
                    if stack is not None:
                        made += stack
                        outside[k] = Name(stack[-1].name)
            return _items_outside(bind, loop, outside, made, facts) if outside else None
    return None


def accumulated_invariants(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let r = loop(init, xs, |acc, x| (.., acc.k + v, ..)); r.k  ->  init.k + T * v
    # (v made by no step, acc.k read by no other item and item k not stacked: T steps add
    # v T times; no step reads the item any more, and unused_state_items drops it)
    match bind.expr:
        case LoopE(init, xs, stacked=stacked) as loop:
            found = _read_state_items(bind, facts)
            if found is None:
                return None
            t, read, state = found
            inside = _step_names(loop)
            uses = Counter(n for b in loop.body.bindings for n in _used_list(b.expr))
            made: list[Bind] = []
            outside: dict[int, Atom] = {}
            for a, k in sorted(state.acc_items.items(), key=lambda item: item[1]):
                new_k, item = state.new.items[k], t.items[k]
                if (k not in read or item_stacked(stacked, k) or uses[a] != 1 or not isinstance(new_k, Name)
                        or uses[new_k.id] != 1 or not isinstance(item, ArrayType)):
                    continue
                match state.definitions.get(new_k.id):
                    case Call(P.ADD, _, (Name(added_to), v)) | Call(P.ADD, _, (v, Name(added_to))) if (
                            added_to == a and (isinstance(v, Lit) or v.id not in inside)):
                        count, times, total = (facts.namer.temporary() for _ in range(3))
                        made += [Bind(count, Call(P.SIZE, params(dim=leading_dim(facts.type_of(xs))), ()), bind.span),
                                 Bind(times, Call(P.ASTYPE, params(dtype=item.dtype), (Name(count),)), bind.span),
                                 Bind(total, Call(P.MUL, (), (Name(times), v)), bind.span)]
                        start = _initial_item(init, k, made, bind.span, facts)
                        made.append(Bind(facts.namer.temporary(), Call(P.ADD, (), (start, Name(total))), bind.span))
                        outside[k] = Name(made[-1].name)
            return _items_outside(bind, loop, outside, made, facts) if outside else None
    return None


def state_scattered_into_zeros(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let r = loop(init, xs, |acc, x| { let a = acc.k; ..; (.., index_add(0, v, i), ..) })
    #   -> let r2 = loop(init', xs, |acc, x| { let a = index_add(0, acc.k, i); ..; (.., v, ..) });
    #      r := (.., index_add(0, r2.k, i), ..)
    # (init.k zeros, init'.k zeros of v's type, i made by no step, item k not stacked: an
    # item that every step makes as values added into zeros at one place is the values,
    # carried alone; row_of_row_scatter then reads its rows without the zeros made whole)
    match bind.expr:
        case LoopE(init, body=body, stacked=stacked) as loop:
            t = expr_type(loop, facts.types)
            state = _StateBody.of(loop)
            made_init = facts.definition(init)
            if state is None or not isinstance(t, TupleType) or not isinstance(made_init, MakeTuple):
                return None
            inside = _step_names(loop)
            uses = Counter(n for b in body.bindings for n in _used_list(b.expr))
            carried: dict[int, tuple[Call, Atom]] = {}  # item k: its scatter, and the values
            for k, new_k in enumerate(state.new.items):
                if item_stacked(stacked, k) or not isinstance(new_k, Name) or uses[new_k.id] != 1:
                    continue
                match state.definitions.get(new_k.id):
                    case Call(P.INDEX_ADD, _, (target, v, *at)) as scatter if (
                            _is(target, facts, 0) and _is(made_init.items[k], facts, 0)
                            and all(isinstance(a, Lit) or a.id not in inside for a in at)):
                        region = expr_type(Call(P.INDEX, scatter.params, (target, *at)), facts.types)
                        if facts.type_of(target) == t.items[k] and region == facts.type_of(v):
                            carried[k] = (scatter, v)
            if not carried:
                return None
            fresh = facts.namer.temporary
            made: list[Bind] = []

            def scatter_of(k: int, values: Atom) -> Name:
                scatter, _ = carried[k]
                zeros = fresh()
                made.append(Bind(zeros, _zeros(t.items[k]), bind.span))
                made.append(Bind(fresh(), dataclasses.replace(scatter, args=(Name(zeros), values, *scatter.args[2:])),
                                 bind.span))
                return Name(made[-1].name)
            initial = []
            for k, item in enumerate(made_init.items):
                if k in carried:
                    region = facts.type_of(carried[k][1])
                    assert isinstance(region, ArrayType)
                    made.append(Bind(fresh(), _zeros(region), bind.span))
                    item = Name(made[-1].name)
                initial.append(item)
            made.append(Bind(fresh(), MakeTuple(tuple(initial)), bind.span))
            new_init = Name(made[-1].name)
            outside, made = made, []
            steps: list[Bind] = []
            for b in body.bindings:
                if b.name in state.acc_items and state.acc_items[b.name] in carried:
                    values = fresh()
                    steps.append(Bind(values, b.expr, b.span))
                    scatter_of(state.acc_items[b.name], Name(values))
                    steps += made[:-1]
                    steps.append(Bind(b.name, made[-1].expr, b.span))
                    made = []
                elif Name(b.name) == body.result:
                    steps.append(Bind(b.name, MakeTuple(tuple(carried[k][1] if k in carried else item
                                                              for k, item in enumerate(state.new.items))), b.span))
                else:
                    steps.append(b)
            rest = fresh()
            made = [*outside, Bind(rest, dataclasses.replace(loop, init=new_init, body=Block(tuple(steps), body.result)),
                                   bind.span)]
            items: list[Atom] = []
            for k in range(len(t.items)):
                made.append(Bind(fresh(), Project(Name(rest), k), bind.span))
                items.append(scatter_of(k, Name(made[-1].name)) if k in carried else Name(made[-1].name))
            made.append(Bind(bind.name, MakeTuple(tuple(items)), bind.span))
            return _well_typed(made, t, facts)
    return None


def _items_outside(bind: Bind, loop: LoopE, outside: dict[int, Atom], made: list[Bind],
                   facts: Facts) -> tuple[Bind, ...] | None:
    """`made`, then `loop` bound afresh and `bind` bound to the tuple of its items, item
    k the atom `outside[k]` (made in `made`) where there is one: the loop's result is no
    longer read at those items; None where that is ill typed."""
    t = expr_type(bind.expr, facts.types)
    assert isinstance(t, TupleType)
    rest = facts.namer.temporary()
    made = [*made, Bind(rest, loop, bind.span)]
    items: list[Atom] = []
    for k in range(len(t.items)):
        if k not in outside:
            made.append(Bind(facts.namer.temporary(), Project(Name(rest), k), bind.span))
        items.append(outside.get(k, Name(made[-1].name)))
    made.append(Bind(bind.name, MakeTuple(tuple(items)), bind.span))
    return _well_typed(made, t, facts)


def _stacked_outside(e: Atom, loop: LoopE, stacked_type: Type, defs: Mapping[str, Expr], span: Any,
                     facts: Facts) -> tuple[Bind, ...] | None:
    """Bindings outside `loop` that make the stack of `e` over its steps (of type
    `stacked_type`), the last bound to it, as `stacked_items_of_no_step` says; None
    where `e` is none of its forms."""
    inside = _step_names(loop)

    def made_by_no_step(a: Atom) -> bool:
        return isinstance(a, Lit) or a.id not in inside
    if not isinstance(stacked_type, ArrayType):
        return None
    fresh = facts.namer.temporary
    if made_by_no_step(e):
        return _typed_bindings([(fresh(), Call(P.BROADCAST_TO, params(shape=stacked_type.shape), (e,)))],
                               stacked_type, span, facts)
    match defs.get(e.id):
        case Call(P.INDEX, _, (Name(a), row)) as read if made_by_no_step(Name(a)) and _reads_a_row(read, a, facts):
            reverse = _step_row(row, loop, stacked_type.shape[0], facts, defs)
            if reverse is None:
                return None
            made: list[Bind] = []
            rows = _rows_of_steps(stacked_type.shape[0], reverse, made, span, facts)
            made.append(Bind(fresh(), Call(P.GATHER, params(clip=False), (Name(a), rows)), span))
            return _well_typed(made, stacked_type, facts)
    return None


def _only_last_of_item(scan: str, k: int, t: Type, facts: Facts) -> bool:
    """Item k (of type `t`) of the scan `scan` is read, and only at its last state."""
    items = [r.name for r in facts.readers.get(scan, []) if isinstance(r.expr, Project) and r.expr.k == k]
    return bool(items) and all(
        name is not None and facts.readers.get(name)
        and all(_reads_last_item(r.expr, name, t, facts) for r in facts.readers[name]) for name in items)


def _used_list(expr: Expr) -> list[str]:
    """The names `expr` reads, each as often as it reads it (not inside blocks)."""
    match expr:
        case Call(args=atoms) | MakeTuple(items=atoms):
            return [a.id for a in atoms if isinstance(a, Name)]
        case Project(Name(id), _) | Name(id):
            return [id]
    return sorted(used_names(expr))


def share_common(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let x = f(a); ...; let y = f(a)  ->  let x = f(a); ...; y := x      (b * a is a * b)
    if isinstance(bind.expr, Call | MakeTuple | Project):
        earlier = facts.available.get(_key(bind.expr))
        if earlier is not None:
            return (Bind(bind.name, Name(earlier), bind.span),)
    return None


RULES: tuple[Rule, ...] = (
    propagate_copy,
    beta_reduce,
    branch_on_literal,
    same_branches,
    project_of_tuple,
    scalar_fill,
    literal_of_constant,
    fold_constants,
    compare_literals,
    logical_with_constant,
    select_known,
    multiply_by_one,
    multiply_by_minus_one,
    multiply_by_zero,
    divide_zero,
    add_zero,
    subtract_zero,
    subtract_from_zero,
    divide_by_one,
    power_of_one,
    negate_twice,
    collect_literal_factors,
    add_negation,
    add_to_itself,
    scale_the_smaller_factor,
    identity_reshaping,
    reshape_twice,
    new_axis_of_reshape,
    broadcast_twice,
    new_axis_of_broadcast,
    transpose_twice,
    transpose_unit_axes,
    transpose_of_product,
    multiply_by_identity,
    rows_of_one_product,
    row_vectors_product,
    diagonal_into_product,
    diagonal_of_product,
    implicit_broadcast,
    broadcast_after_elementwise,
    reduce_before_scaling,
    normalised_weights,
    reduce_before_linear_work,
    index_of_broadcast,
    gather_of_broadcast,
    index_of_arange,
    gather_in_order,
    scatter_in_order,
    add_into_scatter,
    rows_into_zeros,
    row_of_scatter,
    index_of_index,
    row_of_row_scatter,
    tuple_of_projections,
    hoist_invariants,
    unstack_last_states,
    fold_of_no_steps,
    invariant_state_items,
    stacked_items_of_no_step,
    accumulated_invariants,
    state_scattered_into_zeros,
    unused_state_items,
    accumulated_products,
    share_common,
)


def _zeros(t: ArrayType) -> Expr:
    """An expression for zeros of type `t`."""
    if t.shape:
        return Call(P.ZEROS, params(dtype=t.dtype, shape=t.shape), ())
    zero = False if t.dtype is DType.BOOL else 0 if t.dtype is DType.I64 else 0.0
    if t.weak:
        return Call(P.CONST, params(value=zero, dtype=t.dtype), ())
    return Call(P.CONST, params(value=zero, dtype=t.dtype, weak=False), ())


def _ones(t: ArrayType) -> Expr:
    """An expression for ones of the float type `t`."""
    if t.shape:
        return Call(P.ONES, params(dtype=t.dtype, shape=t.shape), ())
    return Call(P.CONST, params(value=1.0, dtype=t.dtype, weak=t.weak), ())


# ---- the rounds ---------------------------------------------------------------

MAX_ROUNDS = 100


def simplify(fn: TargetFunction) -> TargetFunction:
    """`fn` rewritten by `RULES` and dead-binding removal until nothing changes."""
    for _ in range(MAX_ROUNDS):
        facts = Facts(Namer(function_names(fn)), dict(fn.params), {}, {}, {}, readers(fn.body),
                      definitions(fn.body))
        body = remove_dead_bindings(_simplify_block(fn.body, facts))
        if body == fn.body:
            return fn
        fn = dataclasses.replace(fn, body=body)
    raise AssertionError(f"simplify: no fixed point for {fn.name} after {MAX_ROUNDS} rounds")


def _simplify_block(block: Block, facts: Facts) -> Block:
    kept: list[Bind] = []
    work = list(reversed(block.bindings))  # a stack: the next binding is at the end
    while work:
        bind = _prepare(work.pop(), facts)
        for rule in RULES:
            replacement = rule(bind, facts)
            if replacement is not None:
                assert replacement != (bind,), f"{rule.__name__} rewrote {bind} to itself"
                work.extend(reversed(replacement))
                break
        else:
            facts.record(bind)
            kept.append(bind)
    return Block(tuple(kept), _resolve(block.result, facts))


def _resolve(atom: Atom, facts: Facts) -> Atom:
    return facts.aliases.get(atom.id, atom) if isinstance(atom, Name) else atom


def _prepare(bind: Bind, facts: Facts) -> Bind:
    """`bind` with the aliases substituted and its blocks simplified."""
    def r(atom: Atom) -> Atom:
        return _resolve(atom, facts)

    expr: Expr = bind.expr
    match expr:
        case Name() | Lit():
            expr = r(expr)
        case Call(prim, ps, args):
            expr = Call(prim, ps, tuple(map(r, args)))
        case MakeTuple(items):
            expr = MakeTuple(tuple(map(r, items)))
        case Project(tup, k):
            expr = Project(r(tup), k)
        case IfElse(cond, then, orelse):
            expr = IfElse(r(cond), _simplify_block(then, facts.nested()),
                          _simplify_block(orelse, facts.nested()))
        case LoopE(init, xs, acc, x, body):
            _type_loop_names(r(init), r(xs), acc, x, facts.types)
            expr = dataclasses.replace(expr, init=r(init), xs=r(xs), body=_simplify_block(body, facts.nested()))
        case Lambda(ps, body):
            expr = Lambda(ps, _simplify_block(body, facts.nested()))
        case Apply(fn, args):
            expr = Apply(r(fn), tuple(map(r, args)))
        case _:
            assert_never(expr)
    return Bind(bind.name, expr, bind.span)


def readers(block: Block) -> dict[str, list[Reader]]:
    """For each name, what reads it in `block` and the blocks in it."""
    found: dict[str, list[Reader]] = {}

    def read(reader: Reader, atoms: tuple[Atom, ...]) -> None:
        for a in atoms:
            if isinstance(a, Name):
                found.setdefault(a.id, []).append(reader)

    def walk(b: Block) -> None:
        for bind in b.bindings:
            expr, reader = bind.expr, Reader(bind.name, bind.expr)
            match expr:
                case Name() | Lit():
                    read(reader, (expr,))
                case Call(args=atoms) | MakeTuple(items=atoms):
                    read(reader, atoms)
                case Project(tup, _):
                    read(reader, (tup,))
                case IfElse(cond, then, orelse):
                    read(reader, (cond,))
                    walk(then)
                    walk(orelse)
                case LoopE(init, xs, _, _, body, _):
                    read(reader, (init, xs))
                    walk(body)
                case Lambda(_, body):
                    walk(body)
                case Apply(fn, args):
                    read(reader, (fn, *args))
        read(Reader(None, b.result), (b.result,))

    walk(block)
    return found


def remove_dead_bindings(block: Block) -> Block:
    """`block` without the bindings whose names nothing uses (in its blocks too)."""
    used = used_names(block.result)
    kept: list[Bind] = []
    for bind in reversed(block.bindings):
        if bind.name not in used:
            continue
        expr = _without_dead(bind.expr)
        used |= used_names(expr)
        kept.append(Bind(bind.name, expr, bind.span))
    return Block(tuple(reversed(kept)), block.result)


def _without_dead(expr: Expr) -> Expr:
    match expr:
        case IfElse(cond, then, orelse):
            return IfElse(cond, remove_dead_bindings(then), remove_dead_bindings(orelse))
        case LoopE(body=body):
            return dataclasses.replace(expr, body=remove_dead_bindings(body))
        case Lambda(ps, body):
            return Lambda(ps, remove_dead_bindings(body))
    return expr


def first_reads(binds: Sequence[Bind], result: Atom) -> dict[str, int]:
    """The position in `binds` of the first reader of each name (the result's: past the last)."""
    first: dict[str, int] = {}
    for j, b in enumerate(binds):
        for name in used_names(b.expr):
            first.setdefault(name, j)
    for name in used_names(result):
        first.setdefault(name, len(binds))
    return first


def used_names(node: Expr | Block) -> set[str]:
    """Every name read in `node` (names are unique, so inner ones do no harm)."""
    match node:
        case Name(id):
            return {id}
        case Lit():
            return set()
        case Call(args=atoms) | MakeTuple(items=atoms):
            return set().union(*map(used_names, atoms))
        case Project(tup, _):
            return used_names(tup)
        case IfElse(cond, then, orelse):
            return used_names(cond) | used_names(then) | used_names(orelse)
        case LoopE(init, xs, _, _, body, _):
            return used_names(init) | used_names(xs) | used_names(body)
        case Lambda(_, body):
            return used_names(body)
        case Apply(fn, args):
            return used_names(fn).union(*map(used_names, args))
        case Block(bindings, result):
            return used_names(result).union(*(used_names(b.expr) for b in bindings))
        case _:
            assert_never(node)


def function_names(fn: TargetFunction) -> set[str]:
    """Every name of `fn`: parameters, size variables, bound names (in blocks too)."""
    names = {p for p, _ in fn.params} | {s.name for s in fn.sizes}

    def block(b: Block) -> None:
        for bind in b.bindings:
            names.add(bind.name)
            match bind.expr:
                case IfElse(then=then, orelse=orelse):
                    block(then)
                    block(orelse)
                case LoopE(acc=acc, x=x, body=body):
                    names.update((acc, x))
                    block(body)
                case Lambda(ps, body):
                    names.update(ps)
                    block(body)

    block(fn.body)
    return names


@dataclass
class _Renamer:
    """Copies a block with every name it binds made fresh (for beta-reduction)."""

    namer: Namer
    mapping: dict[str, Atom]

    def block(self, b: Block) -> Block:
        bindings = []
        for bind in b.bindings:
            expr = self.expr(bind.expr)
            bindings.append(Bind(self.bind(bind.name), expr, bind.span))
        return Block(tuple(bindings), self.atom(b.result))

    def bind(self, name: str) -> str:
        new = self.namer.temporary() if is_temporary(name) else self.namer.fresh(name)
        self.mapping[name] = Name(new)
        return new

    def atom(self, a: Atom) -> Atom:
        return self.mapping.get(a.id, a) if isinstance(a, Name) else a

    def expr(self, e: Expr) -> Expr:
        match e:
            case Name() | Lit():
                return self.atom(e)
            case Call(prim, ps, args):
                return Call(prim, ps, tuple(map(self.atom, args)))
            case MakeTuple(items):
                return MakeTuple(tuple(map(self.atom, items)))
            case Project(tup, k):
                return Project(self.atom(tup), k)
            case IfElse(cond, then, orelse):
                return IfElse(self.atom(cond), self.block(then), self.block(orelse))
            case LoopE(init, xs, acc, x, body):
                init, xs = self.atom(init), self.atom(xs)
                acc, x = self.bind(acc), self.bind(x)
                return dataclasses.replace(e, init=init, xs=xs, acc=acc, x=x, body=self.block(body))
            case Lambda(ps, body):
                return Lambda(tuple(map(self.bind, ps)), self.block(body))
            case Apply(fn, args):
                return Apply(self.atom(fn), tuple(map(self.atom, args)))
            case _:
                assert_never(e)
