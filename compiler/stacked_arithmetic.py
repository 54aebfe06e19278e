"""A stack of like elementwise arithmetic in a loop's body, made as arithmetic on stacks.

A NumPy call costs about a microsecond whatever the size of its arrays, and the
arrays of a loop's body are often small. An LSTM's layer step stacks its three
gates' pre-activations for one sigmoid (grouped_applications.py):

    t = stack((inp * w[0] + bias[0], hidden * w[1] + bias[1], inp * w[2] + bias[2]))

thirteen calls on arrays of 14 numbers. The stack of the sums is the sum of the
stacks, and the stack of the products the product of the stacks:

    t = stack((inp, hidden, inp)) * w[0:3] + bias[0:3]

five calls, two of them views. The rule, applied from the stack down:

    stack((a0 op b0, ..., an op bn))  ->  stack(a) op stack(b)

for one elementwise binary op, each ai of one type and each bi of one type,
each ai op bi read by the stack alone. It pays where each operand stack is
cheap (an `Operand`): one atom shared by all (`1.0 - x_i`: kept as it is,
broadcast), consecutive rows of one array (`w[0], w[1], w[2]`: the view
`w[0:3]`), a stack the block has already made (its name), or again a stack of
like arithmetic. One operand stack may be made afresh in each grouping (the
`inp, hidden, inp` above); and a stack is rewritten only where the block's count
of calls goes down. Like arithmetic beside the stack may join it where its
operands continue the stacks (`_widened`: the LSTM's fourth gate, which goes
through tanh, makes the rows `w[0:3]` the whole `w`).

Read the other way, the same identity makes like arithmetic on the items of a
stack, one for each in order, the arithmetic of the stack read as its rows
(`_rows_rewritten`): the LSTM's reverse step multiplies each gate's cotangent,
the items of `bias_bar`, by its row of the weights, `bias_bar * w_2`.

Only loop bodies are rewritten: outside them the arrays are large, and a stack
made afresh is one more pass over them. The pass runs after
grouped_applications, whose stacks of arguments are what it most often finds.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from . import primitives as P
from .names import Namer
from .prim_types import PrimTypeError, result_type
from .primitives import param, params
from .simplify import atom_type, binding_types, first_reads, function_names, used_names
from .target import (Atom, Bind, Block, Call, Expr, Lit, MakeTuple, Name, TargetFunction, definitions,
                     with_inner_blocks)
from .types import ArrayType, Dim, Type

ELEMENTWISE_BINARY = frozenset((*P.ARITHMETIC, *P.COMPARISON, *P.LOGICAL))


def stack_arithmetic(fn: TargetFunction) -> TargetFunction:
    """`fn` with each loop body's stacks of like arithmetic made as arithmetic on stacks."""
    context = _Context(binding_types(fn), Namer(function_names(fn)), definitions(fn.body))
    return dataclasses.replace(fn, body=_block(fn.body, context, {}, in_loop=False))


@dataclass
class _Context:
    types: dict[str, Type]
    namer: Namer
    definitions: dict[str, Expr]  # of every name of the function, kept up to date


# An operand stack, and how it is made ---------------------------------------------------------

@dataclass(frozen=True)
class Shared:
    """One atom for every item: kept as it is, broadcast against the others' stack."""
    atom: Atom


@dataclass(frozen=True)
class Known:
    """A stack of the same items that the block (or one around it) has made already,
    or an array whose rows, every one in order, the items are."""
    name: str


@dataclass(frozen=True)
class Rows:
    """Consecutive rows `x[.., k], .., x[.., k + n - 1]` of one array: the view `x[.., k:k + n]`."""
    index: Call


@dataclass(frozen=True)
class Fresh:
    """A stack made here, of items that are there already: the one dear kind."""
    items: tuple[Atom, ...]


@dataclass(frozen=True)
class Arithmetic:
    """`stack(a) op stack(b)` for the items `members`, bindings of `a_i op b_i` read here alone."""
    prim: P.Primitive
    left: "Operand"
    right: "Operand"
    members: tuple[str, ...]


Operand = Shared | Known | Rows | Fresh | Arithmetic


def _calls_made(operand: Operand) -> int:
    """The calls that making `operand` adds, less the member calls it replaces."""
    match operand:
        case Shared() | Known():
            return 0
        case Rows() | Fresh():
            return 1
        case Arithmetic(_, left, right, members):
            return 1 + _calls_made(left) + _calls_made(right) - len(members)


def _fresh_stacks(operand: Operand) -> int:
    match operand:
        case Fresh():
            return 1
        case Arithmetic(_, left, right, _):
            return _fresh_stacks(left) + _fresh_stacks(right)
    return 0


def _removed(operand: Operand) -> set[str]:
    """The bindings whose work `operand` takes over."""
    if isinstance(operand, Arithmetic):
        return set(operand.members) | _removed(operand.left) | _removed(operand.right)
    return set()


def _leaves(operand: Operand) -> set[str]:
    """The names that making `operand` reads (not those of the work it takes over)."""
    match operand:
        case Shared(atom):
            return used_names(atom)
        case Known(name):
            return {name}
        case Rows(index):
            return used_names(index)
        case Fresh(items):
            return set().union(*map(used_names, items))
        case Arithmetic(_, left, right, _):
            return _leaves(left) | _leaves(right)


# Walking the function --------------------------------------------------------------------------

def _block(block: Block, context: _Context, visible: dict[tuple[Atom, ...], str], in_loop: bool) -> Block:
    """`block` rewritten, where `visible` are the stacks (by their items) that the
    blocks around it have made before it."""
    stacks = dict(visible)
    binds = []
    for bind in block.bindings:
        binds.append(with_inner_blocks(bind, lambda inner, looped: _block(inner, context, stacks, looped), in_loop))
        if _is_stack(bind.expr):
            stacks.setdefault(bind.expr.args, bind.name)  # type: ignore[union-attr]
    if in_loop:
        binds = _rewritten(binds, block.result, context, visible)
    return Block(tuple(binds), block.result)


def _is_stack(expr: Expr) -> bool:
    return isinstance(expr, Call) and expr.prim is P.STACK and param(expr.params, "axis") == 0


def _rewritten(binds: list[Bind], result: Atom, context: _Context,
               visible: dict[tuple[Atom, ...], str]) -> list[Bind]:
    """`binds` with every stack of like arithmetic that pays rewritten, one at a time,
    then the like arithmetic of the rows of stacks."""
    tried: set[str] = set()
    while True:
        for k, bind in enumerate(binds):
            if bind.name in tried or not _is_stack(bind.expr):
                continue
            tried.add(bind.name)
            rewritten = _one_rewritten(binds, k, result, context, visible)
            if rewritten is not None:
                binds = rewritten
                tried.discard(bind.name)  # rebound as arithmetic: no longer a stack
                break
        else:
            rewritten = _rows_rewritten(binds, result, context, visible)
            if rewritten is None:
                return binds
            binds = rewritten


def _one_rewritten(binds: list[Bind], k: int, result: Atom, context: _Context,
                   visible: dict[tuple[Atom, ...], str]) -> list[Bind] | None:
    """`binds` with the stack at `k` made as arithmetic on stacks, where that is
    possible and lowers the block's count of calls; None where not. Like
    arithmetic elsewhere in the block may join the stack (`_widened`)."""
    stack = binds[k]
    items: tuple[Atom, ...] = stack.expr.args  # type: ignore[union-attr]
    before = {b.expr.args: b.name for b in binds[:k] if _is_stack(b.expr)}  # type: ignore[union-attr]
    planner = _Planner(context, {**visible, **before}, _read_counts(binds, result), {b.name for b in binds})
    plan = planner.arithmetic(items, budget=1)
    if plan is None:
        return None
    options = [_made(binds, k, result, context, plan, len(items))]
    wide = _widened(binds, k, result, planner, plan)
    if wide is not None:
        options.append(_made(binds, k, result, context, wide, len(items)))
    best = min(options, key=_calls)
    if _calls(best) >= _calls(binds):
        return None
    for b in best:
        context.definitions[b.name] = b.expr
    return best


def _widened(binds: list[Bind], k: int, result: Atom, planner: "_Planner", plan: Arithmetic) -> Arithmetic | None:
    """`plan` with like arithmetic of the block after its items, where it makes
    the operand stacks as cheaply: the LSTM's fourth gate, `hidden * w[3] + bias[3]`,
    beside the three of its sigmoids, makes them `np.array([inp, hidden, inp,
    hidden]) * w + bias` (whole arrays, no slices), the three rows 0:3 of it and
    the fourth its row 3. A binding that joins is made where the stack is, so
    what that reads must be made before the stack, and nothing may read it before."""
    position = {b.name: j for j, b in enumerate(binds)}
    first_read = first_reads(binds, result)
    item = planner.context.types[plan.members[0]]
    wide, taken = plan, _removed(plan)
    for j, b in enumerate(binds):
        if (j == k or b.name in taken or not isinstance(b.expr, Call) or b.expr.prim is not plan.prim
                or planner.context.types.get(b.name) != item or first_read.get(b.name, len(binds)) <= k):
            continue
        joined = wide.members[len(plan.members):] + (b.name,)
        wider = planner.arithmetic(tuple(Name(m) for m in wide.members + (b.name,)), budget=1,
                                   rebound=frozenset(joined))
        if wider is not None and all(position.get(n, -1) < k for n in _leaves(wider)):
            wide, taken = wider, taken | _removed(wider)
    return wide if wide is not plan else None


def _made(binds: list[Bind], k: int, result: Atom, context: _Context, plan: Arithmetic, n: int) -> list[Bind]:
    """`binds` with `plan` made in place of the stack of `n` items at `k`: the stack
    itself where the plan has no more members, else its rows 0:n, and each
    binding that joined the stack its row."""
    stack = binds[k]
    made = _Maker(context, stack.span)
    if len(plan.members) == n:
        made.operand(plan, name=stack.name)
    else:
        wide = made.operand(plan)
        made.bind(Call(P.INDEX, params(spec=(("slice", Dim(0), Dim(n)),)), (wide,)), stack.name)
        for row, name in enumerate(plan.members[n:], start=n):
            made.bind(Call(P.INDEX, params(spec=(("at",),)), (wide, Lit(row))), name)
    removed = _removed(plan)
    out = ([b for b in binds[:k] if b.name not in removed] + made.binds
           + [b for b in binds[k + 1:] if b.name not in removed])
    return _without_dead(out, result, {n for b in binds if b.name in removed for n in used_names(b.expr)})


def _rows_rewritten(binds: list[Bind], result: Atom, context: _Context,
                    visible: dict[tuple[Atom, ...], str]) -> list[Bind] | None:
    """`binds` with like arithmetic on the items of a stack, one for each item in
    order, made as the arithmetic of the stack and read as its rows, the same
    identity read the other way, where it lowers the calls:

        s = stack((a0, .., an)); .. ai op bi ..  ->  p = s op stack(b); .. p[i] ..

    The LSTM's reverse step stacks the gates' cotangents as `bias_bar` and
    multiplies each by its row of the weights, `t283 * w_2[0]`, .., four products
    and four rows that are the rows of `bias_bar * w_2`. The operand stack of the
    b's must be cheap (none is made afresh). What reads the results before `p`
    can be made is moved after it, where it does not feed `p`."""
    stacks = {**visible, **{b.expr.args: b.name for b in binds if _is_stack(b.expr)}}  # type: ignore[union-attr]
    planner = _Planner(context, stacks, _read_counts(binds, result), {b.name for b in binds})
    like: dict[str, list[tuple[P.Primitive, int, str]]] = {}  # name -> (op, side, binding) reading it
    for b in binds:
        if isinstance(b.expr, Call) and b.expr.prim in ELEMENTWISE_BINARY and not b.expr.params:
            for side, a in enumerate(b.expr.args):
                if isinstance(a, Name):
                    like.setdefault(a.id, []).append((b.expr.prim, side, b.name))
    for items in stacks:
        if not all(isinstance(a, Name) for a in items):
            continue
        for prim, side, _ in like.get(items[0].id, []):  # type: ignore[union-attr]
            chosen: list[str] = []
            for a in items:
                found = [n for p, s, n in like.get(a.id, []) if p is prim and s == side and n not in chosen]  # type: ignore
                if not found:
                    break
                chosen.append(found[0])
            else:
                plan = planner.arithmetic(tuple(Name(n) for n in chosen), budget=0, rebound=frozenset(chosen))
                if plan is None or (plan.left, plan.right)[side] != Known(stacks[items]):
                    continue
                rewritten = _rows_made(binds, result, context, plan)
                if rewritten is not None and _calls(rewritten) < _calls(binds):
                    for b in rewritten:
                        context.definitions[b.name] = b.expr
                    return rewritten
    return None


def _rows_made(binds: list[Bind], result: Atom, context: _Context, plan: Arithmetic) -> list[Bind] | None:
    """`binds` with `plan` made after what it reads, its members its rows, and what
    read them before moved after; None where something it reads reads them."""
    removed = _removed(plan)
    kept = [b for b in binds if b.name not in removed]
    made = _Maker(context, binds[[b.name for b in binds].index(plan.members[0])].span)
    stacked = made.operand(plan)
    for row, name in enumerate(plan.members):
        made.bind(Call(P.INDEX, params(spec=(("at",),)), (stacked, Lit(row))), name)
    leaves = _leaves(plan)
    at = 1 + max((j for j, b in enumerate(kept) if b.name in leaves), default=-1)
    moved, late = set(plan.members), []
    for b in kept[:at]:
        if used_names(b.expr) & moved:
            if b.name in leaves:
                return None
            moved.add(b.name)
            late.append(b)
    early = [b for b in kept[:at] if b.name not in moved]
    out = early + made.binds + late + kept[at:]
    return _without_dead(out, result, {n for b in binds if b.name in removed for n in used_names(b.expr)})


def _read_counts(binds: list[Bind], result: Atom) -> Counter[str]:
    """How many times each name is read in the block: each argument of a call or
    tuple once, and once for any read in a nested block."""
    counts: Counter[str] = Counter()
    for b in binds:
        match b.expr:
            case Call(args=atoms) | MakeTuple(items=atoms):
                counts.update(a.id for a in atoms if isinstance(a, Name))
            case _:
                counts.update(used_names(b.expr))
    counts.update(used_names(result))
    return counts


def _calls(binds: list[Bind]) -> int:
    return sum(isinstance(b.expr, Call) for b in binds)


def _without_dead(binds: list[Bind], result: Atom, candidates: set[str]) -> list[Bind]:
    """`binds` less those of `candidates` that nothing reads any more (and, in turn,
    what only they read)."""
    while True:
        read = used_names(result).union(*(used_names(b.expr) for b in binds))
        dead = {b.name for b in binds if b.name in candidates and b.name not in read}
        if not dead:
            return binds
        candidates |= {n for b in binds if b.name in dead for n in used_names(b.expr)}
        binds = [b for b in binds if b.name not in dead]


# Choosing how each operand stack is made ------------------------------------------------------

@dataclass
class _Planner:
    context: _Context
    stacks: Mapping[tuple[Atom, ...], str]  # made before the stack rewritten, by their items
    reads: Counter[str]
    block: set[str]                          # the names the block binds

    def operand(self, atoms: tuple[Atom, ...], budget: int) -> Operand | None:
        """The cheapest way to make the stack of `atoms` with at most `budget` stacks made afresh."""
        if all(a == atoms[0] for a in atoms):
            return Shared(atoms[0])
        if atoms in self.stacks:
            return Known(self.stacks[atoms])
        options: list[Operand] = [o for o in (self.rows(atoms), self.arithmetic(atoms, budget)) if o is not None]
        if budget > 0:
            options.append(Fresh(atoms))
        return min(options, key=lambda o: (_calls_made(o), _fresh_stacks(o)), default=None)

    def arithmetic(self, atoms: tuple[Atom, ...], budget: int,
                   rebound: frozenset[str] = frozenset()) -> Arithmetic | None:
        """`stack(atoms)` as `stack(a) op stack(b)`, where each atom is a binding of
        this block of `a_i op b_i` (one op) read by the stack alone, or one of
        `rebound` (read elsewhere too, it will be made again as the stack's row)."""
        calls = [self._member(a, rebound) for a in atoms]
        if any(c is None for c in calls) or len({c.prim for c in calls}) != 1:  # type: ignore[union-attr]
            return None
        item = self._item_type(atoms)
        if item is None:
            return None
        prim = calls[0].prim  # type: ignore[union-attr]
        lefts = tuple(c.args[0] for c in calls)  # type: ignore[union-attr]
        rights = tuple(c.args[1] for c in calls)  # type: ignore[union-attr]
        side_types = [self._side_type(side, item) for side in (lefts, rights)]
        if any(t is None for t in side_types) or all(a == side[0] for side in (lefts, rights) for a in side):
            return None
        try:
            stacked = result_type(prim, (), tuple(side_types))  # type: ignore[arg-type]
        except PrimTypeError:
            return None
        if stacked != ArrayType(item.dtype, (Dim(len(atoms)),) + item.shape):
            return None
        best: Arithmetic | None = None
        for left_budget, right_budget in ((0, 0), (1, 0), (0, 1)):
            if left_budget + right_budget > budget:
                continue
            left, right = self.operand(lefts, left_budget), self.operand(rights, right_budget)
            if left is None or right is None:
                continue
            plan = Arithmetic(prim, left, right, tuple(a.id for a in atoms))  # type: ignore[union-attr]
            if best is None or _calls_made(plan) < _calls_made(best):
                best = plan
        return best

    def rows(self, atoms: tuple[Atom, ...]) -> Rows | Known | None:
        """`x[.., k:k + n]` where the atoms are `x[.., k]`, .., `x[.., k + n - 1]`: one
        array, one spec, the same indices but one, literals counting up from k >= 0,
        with only `at` items before it (so that the slice's axis comes first); `x[..]`
        where they are all its rows, and `x` itself where x is their stack."""
        if self._item_type(atoms) is None:
            return None
        calls = [self.context.definitions.get(a.id) if isinstance(a, Name) else None for a in atoms]
        if not all(isinstance(c, Call) and c.prim is P.INDEX for c in calls):
            return None
        first = calls[0]
        if any(c.params != first.params or c.args[0] != first.args[0]  # type: ignore[union-attr]
               or len(c.args) != len(first.args) for c in calls):  # type: ignore[union-attr]
            return None
        varying = [j for j in range(1, len(first.args)) if any(c.args[j] != first.args[j] for c in calls)]  # type: ignore
        if len(varying) != 1:
            return None
        j = varying[0]
        ks = [c.args[j].value if isinstance(c.args[j], Lit) else None for c in calls]  # type: ignore[union-attr]
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in ks) or ks[0] < 0 \
                or ks != list(range(ks[0], ks[0] + len(ks))):
            return None
        spec = param(first.params, "spec")
        at_items = [axis for axis, item in enumerate(spec) if item[0] == "at"]
        axis = at_items[j - 1]
        if any(item[0] != "at" for item in spec[:axis]):
            return None
        array, at = first.args[0], first.args[1:j] + first.args[j + 1:]
        whole = axis == len(spec) - 1 and ks[0] == 0 and self._length(array, axis) == Dim(len(ks))
        if whole and axis == 0 and isinstance(array, Name):
            return Known(array.id)  # every row: the array itself
        if whole:
            return Rows(Call(P.INDEX, params(spec=spec[:axis]), (array, *at)))  # x[i, :] is x[i]
        sliced = spec[:axis] + (("slice", Dim(ks[0]), Dim(ks[0] + len(ks))),) + spec[axis + 1:]
        return Rows(Call(P.INDEX, params(spec=sliced), (array, *at)))

    def _length(self, array: Atom, axis: int) -> Dim | None:
        t = atom_type(array, self.context.types)
        return t.shape[axis] if isinstance(t, ArrayType) and axis < t.rank else None

    def _member(self, atom: Atom, rebound: frozenset[str]) -> Call | None:
        if not isinstance(atom, Name) or atom.id not in self.block or (
                self.reads[atom.id] != 1 and atom.id not in rebound):
            return None
        expr = self.context.definitions.get(atom.id)
        if isinstance(expr, Call) and expr.prim in ELEMENTWISE_BINARY and not expr.params:
            return expr
        return None

    def _item_type(self, atoms: tuple[Atom, ...]) -> ArrayType | None:
        """The one type of `atoms`, where they may be stacked: an array type, not weak
        (a stack of Python floats is f64, where they would have taken their partner's type)."""
        types = {atom_type(a, self.context.types) for a in atoms}
        t = types.pop() if len(types) == 1 else None
        return t if isinstance(t, ArrayType) and not t.weak else None

    def _side_type(self, side: tuple[Atom, ...], item: ArrayType) -> Type | None:
        """The type of one side's operand: its atom's where one is shared (of no more
        axes than the items, so that it broadcasts as it did), else its stack's (of
        as many axes as the items, so that the stacked axes line up)."""
        if all(a == side[0] for a in side):
            t = atom_type(side[0], self.context.types)
            return t if isinstance(t, ArrayType) and t.rank <= item.rank else None
        t = self._item_type(side)
        if t is None or t.rank != item.rank:
            return None
        return ArrayType(t.dtype, (Dim(len(side)),) + t.shape)


# Making it ---------------------------------------------------------------------------------------

@dataclass
class _Maker:
    context: _Context
    span: object
    binds: list[Bind] = dataclasses.field(default_factory=list)

    def operand(self, operand: Operand, name: str | None = None) -> Atom:
        """The atom of `operand`'s stack, its bindings appended to `self.binds`."""
        match operand:
            case Shared(atom):
                return atom
            case Known(known):
                return Name(known)
            case Rows(index):
                return self.bind(index, name)
            case Fresh(items):
                return self.bind(Call(P.STACK, params(axis=0), items), name)
            case Arithmetic(prim, left, right, _):
                return self.bind(Call(prim, (), (self.operand(left), self.operand(right))), name)

    def bind(self, expr: Call, name: str | None) -> Name:
        name = name or self.context.namer.temporary()
        self.binds.append(Bind(name, expr, self.span))  # type: ignore[arg-type]
        t = result_type(expr.prim, expr.params, tuple(atom_type(a, self.context.types) for a in expr.args))  # type: ignore
        self.context.types[name] = t
        return Name(name)
