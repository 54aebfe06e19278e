"""Unary form -> target IR, by running the UNF term on a stack of atoms.

UNF is point-free: an instruction reads stack entries by position. Running
a term *symbolically*, on a stack whose entries are target atoms (names and
literals) instead of values, turns it back into named code: each instruction
that computes something emits one binding and pushes its name.

    Var(i)              push the atom at i (a copy costs nothing: no binding)
    Prim(p, ps, n)      let t = p(top n atoms; ps)        push t
    Tuple(n)            let t = (top n atoms)             pop them, push t
    Get(k)              let t = top.k                      push t
    Drop(keep, count)   forget atoms (no code)
    If(a, b)            let t = if top { a } else { b }    push t
    Loop(body, scan)    let t = fold/scan(acc = init, x in xs) { body }   push t
    Custom(f, n, body)  body, inline (the marker of a derivative rule is for AD only);
                        its hint names the body's result
    Seq(terms)          each in turn

A binding is named after its instruction's hint (the source name) or is a
temporary; an unnamed loop's result is named after its state
(`_loop_result_hint`). Bodies of `If` and `Loop` become blocks, translated
from a copy of the stack (with the state and the item on top for a loop body,
named after the lambda's parameters, else `acc` and `x`). The input has
been vectorised: `Build`, `Map` and `Reduce` are gone.

Names are made Python-safe here, once (`names.Namer`): function names across
the program, and parameters, size variables and bindings within a function.
Size variables are renamed in every `Dim` of the function (types and params)
to their Python names, so that a `Dim` prints as a Python expression.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import assert_never

from .names import Namer
from .primitives import Params, substitute_dims
from .target import (Atom, Bind, Block, Call, Expr, IfElse, LoopE, MakeTuple, Name, Project,
                     TargetFunction, TargetProgram)
from .typed import SizeBinding
from .types import Dim, substitute_type
from .unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, UProgram, Var)


def to_target_program(program: UProgram) -> TargetProgram:
    """Translate every function; function names are made unique and Python-safe."""
    names = Namer().fresh_all([fn.name for fn in program.functions])
    return TargetProgram(tuple(to_target(fn, name) for fn, name in zip(program.functions, names)))


def to_target(fn: UFunction, name: str | None = None) -> TargetFunction:
    """The target IR of `fn` (vectorised UNF), under the Python name `name`
    (by default `fn.name`, made Python-safe)."""
    namer = Namer()
    params = tuple(namer.fresh_all([p for p, _ in fn.params]))
    renamed = {size.name: namer.fresh(size.name) for size in fn.sizes}
    dims = {old: Dim.of(new) for old, new in renamed.items()}
    run = _Run(namer, dims)
    stack = [Name(p) for p in params]
    run.term(fn.body, stack)
    assert len(stack) == len(params) + 1, f"{fn.name}: the body leaves {len(stack)} entries"
    return TargetFunction(
        name=name if name is not None else Namer().fresh(fn.name),
        params=tuple((p, substitute_type(t, dims)) for p, (_, t) in zip(params, fn.params)),
        source_params=tuple(p for p, _ in fn.params),
        result=substitute_type(fn.result, dims),
        sizes=tuple(SizeBinding(renamed[s.name], s.param, s.axis) for s in fn.sizes),
        body=Block(tuple(run.bindings), stack[-1]),
        span=fn.span,
    )


@dataclass
class _Run:
    """The symbolic run of one block: the bindings it has emitted so far."""

    namer: Namer
    dims: dict[str, Dim]  # size variable -> its Python name, as a Dim
    bindings: list[Bind] = field(default_factory=list)

    def term(self, term: Term, stack: list[Atom]) -> None:
        """Run `term` on `stack` (in place), emitting bindings."""
        match term:
            case Var(index=i):
                stack.append(stack[i])
            case Prim(prim=prim, params=ps, arity=n):
                args = tuple(stack[len(stack) - n:])
                self._push(term, Call(prim, _rename_dims(ps, self.dims), args), stack)
            case Seq(terms=terms):
                for t in terms:
                    self.term(t, stack)
            case Tuple(n=n):
                items = tuple(stack[len(stack) - n:])
                del stack[len(stack) - n:]
                self._push(term, MakeTuple(items), stack)
            case Get(k=k):
                self._push(term, Project(stack[-1], k), stack)
            case Drop(keep=keep, count=count):
                top = len(stack) - keep
                assert count <= top, f"Drop({keep}, {count}) on a stack of {len(stack)}"
                del stack[top - count:top]
            case If(then=then, orelse=orelse):
                cond = stack[-1]
                self._push(term, IfElse(cond, self._block(then, stack), self._block(orelse, stack)),
                           stack)
            case Loop(body=body, stacked=stacked):
                init, xs = stack[-2], stack[-1]
                name = self.namer.fresh(term.hint or _loop_result_hint(term))
                state_name, x_name = term.names.state, term.names.x
                if state_name is not None and stacked is False:
                    # a fold's state is printed as its result (`state = body` in the loop), so
                    # the state's own name is left free of the result's: `acc_1` would clash
                    # with the result's items `acc_0, acc_1`
                    state_name += "_"
                acc, x = self.namer.fresh(state_name or "acc"), self.namer.fresh(x_name or "x")
                block = self._block(body, [*stack, Name(acc), Name(x)])
                self._push(term, LoopE(init, xs, acc, x, block, stacked, names=term.names.items), stack, name)
            case Custom(body=body):
                self.term(body if term.hint is None else _named(body, term.hint), stack)
            case Build() | Map() | Reduce():
                raise AssertionError(f"to_target: {type(term).__name__} left after vectorisation")
            case _:
                assert_never(term)

    def _block(self, term: Term, stack: list[Atom]) -> Block:
        """`term` run on a copy of `stack` as a block of its own; its result is the top."""
        inner = _Run(self.namer, self.dims)
        body_stack = list(stack)
        inner.term(term, body_stack)
        assert len(body_stack) == len(stack) + 1, "a body must leave exactly one more entry"
        return Block(tuple(inner.bindings), body_stack[-1])

    def _push(self, instr: Term, expr: Expr, stack: list[Atom], name: str | None = None) -> None:
        name = name or self.namer.fresh(instr.hint)
        self.bindings.append(Bind(name, expr, instr.span))
        stack.append(Name(name))


def _loop_result_hint(loop: Loop) -> str | None:
    """A loop's result, where the source does not name it, after its state: a
    fold's is the last state (`state`), a scan's the states (`states`)."""
    state = loop.names.state
    if state is None or not isinstance(loop.stacked, bool):
        return None
    return state + "s" if loop.stacked else state


def _named(term: Term, hint: str) -> Term:
    """`term` with `hint` on the instruction that pushes its result (the last but drops)."""
    if isinstance(term, Seq):
        k = max((i for i, t in enumerate(term.terms) if not isinstance(t, Drop)), default=None)
        if k is None:
            return term
        return Seq((*term.terms[:k], _named(term.terms[k], hint), *term.terms[k + 1:]),
                   hint=term.hint, span=term.span)
    return dataclasses.replace(term, hint=hint)


def _rename_dims(ps: Params, dims: dict[str, Dim]) -> Params:
    """`ps` with the size variables in every `Dim` (nested in tuples too) renamed."""
    return substitute_dims(ps, dims)
