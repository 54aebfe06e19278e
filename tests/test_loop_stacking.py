"""Loops that stack some items of their state, and the derivatives built on them.

A `Loop` (UNF) or `LoopE` (target IR) stacks every state (a scan: `True`), keeps
the last (a fold: `False`), or, for a tuple state, stacks item k over the steps
where its flag is set and keeps the last state's item k otherwise. Reverse mode
relies on this: its reverse loop stacks only the cotangents of the sequence's
items and carries those of the state and of the weights a closure reads
unstacked, so a gradient with respect to a weight matrix W costs O(|W|) memory,
not O(T·|W|). These tests check the semantics (interpreter, checker, lowering),
the simplifier rule that unstacks items read only at their last state, the
derivatives of folds and scans end to end (0 steps included) against finite
differences, and the memory structure of an RNN's gradient.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import catad
from catad.compiler.lower import BACKENDS, load_module, lower
from catad.compiler.primitives import ADD, MUL, Params, Primitive
from catad.compiler.simplify import binding_types, expr_type
from catad.compiler.target import (Block, Call, IfElse, Lambda, LoopE, MakeTuple, Name, Project,
                                   TargetFunction, TargetProgram)
from catad.compiler.to_target import to_target
from catad.compiler.typed import SizeBinding
from catad.compiler.types import (F64, ArrayType, Dim, DType, Stacking, TupleType, Type,
                                  item_stacked, loop_name, loop_result_type, stacking)
from catad.compiler.unary import Drop, Get, Loop, Prim, Term, Tuple, UFunction, Var, seq
from catad.compiler.unary_check import UnaryTypeError, check_function, check_term
from catad.compiler.unary_eval import evaluate

from program_strategy import compile_source, programs, scaled, size_values
from test_simplify import EXAMPLES, N, block, call, let, simplified, values_agree

n, m = Dim.of("n"), Dim.of("m")
STACKINGS: tuple[Stacking, ...] = ((True, False), (False, True), True, False)


def vec(*shape: Dim | int) -> ArrayType:
    return ArrayType(DType.F64, tuple(Dim.of(d) for d in shape))


# ---- UNF: unary_eval and unary_check ---------------------------------------------------


def op(prim: Primitive, arity: int, ps: Params = ()) -> Term:
    """Apply `prim` to the top `arity` entries and keep only its result."""
    return seq(Prim(prim, ps, arity), Drop(1, arity))


def item(position: int, k: int) -> Term:
    """Item k of the tuple at `position`, the copy of the tuple dropped."""
    return seq(Var(position), Get(k), Drop(1, 1))


# x0: f64, y0: f64[m], xs: f64[n] ⊢ loop((x0, y0), xs, |(a, b), x| (a + x, b * x + a))
# The body runs on [x0, y0, xs, init, xs, acc, x]: acc at 5, x at 6.
STEP = seq(item(5, 0), Var(6), op(ADD, 2),                                   # a + x
           item(5, 1), Var(6), op(MUL, 2), item(5, 0), op(ADD, 2),           # b * x + a
           Tuple(2))
PARAMS = (("x0", F64), ("y0", vec(m)), ("xs", vec(n)))
STATE = TupleType((F64, vec(m)))


def pair_loop(stacked: Stacking) -> UFunction:
    term = seq(Var(0), Var(1), Tuple(2), Var(2), Loop(STEP, stacked), Drop(1, 2))
    return UFunction("f", PARAMS, loop_result_type(STATE, n, stacked), term,
                     (SizeBinding("m", 1, 0), SizeBinding("n", 2, 0)))


def reference_states(x0: float, y0: np.ndarray, xs: np.ndarray) -> list[tuple]:
    """Every state of the recurrence, the initial one first, in plain Python."""
    states = [(x0, y0)]
    for x in xs:
        a, b = states[-1]
        states.append((a + x, b * x + a))
    return states


def expected_result(stacked: Stacking, states: list[tuple], m_: int) -> tuple:
    """Item k stacked over the steps (states[1:]) where flagged, else the last state's."""
    steps = states[1:]
    items = []
    for k in range(2):
        if item_stacked(stacked, k):
            shape = (0,) if k == 0 else (0, m_)
            items.append(np.stack([s[k] for s in steps]) if steps else np.zeros(shape))
        else:
            items.append(states[-1][k])
    return tuple(items)


INPUTS = [(1.5, np.array([1.0, -2.0]), np.array([0.5, -1.0, 2.0])),
          (1.5, np.array([1.0, -2.0]), np.array([0.25])),
          (1.5, np.array([1.0, -2.0]), np.zeros(0))]


@pytest.mark.parametrize("stacked", STACKINGS, ids=loop_name)
@pytest.mark.parametrize("inputs", INPUTS, ids=lambda i: f"steps={len(i[2])}")
def test_a_loop_stacks_its_flagged_items_and_keeps_the_last_state_of_the_others(stacked, inputs):
    fn = pair_loop(stacked)
    check_function(fn)
    x0, y0, xs = inputs
    got = evaluate(fn, [np.float64(x0), y0, xs])
    want = expected_result(stacked, reference_states(x0, y0, xs), len(y0))
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-15, atol=0)
    # over 0 steps an unstacked item is exactly init's
    if not len(xs):
        for k, (g, init) in enumerate(zip(got, (x0, y0))):
            if not item_stacked(stacked, k):
                np.testing.assert_array_equal(g, init)


def test_the_checker_types_a_loop_item_by_item():
    context = tuple(t for _, t in PARAMS)
    types = {stacked: check_term(pair_loop(stacked).body, context)[-1] for stacked in STACKINGS}
    assert types[(True, False)] == TupleType((vec(n), vec(m)))
    assert types[(False, True)] == TupleType((F64, vec(n, m)))
    assert types[True] == TupleType((vec(n), vec(n, m)))
    assert types[False] == STATE
    for stacked, t in types.items():
        assert t == loop_result_type(STATE, n, stacked)


def test_per_item_flags_that_agree_are_a_plain_scan_or_fold():
    assert stacking((True, True)) is True and stacking((False, False, False)) is False
    assert stacking((True, False)) == (True, False)
    assert [loop_name(s) for s in ((False, True, True), True, False)] == ["scan[1, 2]", "scan", "fold"]


@pytest.mark.parametrize("stacked", [(True,), (True, False)])
def test_per_item_flags_on_a_state_that_is_no_tuple_are_refused(stacked):
    # scan(s, xs, |acc, x| acc + x) with flags for items it does not have
    body = seq(Var(2), Var(3), op(ADD, 2))
    with pytest.raises((AssertionError, UnaryTypeError)):
        check_term(Loop(body, stacked), (F64, vec(n)))


def test_per_item_flags_must_match_the_items_of_the_state():
    with pytest.raises((AssertionError, UnaryTypeError)):
        check_term(pair_loop((True, False, True)).body, tuple(t for _, t in PARAMS))


# ---- lowering a per-item loop ------------------------------------------------------------

STRICT = pytest.importorskip("array_api_strict", reason="the array-api backend is run on "
                             "array_api_strict: pip install '.[test]'")
RUNS = {"numpy": ("numpy", np.asarray), "array-api/numpy": ("array-api", np.asarray),
        "array-api/strict": ("array-api", STRICT.asarray)}


@pytest.mark.parametrize("run_on", sorted(RUNS))
@pytest.mark.parametrize("stacked", STACKINGS, ids=loop_name)
def test_the_lowered_loop_computes_what_the_interpreter_does(stacked, run_on):
    backend, convert = RUNS[run_on]
    fn = pair_loop(stacked)
    text = lower(TargetProgram((to_target(fn),)), source_path="t.catad", source=None,
                 backend=BACKENDS[backend])
    module = load_module(text, "generated")
    for x0, y0, xs in INPUTS:
        want = evaluate(fn, [np.float64(x0), y0, xs])
        got = module.f(convert(np.float64(x0)), convert(y0), convert(xs))
        for g, w in zip(got, want, strict=True):
            g = np.asarray(g)
            assert g.shape == np.shape(w) and g.dtype == np.float64
            np.testing.assert_allclose(g, w, rtol=1e-15, atol=0)


# ---- the simplifier: items read only at their last state stop being stacked ---------------

LAST = (("at",), ("slice", Dim(0), N))  # s[n - 1] of a state stacked over the n rows of A


def _pair_scan(stacked: Stacking = True) -> tuple:
    """loop((x, y), A, |acc, xi| (acc.0 * (acc.1 * xi), (acc.1 * xi) * 0.5)): item 1 feeds
    item 0, so no rule may drop it from the state, and neither item is a running sum
    (which accumulated_products would take out of the loop)."""
    body = block(let("a0", Project(Name("acc"), 0)), let("a1", Project(Name("acc"), 1)),
                 let("mm", call("mul", "a1", "xi")), let("n0", call("mul", "a0", "mm")),
                 let("n1", call("mul", "mm", 0.5)), let("nt", MakeTuple((Name("n0"), Name("n1")))),
                 result="nt")
    return (let("i0", MakeTuple((Name("x"), Name("y")))),
            let("r", LoopE(Name("i0"), Name("A"), "acc", "xi", body, stacked)),
            let("z0", Project(Name("r"), 0)), let("z1", Project(Name("r"), 1)))


def _last_of(stacked_name: str, name: str) -> tuple:
    return (let(f"{name}_at", call("size", dim=N - 1)),
            let(name, call("index", stacked_name, f"{name}_at", spec=LAST)))


def _loops(b: Block) -> list[LoopE]:
    return [x.expr for x in b.bindings if isinstance(x.expr, LoopE)]


@pytest.mark.parametrize("reads, result, want", [
    # item 0 read whole, item 1 only at its last state
    ((*_last_of("z1", "w"), let("t", MakeTuple((Name("z0"), Name("w"))))), "t", (True, False)),
    # item 1 read whole, item 0 only at its last state
    ((*_last_of("z0", "v"), let("t", MakeTuple((Name("v"), Name("z1"))))), "t", (False, True)),
    # item 1 not read at all (it feeds item 0 inside the loop)
    ((), "z0", (True, False)),
    # both only at their last state: a fold
    ((*_last_of("z0", "v"), *_last_of("z1", "w"), let("t", MakeTuple((Name("v"), Name("w"))))), "t", False),
    # both read whole: it stays a scan
    ((let("t", MakeTuple((Name("z0"), Name("z1")))),), "t", True),
])
def test_a_tuple_scan_unstacks_the_items_read_only_at_their_last_state(reads, result, want):
    bindings = (*_pair_scan(), *reads)
    (loop,) = _loops(simplified(*bindings, result=result))
    assert loop.stacked == want
    values_agree(*bindings, result=result)


def test_the_state_before_no_steps_or_the_last_is_a_fold():
    # if size(n) == 0 { init } else { s[size(n) - 1] }, s = scan(init, A, f): the state a
    # reverse loop starts from, read where the forward loop's states were stacked; if
    # nothing else reads them the scan is a fold (unstack_last_states, the last index
    # written size(n) - 1), and the if is the fold (fold_of_no_steps)
    body = block(let("m", call("mul", "acc", "xi")), let("n0", call("add", "m", "xi")), result="n0")
    then, orelse = block(result="x"), block(let("k1", call("sub", "k", 1)),
                                            let("v", call("index", "r", "k1", spec=LAST)), result="v")
    bindings = (let("r", LoopE(Name("x"), Name("A"), "acc", "xi", body, True)),
                let("k", call("size", dim=N)), let("empty", call("eq", "k", 0)),
                let("w", IfElse(Name("empty"), then, orelse)))
    got = simplified(*bindings, result="w")
    (loop,) = _loops(got)
    assert loop.stacked is False
    assert not any(isinstance(b.expr, IfElse) for b in got.bindings), got
    values_agree(*bindings, result="w")


P = Dim.of("p")
ROW = (("at",), ("slice", Dim(0), N))  # acc[t] of an accumulator of p rows of n


def _rows_loop(backwards: bool) -> tuple:
    """fold((x, zeros(p, n)), arange(p), |acc, i| (acc.0 * V[i], index_add(acc.1, acc.0 * V[i], t))),
    t = i, or p - 1 - i: each step adds into its own row of the accumulator."""
    row_index = ((let("last", call("size", dim=P - 1)), let("t", call("sub", "last", "i")))
                 if backwards else (let("t", Name("i")),))
    body = block(let("a0", Project(Name("acc"), 0)), let("a1", Project(Name("acc"), 1)),
                 let("v", call("index", "V", "i", spec=ROW)), let("n0", call("mul", "a0", "v")),
                 *row_index, let("n1", call("index_add", "a1", "n0", "t", spec=ROW)),
                 let("nt", MakeTuple((Name("n0"), Name("n1")))), result="nt")
    return (let("steps", call("arange", lo=Dim(0), hi=P)),
            let("zs", call("zeros", shape=(P, N), dtype=DType.F64)),
            let("i0", MakeTuple((Name("x"), Name("zs")))),
            let("r", LoopE(Name("i0"), Name("steps"), "acc", "i", body, False)),
            let("z1", Project(Name("r"), 1)))


def _index_adds(b: Block) -> int:
    return sum(1 for x in b.bindings if isinstance(x.expr, Call) and x.expr.prim.name == "index_add") + sum(
        _index_adds(x.expr.body) for x in b.bindings if isinstance(x.expr, LoopE))


@pytest.mark.parametrize("backwards", [False, True])
def test_an_accumulator_added_to_at_each_steps_own_row_is_the_rows_stacked(backwards):
    # accumulated_products: index_add(acc.k, v, (t, ..)) per step, t the step's own row,
    # is no copy of the accumulator per step but the rows stacked (reversed for t = p - 1 - i)
    bindings = _rows_loop(backwards)
    before = block(*bindings, result="z1")
    after = simplified(*bindings, result="z1")
    assert _index_adds(before) == 1 and _index_adds(after) == 0, after
    (loop,) = _loops(after)
    assert loop.stacked is True or loop.stacked == (False, True), loop.stacked
    values_agree(*bindings, result="z1")


def test_an_accumulator_added_to_at_a_row_that_is_not_the_steps_stays_in_the_loop():
    # the row p - 1 - i read again after i: the same row twice is no stack of rows
    bindings = list(_rows_loop(True))
    loop = bindings[3].expr
    body = [b if b.name != "t" else let("t", call("sub", "last", "last")) for b in loop.body.bindings]
    bindings[3] = let("r", LoopE(loop.init, loop.xs, loop.acc, loop.x, Block(tuple(body), loop.body.result),
                                 False))
    after = simplified(*bindings, result="z1")
    assert _index_adds(after) == 1
    values_agree(*bindings, result="z1")


def test_an_item_already_unstacked_stays_so_and_a_read_one_stays_stacked():
    # loop stacking (False, True) whose item 1 is read whole: nothing to do
    bindings = (*_pair_scan((False, True)), let("t", MakeTuple((Name("z0"), Name("z1")))))
    (loop,) = _loops(simplified(*bindings, result="t"))
    assert loop.stacked == (False, True)
    values_agree(*bindings, result="t")


# ---- derivatives end to end, against finite differences -----------------------------------

EPS = 1e-6
SEQUENCE_LENGTHS = (0, 1, 2, 5)


@dataclass(frozen=True)
class Program:
    """A catad function `f` over a sequence of `length` items, the shapes of its
    parameters at that length, what to differentiate with respect to, and the one
    vector to take the Hessian with respect to."""

    name: str
    source: str
    shapes: tuple[tuple[str, str], ...]  # parameter, shape as a Python expression of `length`
    wrt: tuple[str, ...]
    hessian_wrt: str
    scalar: bool = True  # f's result is a scalar (else: vjp only)

    def arguments(self, length: int, rng: np.random.Generator) -> tuple:
        return tuple(0.6 * rng.standard_normal(eval(shape, {"t": length})) for _, shape in self.shapes)

    def position(self, param: str) -> int:
        return [p for p, _ in self.shapes].index(param)


PROGRAMS = [
    Program("fold", """
fn f(a: f64, w: f64, xs: f64[t]) -> f64 {
    fold(a, xs, |s, x| sin(w * s) + x * s)
}""", (("a", "()"), ("w", "()"), ("xs", "(t,)")), ("a", "w", "xs"), "xs"),
    Program("scan", """
fn f(a: f64, w: f64, xs: f64[t]) -> f64 {
    let states = scan(a, xs, |s, x| tanh(w * s + x));
    sum(states * states)
}""", (("a", "()"), ("w", "()"), ("xs", "(t,)")), ("a", "w", "xs"), "xs"),
    Program("tuple_fold", """
fn f(a: f64, b: f64, w: f64, xs: f64[t]) -> f64 {
    let (p, q) = fold((a, b), xs, |state, x| {
        let (p, q) = state;
        (p * cos(q) + x, q + w * p * x)
    });
    p + q * q
}""", (("a", "()"), ("b", "()"), ("w", "()"), ("xs", "(t,)")), ("a", "b", "w", "xs"), "xs"),
    Program("tuple_scan_one_item_read", """
fn f(a: f64, b: f64, w: f64, xs: f64[t]) -> f64 {
    let (ps, qs) = scan((a, b), xs, |state, x| {
        let (p, q) = state;
        (p * cos(q) + x, q + w * p * x)
    });
    sum(ps * ps)
}""", (("a", "()"), ("b", "()"), ("w", "()"), ("xs", "(t,)")), ("a", "b", "w", "xs"), "xs"),
    Program("rnn_fold", """
fn f(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64 {
    sum(fold(h0, xs, |s, x| tanh(W @ s + U @ x)))
}""", (("W", "(3, 3)"), ("U", "(3, 2)"), ("h0", "(3,)"), ("xs", "(t, 2)")), ("W", "U", "h0", "xs"), "h0"),
    Program("rnn_tuple_scan", """
fn f(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64 {
    let (hs, cs) = scan((h0, h0), xs, |state, x| {
        let (s, c) = state;
        let c2 = c * sigmoid(U @ x) + tanh(W @ s);
        (tanh(c2) * sigmoid(W @ s), c2)
    });
    sum(hs * hs) + sum(cs)
}""", (("W", "(3, 3)"), ("U", "(3, 2)"), ("h0", "(3,)"), ("xs", "(t, 2)")), ("W", "U", "h0", "xs"), "h0"),
    Program("rnn_states", """
fn f(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64[t, h] {
    scan(h0, xs, |s, x| tanh(W @ s + U @ x))
}""", (("W", "(3, 3)"), ("U", "(3, 2)"), ("h0", "(3,)"), ("xs", "(t, 2)")), ("W", "U", "h0", "xs"), "h0",
            scalar=False),
]


@functools.cache
def derived(program: Program):
    """The module of `program` with its derivatives: f_grad, f_vjp, f_jvp, f_hess."""
    wrt = "(" + ", ".join(program.wrt) + ")"
    lines = [f"fn f_vjp = vjp(f, wrt = {wrt});"]
    if program.scalar:
        lines += [f"fn f_grad = grad(f, wrt = {wrt});", f"fn f_jvp = jvp(f, wrt = {wrt});",
                  f"fn f_gh = grad(f, wrt = {program.hessian_wrt});",
                  f"fn f_hess = hessian(f, wrt = {program.hessian_wrt});"]
    return catad.compile(program.source + "\n" + "\n".join(lines) + "\n")


def finite_gradient(f, args: tuple, k: int) -> np.ndarray:
    """Central differences of the scalar f(*args) with respect to args[k], element by element."""
    base = np.asarray(args[k], dtype=float)
    out = np.zeros(base.shape)
    for index in np.ndindex(base.shape):
        bump = np.zeros(base.shape)
        bump[index] = EPS
        plus = f(*args[:k], base + bump, *args[k + 1:])
        minus = f(*args[:k], base - bump, *args[k + 1:])
        out[index] = (plus - minus) / (2 * EPS)
    return out


def along(f, args: tuple, direction: tuple, step: float = EPS) -> np.ndarray:
    """Central difference of f at args along direction (a tangent per argument)."""
    plus = f(*(a + step * v for a, v in zip(args, direction)))
    minus = f(*(a - step * v for a, v in zip(args, direction)))
    return (np.asarray(plus) - np.asarray(minus)) / (2 * step)


def close(got, want, tolerance: float = 1e-6) -> None:
    got = np.asarray(got)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


SCALAR_PROGRAMS = [p for p in PROGRAMS if p.scalar]


@pytest.mark.parametrize("length", SEQUENCE_LENGTHS)
@pytest.mark.parametrize("program", SCALAR_PROGRAMS, ids=lambda p: p.name)
def test_gradients_of_loops_match_finite_differences(program, length):
    module = derived(program)
    args = program.arguments(length, np.random.default_rng(length))
    grads = module.f_grad(*args)
    assert len(grads) == len(program.wrt)
    for param, g in zip(program.wrt, grads):
        close(g, finite_gradient(module.f, args, program.position(param)))
    value, cotangents = module.f_vjp(*args, 1.0)
    np.testing.assert_allclose(value, module.f(*args), rtol=1e-14, atol=1e-14)
    for c, g in zip(cotangents, grads, strict=True):
        np.testing.assert_allclose(c, g, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("length", SEQUENCE_LENGTHS)
@pytest.mark.parametrize("program", SCALAR_PROGRAMS, ids=lambda p: p.name)
def test_tangents_of_loops_match_finite_differences(program, length):
    module = derived(program)
    rng = np.random.default_rng(100 + length)
    args = program.arguments(length, rng)
    positions = [program.position(p) for p in program.wrt]
    tangents = tuple(rng.standard_normal(np.shape(args[k])) for k in positions)
    direction = [np.zeros(np.shape(a)) for a in args]
    for k, v in zip(positions, tangents):
        direction[k] = v
    value, tangent = module.f_jvp(*args, *tangents)
    np.testing.assert_allclose(value, module.f(*args), rtol=1e-14, atol=1e-14)
    close(tangent, along(module.f, args, tuple(direction)))


@pytest.mark.parametrize("length", SEQUENCE_LENGTHS)
@pytest.mark.parametrize("program", SCALAR_PROGRAMS, ids=lambda p: p.name)
def test_hessians_of_loops_are_the_derivative_of_the_gradient(program, length):
    module = derived(program)
    args = program.arguments(length, np.random.default_rng(200 + length))
    k = program.position(program.hessian_wrt)
    hessian = np.asarray(module.f_hess(*args))
    size = np.size(args[k])
    assert hessian.shape == (size, size)
    np.testing.assert_allclose(hessian, hessian.T, rtol=0, atol=1e-10 * (1 + np.abs(hessian).max(initial=0)))
    for i in range(size):
        bump = np.zeros(size)
        bump[i] = 1.0
        direction = tuple(bump if j == k else np.zeros(np.shape(a)) for j, a in enumerate(args))
        close(hessian[:, i], along(module.f_gh, args, direction), 1e-5)


@pytest.mark.parametrize("length", SEQUENCE_LENGTHS)
def test_the_vjp_of_a_scan_with_an_array_result_matches_finite_differences(length):
    (program,) = [p for p in PROGRAMS if p.name == "rnn_states"]
    module = derived(program)
    rng = np.random.default_rng(300 + length)
    args = program.arguments(length, rng)
    states = module.f(*args)
    assert states.shape == (length, 3)
    f_bar = rng.standard_normal(states.shape)
    value, cotangents = module.f_vjp(*args, f_bar)
    np.testing.assert_allclose(value, states, rtol=1e-14, atol=1e-14)

    def paired(*xs):
        return float(np.sum(f_bar * module.f(*xs)))
    for param, c in zip(program.wrt, cotangents, strict=True):
        close(c, finite_gradient(paired, args, program.position(param)))


def test_over_no_steps_a_fold_passes_its_initial_state_and_the_sequence_gets_empty_cotangents():
    module = catad.compile("""
fn last(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64[h] {
    fold(h0, xs, |s, x| tanh(W @ s + U @ x))
}
fn last_vjp = vjp(last, wrt = (W, U, h0, xs));
fn last_jacobian = jacobian(last, wrt = h0);
fn states(a: f64, xs: f64[t]) -> f64 { sum(scan(a, xs, |s, x| s * x + 1.0)) }
fn states_grad = grad(states, wrt = (a, xs));
""")
    rng = np.random.default_rng(7)
    W, U, h0 = rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), rng.standard_normal(3)
    xs = np.zeros((0, 2))
    f_bar = rng.standard_normal(3)
    value, (W_bar, U_bar, h0_bar, xs_bar) = module.last_vjp(W, U, h0, xs, f_bar)
    np.testing.assert_array_equal(value, h0)
    np.testing.assert_array_equal(h0_bar, f_bar)  # the identity, exactly
    np.testing.assert_array_equal(W_bar, np.zeros((3, 3)))
    np.testing.assert_array_equal(U_bar, np.zeros((3, 2)))
    assert np.shape(xs_bar) == (0, 2)
    np.testing.assert_array_equal(module.last_jacobian(W, U, h0, xs), np.eye(3))
    a_bar, xs_bar = module.states_grad(0.5, np.zeros(0))
    assert a_bar == 0.0 and np.shape(xs_bar) == (0,)



@pytest.mark.parametrize("length", SEQUENCE_LENGTHS)
def test_a_fold_whose_body_reads_only_the_closure_has_a_gradient(length):
    """The reverse loop carries the cotangent of `s`, read from outside through a tuple
    state, as one value (found by the property below: before 447d887 it was a Python
    tuple of items and compiling the gradient failed with an AttributeError)."""
    module = catad.compile("""
fn f(x: f64[n], s: f64) -> f64 {
    let (a, b) = fold((s, s), x, |state, v| (s, s));
    a + b
}
fn f_grad = grad(f);
""")
    args = (np.random.default_rng(length).standard_normal(length), 0.7)
    for k, g in enumerate(module.f_grad(*args)):
        close(g, finite_gradient(module.f, args, k))

# ---- the memory structure of an RNN's gradient ----------------------------------------------

RNN = """
fn f(W: f64[h, h], U: f64[h, d], xs: f64[t, d]) -> f64 {
    sum(fold(zeros(h), xs, |s, x| tanh(W @ s + U @ x)))
}
fn f_grad = grad(f, wrt = (W, U, xs));
"""


def _value_types(fn: TargetFunction) -> list[tuple[str, Type]]:
    """Every value `fn` makes (bindings in every block, loop states and items, and the
    loops' results), with its type: tuples are listed item by item too."""
    types = binding_types(fn)
    out: list[tuple[str, Type]] = []

    def leaves(name: str, t: Type | None) -> None:
        if isinstance(t, TupleType):
            for k, u in enumerate(t.items):
                leaves(f"{name}.{k}", u)
        elif t is not None:
            out.append((name, t))

    def walk(b: Block) -> None:
        for bind in b.bindings:
            leaves(bind.name, expr_type(bind.expr, types))
            match bind.expr:
                case LoopE(acc=acc, x=x, body=body):
                    leaves(acc, types.get(acc))
                    leaves(x, types.get(x))
                    walk(body)
                case IfElse(then=then, orelse=orelse):
                    walk(then)
                    walk(orelse)
                case Lambda(body=body):
                    walk(body)
    for name, t in fn.params:
        leaves(name, t)
    walk(fn.body)
    return out


def _loops_in(b: Block) -> list[LoopE]:
    found = []
    for bind in b.bindings:
        match bind.expr:
            case LoopE(body=body) as loop:
                found += [loop, *_loops_in(body)]
            case IfElse(then=then, orelse=orelse):
                found += _loops_in(then) + _loops_in(orelse)
            case Lambda(body=body):
                found += _loops_in(body)
    return found


@pytest.mark.parametrize("stage", ["target", "optimised"])
def test_an_rnn_gradient_stacks_no_weight_cotangent_per_step(stage):
    stages = catad.stages(RNN)
    (fn,) = [f for f in getattr(stages, stage).functions if f.name == "f_grad"]
    values = _value_types(fn)
    assert len(values) > 20  # the walk did see the bindings, loop bodies included
    t = Dim.of("t")
    big = [(name, ty) for name, ty in values if isinstance(ty, ArrayType) and len(ty.shape) >= 3]
    assert not big, f"values of rank >= 3 (per-step copies of a weight or its cotangent): {big}"
    per_step = {ty for _, ty in values if isinstance(ty, ArrayType) and ty.shape[:1] == (t,)}
    # stacked over the steps: only states (h), inputs (d), their cotangents, and the
    # step indices the reverse loop runs over
    assert per_step <= {vec(t, "h"), vec(t, "d"), ArrayType(DType.I64, (t,))}, per_step
    if stage == "target":  # reverse mode's own loop: the sequence's cotangents stacked, no more
        reverse = [loop for loop in _loops_in(fn.body) if isinstance(loop.stacked, tuple)]
        assert reverse, "the reverse loop stacks item by item"
        for loop in reverse:
            state = binding_types(fn)[loop.acc]
            assert isinstance(state, TupleType)
            for k, u in enumerate(state.items):
                if item_stacked(loop.stacked, k):
                    assert isinstance(u, ArrayType) and u.shape == (Dim.of("d"),), (k, u)


def test_an_rnn_gradient_matches_finite_differences():
    module = catad.compile(RNN)
    rng = np.random.default_rng(11)
    for length in SEQUENCE_LENGTHS:
        args = (0.5 * rng.standard_normal((4, 4)), 0.5 * rng.standard_normal((4, 3)),
                rng.standard_normal((length, 3)))
        grads = module.f_grad(*args)
        for k, g in enumerate(grads):
            close(g, finite_gradient(module.f, args, k))


STATE_BEFORE = """
fn f(x0: f64[n], xs: f64[t, n]) -> f64 { sum(fold(x0, xs, |s, x| s * tanh(x))) }
fn f_grad = grad(f, wrt = (x0, xs));
"""


@pytest.mark.parametrize("backend", ["numpy", "array-api"])
@pytest.mark.parametrize("source", [RNN, STATE_BEFORE], ids=["rnn", "xs-cotangent"])
def test_a_fold_gradient_reads_the_state_before_each_step_in_place(backend, source):
    # the state before step t, a factor of Wh's cotangent (the RNN) or of xs's at t
    text = catad.to_python(source, backend=backend)
    gradient = text[text.index("def f_grad("):]
    assert not re.search(r"\bconcat", gradient), "the states copied behind the initial one"
    assert "if " in gradient, "the state before step t: init at t = 0, else states[t - 1]"


def _last_loop_body(text: str, function: str) -> list[str]:
    """The lines of the body of the last `for` loop of `function` in the module `text`."""
    lines = text[text.index(f"def {function}("):].splitlines()
    start = max(k for k, line in enumerate(lines) if line.lstrip().startswith("for "))
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1:]:
        if len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line.strip())
    return body


def test_an_rnn_vjp_stacks_no_row_of_its_inputs_in_its_reverse_loop():
    # stacked_items_of_no_step: the reverse loop of rnn_last's vjp stacked xs[T - 1 - step]
    # at every step, a factor of Wx's cotangent: it is xs reversed, gathered once
    source = (EXAMPLES / "rnn.catad").read_text(encoding="utf-8") + "fn rnn_last_vjp = vjp(rnn_last);\n"
    text = catad.to_python(source)
    body = _last_loop_body(text, "rnn_last_vjp")
    stores = [line for line in body if re.match(r"\w+\[\w+\] = ", line)]
    # the cotangents of xs's rows and of the pre-activations, and the state before the step
    assert len(stores) == 3, body
    assert not any("xs[" in line for line in body), body
    module = load_module(text, "rnn")
    rng = np.random.default_rng(3)
    for length in SEQUENCE_LENGTHS:
        args = (0.5 * rng.standard_normal((4, 3)), 0.5 * rng.standard_normal((4, 4)), rng.standard_normal(4),
                rng.standard_normal((length, 3)))
        bar = rng.standard_normal(4)
        _, grads = module.rnn_last_vjp(*args, bar)
        for k, g in enumerate(grads):
            close(g, finite_gradient(lambda *a: bar @ module.rnn_last(*a), args, k))


LINEAR = """
fn f(s: f64[n], xs: f64[t, n]) -> f64 { sum(fold(s, xs, |a, p| a + p)) }
fn g(W: f64[n, n], x: f64[n]) -> f64 { sum(fold(x, arange(4), |acc, i| acc + W @ x) ** 2) }
fn f_grad = grad(f, wrt = (s, xs));
fn f_grad_s = grad(f, wrt = s);
fn g_grad = grad(g, wrt = (W, x));
"""


def test_the_gradients_of_linear_folds_have_no_reverse_loop():
    # invariant_state_items: their reverse loops carried the state's cotangent unchanged
    # (acc_0, acc_1 = acc_0, acc_0), stacked it or added the same term at every step
    # (accumulated_invariants): the cotangent is the initial one, broadcast or times T
    text = catad.to_python(LINEAR)
    module = load_module(text, "linear")
    for name, loops in (("f_grad", 0), ("f_grad_s", 0), ("g_grad", 1)):  # g_grad: g's own fold
        gradient = text[text.index(f"def {name}("):]
        gradient = gradient[:gradient.index("\n\n\n")] if "\n\n\n" in gradient else gradient
        assert len(re.findall(r"^\s+for ", gradient, re.M)) == loops, gradient
    rng = np.random.default_rng(4)
    for length in SEQUENCE_LENGTHS:
        args = (rng.standard_normal(3), rng.standard_normal((length, 3)))
        for k, g in enumerate(module.f_grad(*args)):
            close(g, finite_gradient(module.f, args, k))
        close(module.f_grad_s(*args), finite_gradient(module.f, args, 0))
    args = (0.5 * rng.standard_normal((3, 3)), rng.standard_normal(3))
    for k, g in enumerate(module.g_grad(*args)):
        close(g, finite_gradient(module.g, args, k))


LAYERS = """
fn f(W: f64[l, n], x: f64[n]) -> f64 { sum(fold(x, arange(l), |h, i| tanh(W[i] * h))) }
fn g(W: f64[l, 2, n], x: f64[n]) -> f64 { sum(fold(x, arange(l), |h, i| tanh(W[i, 0] * h + W[i, 1]))) }
fn f_grad = grad(f, wrt = (W, x));
fn g_grad = grad(g, wrt = (W, x));
"""


def test_a_weight_read_at_each_steps_own_row_gets_its_cotangent_rows_stacked():
    # the reverse loop over the layers stacks each layer's rows of W's cotangent and
    # reverses them after the loop: no copy of the whole (l, n) cotangent per step,
    # which made the gradient quadratic in l (accumulated_products)
    text = catad.to_python(LAYERS)
    module = load_module(text, "layers")
    for name in ("f_grad", "g_grad"):
        gradient = text[text.index(f"def {name}("):]
        gradient = gradient[:gradient.index("\n\n\n")] if "\n\n\n" in gradient else gradient
        assert "_index_add(" not in gradient, gradient
    rng = np.random.default_rng(5)
    for length in SEQUENCE_LENGTHS:
        for fn, grad, shape in ((module.f, module.f_grad, (length, 3)), (module.g, module.g_grad, (length, 2, 3))):
            args = (0.7 * rng.standard_normal(shape), rng.standard_normal(3))
            for k, g in enumerate(grad(*args)):
                close(g, finite_gradient(fn, args, k))


# ---- a property over random loop programs ---------------------------------------------------

LOOP_FEATURES = ("fold", "scan", "tuple", "reduction", "arithmetic", "elementwise", "let")
LOOPS = {"fold", "scan"}


@scaled(0.4)
@given(programs(features=LOOP_FEATURES).filter(lambda p: p.features & LOOPS), size_values(),
       st.integers(0, 2**32 - 1))
def test_derivatives_of_random_loop_programs_agree_with_finite_differences(program, sizes, seed):
    """Random programs with folds and scans (tuple states among them): reverse mode,
    forward mode and central differences agree along a random direction."""
    event("loops: " + ", ".join(sorted(program.features & LOOPS)))
    _, module = compile_source(program.with_lines("fn f_vg = value_and_grad(f);", "fn f_jvp = jvp(f);"))
    rng = np.random.default_rng(seed)
    args = program.inputs(sizes, rng)
    value, grads = module.f_vg(*args)
    grads = grads if len(args) > 1 else (grads,)
    direction = tuple(rng.standard_normal(np.shape(a)) for a in args)
    predicted = sum(float(np.sum(g * v)) for g, v in zip(grads, direction))
    scale = 1.0 + abs(value) + sum(float(np.sum(np.abs(g * v))) for g, v in zip(grads, direction))
    _, tangent = module.f_jvp(*args, *direction)
    assert abs(tangent - predicted) <= 1e-9 * scale, (tangent, predicted)
    near, far = along(module.f, args, direction), along(module.f, args, direction, 2 * EPS)
    if abs(near - far) > 1e-5 * scale:
        event("finite differences skipped near a kink")
        return
    assert abs(near - predicted) <= 1e-5 * scale, (near, predicted)
