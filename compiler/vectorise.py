"""Vectorisation: UNF with comprehensions -> UNF of whole-array primitives.

`vectorise` removes every `Build`, `Map` and `Reduce` from a function, as
JAX's `vmap` does with one batching rule per primitive. The output is UNF
again, with the same meaning as the reference evaluator gives the input,
the same result type, and one stack entry for every entry of the input (the
vectorised term of an instruction leaves the stack as that instruction does).

Batched values. Inside a nest of K comprehensions (`Build` or `Map` bodies)
the value of an entry is one value per *lane*, a point (i1..iK) of the
nest's index space. It is stored as one array whose leading axes are batch
axes; the entry's `Batched` state says how many:

    entry   ::= Batched(type, level)        an array; 0 <= level <= K
              | BatchedTuple(entry, ...)     a tuple: each item batched on its own
    type     =  (b1, .., bL, *E)             L = level, E = the lane's shape
    bj       =  the extent of nest depth j   (the value varies with index ij)
              | 1                            (it does not: NumPy broadcasts)

A level-0 entry is unbatched: the same value in every lane, stored as is.
An entry never has more batch axes than comprehensions enclose it, and
batch axis j always belongs to nest depth j + 1.

The instructions, at nest depth K:

    Var Tuple Get Drop   the same instruction; the states move along
    Prim p               unchanged when no argument is batched; else
                         BATCHING_RULES[p] at level max(argument levels)
    Build(lo, hi, b)     index = arange(lo, hi) at level K + 1 (reshaped to
                         1..1 x (hi - lo)); b runs inline at depth K + 1;
                         its result is *collapsed*: a level K + 1 result's
                         axis K becomes its leading element axis (broadcast to
                         hi - lo first if it was 1); a lower-level result does
                         not vary with the index and is broadcast along a new
                         axis at position level
    Map(n, b)            the arrays' leading element axes become batch axis K
                         (1s inserted between their batch axes and it); b runs
                         inline at depth K + 1; its result is collapsed
    Reduce(b)            rewritten lane by lane, then vectorised: b exactly
                         acc `op` x or x `op` acc, op one of + * maximum minimum
                         and or xor (on bools + and * are or and and, and xor is
                         parity): the reduction over the array's leading element
                         axis, combined with the unit (`unit + sum(xs)`; just
                         `sum(xs)` when the unit is op's identity constant);
                         maximum and minimum take the
                         unit into the array, `max(concat(unit, xs))`, so an empty
                         array gives the unit (the identity alone only for a
                         constant non-zero length); any other body: a `Loop`
                         folding from the unit, marked `associative` (reverse
                         mode brackets it as scans) unless b calls a `Custom`
    If(a, b)             unbatched condition: `If` of the vectorised branches,
                         their results lifted to one state; batched condition:
                         both branches run, `where(cond, a, b)` selects, and in
                         them (transitively) every `index`/`index_add` with `at`
                         items becomes a `gather`/`gather_add` with clip=True, so
                         an untaken lane indexing out of range is no error (NumPy
                         warnings from untaken lanes are not hidden)
    Loop(b, scan)        the state's level is the fixpoint of the body's
                         (the initial state is lifted to it); batched xs get
                         their sequence axis moved to the front; a scan's
                         (T, b.., *S) result is moved back to (b.., T, *S); an
                         `associative` fold's items are lifted to the state's
                         layout too, so that b combines any two states
    Custom(f, n, b)      unbatched arguments: `Custom` of b vectorised at depth 0
                         (b reads only the arguments); batched ones: `Custom` of
                         b vectorised at depth K, its result broadcast to the
                         arguments' full batch shape, marked with `Lanes` (each
                         argument's level): forward and reverse mode apply the
                         user's rule lane by lane, `vectorise_lanes` of it

A batch axis of length 1 is a broadcast one; the state needs no other record
of which axes are full. Where the rewrites of `Reduce`, `Loop` and `If` put
entries below a body's own, `shift_vars` renumbers the body's reads of them
(UNF's `Var` counts from the bottom; a body only ever drops entries it pushed).
Instructions made for an original instruction carry its span, and the one that
pushes its value its hint.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import assert_never

from . import primitives as P
from .errors import NO_SPAN, Span
from .prim_types import result_type
from .primitives import Params, Primitive, param, params
from .types import ArrayType, Dim, DType, TupleType, Type
from .unary import (Build, Custom, Drop, Get, If, Lanes, Level, Loop, Map, Prim, Reduce, Seq, Term,
                    Tuple, UFunction, UProgram, Var, seq)
from .unary_check import join_types


# ---- the state of a stack entry ----------------------------------------------

@dataclass(frozen=True)
class Batched:
    """An array entry: its stored type, whose first `level` axes are batch axes."""

    type: ArrayType
    level: int = 0
    constant: bool | int | float | None = dataclasses.field(default=None, compare=False)
    """The value of an unbatched `const` (to spot a monoid's identity)."""

    @property
    def batch_shape(self) -> tuple[Dim, ...]:
        return self.type.shape[:self.level]

    @property
    def element(self) -> ArrayType:
        """The type of the value in one lane."""
        return ArrayType(self.type.dtype, self.type.shape[self.level:], self.type.weak)


@dataclass(frozen=True)
class BatchedTuple:
    items: tuple["Entry", ...]

    @property
    def type(self) -> TupleType:
        return TupleType(tuple(item.type for item in self.items))


Entry = Batched | BatchedTuple


def unbatched(t: Type) -> Entry:
    if isinstance(t, TupleType):
        return BatchedTuple(tuple(unbatched(x) for x in t.items))
    return Batched(t)


def _batch_shape(entries: Sequence[Batched], level: int) -> tuple[Dim, ...]:
    """The batch shape the entries broadcast to: per axis, a full extent if any has it."""
    dims = []
    for j in range(level):
        full = [e.type.shape[j] for e in entries if j < e.level and e.type.shape[j] != Dim(1)]
        dims.append(full[0] if full else Dim(1))
    return tuple(dims)


def join(a: Entry, b: Entry) -> Entry:
    """The least state that both `a` and `b` can be lifted to (weak literals yield)."""
    if isinstance(a, BatchedTuple):
        assert isinstance(b, BatchedTuple)
        return BatchedTuple(tuple(join(x, y) for x, y in zip(a.items, b.items)))
    assert isinstance(b, Batched)
    element = join_types(a.element, b.element)
    assert isinstance(element, ArrayType), f"no join of {a.element} and {b.element}"
    level = max(a.level, b.level)
    return Batched(ArrayType(element.dtype, _batch_shape((a, b), level) + element.shape,
                             element.weak), level)


def same_layout(a: Entry, b: Entry) -> bool:
    """Whether `a` and `b` are stored alike (equal up to weakness)."""
    if isinstance(a, BatchedTuple) or isinstance(b, BatchedTuple):
        return (isinstance(a, BatchedTuple) and isinstance(b, BatchedTuple)
                and all(same_layout(x, y) for x, y in zip(a.items, b.items)))
    return a.level == b.level and a.type.shape == b.type.shape


def _leading_length(s: Entry) -> Dim:
    """The length of a lane's leading axis (the same for every item of a tuple)."""
    if isinstance(s, BatchedTuple):
        return _leading_length(s.items[0])
    return s.element.shape[0]


def _step(s: Entry) -> Entry:
    """The state of one step of a sequence moved time-major: the time axis removed."""
    if isinstance(s, BatchedTuple):
        return BatchedTuple(tuple(_step(x) for x in s.items))
    return Batched(ArrayType(s.type.dtype, s.batch_shape + s.element.shape[1:]), s.level)


def _time_major(s: Entry, length: Dim) -> Entry:
    """The states of a scan over `length` steps, as the Loop stacks them: time first."""
    if isinstance(s, BatchedTuple):
        return BatchedTuple(tuple(_time_major(x, length) for x in s.items))
    return Batched(ArrayType(s.type.dtype, (length,) + s.type.shape))


@dataclass(frozen=True)
class Nest:
    depth: int      # enclosing comprehensions (`Build` and `Map` bodies)
    masked: bool    # inside a branch of an `If` with a batched condition


# ---- the emitter ---------------------------------------------------------------

class Emitter:
    """The vectorised term being written, and the state of every stack entry.

    Entries below `floor` belong to the program; those from `floor` up are the
    current instruction's temporaries, which `finish` drops."""

    def __init__(self, stack: list[Entry], nest: Nest, span: Span = NO_SPAN):
        self.stack = stack
        self.nest = nest
        self.span = span
        self.floor = len(stack)
        self.terms: list[Term] = []

    @property
    def top(self) -> int:
        return len(self.stack) - 1

    def child(self, nest: Nest | None = None, extra: tuple[Entry, ...] = ()) -> "Emitter":
        """An emitter for a body that starts on the current stack plus `extra`."""
        return Emitter(self.stack + list(extra), nest or self.nest, self.span)

    def splice(self, child: "Emitter") -> None:
        """Continue with what `child` (made by `child()`, no extra) emitted inline."""
        self.terms.extend(child.terms)
        self.stack = child.stack

    def term(self) -> Term:
        return seq(*self.terms)

    def push(self, instr: Term, state: Entry) -> int:
        self.terms.append(instr)
        self.stack.append(state)
        return self.top

    def copy(self, pos: int, state: Entry | None = None) -> int:
        return self.push(Var(pos, span=self.span), state or self.stack[pos])

    def drop(self, keep: int, count: int) -> None:
        self.terms.append(Drop(keep, count, span=self.span))
        del self.stack[len(self.stack) - keep - count:len(self.stack) - keep]

    def finish(self, pos: int, since: int) -> int:
        """Leave only the value at `pos` above the first `since` entries."""
        if pos != self.top or pos < since:
            self.copy(pos)
        if self.top > since:
            self.drop(1, self.top - since)
        return since

    def retag(self, pos: int, level: int) -> int:
        """The value at `pos` read with `level` batch axes (in place for a temporary)."""
        s = self.stack[pos]
        assert isinstance(s, Batched)
        if s.level == level:
            return pos
        state = Batched(s.type, level)
        if pos == self.top and pos >= self.floor:
            self.stack[pos] = state
            return pos
        return self.copy(pos, state)

    def tuple(self, n: int) -> int:
        items = tuple(self.stack[len(self.stack) - n:])
        del self.stack[len(self.stack) - n:]
        return self.push(Tuple(n, span=self.span), BatchedTuple(items))

    def get(self, pos: int, k: int) -> int:
        s = self.stack[pos]
        assert isinstance(s, BatchedTuple)
        if pos == self.top:
            return self.push(Get(k, span=self.span), s.items[k])
        self.copy(pos)
        self.push(Get(k, span=self.span), s.items[k])
        self.drop(1, 1)
        return self.top

    def itemwise(self, pos: int, fn: Callable[..., int], *like: Entry) -> int:
        """`fn(position, *like items)` on every array of the (tuple) value at `pos`."""
        s = self.stack[pos]
        if isinstance(s, Batched):
            return fn(pos, *like)
        for k in range(len(s.items)):
            mark = len(self.stack)
            item = self.itemwise(self.get(pos, k), fn,
                                 *(x.items[k] for x in like if isinstance(x, BatchedTuple)))
            self.finish(item, mark)
        return self.tuple(len(s.items))

    # -- primitives

    def raw(self, prim: Primitive, ps: Params, args: Sequence[int], level: int) -> int:
        """Apply `prim` to the stored values at `args` as they are; the result has `level`."""
        out = result_type(prim, ps, tuple(self.stack[a].type for a in args))
        assert isinstance(out, ArrayType)
        n = len(args)
        copied = list(args) != list(range(len(self.stack) - n, len(self.stack)))
        if copied:
            for a in args:
                self.copy(a)
        constant = param(ps, "value") if prim is P.CONST else None
        self.push(Prim(prim, ps, n, span=self.span), Batched(out, level, constant))
        if copied and n:
            self.drop(1, n)
        return self.top

    def apply(self, prim: Primitive, ps: Params, args: Sequence[int]) -> int:
        """Apply `prim` lane by lane to the entries at `args`; pushes one entry."""
        if prim in (P.GATHER, P.GATHER_ADD) and self.nest.masked:
            ps = params(clip=True)
        levels = [self.stack[a].level for a in args]
        masked_index = self.nest.masked and prim in (P.INDEX, P.INDEX_ADD) and _has_at(ps)
        if not any(levels) and not masked_index:
            return self.raw(prim, ps, args, 0)
        base = len(self.stack)
        return self.finish(BATCHING_RULES[prim](self, prim, ps, tuple(args)), base)

    # -- moving batch axes

    def insert_axes(self, pos: int, at: int, count: int, level: int) -> int:
        """Insert `count` axes of length 1 at `at`; the result has `level` batch axes."""
        if count == 0:
            return self.retag(pos, level)
        if count == 1:
            return self.raw(P.EXPAND_DIMS, params(axis=at), (pos,), level)
        shape = self.stack[pos].type.shape
        return self.raw(P.RESHAPE, params(shape=shape[:at] + (Dim(1),) * count + shape[at:]),
                        (pos,), level)

    def lift(self, pos: int, level: int, rank: int) -> int:
        """The array at `pos` with `level` batch axes and a lane rank of `rank`
        (new axes of length 1 go after its own batch axes)."""
        s = self.stack[pos]
        assert isinstance(s, Batched) and s.level <= level and s.element.rank <= rank
        return self.insert_axes(pos, s.level, level - s.level + rank - s.element.rank, level)

    def broadcast(self, pos: int, batch_shape: tuple[Dim, ...]) -> int:
        """The array at `pos` broadcast to `batch_shape` (as many batch axes as it has)."""
        s = self.stack[pos]
        assert isinstance(s, Batched) and s.level == len(batch_shape)
        if s.batch_shape == batch_shape:
            return pos
        return self.raw(P.BROADCAST_TO, params(shape=batch_shape + s.element.shape), (pos,),
                        s.level)

    def reshape(self, pos: int, shape: tuple[Dim, ...]) -> int:
        s = self.stack[pos]
        assert isinstance(s, Batched)
        if s.type.shape == shape:
            return pos
        return self.raw(P.RESHAPE, params(shape=shape), (pos,), s.level)

    def coerce(self, pos: int, target: Entry) -> int:
        """The value at `pos` stored as `target` (lifted and broadcast)."""
        if same_layout(self.stack[pos], target):
            return pos
        return self.itemwise(pos, self._coerce_array, target)

    def _coerce_array(self, pos: int, target: Batched) -> int:
        s = self.stack[pos]
        assert isinstance(s, Batched)
        lifted = self.lift(pos, target.level, s.element.rank)
        return self.broadcast(lifted, target.batch_shape)

    def fit(self, pos: int, target: Batched) -> int:
        """The array at `pos` stored as `target`, of the same lane type: summed over
        the batch axes that `target` lacks or has of length 1, broadcast along those
        it has in full (a cotangent of a value that is the same in many lanes is the
        sum of theirs)."""
        s = self.stack[pos]
        assert isinstance(s, Batched) and s.element.shape == target.element.shape
        shape = s.type.shape
        summed = tuple(j for j in range(s.level) if shape[j] != Dim(1)
                       and (j >= target.level or target.type.shape[j] == Dim(1)))
        if summed:
            pos = self.raw(P.SUM, params(axes=summed), (pos,), 0)
        kept = tuple(shape[j] if j < s.level and j not in summed else Dim(1)
                     for j in range(target.level))
        if self.stack[pos].type.shape != kept + s.element.shape:
            pos = self.raw(P.RESHAPE, params(shape=kept + s.element.shape), (pos,), target.level)
        return self.broadcast(self.retag(pos, target.level), target.batch_shape)

    def select(self, cond: int, a: int, b: int) -> int:
        """`where(cond, a, b)` lane by lane; tuples item by item."""
        s = self.stack[a]
        if isinstance(s, Batched):
            return self.apply(P.WHERE, (), (cond, a, b))
        for k in range(len(s.items)):
            mark = len(self.stack)
            self.finish(self.select(cond, self.get(a, k), self.get(b, k)), mark)
        return self.tuple(len(s.items))

    def name_last(self, start: int, hint: str) -> None:
        """Give `hint` to the last instruction since `start` that pushes a value."""
        for k in range(len(self.terms) - 1, start - 1, -1):
            if not isinstance(self.terms[k], Drop):
                self.terms[k] = dataclasses.replace(self.terms[k], hint=hint)
                return


# ---- the pass --------------------------------------------------------------------

def vectorise(fn: UFunction) -> UFunction:
    """`fn` without `Build`, `Map` and `Reduce`: whole-array primitives only."""
    em = Emitter([unbatched(t) for _, t in fn.params], Nest(0, False), fn.span)
    walk(em, fn.body)
    assert not any(isinstance(s, Batched) and s.level for s in em.stack), "batched at depth 0"
    return UFunction(fn.name, fn.params, fn.result, em.term(), fn.sizes, span=fn.span)


def vectorise_program(program: UProgram) -> UProgram:
    return UProgram(tuple(vectorise(fn) for fn in program.functions), program.rules)


def walk(em: Emitter, term: Term) -> None:
    """Emit the vectorised `term` onto `em`."""
    if isinstance(term, Seq):
        for t in term.terms:
            walk(em, t)
        return
    start = len(em.terms)
    em.span, em.floor = term.span, len(em.stack)
    match term:
        case Var(index=i):
            em.copy(i)
        case Prim(prim=prim, params=ps, arity=n):
            em.apply(prim, ps, range(len(em.stack) - n, len(em.stack)))
        case Tuple(n=n):
            em.tuple(n)
        case Get(k=k):
            em.get(em.top, k)
        case Drop(keep=keep, count=count):
            em.drop(keep, count)
        case If():
            _if(em, term)
        case Build():
            _build(em, term)
        case Map():
            _map(em, term)
        case Reduce():
            _reduce(em, term)
        case Loop():
            _loop(em, term)
        case Custom():
            _custom(em, term)
        case _:
            assert_never(term)
    if term.hint is not None:
        em.name_last(start, term.hint)


def _if(em: Emitter, instr: If) -> None:
    cond = em.top
    if not em.stack[cond].level:
        branches = [em.child() for _ in range(2)]
        for branch, body in zip(branches, (instr.then, instr.orelse)):
            walk(branch, body)
        target = join(branches[0].stack[-1], branches[1].stack[-1])
        for branch in branches:
            branch.finish(branch.coerce(branch.top, target), len(em.stack))
        em.push(If(branches[0].term(), branches[1].term(), span=em.span),
                join(branches[0].stack[-1], branches[1].stack[-1]))
        return
    base = len(em.stack)
    masked = dataclasses.replace(em.nest, masked=True)
    # the else-branch runs above the then-branch's result: its own entries move up one
    for body in (instr.then, shift_vars(instr.orelse, base, 1)):
        branch = em.child(masked)
        walk(branch, body)
        em.splice(branch)
    em.finish(em.select(cond, base, base + 1), base)


def _build(em: Emitter, instr: Build) -> None:
    depth, length = em.nest.depth, instr.hi - instr.lo
    base = len(em.stack)
    index = em.raw(P.ARANGE, params(lo=instr.lo, hi=instr.hi), (), 0 if depth else 1)
    if depth:
        index = em.raw(P.RESHAPE, params(shape=(Dim(1),) * depth + (length,)), (index,), depth + 1)
    em.finish(index, base)
    _comprehension(em, instr.body, base, length)


def _map(em: Emitter, instr: Map) -> None:
    depth = em.nest.depth
    base = len(em.stack)
    arrays = range(base - instr.n, base)
    length = _leading_length(em.stack[arrays[0]])

    def element(pos: int) -> int:  # leading lane axis -> batch axis `depth`
        level = em.stack[pos].level
        return em.insert_axes(pos, level, depth - level, depth + 1)

    for a in arrays:
        mark = len(em.stack)
        em.finish(em.itemwise(a, element), mark)
    _comprehension(em, instr.body, base, length)


def _comprehension(em: Emitter, body: Term, base: int, length: Dim) -> None:
    """Run `body` one nest deeper on the stack (its variables pushed from `base`),
    then keep only its result, collapsed to the current depth."""
    inner = em.child(Nest(em.nest.depth + 1, em.nest.masked))
    walk(inner, body)
    em.splice(inner)
    em.finish(em.itemwise(em.top, lambda pos: _collapse(em, pos, length)), base)


def _collapse(em: Emitter, pos: int, length: Dim) -> int:
    """A comprehension's result: batch axis `depth` becomes the leading lane axis."""
    depth = em.nest.depth
    s = em.stack[pos]
    assert isinstance(s, Batched)
    if s.level <= depth:  # the same in every iteration
        expanded = em.insert_axes(pos, s.level, 1, s.level)
        shape = s.batch_shape + (length,) + s.element.shape
        return em.raw(P.BROADCAST_TO, params(shape=shape), (expanded,), s.level)
    full = em.broadcast(pos, s.batch_shape[:depth] + (length,))
    return em.retag(full, depth)


def _loop(em: Emitter, instr: Loop) -> None:
    h = len(em.stack) - 2
    init, xs = em.stack[h], em.stack[h + 1]
    x = _step(xs)
    length = _leading_length(xs)
    # an associative body combines any two states: its items are stored as the state is
    associative = instr.associative and isinstance(init, Batched) and isinstance(x, Batched)
    acc = join(init, x) if associative else init
    while True:
        probe = em.child(extra=(acc, acc if associative else x))
        walk(probe, instr.body)
        grown = join(acc, probe.stack[-1])
        if grown == acc:
            break
        acc = grown
    sequence = _items_like(xs, acc, length) if associative else xs
    x = _step(sequence)
    base, body = len(em.stack), instr.body
    if not same_layout(init, acc) or _is_batched(xs) or not same_layout(_step(xs), x):
        em.finish(em.coerce(h, acc), base)
        em.finish(em.itemwise(em.coerce(h + 1, sequence), _time_first(em)), base + 1)
        body = shift_vars(body, h + 2, 2)  # the body's own entries sit above the copies
    inner = em.child(extra=(acc, x))
    walk(inner, body)
    inner.finish(inner.coerce(inner.top, acc), len(em.stack) + 2)
    state = join(em.stack[-2], inner.stack[-1])
    stacked = instr.stacked
    if isinstance(stacked, bool):
        em.push(Loop(inner.term(), stacked, associative=associative, names=instr.names, span=em.span),
                _time_major(state, length) if stacked else state)
        if stacked and _is_batched(state):
            em.itemwise(em.top, _batch_first(em), state)
    else:  # item by item (a reverse loop): the stacked items batched like their states
        assert isinstance(state, BatchedTuple)
        em.push(Loop(inner.term(), stacked, associative=associative, names=instr.names, span=em.span),
                BatchedTuple(tuple(_time_major(s, length) if flag else s
                                   for s, flag in zip(state.items, stacked))))
        if _is_batched(state):
            loop = em.top
            for k, (s, flag) in enumerate(zip(state.items, stacked)):
                mark = len(em.stack)
                item = em.get(loop, k)
                em.finish(em.itemwise(item, _batch_first(em), s) if flag else item, mark)
            em.tuple(len(stacked))
    em.finish(em.top, base)


def _items_like(xs: Entry, state: Batched, length: Dim) -> Batched:
    """The sequence `xs` stored with the batch axes of `state` (its items laid out as it is)."""
    assert isinstance(xs, Batched)
    return Batched(ArrayType(xs.type.dtype, state.batch_shape + (length,) + state.element.shape,
                             xs.type.weak), state.level)


def _custom(em: Emitter, instr: Custom) -> None:
    """A call with a derivative rule: a `Custom` of its body vectorised on its own.
    On unbatched arguments, outside the nest, as it is (the rule, made for one call,
    applies as it is). On batched ones, at the nest's depth, marked with `Lanes`:
    how its arguments are batched, so that the rule is applied lane by lane
    (`vectorise_lanes`); its result is stored at the full batch shape of its
    arguments, as the per-lane derivatives will be. A call batched already (a rule's
    code run lane by lane) gets the new batch axes in front of its own: every
    argument is first lifted to the new level, so that its old ones line up."""
    n = instr.n
    args = em.stack[len(em.stack) - n:]
    if not any(_is_batched(s) for s in args):
        body = em.child(Nest(0, em.nest.masked))
        walk(body, instr.body)
        assert len(body.stack) == len(em.stack) + 1 and not _is_batched(body.stack[-1])
        em.push(dataclasses.replace(instr, body=body.term(), span=em.span), body.stack[-1])
        return
    base = len(em.stack)
    depth = max(_deepest(s) for s in args)
    term, masked = instr.body, em.nest.masked
    if instr.lanes is None:
        levels = tuple(_levels(s) for s in args)
    else:
        for k in range(n):
            mark = len(em.stack)
            em.finish(em.itemwise(base - n + k, lambda pos: em.lift(
                pos, depth, em.stack[pos].element.rank)), mark)  # type: ignore[union-attr]
        term = shift_vars(term, base - n, n)  # the body reads the lifted copies
        levels = tuple(_deeper(level, depth) for level in instr.lanes.levels)
        masked = masked or instr.lanes.masked
    leaves = [x for s in em.stack[len(em.stack) - n:] for x in _leaves(s)]
    body = em.child()
    walk(body, term)
    result = _full(body.stack[-1], leaves, depth)
    body.finish(body.coerce(body.top, result), len(em.stack))
    em.push(dataclasses.replace(instr, body=body.term(), lanes=Lanes(levels, masked), span=em.span),
            result)
    em.finish(em.top, base)


def vectorise_lanes(term: Term, args: Sequence[tuple[Type, Level]], result: tuple[Type, Level],
                    masked: bool = False) -> Term:
    """`term`, written for one lane and running on its arguments alone (`A1..Ak ⊢
    A1..Ak, B`, as a function's body), run on every lane at once: whole-array code
    `A1..Ak ⊢ A1..Ak, B'`. Argument i is stored with `args[i] = (type, level)` batch
    axes as vectorisation stores values (an int level covers every item of a tuple);
    the result is stored as `result` says, summed over the lanes along which it is
    the same: so a rule's cotangent of an argument read by many lanes is the sum of
    their cotangents. `masked`: some lanes are not taken (see `Nest`)."""
    states = [_state(t, level) for t, level in args]
    em = Emitter(list(states), Nest(max((_deepest(s) for s in states), default=0), masked))
    walk(em, term)
    em.finish(em.itemwise(em.top, em.fit, _state(*result)), len(args))
    return em.term()


def _state(t: Type, level: Level) -> Entry:
    if isinstance(t, TupleType):
        items = level if isinstance(level, tuple) else (level,) * len(t.items)
        return BatchedTuple(tuple(_state(x, lv) for x, lv in zip(t.items, items)))
    assert isinstance(t, ArrayType) and isinstance(level, int)
    return Batched(t, level)


def _levels(s: Entry) -> Level:
    return tuple(_levels(x) for x in s.items) if isinstance(s, BatchedTuple) else s.level


def _deeper(level: Level, by: int) -> Level:
    return tuple(_deeper(x, by) for x in level) if isinstance(level, tuple) else level + by


def _leaves(s: Entry) -> list[Batched]:
    return [x for item in s.items for x in _leaves(item)] if isinstance(s, BatchedTuple) else [s]


def _deepest(s: Entry) -> int:
    return max((x.level for x in _leaves(s)), default=0)


def _full(s: Entry, leaves: Sequence[Batched], level: int) -> Entry:
    """`s` stored with `level` batch axes at the lengths `leaves` broadcast to."""
    if isinstance(s, BatchedTuple):
        return BatchedTuple(tuple(_full(x, leaves, level) for x in s.items))
    element = s.element
    return Batched(ArrayType(element.dtype, _batch_shape(leaves, level) + element.shape,
                             element.weak), level)


def _is_batched(s: Entry) -> bool:
    if isinstance(s, BatchedTuple):
        return any(_is_batched(x) for x in s.items)
    return s.level > 0


def _time_first(em: Emitter) -> Callable[[int], int]:
    """(b.., T, *X) -> (T, b.., *X): a sequence to run a Loop over."""
    def move(pos: int) -> int:
        s = em.stack[pos]
        if not s.level:
            return pos
        perm = (s.level, *range(s.level), *range(s.level + 1, s.type.rank))
        return em.raw(P.TRANSPOSE, params(perm=perm), (pos,), 0)
    return move


def _batch_first(em: Emitter) -> Callable[[int, Batched], int]:
    """(T, b.., *S) -> (b.., T, *S): the states of a scan, batched like `state`."""
    def move(pos: int, state: Batched) -> int:
        if not state.level:
            return pos
        rank = state.type.rank + 1
        perm = (*range(1, state.level + 1), 0, *range(state.level + 1, rank))
        return em.raw(P.TRANSPOSE, params(perm=perm), (pos,), state.level)
    return move


# ---- Reduce --------------------------------------------------------------------

_MONOID_OPS = frozenset({P.ADD, P.MUL, P.MAXIMUM, P.MINIMUM, P.AND, P.OR, P.XOR})
_REDUCTION = {P.ADD: P.SUM, P.MUL: P.PROD, P.MAXIMUM: P.MAX, P.MINIMUM: P.MIN}
_BOOL_REDUCTION = {P.ADD: P.MAX, P.OR: P.MAX, P.MAXIMUM: P.MAX,
                   P.MUL: P.MIN, P.AND: P.MIN, P.MINIMUM: P.MIN, P.XOR: P.PARITY}
_IDENTITY = {P.SUM: 0, P.PROD: 1, P.MAX: -math.inf, P.MIN: math.inf}
_BOOL_IDENTITY = {P.MAX: False, P.MIN: True, P.PARITY: False}
_EMPTY_IS_IDENTITY = (P.SUM, P.PROD, P.PARITY)  # an empty array reduces to op's identity


def _reduce(em: Emitter, instr: Reduce) -> None:
    """Rewrite the Reduce lane by lane without it, then vectorise that: a monoid
    body becomes a whole-array reduction combined with the unit; any other body
    a sequential `Loop` (fold) over the array with the unit as initial state."""
    h = len(em.stack) - 2  # the array at h, the unit at h + 1
    array, unit = em.stack[h], em.stack[h + 1]
    op = monoid(instr.body, h + 2)
    sp = instr.span
    if op is None or not isinstance(array, Batched):
        # a body that calls a function with a derivative rule cannot be batched: folded as is
        associative = isinstance(array, Batched) and not _calls_custom(instr.body)
        term = seq(Var(h + 1, span=sp), Var(h, span=sp),
                   Loop(shift_vars(instr.body, h + 2, 2), False, associative=associative, span=sp),
                   Drop(1, 2, span=sp))
        walk(em, term)
        return
    is_bool = array.type.dtype is DType.BOOL
    reduction = (_BOOL_REDUCTION if is_bool else _REDUCTION)[op]
    identity = (_BOOL_IDENTITY if is_bool else _IDENTITY)[reduction]
    length = _leading_length(array)
    nonempty = length.is_constant and length.const > 0
    over_items = Prim(reduction, params(axes=(0,)), 1, span=sp)
    if (isinstance(unit, Batched) and unit.constant is not None and unit.constant == identity
            and (reduction in _EMPTY_IS_IDENTITY or nonempty)):
        term = seq(Var(h, span=sp), over_items, Drop(1, 1, span=sp))
    elif reduction in _EMPTY_IS_IDENTITY:
        term = seq(Var(h + 1, span=sp), Var(h, span=sp), over_items, Drop(1, 1, span=sp),
                   Prim(op, (), 2, span=sp), Drop(1, 2, span=sp))
    else:  # max/min of the unit and the items: empty arrays give the unit
        term = seq(Var(h + 1, span=sp), Prim(P.EXPAND_DIMS, params(axis=0), 1, span=sp),
                   Drop(1, 1, span=sp), Var(h, span=sp),
                   Prim(P.CONCAT, params(axis=0), 2, span=sp), Drop(1, 2, span=sp),
                   over_items, Drop(1, 1, span=sp))
    walk(em, term)


def monoid(body: Term, acc: int) -> Primitive | None:
    """`op` when `body` (run with the accumulator at `acc`, the item above it)
    computes exactly `op(acc, x)` or `op(x, acc)`, op in + * maximum minimum and or xor."""
    stack: list[object] = [None] * acc + ["acc", "x"]
    for instr in _flat(body):
        match instr:
            case Var(index=i):
                stack.append(stack[i])
            case Prim(prim=prim, params=(), arity=2) if prim in _MONOID_OPS:
                stack.append((prim, stack[-2], stack[-1]))
            case Drop(keep=keep, count=count):
                del stack[len(stack) - keep - count:len(stack) - keep]
            case _:
                return None
    top = stack[-1]
    if len(stack) == acc + 3 and isinstance(top, tuple) and {top[1], top[2]} == {"acc", "x"}:
        return top[0]
    return None


def _calls_custom(term: Term) -> bool:
    """Whether `term` calls a function with a derivative rule (whose rule is for one call)."""
    match term:
        case Custom():
            return True
        case Seq(terms=terms):
            return any(_calls_custom(t) for t in terms)
        case If(then=then, orelse=orelse):
            return _calls_custom(then) or _calls_custom(orelse)
        case Build(body=body) | Map(body=body) | Reduce(body=body) | Loop(body=body):
            return _calls_custom(body)
        case _:
            return False


def _flat(term: Term) -> list[Term]:
    return [t for s in term.terms for t in _flat(s)] if isinstance(term, Seq) else [term]


def shift_vars(term: Term, at: int, by: int) -> Term:
    """`term` with every read of an entry at or above `at` moved `by` entries up."""
    match term:
        case Var(index=i):
            return dataclasses.replace(term, index=i + by) if i >= at else term
        case Seq(terms=terms):
            return dataclasses.replace(term, terms=tuple(shift_vars(t, at, by) for t in terms))
        case Prim() | Tuple() | Get() | Drop():
            return term
        case If(then=then, orelse=orelse):
            return dataclasses.replace(term, then=shift_vars(then, at, by),
                                       orelse=shift_vars(orelse, at, by))
        case (Build(body=body) | Map(body=body) | Reduce(body=body) | Loop(body=body)
              | Custom(body=body)):
            return dataclasses.replace(term, body=shift_vars(body, at, by))
        case _:
            assert_never(term)


# ---- batching rules ----------------------------------------------------------------
#
# rule(em, prim, params, args) -> position: apply `prim` to the entries at `args`
# (at least one batched) lane by lane, at level L = the largest argument level.

Rule = Callable[[Emitter, Primitive, Params, tuple[int, ...]], int]


def _states(em: Emitter, args: Sequence[int]) -> list[Batched]:
    states = [em.stack[a] for a in args]
    assert all(isinstance(s, Batched) for s in states)
    return states  # type: ignore[return-value]


def _level(em: Emitter, args: Sequence[int]) -> int:
    return max(s.level for s in _states(em, args))


def _replace(ps: Params, **changes: object) -> Params:
    return params(**{**dict(ps), **changes})


def _elementwise(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """Batched arguments lifted to level L and the largest lane rank R; unbatched
    ones (rank <= R) line up by NumPy's right alignment."""
    states = _states(em, args)
    level, rank = _level(em, args), max(s.element.rank for s in states)
    lifted = [em.lift(a, level, rank) if s.level else a for a, s in zip(args, states)]
    return em.raw(prim, ps, lifted, level)


def _shift_axes(name: str) -> Rule:
    """Reductions, softmax, scans, expand_dims: the axes param moves past the batch axes."""
    def rule(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
        level = _level(em, args)
        value = param(ps, name)
        shifted = tuple(a + level for a in value) if isinstance(value, tuple) else value + level
        return em.raw(prim, _replace(ps, **{name: shifted}), args, level)
    return rule


def _transpose(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    level = _level(em, args)
    perm = (*range(level), *(p + level for p in param(ps, "perm")))
    return em.raw(prim, params(perm=perm), args, level)


def _reshape(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    (s,) = _states(em, args)
    return em.raw(prim, params(shape=s.batch_shape + param(ps, "shape")), args, s.level)


def _broadcast_to(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """broadcast_to and full: the lane value padded to the shape's rank, then broadcast."""
    (s,) = _states(em, args)
    shape = param(ps, "shape")
    padded = em.lift(args[0], s.level, len(shape))
    return em.raw(P.BROADCAST_TO, params(shape=s.batch_shape + shape), (padded,), s.level)


def _join_arrays(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """concat and stack: every item lifted and broadcast to one batch shape."""
    states = _states(em, args)
    level = _level(em, args)
    batch = _batch_shape(states, level)
    items = [em.broadcast(em.lift(a, level, s.element.rank), batch) for a, s in zip(args, states)]
    return em.raw(prim, params(axis=param(ps, "axis") + level), items, level)


def _matmul(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """A batched vector becomes a row (left) or column (right) matrix; then the
    operands line up as for elementwise primitives, and the promoted axes go."""
    states = _states(em, args)
    level = _level(em, args)
    lane = result_type(P.MATMUL, ps, tuple(s.element for s in states))
    operands = []
    for side, (a, s) in enumerate(zip(args, states)):
        if s.level and s.element.rank == 1:
            a = em.insert_axes(a, s.level + side, 1, s.level)
        operands.append(a)
    rank = max(em.stack[a].element.rank for a in operands)
    operands = [em.lift(a, level, rank) if em.stack[a].level else a for a in operands]
    out = em.raw(P.MATMUL, ps, operands, level)
    return em.reshape(out, em.stack[out].batch_shape + lane.shape)


def _index(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """With unbatched indices: the same `index`, keeping the batch axes whole.
    Else (or when masked): the slices, the indexed axes moved first, a gather."""
    x, at = args[0], args[1:]
    (s,) = _states(em, (x,))
    spec = param(ps, "spec")
    if not at or (not em.nest.masked and not _level(em, at)):
        whole = tuple(("slice", Dim(0), d) for d in s.batch_shape)
        return em.raw(P.INDEX, params(spec=whole + spec), args, s.level)
    lane = s.element.shape
    sliced = tuple(("slice", Dim(0), lane[k]) if item[0] == "at" else item
                   for k, item in enumerate(spec))
    y = x
    if any(item != ("slice", Dim(0), lane[k]) for k, item in enumerate(sliced)):
        y = em.apply(P.INDEX, params(spec=sliced), (y,))
    indexed = [k for k, item in enumerate(spec) if item[0] == "at"]
    perm = (*indexed, *(k for k in range(len(lane)) if k not in indexed))
    if perm != tuple(range(len(lane))):
        y = em.apply(P.TRANSPOSE, params(perm=perm), (y,))
    return em.apply(P.GATHER, params(clip=em.nest.masked), (y, *at))


def _index_add(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """With unbatched indices: the same index_add into the target broadcast to the
    batch shape, keeping the batch axes whole. Else (or when masked): a gather_add
    whose index arrays are the `at` indices and aranges along the sliced axes."""
    target, value, at = args[0], args[1], args[2:]
    spec = param(ps, "spec")
    if not at or (not em.nest.masked and not _level(em, at)):
        states = _states(em, args)
        level = _level(em, args)
        batch = _batch_shape(states, level)
        lane = states[0].element.rank
        region_rank = sum(item[0] == "slice" for item in spec) + lane - len(spec)
        t = em.broadcast(em.lift(target, level, lane), batch)
        v = em.lift(value, level, region_rank) if states[1].level else value
        whole = tuple(("slice", Dim(0), d) for d in batch)
        return em.raw(P.INDEX_ADD, params(spec=whole + spec), (t, v, *at), level)
    slices = [k for k, item in enumerate(spec) if item[0] == "slice"]
    ats = iter(at)
    indices = []
    for k, item in enumerate(spec):
        if item[0] == "at":
            indices.append(next(ats))
            continue
        q = slices.index(k)  # the q-th sliced axis is axis q of the region
        shape = (Dim(1),) * q + (item[2] - item[1],) + (Dim(1),) * (len(slices) - q - 1)
        along = em.apply(P.ARANGE, params(lo=item[1], hi=item[2]), ())
        indices.append(em.reshape(along, shape))
    return em.apply(P.GATHER_ADD, params(clip=em.nest.masked), (target, value, *indices))


def _gather_add(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """Every lane adds into its own copy of the target (broadcast to the batch
    shape), indexed like `gather`: aranges for the batch axes, then the indices."""
    target, value, indices = args[0], args[1], args[2:]
    states = _states(em, args)
    level = _level(em, args)
    batch = _batch_shape(states, level)
    rank = max(s.element.rank for s in states[2:])
    lane = states[0].element.rank
    t = em.broadcast(em.lift(target, level, lane), batch)
    v = em.lift(value, level, rank + lane - len(indices)) if states[1].level else value
    lifted = [em.lift(i, level, rank) if s.level else i for i, s in zip(indices, states[2:])]
    along = [_batch_index(em, j, d, level + rank) for j, d in enumerate(batch)]
    return em.raw(P.GATHER_ADD, ps, (t, v, *along, *lifted), level)


def _gather(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    """x's batch axes are indexed by aranges along their own axis, the lane's by
    the index arrays lifted to level L: the result has the batch axes first."""
    x, indices = args[0], args[1:]
    s = em.stack[x]
    states = _states(em, args)
    level = _level(em, args)
    rank = max(t.element.rank for t in states[1:])
    lifted = [em.lift(i, level, rank) if t.level else i for i, t in zip(indices, states[1:])]
    along = [_batch_index(em, j, d, level + rank) for j, d in enumerate(s.batch_shape)]
    return em.raw(P.GATHER, ps, (x, *along, *lifted), level)


def _batch_index(em: Emitter, axis: int, length: Dim, rank: int) -> int:
    """The indices 0..length-1 along `axis` of an array of `rank` axes (0 for a 1)."""
    if length == Dim(1):
        return em.raw(P.CONST, params(value=0, dtype=DType.I64), (), 0)
    index = em.raw(P.ARANGE, params(lo=Dim(0), hi=length), (), 0)
    shape = (Dim(1),) * axis + (length,) + (Dim(1),) * (rank - axis - 1)
    return em.reshape(index, shape)


def _has_at(ps: Params) -> bool:
    return any(item[0] == "at" for item in param(ps, "spec"))


def _no_arguments(em: Emitter, prim: Primitive, ps: Params, args: tuple[int, ...]) -> int:
    raise AssertionError(f"{prim.name} takes no arguments, so it is never batched")


BATCHING_RULES: dict[Primitive, Rule] = {
    **{prim: _elementwise for prim in P.ELEMENTWISE},  # includes where and astype
    **{prim: _no_arguments for prim in (P.CONST, P.SIZE, P.ZEROS, P.ONES, P.ARANGE)},
    P.FULL: _broadcast_to,
    **{prim: _shift_axes("axes") for prim in P.REDUCTIONS},
    P.SOFTMAX: _shift_axes("axis"),
    **{prim: _shift_axes("axis") for prim in P.SCANS},
    P.PARITY: _shift_axes("axes"),
    P.POPCOUNT_LE: _elementwise,  # counts along the last axis, which lifting keeps last
    P.EXPAND_DIMS: _shift_axes("axis"),
    P.MATMUL: _matmul,
    P.TRANSPOSE: _transpose,
    P.BROADCAST_TO: _broadcast_to,
    P.RESHAPE: _reshape,
    P.STACK: _join_arrays,
    P.CONCAT: _join_arrays,
    P.INDEX: _index,
    P.GATHER: _gather,
    P.INDEX_ADD: _index_add,
    P.GATHER_ADD: _gather_add,
}
