"""Applications of one special function to like arrays in a loop's body, made as one.

A NumPy call costs about a microsecond whatever the size of its arrays, and the
arrays of a loop's body are often small: an LSTM's layer step applies `sigmoid`
to three arrays of 14 numbers, three calls of about two microseconds each. Made
as one call on their stack, they cost one, and the stack:

    forget = sigmoid(a); ..; ingate = sigmoid(b); ..; outgate = sigmoid(c)
      ->  t = stack((a, b, c)); s = sigmoid(t); forget = s[0]; ingate = s[1]; outgate = s[2]

placed after the last of a, b, c is made and before anything reads forget,
ingate or outgate (the applications are independent: none reads another's
result, or its argument would be made after that result is read). Only the
special functions are grouped (a nonlinear op in `cost.ELEMENTWISE_COSTS`), whose
work per item dwarfs the stack's copy, and only in loop bodies: outside them the
arrays are large, and the stack is one more pass over them for a call saved.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from . import primitives as P
from .cost import ELEMENTWISE_COSTS
from .names import Namer
from .primitives import params
from .simplify import atom_type, binding_types, first_reads, function_names
from .target import Bind, Block, Call, Lit, Name, TargetFunction, with_inner_blocks
from .types import ArrayType, Type

SPECIAL = frozenset(prim for prim, cost in ELEMENTWISE_COSTS.items() if cost.nonlinear > 0)


def group_applications(fn: TargetFunction) -> TargetFunction:
    """`fn` with the like applications of each loop body's block made as one."""
    types = binding_types(fn)
    namer = Namer(function_names(fn))
    return dataclasses.replace(fn, body=_block(fn.body, types, namer, in_loop=False))


def _block(block: Block, types: dict[str, Type], namer: Namer, in_loop: bool) -> Block:
    binds = [with_inner_blocks(b, lambda inner, looped: _block(inner, types, namer, looped), in_loop)
             for b in block.bindings]
    while in_loop:
        group = _group(binds, block, types)
        if group is None:
            break
        binds = _made_as_one(binds, *group, namer)
    return Block(tuple(binds), block.result)


def _group(binds: list[Bind], block: Block, types: dict[str, Type]) -> tuple[list[int], int] | None:
    """The positions in `binds` of two or more applications of one special function to
    arrays of one type that can be made together, and the position of the last
    binding their arguments need (-1: none of the block's); None where there are none."""
    position = {b.name: k for k, b in enumerate(binds)}
    first_read = first_reads(binds, block.result)
    alike: dict[tuple[P.Primitive, Type], list[int]] = defaultdict(list)
    for k, b in enumerate(binds):
        match b.expr:
            case Call(prim, (), (Name(argument),)) if prim in SPECIAL:
                t = atom_type(Name(argument), types)
                if isinstance(t, ArrayType) and t.rank > 0 and not t.weak:
                    alike[(prim, t)].append(k)
    for members in alike.values():
        chosen: list[int] = []
        after, before = -1, len(binds) + 1  # the group goes after `after`, before `before`
        for k in members:
            argument = binds[k].expr.args[0]  # type: ignore[union-attr]
            made, read = position.get(argument.id, -1), first_read.get(binds[k].name, len(binds))
            if max(after, made) < min(before, read):
                chosen.append(k)
                after, before = max(after, made), min(before, read)
        if len(chosen) > 1:
            return chosen, after
    return None


def _made_as_one(binds: list[Bind], members: list[int], after: int, namer: Namer) -> list[Bind]:
    """`binds` with the applications at `members` made as one, right after position `after`."""
    first = binds[members[0]]
    prim = first.expr.prim  # type: ignore[union-attr]
    stacked, applied = namer.temporary(), namer.temporary()
    made = [Bind(stacked, Call(P.STACK, params(axis=0), tuple(binds[k].expr.args[0] for k in members)),  # type: ignore[union-attr]
                 first.span),
            Bind(applied, Call(prim, (), (Name(stacked),)), first.span)]
    made += [Bind(binds[k].name, Call(P.INDEX, params(spec=(("at",),)), (Name(applied), Lit(j))), binds[k].span)
             for j, k in enumerate(members)]
    kept = [(k, b) for k, b in enumerate(binds) if k not in members]
    return [b for k, b in kept if k <= after] + made + [b for k, b in kept if k > after]
