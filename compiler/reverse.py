"""Reverse mode: the cotangent functor on (vectorised) unary form.

Huot & Shaikhha send a context `A1..An` to `A1..An, (A1 × … × An → ρ)`: the
values and a continuation that takes a cotangent of the whole context to the
result. Each instruction runs forward and precomposes the continuation with its
transposed Jacobian; composition goes to composition; the gradient is the last
continuation applied to `(0, 1)`. The transposed Jacobians are "almost the
identity":

    J^T Var(i)      add the incoming cotangent into slot i      (fan-out: addition)
    J^T Prim(p)     slot k += ∂k p(x)^T z for each argument      (vjp_rules.VJP_RULES)
    J^T Drop        zeros for the forgotten entries              (here: nothing is owed)
    J^T Tuple/Get   split / inject the cotangent of a tuple

Here the continuation is not built as a closure and beta-reduced later: it is
kept at transformation time, as the list of instructions run so far (the
*tape*, a compile-time object) and a map from stack entries to their pending
cotangents. Applying it emits the transposed Jacobians in reverse order, which
is exactly the straight-line code the paper's partial evaluator reaches after
beta-reduction — so no lambda is ever materialised. A cotangent that is
symbolically zero (`ZERO`) costs nothing.

Control flow: `If` recomputes the taken branch inside a second `If` that runs
its adjoint (both branches' derivatives, selected by the same condition).
`Loop` runs forward as a scan that stores every state and every step's
*residuals*, then a reverse loop runs each step's adjoint, carrying the
state's cotangent and those of the values the body reads. Writing the body as
s_t = f(s_{t-1}, x_t) with intermediates v_1 .. v_k, the adjoint of step t
needs some of the v_i at that step; a residual is a v_i that changes from
step to step and costs a nonlinear op or a contraction to recompute
(`_worth_storing`), or the states and residuals of an inner loop (stacked
over the inner steps: the outer loop keeps the whole tape of a nest). The
forward scan stacks them (O(T) memory per residual) as extra items of its
state; the reverse step replays the body from s_{t-1} = states[t - 1] (init
at t = 0), reading each residual at row t instead of computing it, so what it
recomputes is cheap (arithmetic, views of the state and of outside values).
The v_i that are parts of s_t (an item of its tuple, a row of its stack) it
reads from states[t], stored already; and a special function of values it has
so at hand (s_{t-1}, x_t, outside values, parts of s_t) is not a residual: the
replay makes it again with one call, where storing it would cost a stack the
size of the states (`_replay_plan`). Residuals that no reverse step reads are
dropped from the scan by the simplifier (`unused_state_items`).

An `associative` fold (a `reduce` whose body is not a known monoid) takes the
paper's rule for `reduce` instead, with no loop over the items. Write
r = u ⊕ x1 ⊕ ... ⊕ xn, P_i = u ⊕ x1 ⊕ .. ⊕ xi (P_0 = u, P_n = r) and
S_i = xi ⊕ .. ⊕ xn. By associativity r = P_i ⊕ S_{i+1} for every i < n, so

    P̄_i = ∂_a(P_i ⊕ S_{i+1})ᵀ r̄    (i < n),    P̄_n = r̄,    ū = P̄_0
    x̄_i, c̄_i = ∂_x, ∂_c(P_{i-1} ⊕ x_i)ᵀ P̄_i    (i = 1..n; c: what the body reads)
    c̄ = Σ_i c̄_i

The forward sweep computes the prefixes P (r is the last), the backward the
suffixes S, both as scans in ceil(log2 n) whole-array rounds (compiler/scans.py);
each line above is the adjoint of one application of the body, made by the
usual rules and applied to all items at once (`scans.lanewise`). So the cost is
O(n log n) applications of the body and its adjoint, the memory O(n) states,
and u need not be an identity. n = 0 gives ū = r̄ and no item cotangents.

A call marked `Custom` (a function with a user's derivative rule) runs forward
as the marked call and its adjoint is the rule (`custom_rules`); without
`rules`, or over Z2, its body is run and differentiated as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, assert_never

from .algebra import REALS, ZERO, Algebra, Deriv
from .cost import ELEMENTWISE_COSTS
from .errors import DerivativeError, Span
from .forward import tangent_type
from .jvp_rules import algebra_sum, literal
from .primitives import (ARANGE, CONCAT, EQ, EXPAND_DIMS, GATHER, INDEX, LOGSUMEXP, MATMUL, SIZE, SOFTMAX,
                         STACK, SUB, ZEROS, Primitive, param, params)
from .scans import Combine, lanewise, prefix_scan, reassociable, row, rows, suffix_scan
from .types import ArrayType, Dim, Stacking, TupleType, Type, stacking, strip_weak
from .unary import (Build, Custom, Drop, Get, If, Loop, LoopNames, Map, Prim, Reduce, Seq, Term, Tuple,
                    UFunction, Var)
from .unary_builder import Builder, Value
from .vjp_rules import VJP_RULES

if TYPE_CHECKING:
    from .custom_rules import CustomRules


@dataclass(frozen=True)
class _PrimStep:
    term: Prim
    args: tuple[Value, ...]
    out: Value


@dataclass(frozen=True)
class _TupleStep:
    items: tuple[Value, ...]
    out: Value


@dataclass(frozen=True)
class _GetStep:
    tuple: Value
    k: int
    out: Value


@dataclass(frozen=True)
class _IfStep:
    term: If
    context: tuple[Value, ...]  # the stack the branches ran on, condition last
    out: Value


@dataclass(frozen=True)
class _Replay:
    """How the reverse step of a loop replays its body, by the index of the body's
    steps (the same at every replay: the body is the same term).

    `parts`: the steps whose values are parts of the body's new state (items of the
    tuple or rows of the stack that makes it), each with its path into that state;
    the replay reads them from the stored state instead of recomputing them. A path
    is a list of (None, k), item k of a tuple, and (axis, k), slab k along `axis`.
    `recomputed`: the steps worth storing (`_worth_storing`) whose arguments are all
    at hand in the reverse step (`_at_hand`): the forward loop does not store them
    and the replay computes each with one call."""

    parts: dict[int, tuple[tuple[int | None, int], ...]] = field(default_factory=dict)  # (None, k): item k
    recomputed: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _LoopStep:
    term: Loop
    context: tuple[Value, ...]  # the stack the loop ran on: Γ, init, xs
    states: Value               # every state, stacked (tuples: a tuple of stacks)
    residuals: tuple[Value, ...]  # the body's residuals, each stacked over the steps
    out: Value
    plan: _Replay               # what the reverse step reads from the stored state, what it recomputes


@dataclass(frozen=True)
class _AssociativeFoldStep:
    term: Loop
    context: tuple[Value, ...]  # the stack the fold ran on: Γ, unit, xs
    prefixes: Value             # unit, unit ⊕ x1, ..., unit ⊕ x1 ⊕ .. ⊕ xn
    out: Value


@dataclass(frozen=True)
class _CustomStep:
    term: Custom
    args: tuple[Value, ...]
    out: Value


_Step = _PrimStep | _TupleStep | _GetStep | _IfStep | _LoopStep | _AssociativeFoldStep | _CustomStep


def vjp_function(fn: UFunction, wrt: tuple[int, ...], name: str, *, algebra: Algebra = REALS,
                 cotangent_param: bool = False, span: Span | None = None,
                 rules: CustomRules | None = None) -> UFunction:
    """`name(params...[, out_bar]) -> (value, (cotangents of the params wrt...))`.

    Without `cotangent_param`, `fn` must return a scalar and is seeded with 1:
    the cotangents are its gradient. With it, the function takes the output's
    cotangent as its last parameter: a vector-Jacobian product. Calls marked
    `Custom` take their derivatives from `rules`."""
    types = tuple(t for _, t in fn.params)
    result_type = fn.result
    extra: tuple[Type, ...] = (tangent_type(result_type, algebra),) if cotangent_param else ()
    b = Builder(types + extra)
    stack = [b.arg(i) for i in range(len(types))]
    tape = Adjoint(b, algebra, rules=rules, names={k: param for k, (param, _) in enumerate(fn.params)})
    tape.primal(fn.body, stack)
    value = stack[-1]
    if cotangent_param:
        seed: Deriv = b.arg(len(types))
    else:
        if not (isinstance(value.type, ArrayType) and value.type.shape == () and algebra.carries(value.type)):
            raise DerivativeError(
                f"a gradient needs a function with a scalar {'bool' if algebra.name == 'Z2' else 'real'} result; "
                f"{fn.name} returns {value.type}", span or fn.span,
                hint="use vjp(...) for a function with an array result")
        seed = algebra.ones(b, value.type)
    cotangents: dict[int, Deriv] = {}
    tape.accumulate(cotangents, value, seed)
    tape.backward(cotangents)
    grads = tuple(algebra.materialise(b, cotangents.get(i, ZERO), tangent_type(types[i], algebra)) for i in wrt)
    for i, g in zip(wrt, grads):
        b.name(g, fn.params[i][0] + "_bar")
    out = b.tuple(value, grads[0] if len(grads) == 1 else b.tuple(*grads))
    bar_params = ((fn.name + "_bar" if fn.name else "out_bar", extra[0]),) if cotangent_param else ()
    return UFunction(name, fn.params + bar_params, out.type, b.finish(out), fn.sizes, span=span or fn.span)


@dataclass
class Adjoint:
    """Runs a term forward, recording its steps; then emits their adjoints in reverse.

    In a loop's body, `per_step` holds the positions of the values that change from
    step to step (the state, the item, and what is computed from them), and the
    forward sweep collects the body's `residuals`: those of them worth storing
    (`_worth_storing`), in the order they are made. With `replay`, the values the
    forward loop stored for this step, in that order, the sweep reads each residual
    from it instead of computing it again. `plan` says which residuals are
    recomputed rather than stored, and, with `stored_state` (which gives the new
    state the forward loop stored for this step), which values the replay reads
    from that state. `names`: the source names of values this builder did not make, by
    position (the function's parameters, a loop's state and item), for the loops it
    emits to name their items after."""

    b: Builder
    algebra: Algebra
    steps: list[_Step] = field(default_factory=list)
    rules: CustomRules | None = None
    per_step: set[int] | None = None
    replay: Iterator[Value] | None = None
    residuals: list[Value] = field(default_factory=list)
    residual_steps: list[int] = field(default_factory=list)  # the index of the step that made each
    names: dict[int, str] = field(default_factory=dict)
    plan: _Replay = field(default_factory=_Replay)
    stored_state: Callable[[], Value] | None = None

    def source_name(self, v: Value) -> str | None:
        return self.names.get(v.pos) or self.b.hint_of(v)

    # ---- the forward sweep --------------------------------------------------

    def primal(self, term: Term, stack: list[Value]) -> None:
        b = self.b
        match term:
            case Var(i):
                stack.append(stack[i])
            case Seq(terms):
                for t in terms:
                    self.primal(t, stack)
            case Prim(prim, ps, n):
                args = tuple(stack[len(stack) - n:])

                def apply() -> Value:
                    return b.prim(prim, ps, *args, hint=term.hint, span=term.span)

                varies = self._varies(*args)
                index = len(self.steps)
                stored = varies and _worth_storing(prim) and index not in self.plan.recomputed
                out = self._residual(apply, term) if stored else apply()
                if self.stored_state is not None and index in self.plan.parts:
                    out = self._stored_part(self.plan.parts[index], term)
                self.steps.append(_PrimStep(term, args, out))
                self._made(out, varies)
                stack.append(out)
            case Tuple(n):
                items = tuple(stack[len(stack) - n:])
                del stack[len(stack) - n:]
                out = b.tuple(*items, hint=term.hint)
                self.steps.append(_TupleStep(items, out))
                self._made(out, self._varies(*items))
                stack.append(out)
            case Get(k):
                out = b.get(stack[-1], k, hint=term.hint)
                self.steps.append(_GetStep(stack[-1], k, out))
                self._made(out, self._varies(stack[-1]))
                stack.append(out)
            case Drop(keep, count):
                del stack[len(stack) - keep - count:len(stack) - keep]
            case If(then, orelse):
                context = tuple(stack)

                def branch(body: Term):
                    def make(sb: Builder) -> Value:
                        # the branch runs on the context with the condition on top: its copy
                        local = list(context[:-1]) + [Value(len(sb.types) - 1, context[-1].type)]
                        Adjoint(sb, self.algebra, rules=self.rules).primal(body, local)
                        return local[-1]
                    return make

                out = b.if_(stack[-1], branch(then), branch(orelse), hint=term.hint, span=term.span)
                self.steps.append(_IfStep(term, context, out))
                self._made(out, self._varies(context[-1], *_reads(then, context), *_reads(orelse, context)))
                stack.append(out)
            case Loop(body, False) if term.associative and reassociable(stack[-2].type, stack[-1].type):
                context = tuple(stack)
                unit, xs = context[-2], context[-1]
                outer_span, b.span = b.span, term.span
                items = b.prim(CONCAT, params(axis=0), b.prim(EXPAND_DIMS, params(axis=0), unit), xs)
                prefixes = prefix_scan(b, _combine(body, context), items)
                out = row(b, prefixes, _length(xs))
                b.span = outer_span
                if term.hint:
                    b.name(out, term.hint)
                self.steps.append(_AssociativeFoldStep(term, context, prefixes, out))
                self._made(out, self._varies(*context[-2:], *_reads(body, context)))
                stack.append(out)
            case Loop(body, stacked):
                context = tuple(stack)
                states, residuals, plan = self._scan(body, context, term)
                varies = self._varies(*context[-2:], *_reads(body, context))
                if varies:  # an inner loop's states and residuals are the enclosing body's residuals
                    count = _leaf_count(states.type)
                    kept = [self._residual(lambda v=v: v, term) for v in (*_leaves(b, states), *residuals)]
                    states, residuals = _rebuild(b, kept[:count], states.type), tuple(kept[count:])
                out = _loop_result(b, stack[-2], states, _length(stack[-1]), stacked)
                self.steps.append(_LoopStep(term, context, states, residuals, out, plan))
                self._made(out, varies)
                stack.append(out)
            case Custom(name, n, body):
                if self.rules is None or not self.rules.applies(name, self.algebra):
                    self.primal(body, stack)
                    return
                args = tuple(stack[len(stack) - n:])
                out = self.rules.call(b, term, args, len(stack) - n)
                self.steps.append(_CustomStep(term, args, out))
                self._made(out, self._varies(*args))
                stack.append(out)
            case Build() | Map() | Reduce():
                raise AssertionError("reverse mode runs on vectorised unary form")
            case _:
                assert_never(term)

    def _varies(self, *values: Value) -> bool:
        """Whether any of `values` changes from step to step of the loop whose body this is."""
        return self.per_step is not None and any(v.pos in self.per_step for v in values)

    def _made(self, out: Value, varies: bool) -> None:
        """Record that `out`, just made, changes from step to step (when it `varies`)."""
        if varies:
            assert self.per_step is not None
            self.per_step.add(out.pos)

    def _residual(self, compute: Callable[[], Value], term: Prim | Loop) -> Value:
        """A residual of a loop's body, made by `term`: `compute()` and collect it (the
        forward sweep), or read it from what the forward loop stored (`replay`)."""
        if self.replay is None:
            self.residuals.append(compute())
            self.residual_steps.append(len(self.steps))
            return self.residuals[-1]
        outer_span, self.b.span = self.b.span, term.span
        out = next(self.replay, None)
        self.b.span = outer_span
        assert out is not None, "the body made more residuals than the forward loop stored"
        if isinstance(term, Prim) and term.hint:
            self.b.name(out, term.hint)
        return out

    def _stored_part(self, path: tuple[tuple[int | None, int], ...], term: Prim) -> Value:
        """The part of the stored new state at `path` (an item of a tuple, a row of a stack)."""
        assert self.stored_state is not None
        b, part = self.b, self.stored_state()
        outer_span, b.span = b.span, term.span
        for axis, k in path:
            if axis is None:
                part = b.get(part, k)
            else:
                assert isinstance(part.type, ArrayType)
                spec = tuple(("slice", Dim(0), d) for d in part.type.shape[:axis]) + (("at",),)
                part = b.prim(INDEX, params(spec=spec), part, literal(b, k))
        b.span = outer_span
        if term.hint:
            b.name(part, term.hint)
        return part

    def _scan(self, body: Term, context: tuple[Value, ...], term: Loop) -> tuple[Value, tuple[Value, ...], _Replay]:
        """The forward loop of `Loop(body)` on `context` (Γ, init, xs) as a scan: every
        state, and every step's residuals, each stacked over the steps.

        The residuals are extra items of the carried state, which the body never
        reads: the scan's state is the flat tuple (state's leaves, residuals),
        initially (init's leaves, zeros), so the simplifier drops the residuals that
        no reverse step reads (`unused_state_items`). Their types are known only
        once the body has been built, so it is built once beforehand, on a scratch
        builder."""
        b = self.b
        init, xs = context[-2], context[-1]
        x_type = ArrayType(xs.type.dtype, xs.type.shape[1:])

        def run(lb: Builder, acc: Value, x: Value, plan: _Replay) -> tuple[Value, Adjoint]:
            inner = Adjoint(lb, self.algebra, rules=self.rules, per_step={acc.pos, x.pos},
                            names=self._step_names(term, acc, x), plan=plan)
            local = list(context) + [acc, x]
            inner.primal(body, local)
            return local[-1], inner

        scratch = b.sub((init.type, x_type))
        acc0, x0 = Value(len(b.types), init.type), Value(len(b.types) + 1, x_type)
        new0, first = run(scratch, acc0, x0, _Replay())
        plan = _replay_plan(first, new0, acc0, x0)
        found = [r for r, k in zip(first.residuals, first.residual_steps) if k not in plan.recomputed]
        if not found:
            states = b.loop(init, xs, lambda lb, acc, x: run(lb, acc, x, plan)[0], stacked=True,
                            names=term.names, hint=term.hint, span=term.span)
            return states, (), plan
        leaves = _leaf_count(init.type)

        def step(lb: Builder, carried: Value, x: Value) -> Value:
            acc = _rebuild(lb, [lb.get(carried, k) for k in range(leaves)], init.type)
            new, inner = run(lb, acc, x, plan)
            assert [r.type for r in inner.residuals] == [r.type for r in found]
            return lb.tuple(*_leaves(lb, new), *inner.residuals)

        zeros = [b.prim(ZEROS, params(shape=r.type.shape, dtype=r.type.dtype)) for r in found]
        # the state's name is its items' (the residuals are items of the carried tuple too)
        state_names = (term.names.state,) if leaves == 1 else (None,) * leaves
        scan = b.loop(b.tuple(*_leaves(b, init), *zeros), xs, step, stacked=True,
                      names=LoopNames(x=term.names.x, items=state_names + tuple(map(scratch.hint_of, found))),
                      span=term.span)
        items = [b.get(scan, k) for k in range(leaves + len(found))]
        states = _rebuild(b, items[:leaves], init.type)
        if term.hint:
            b.name(states, term.hint)
        return states, tuple(items[leaves:]), plan

    def stored(self, recomputed: Value, stored: Value) -> Value:
        """Let the adjoint read `stored`, a value equal to `recomputed`, instead of it,
        when the last step made `recomputed` (no later step reads it): the
        recomputed new state of a loop step is the state the forward loop stored,
        so its recomputation is left dead. Returns the value to seed."""
        if self.steps and self.steps[-1].out == recomputed:
            last = self.steps[-1]
            if isinstance(last, _LoopStep) and last.states == last.out:  # a scan: its states too
                self.steps[-1] = replace(last, out=stored, states=stored)
            else:
                self.steps[-1] = replace(last, out=stored)
            return stored
        return recomputed

    # ---- the backward sweep -------------------------------------------------

    def accumulate(self, cotangents: dict[int, Deriv], v: Value, d: Deriv) -> None:
        """Add `d` to the pending cotangent of `v` (fan-out becomes addition)."""
        if d is ZERO or not self.algebra.carries(v.type):
            return
        cotangents[v.pos] = self.algebra.add(self.b, cotangents.get(v.pos, ZERO), d)

    def backward(self, cotangents: dict[int, Deriv]) -> None:
        """Emit the adjoint of every recorded step, last first."""
        for step in reversed(self.steps):
            ct = cotangents.pop(step.out.pos, ZERO)
            if ct is ZERO:
                continue
            hint = self.b.hint_of(step.out)
            if hint and isinstance(ct, Value):
                self.b.name(ct, hint + "_bar")
            self.b.span = step.term.span if hasattr(step, "term") else self.b.span
            match step:
                case _PrimStep(term, args, out):
                    rule = VJP_RULES.get(term.prim)
                    if rule is None:
                        raise DerivativeError(f"no reverse rule for the primitive {term.prim.name}", term.span)
                    for arg, d in zip(args, rule(self.b, self.algebra, term.params, args, out, ct, term)):
                        self.accumulate(cotangents, arg, d)
                case _TupleStep(items, _):
                    for item, d in zip(items, self.algebra.split(self.b, ct)):
                        self.accumulate(cotangents, item, d)
                case _GetStep(tup, k, _):
                    assert isinstance(tup.type, TupleType)
                    self.accumulate(cotangents, tup,
                                    tuple(ct if j == k else ZERO for j in range(len(tup.type.items))))
                case _IfStep():
                    self._if_adjoint(step, ct, cotangents)
                case _LoopStep():
                    self._loop_adjoint(step, ct, cotangents)
                case _AssociativeFoldStep():
                    self._associative_fold_adjoint(step, ct, cotangents)
                case _CustomStep(term, args, out):
                    assert self.rules is not None
                    for arg, d in zip(args, self.rules.cotangents(self.b, term, args, out, ct)):
                        self.accumulate(cotangents, arg, d)
                case _:
                    assert_never(step)

    def _step_names(self, loop: Loop, acc: Value, x: Value) -> dict[int, str]:
        """The source names an adjoint of `loop`'s body knows: this one's, and the
        state's and the item's."""
        names = dict(self.names)
        for v, name in ((acc, loop.names.state), (x, loop.names.x)):
            if name is not None:
                names[v.pos] = name
        return names

    def _read_outside(self, body: Term, context: tuple[Value, ...]) -> list[Value]:
        """The values of `context` that `body` reads and that carry cotangents, by position."""
        seen: dict[int, Value] = {}
        for v in _reads(body, context):
            if self.algebra.carries(v.type):
                seen.setdefault(v.pos, v)
        return list(seen.values())

    def _if_adjoint(self, step: _IfStep, ct: Deriv, cotangents: dict[int, Deriv]) -> None:
        alg = self.algebra
        then, orelse = step.term.then, step.term.orelse
        reads = {v.pos: v for v in self._read_outside(then, step.context) + self._read_outside(orelse, step.context)}
        outside = [reads[p] for p in sorted(reads)]
        if not outside:
            return

        def branch(body: Term):
            def make(sb: Builder) -> Value:
                local = list(step.context[:-1]) + [Value(len(sb.types) - 1, step.context[-1].type)]
                inner = Adjoint(sb, alg, rules=self.rules, names=self.names)
                inner.primal(body, local)
                pending: dict[int, Deriv] = {}
                inner.accumulate(pending, local[-1], ct)
                inner.backward(pending)
                return sb.tuple(*(alg.materialise(sb, pending.get(v.pos, ZERO), tangent_type(v.type, alg))
                                  for v in outside))
            return make

        bars = self.b.if_(step.context[-1], branch(then), branch(orelse), span=step.term.span)
        for k, v in enumerate(outside):
            self.accumulate(cotangents, v, self.b.get(bars, k))

    def _loop_adjoint(self, step: _LoopStep, ct: Deriv, cotangents: dict[int, Deriv]) -> None:
        alg, b = self.algebra, self.b
        body, stacked = step.term.body, step.term.stacked
        init, xs = step.context[-2], step.context[-1]
        length = _length(xs)
        state_bar_type = tangent_type(init.type, alg)
        outside = self._read_outside(body, step.context)
        want_xs_bar = alg.carries(xs.type)
        xs_item_type = ArrayType(xs.type.dtype, xs.type.shape[1:])
        # the cotangent of the loop's result: of the last state (fold), seeding the
        # carried cotangent; of every state (scan), added in at each step; or item by item
        ct_result = alg.materialise(b, ct, tangent_type(step.out.type, alg))
        if isinstance(stacked, bool):
            seed = alg.zeros(b, state_bar_type) if stacked else ct_result
        else:
            seed = b.tuple(*(alg.zeros(b, tangent_type(init.type.items[k], alg)) if s else b.get(ct_result, k)
                             for k, s in enumerate(stacked)))
        carry0 = [seed]
        carry0 += [alg.zeros(b, tangent_type(v.type, alg)) for v in outside]
        if want_xs_bar:
            carry0.append(alg.zeros(b, tangent_type(xs_item_type, alg)))
        steps = b.prim(ARANGE, params(lo=Dim(0), hi=length))

        def reverse_step(lb: Builder, carry: Value, k: Value) -> Value:
            t = lb.prim(SUB, (), _size(lb, length - 1), k)
            state_bar: Deriv = lb.get(carry, 0)
            if stacked is True:
                state_bar = alg.add(lb, state_bar, _at(lb, ct_result, t))
            elif stacked:
                state_bar = lb.tuple(*(alg.add(lb, lb.get(state_bar, j), _at(lb, lb.get(ct_result, j), t))
                                       if s else lb.get(state_bar, j) for j, s in enumerate(stacked)))
            acc = _state_before(lb, init, step.states, t)
            x = _at(lb, xs, t)
            # named after the source: `s_before` (not `s`, which the forward loop's variable
            # keeps), the item as the source names it
            for v, name in ((acc, step.term.names.state and f"{step.term.names.state}_before"),
                            (x, step.term.names.x)):
                if name is not None:
                    lb.name(v, name)
            # the body again, its residuals read from the forward loop's, not recomputed
            residuals = (_at(lb, r, t) for r in step.residuals)
            read: list[Value] = []  # the stored new state, read once, where first needed

            def stored_state() -> Value:
                if not read:
                    read.append(_at(lb, step.states, t))
                return read[0]

            inner = Adjoint(lb, alg, rules=self.rules, per_step={acc.pos, x.pos}, replay=residuals,
                            names=self._step_names(step.term, acc, x), plan=step.plan,
                            stored_state=stored_state)
            local = list(step.context) + [acc, x]
            inner.primal(body, local)
            assert next(residuals, None) is None, "the body made fewer residuals than it stored"
            new_state = inner.stored(local[-1], stored_state())
            pending: dict[int, Deriv] = {}
            inner.accumulate(pending, new_state, state_bar)
            inner.backward(pending)
            new = [alg.materialise(lb, pending.get(acc.pos, ZERO), state_bar_type)]
            for j, v in enumerate(outside):  # (a tuple's cotangent may come item by item)
                total = alg.add(lb, lb.get(carry, 1 + j), pending.get(v.pos, ZERO))
                new.append(alg.materialise(lb, total, tangent_type(v.type, alg)))
            if want_xs_bar:
                new.append(alg.materialise(lb, pending.get(x.pos, ZERO), tangent_type(xs_item_type, alg)))
            return lb.tuple(*new)

        # the items' cotangents stacked, one per step; the others carried to the end
        carried = stacking((False,) * (len(carry0) - 1) + (True,)) if want_xs_bar else False
        names = LoopNames(items=tuple(_bar(name) for name in (
            step.term.names.state, *map(self.source_name, outside), *((step.term.names.x,) if want_xs_bar else ()))))
        result = b.loop(b.tuple(*carry0), steps, reverse_step, stacked=carried, names=names, span=step.term.span)
        self.accumulate(cotangents, init, b.get(result, 0))
        for j, v in enumerate(outside):
            self.accumulate(cotangents, v, b.get(result, 1 + j))
        if want_xs_bar:
            reversed_bars = b.get(result, 1 + len(outside))
            order = b.prim(SUB, (), _size(b, length - 1), steps)
            self.accumulate(cotangents, xs, b.prim(GATHER, params(clip=False), reversed_bars, order))

    def _associative_fold_adjoint(self, step: _AssociativeFoldStep, ct: Deriv,
                                  cotangents: dict[int, Deriv]) -> None:
        """The rule of the module docstring: two adjoints of the body, each applied to
        all n items at once, between the prefixes and the suffixes."""
        alg, b = self.algebra, self.b
        body, context = step.term.body, step.context
        unit, xs = context[-2], context[-1]
        n = _length(xs)
        r_bar = alg.materialise(b, ct, tangent_type(step.out.type, alg))
        suffixes = suffix_scan(b, _combine(body, context), xs)  # S_1 .. S_n
        before = rows(b, step.prefixes, Dim(0), n)               # P_0 .. P_{n-1}
        # P̄_0 .. P̄_{n-1} from r = P_i ⊕ S_{i+1}, then P̄_n = r̄
        acc_bars = lanewise(b, self._body_adjoint(body, context, (), seed_first=True),
                            (*context, r_bar), (before, suffixes))
        bars = b.prim(CONCAT, params(axis=0), acc_bars, b.prim(EXPAND_DIMS, params(axis=0), r_bar))
        self.accumulate(cotangents, unit, row(b, bars, Dim(0)))
        outside = self._read_outside(body, context)
        items_carry = alg.carries(xs.type)
        if not outside and not items_carry:
            return
        # x̄_i and c̄_i from P_i = P_{i-1} ⊕ x_i, whose cotangent is P̄_i
        parts = lanewise(b, self._body_adjoint(body, context, tuple(outside), seed_first=False),
                         context, (before, xs, rows(b, bars, Dim(1), n + 1)))
        if items_carry:
            self.accumulate(cotangents, xs, b.get(parts, 0))
        for k, v in enumerate(outside, start=int(items_carry)):
            self.accumulate(cotangents, v, _sum_rows(b, alg, b.get(parts, k)))

    def _body_adjoint(self, body: Term, context: tuple[Value, ...], outside: tuple[Value, ...], *,
                      seed_first: bool) -> Term:
        """The adjoint of one application a ⊕ x of an associative fold's body (which
        runs on `context` and a, x), as a term for `lanewise`. `seed_first`: it runs
        on context, seed, a, x and pushes ā (the seed is one for all items); else on
        context, a, x, seed and pushes the tuple of x̄ (when the items carry
        derivatives) and the cotangents of the `outside` values the body reads."""
        alg = self.algebra
        state = strip_weak(context[-2].type)
        seed_type = tangent_type(state, alg)
        extra = (seed_type, state, state) if seed_first else (state, state, seed_type)
        tb = Builder(tuple(v.type for v in context) + extra)
        first: dict[int, int] = {}  # a value read from several entries: one argument
        for i, v in enumerate(context):
            first.setdefault(v.pos, i)
        m = len(context)
        seed, a, x = (tb.arg(m), tb.arg(m + 1), tb.arg(m + 2)) if seed_first else (
            tb.arg(m + 2), tb.arg(m), tb.arg(m + 1))
        local = [tb.arg(first[v.pos]) for v in context] + [a, x]
        inner = Adjoint(tb, alg, rules=self.rules)
        inner.primal(body, local)
        pending: dict[int, Deriv] = {}
        inner.accumulate(pending, local[-1], seed)
        inner.backward(pending)
        if seed_first:
            return tb.finish(alg.materialise(tb, pending.get(a.pos, ZERO), seed_type))
        bars = [alg.materialise(tb, pending.get(x.pos, ZERO), seed_type)] if alg.carries(state) else []
        bars += [alg.materialise(tb, pending.get(first[v.pos], ZERO), tangent_type(v.type, alg))
                 for v in outside]
        return tb.finish(tb.tuple(*bars))


def _combine(body: Term, context: tuple[Value, ...]) -> Combine:
    """The fold's body (running on `context`, acc, x) applied to pairs of items."""
    return lambda b, left, right: lanewise(b, body, context, (left, right))


def _sum_rows(b: Builder, alg: Algebra, stacked: Value) -> Value:
    """The algebra's sum over the leading axis (item by item of a tuple)."""
    if isinstance(stacked.type, TupleType):
        return b.tuple(*(_sum_rows(b, alg, b.get(stacked, k)) for k in range(len(stacked.type.items))))
    return algebra_sum(b, alg, stacked, (0,))


def _worth_storing(prim: Primitive) -> bool:
    """The store-or-recompute policy of a loop's reverse sweep: a value of the body
    that changes from step to step is stored by the forward loop when recomputing it
    costs a nonlinear op (a special function, in the cost model's terms: exp, tanh,
    sigmoid, ...) or a contraction; anything else (arithmetic, views and moves of the
    state and of outside values) is recomputed. But a special function whose
    arguments the reverse step has at hand (`_at_hand`: the state before the step,
    the item, outside values, the parts of the new state the forward loop stored, and
    views of those) is recomputed, one call a step (`_worth_recomputing`,
    `_replay_plan`): storing it would cost a stack as large as the states for what
    one call gives back (the LSTM's tanh(cell), cell being the new state's row). (An
    inner loop that changes from step to step has its states and residuals stored:
    `Adjoint.primal`.) Only the residuals the reverse sweep reads stay stored: the
    simplifier drops the others from the forward loop."""
    cost = ELEMENTWISE_COSTS.get(prim)
    return (cost is not None and cost.nonlinear > 0) or prim in (MATMUL, LOGSUMEXP, SOFTMAX)


def _worth_recomputing(prim: Primitive) -> bool:
    """Whether a residual made by `prim` from values at hand in the reverse step is
    recomputed there rather than stored: an elementwise special function, one call
    the size of its result; a contraction of values at hand (an RNN's W @ h) costs
    more than the step's other work and stays stored."""
    cost = ELEMENTWISE_COSTS.get(prim)
    return cost is not None and cost.nonlinear > 0


def _replay_plan(body: Adjoint, new: Value, acc: Value, x: Value) -> _Replay:
    """How the reverse step of a loop replays its body, which `body` ran forward from
    the state `acc` and the item `x` to the new state `new` (`_Replay`)."""
    made = {step.out.pos: k for k, step in enumerate(body.steps)}
    parts: dict[int, tuple[tuple[int | None, int], ...]] = {}

    def find_parts(v: Value, path: tuple[tuple[int | None, int], ...]) -> None:
        k = made.get(v.pos)
        if k is None:
            return
        step = body.steps[k]
        if path and isinstance(step, _PrimStep):  # (the whole new state: `Adjoint.stored`)
            parts.setdefault(k, path)
        match step:
            case _TupleStep(items, _):
                for j, item in enumerate(items):
                    find_parts(item, path + ((None, j),))
            case _PrimStep(term, args, _) if term.prim is STACK:
                for j, arg in enumerate(args):
                    find_parts(arg, path + ((param(term.params, "axis"), j),))

    find_parts(new, ())
    at_hand = _at_hand(body, parts, acc, x)
    varies = body.per_step or set()
    recomputed = frozenset(k for k, step in enumerate(body.steps)
                           if isinstance(step, _PrimStep) and step.out.pos in varies
                           and _worth_recomputing(step.term.prim) and all(map(at_hand, step.args)))
    return _Replay(parts, recomputed)


def _at_hand(body: Adjoint, parts: dict[int, tuple[tuple[int | None, int], ...]], acc: Value,
             x: Value) -> Callable[[Value], bool]:
    """Whether the reverse step of a loop has a value of its body without computing
    anything: the state before the step and the item (stored), the values that do
    not change from step to step (outside values, and what the body makes from them
    alone), the parts of the new state (stored), and tuples and views (`Get`,
    `index`) of those."""
    varies = body.per_step or set()
    found = {acc.pos, x.pos}

    def held(v: Value) -> bool:
        return v.pos in found or v.pos not in varies

    for k, step in enumerate(body.steps):
        match step:
            case _PrimStep(term, args, out) if k in parts or (term.prim is INDEX and all(map(held, args))):
                found.add(out.pos)
            case _GetStep(tup, _, out) if held(tup):
                found.add(out.pos)
            case _TupleStep(items, out) if all(map(held, items)):
                found.add(out.pos)
    return held


def _reads(body: Term, context: tuple[Value, ...]) -> list[Value]:
    """The values of `context` that `body` (running above it) reads."""
    return [context[i] for i in sorted(_reads_below(body, len(context)))]


def _leaves(b: Builder, v: Value) -> list[Value]:
    """The arrays of a value, tuples flattened, in order."""
    if isinstance(v.type, TupleType):
        return [leaf for k in range(len(v.type.items)) for leaf in _leaves(b, b.get(v, k))]
    return [v]


def _rebuild(b: Builder, leaves: list[Value], t: Type) -> Value:
    """The value of type `t` whose arrays are `leaves` (the inverse of `_leaves`)."""
    if not isinstance(t, TupleType):
        assert len(leaves) == 1
        return leaves[0]
    items, start = [], 0
    for item in t.items:
        count = _leaf_count(item)
        items.append(_rebuild(b, leaves[start:start + count], item))
        start += count
    return b.tuple(*items)


def _leaf_count(t: Type) -> int:
    return sum(_leaf_count(x) for x in t.items) if isinstance(t, TupleType) else 1


def _reads_below(term: Term, base: int) -> set[int]:
    """Indices below `base` that `term` (and its bodies) read with Var."""
    match term:
        case Var(i):
            return {i} if i < base else set()
        case Seq(terms):
            return set().union(*(_reads_below(t, base) for t in terms))
        case If(then, orelse):
            return _reads_below(then, base) | _reads_below(orelse, base)
        case Loop(body, _) | Build(_, _, body) | Map(_, body) | Reduce(body) | Custom(_, _, body):
            return _reads_below(body, base)
        case Prim() | Tuple() | Get() | Drop():
            return set()
        case _:
            assert_never(term)


def _bar(name: str | None) -> str | None:
    """The name of the cotangent of what `name` names."""
    return None if name is None else name + "_bar"


def _length(xs: Value) -> Dim:
    assert isinstance(xs.type, ArrayType) and xs.type.rank >= 1
    return xs.type.shape[0]


def _at(b: Builder, arrays: Value, t: Value) -> Value:
    """`arrays[t]`, item by item for a tuple of arrays."""
    if isinstance(arrays.type, TupleType):
        return b.tuple(*(_at(b, b.get(arrays, k), t) for k in range(len(arrays.type.items))))
    assert isinstance(arrays.type, ArrayType)
    rest = tuple(("slice", Dim(0), d) for d in arrays.type.shape[1:])
    return b.prim(INDEX, params(spec=(("at",),) + rest), arrays, t)


def _size(b: Builder, d: Dim) -> Value:
    return b.prim(SIZE, params(dim=d))


def _loop_result(b: Builder, init: Value, states: Value, length: Dim, stacked: Stacking) -> Value:
    """What a loop returns (`Loop`), from the `states` after each step."""
    if stacked is True:
        return states
    last = _state_before(b, init, states, _size(b, length))
    if stacked is False:
        return last
    return b.tuple(*(b.get(states, k) if s else b.get(last, k) for k, s in enumerate(stacked)))


def _state_before(b: Builder, init: Value, states: Value, t: Value) -> Value:
    """The state before step `t` of a loop that stored the state after each step
    in `states`: `init` at t = 0, else `states[t - 1]` — read in place, not
    copied into an array of the states before; t = length gives the last state
    (`init` when there are no steps)."""
    first = b.prim(EQ, (), t, _size(b, Dim(0)))
    return b.if_(first, lambda sb: init,
                 lambda sb: _at(sb, states, sb.prim(SUB, (), t, _size(sb, Dim(1)))))
