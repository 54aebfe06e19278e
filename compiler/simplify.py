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
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, assert_never

from . import primitives as P
from .names import Namer
from .prim_types import result_type
from .primitives import param, params
from .target import (Apply, Atom, Bind, Block, Call, Expr, IfElse, Lambda, Lit, LoopE, MakeTuple,
                     Name, Project, TargetFunction)
from .types import ArrayType, Dim, DType, TupleType, Type, scalar

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
            if not stacked or state is None or sequence is None:
                return state
            return stacked_type(state, leading_dim(sequence))
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


def stacked_type(t: Type, length: Dim) -> Type:
    """`length` values of type `t` stacked on a new leading axis (tuples: item by item)."""
    if isinstance(t, ArrayType):
        return ArrayType(t.dtype, (length, *t.shape))
    return TupleType(tuple(stacked_type(x, length) for x in t.items))


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


@dataclass
class Facts:
    """What the rules know at a binding: the type and definition of the names in
    scope, the aliases made by copy propagation, and the expressions computed
    so far (for sharing). Names are unique in a function, so only `available`
    is scoped: a block sees its enclosing block's, not its siblings'."""

    namer: Namer
    types: dict[str, Type]
    definitions: dict[str, Expr]
    aliases: dict[str, Atom]
    available: dict[Any, str]

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
        return ("call", value.prim.name, _key(value.params), _key(value.args))
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
    match bind.expr:
        case IfElse(Lit(bool() as cond), then, orelse):
            taken = then if cond else orelse
            return (*taken.bindings, Bind(bind.name, taken.result, bind.span))
    return None


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
    # 2.0 * 3.0  ->  6.0   (+ - * / and unary -, on int and float literals)
    match expr:
        case Call(prim, _, args) if prim in _FOLDABLE and all(
                isinstance(a, Lit) and not isinstance(a.value, bool) for a in args):
            try:
                value = _FOLDABLE[prim](*(a.value for a in args))
            except (ZeroDivisionError, OverflowError):
                return None  # left for NumPy's rules at run time
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if expr_type(expr, facts.types) == literal_type(value):
                return Lit(value)
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


def share_common(bind: Bind, facts: Facts) -> tuple[Bind, ...] | None:
    # let x = f(a); ...; let y = f(a)  ->  let x = f(a); ...; y := x
    if isinstance(bind.expr, Call | MakeTuple | Project):
        earlier = facts.available.get(_key(bind.expr))
        if earlier is not None:
            return (Bind(bind.name, Name(earlier), bind.span),)
    return None


RULES: tuple[Rule, ...] = (
    propagate_copy,
    beta_reduce,
    branch_on_literal,
    project_of_tuple,
    literal_of_constant,
    fold_constants,
    multiply_by_one,
    multiply_by_zero,
    add_zero,
    subtract_zero,
    subtract_from_zero,
    divide_by_one,
    power_of_one,
    negate_twice,
    identity_reshaping,
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


# ---- the rounds ---------------------------------------------------------------

MAX_ROUNDS = 100


def simplify(fn: TargetFunction) -> TargetFunction:
    """`fn` rewritten by `RULES` and dead-binding removal until nothing changes."""
    for _ in range(MAX_ROUNDS):
        facts = Facts(Namer(function_names(fn)), dict(fn.params), {}, {}, {})
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
        case LoopE(init, xs, acc, x, body, stacked):
            _type_loop_names(r(init), r(xs), acc, x, facts.types)
            expr = LoopE(r(init), r(xs), acc, x, _simplify_block(body, facts.nested()), stacked)
        case Lambda(ps, body):
            expr = Lambda(ps, _simplify_block(body, facts.nested()))
        case Apply(fn, args):
            expr = Apply(r(fn), tuple(map(r, args)))
        case _:
            assert_never(expr)
    return Bind(bind.name, expr, bind.span)


def remove_dead_bindings(block: Block) -> Block:
    """`block` without the bindings whose names nothing uses (in its blocks too)."""
    used = _used_names(block.result)
    kept: list[Bind] = []
    for bind in reversed(block.bindings):
        if bind.name not in used:
            continue
        expr = _without_dead(bind.expr)
        used |= _used_names(expr)
        kept.append(Bind(bind.name, expr, bind.span))
    return Block(tuple(reversed(kept)), block.result)


def _without_dead(expr: Expr) -> Expr:
    match expr:
        case IfElse(cond, then, orelse):
            return IfElse(cond, remove_dead_bindings(then), remove_dead_bindings(orelse))
        case LoopE(init, xs, acc, x, body, stacked):
            return LoopE(init, xs, acc, x, remove_dead_bindings(body), stacked)
        case Lambda(ps, body):
            return Lambda(ps, remove_dead_bindings(body))
    return expr


def _used_names(node: Expr | Block) -> set[str]:
    """Every name read in `node` (names are unique, so inner ones do no harm)."""
    match node:
        case Name(id):
            return {id}
        case Lit():
            return set()
        case Call(args=atoms) | MakeTuple(items=atoms):
            return set().union(*map(_used_names, atoms))
        case Project(tup, _):
            return _used_names(tup)
        case IfElse(cond, then, orelse):
            return _used_names(cond) | _used_names(then) | _used_names(orelse)
        case LoopE(init, xs, _, _, body, _):
            return _used_names(init) | _used_names(xs) | _used_names(body)
        case Lambda(_, body):
            return _used_names(body)
        case Apply(fn, args):
            return _used_names(fn).union(*map(_used_names, args))
        case Block(bindings, result):
            return _used_names(result).union(*(_used_names(b.expr) for b in bindings))
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
        new = self.namer.fresh(name)
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
            case LoopE(init, xs, acc, x, body, stacked):
                init, xs = self.atom(init), self.atom(xs)
                acc, x = self.bind(acc), self.bind(x)
                return LoopE(init, xs, acc, x, self.block(body), stacked)
            case Lambda(ps, body):
                return Lambda(tuple(map(self.bind, ps)), self.block(body))
            case Apply(fn, args):
                return Apply(self.atom(fn), tuple(map(self.atom, args)))
            case _:
                assert_never(e)
