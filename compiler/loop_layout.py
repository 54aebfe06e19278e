"""How the printer lays out a loop of the target IR: which items of its state
are held in variables and which, never read by a step, are written straight into
their rows (`rows_only_items`); what the variables and the stacks are called (the
names the loop carries, `LoopE.names`, and the values stacked); which inner scan
stacks its rows straight into an outer scan's row (`inner_stack`). Analyses only:
`lower.py` prints what they find.
"""

from __future__ import annotations

import re
from collections import Counter

from .names import is_temporary
from .simplify import Reader, atom_type
from .target import Block, Call, Expr, Lit, LoopE, MakeTuple, Name, Project, definitions
from .types import ArrayType, Dim, TupleType, Type, item_stacked

_SUFFIX = re.compile(r"_[0-9]+\Z")


def inner_stack(body: Block, k: int, defined: dict[str, Expr], types: dict[str, Type]) -> tuple[str, int] | None:
    """`(inner, j)` when item k of what a loop's `body` returns (the whole, k = 0, for a
    state that is no tuple) is item j of what the scan `inner`, bound in `body`
    itself, stacks: `(scan(..).j, ..)`, or the inner scan's result returned whole."""
    result = body.result
    made = defined.get(result.id) if isinstance(result, Name) else None
    if isinstance(made, MakeTuple):
        value = made.items[k]
        made = defined.get(value.id) if isinstance(value, Name) else None
        inner, j = (made.tuple, made.k) if isinstance(made, Project) else (value, 0)
    else:
        inner, j = result, k
    scan = defined.get(inner.id) if isinstance(inner, Name) else None
    if not isinstance(scan, LoopE) or not item_stacked(scan.stacked, j):
        return None
    state = atom_type(scan.init, types)
    item = state.items[j] if isinstance(state, TupleType) else state
    return (inner.id, j) if isinstance(item, ArrayType) else None


def item_projections(defined: dict[str, Expr]) -> dict[str, dict[int, str]]:
    """For each loop's result, the names bound to its items (`r.k`; `defined`: a
    function's definitions)."""
    found: dict[str, dict[int, str]] = {}
    for name, expr in defined.items():
        if isinstance(expr, Project) and isinstance(expr.tuple, Name) and isinstance(defined.get(expr.tuple.id), LoopE):
            found.setdefault(expr.tuple.id, {})[expr.k] = name
    return found


def read_as_ranges(read_by: dict[str, list[Reader]], counts: dict[str, Dim],
                   unread: frozenset[str]) -> frozenset[str]:
    """The names of `np.arange(k)` (`counts`) that only loops read, as their
    sequence, besides what is not printed (`unread`): `for i in range(k)` prints
    no array."""
    return frozenset(name for name in counts
                     if all(r.name in unread or isinstance(r.expr, LoopE) and r.expr.xs == Name(name)
                            and r.expr.init != Name(name) for r in read_by.get(name, [])))


def single_state_name(loop: LoopE, types: dict[str, Type]) -> str | None:
    """The name a loop gives its state where the state is one item, not a tuple: the
    item the simplifier left of a tuple whose items the loop named (a vjp's forward
    scan, once its residuals are dropped, is the fold's `state` again)."""
    if len(loop.names) != 1 or isinstance(atom_type(loop.init, types), TupleType):
        return None
    return loop.names[0]


def rows_only_items(loop: LoopE, state: Type, read_by: dict[str, list[Reader]]) -> frozenset[int]:
    """The items of a scan's tuple state that need no variable: arrays that are
    stacked (the scan's result holds their rows, not their last value) and that the
    body never reads (`acc.k` nowhere in it; the state read whole reads them all;
    `read_by`: the readers of the function, so of the state too)."""
    if not isinstance(state, TupleType) or len(state.items) < 2:
        return frozenset()
    reads = [r.expr for r in read_by.get(loop.acc, [])]
    if not all(isinstance(r, Project) for r in reads):
        return frozenset()
    read = {r.k for r in reads}  # type: ignore[union-attr]
    return frozenset(k for k, item in enumerate(state.items)
                     if isinstance(item, ArrayType) and item_stacked(loop.stacked, k) and k not in read)


def rows_only_initial_values(defs: dict[str, Expr], reads: dict[str, list[Reader]],
                             types: dict[str, Type]) -> tuple[dict[str, MakeTuple], frozenset[str]]:
    """The tuples made only to be the initial state of a scan with items that have
    no variable (`rows_only_items`): their items are printed where the scan's
    state variables are assigned. And the names only such items read, whose values
    no step reads: `t28 = np.zeros((d,))` would be dead code (`defs`, `reads`: a
    function's definitions and readers)."""
    tuples: dict[str, MakeTuple] = {}
    ignored: Counter[str] = Counter()
    for expr in defs.values():
        if not isinstance(expr, LoopE) or not isinstance(expr.init, Name):
            continue
        made = defs.get(expr.init.id)
        rows_only = rows_only_items(expr, atom_type(expr.init, types) or TupleType(()), reads)
        if rows_only and isinstance(made, MakeTuple) and len(reads.get(expr.init.id, [])) == 1:
            tuples[expr.init.id] = made
            ignored.update(a.id for a in (made.items[k] for k in rows_only) if isinstance(a, Name))
    return tuples, frozenset(name for name, count in ignored.items()
                             if count == len(reads[name]) and isinstance(defs.get(name), Call | Lit))


def row_hints(loop: LoopE, types: dict[str, Type]) -> dict[int, str]:
    """Names for the arrays a scan stacks its items in, after the items' names
    (`x_bar` in `x_bars`) or the values they hold: item k of a body that returns
    `(h, forget)` is stacked in `forgets`, and a stack of an inner scan's stacks after
    the inner one's (`forgets` again: an LSTM's gates over the characters, then over
    the layers). Items whose values are temporaries, or the state itself, get none."""
    body = loop.body
    defined, made_in_body = {b.name: b.expr for b in body.bindings}, definitions(body)
    result = made_in_body.get(body.result.id) if isinstance(body.result, Name) else None
    values = result.items if isinstance(result, MakeTuple) else ()
    hints = {k: f"{_SUFFIX.sub('', item.id)}s" for k, item in enumerate(values)
             if isinstance(item, Name) and not is_temporary(item.id) and item.id in made_in_body}
    state = atom_type(loop.init, types)
    for k in range(len(state.items) if isinstance(state, TupleType) else 1):
        found = None if k in hints else inner_stack(body, k, defined, types)
        inner = defined.get(found[0]) if found else None
        if found and isinstance(inner, LoopE) and found[1] in (inner_hints := row_hints(inner, types)):
            hints[k] = inner_hints[found[1]]
    hints.update((k, f"{name}s") for k, name in enumerate(loop.names) if name is not None)
    return hints
