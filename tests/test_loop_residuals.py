"""Reverse loops read stored residuals instead of recomputing their body.

The forward loop of a reverse-mode derivative stacks, per step, the values of
its body that change from step to step and cost a nonlinear op or a
contraction to recompute (`reverse._worth_storing`); the reverse loop replays
the body reading them. These tests check the structure (an LSTM's gradient
evaluates no nonlinear function more often than its objective, and its reverse
loop evaluates none; values that do not change from step to step, or that the
adjoint does not read, are not stored) and the derivatives of loops that store
residuals, nested and with tuple states, over 0, 1 and 3 items, to second
order, against central differences.
"""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pytest

import catad
from catad.compiler.cost import ELEMENTWISE_COSTS, function_cost
from catad.compiler.simplify import binding_types
from catad.compiler.target import Block, Call, IfElse, LoopE, TargetFunction
from catad.compiler.types import ArrayType, Dim, TupleType

ROOT = Path(__file__).resolve().parent.parent
LSTM = (ROOT / "benchmarks" / "models" / "lstm.catad").read_text(encoding="utf-8")


def _function(source: str, name: str) -> TargetFunction:
    (fn,) = [f for f in catad.stages(source).optimised.functions if f.name == name]
    return fn


def _nonlinear_calls(block: Block) -> list[str]:
    """The primitives of `block` (loop bodies and branches included) that cost a nonlinear op."""
    found = []
    for bind in block.bindings:
        match bind.expr:
            case Call(prim) if prim in ELEMENTWISE_COSTS and ELEMENTWISE_COSTS[prim].nonlinear:
                found.append(prim.name)
            case LoopE(body=body):
                found += _nonlinear_calls(body)
            case IfElse(then=then, orelse=orelse):
                found += _nonlinear_calls(then) + _nonlinear_calls(orelse)
    return found


def _top_loops(fn: TargetFunction) -> list[LoopE]:
    return [bind.expr for bind in fn.body.bindings if isinstance(bind.expr, LoopE)]


def _stacked_items(fn: TargetFunction, loop: LoopE) -> int:
    """How many arrays the loop's state holds (the state, and any residuals beside it)."""
    state = binding_types(fn)[loop.acc]
    return len(state.items) if isinstance(state, TupleType) else 1


# ---- structure ------------------------------------------------------------------------------


def test_the_lstm_gradient_evaluates_each_nonlinear_function_as_often_as_the_objective_but_tanh_cell():
    # tanh(cell), cell being the new state's row that the forward loop stores, is
    # recomputed by the reverse loop (one call a step) rather than stacked beside the
    # states: (c - 1) * l steps of b more tanh
    sizes = {"l": 2, "b": 3, "c": 6}
    objective = function_cost(_function(LSTM, "lstm"), sizes)
    gradient = function_cost(_function(LSTM, "lstm_grad"), sizes)
    steps = (sizes["c"] - 1) * sizes["l"]
    assert gradient.nonlinear == objective.nonlinear + steps * sizes["b"], (gradient, objective)


def test_the_lstm_reverse_loop_reads_its_gates_instead_of_recomputing_them():
    fn = _function(LSTM, "lstm_grad")
    forward, *_, reverse = _top_loops(fn)
    assert forward is not reverse
    assert _nonlinear_calls(forward.body), "the forward loop computes the gates"
    assert _nonlinear_calls(reverse.body) == ["tanh"], "the reverse loop recomputes a gate"
    # the forward loop stacks the states and the four gates of each layer; tanh(cell) is
    # recomputed from the stored state's row
    assert _stacked_items(fn, forward) == 5
    text = catad.to_python(LSTM)
    reverse_code = text[text.index("def lstm_grad("):]
    reverse_code = reverse_code[re.search(r"for \w+ in range\(c - 1\):", reverse_code).start():]
    assert "_sigmoid(" not in reverse_code
    (tanh,) = re.findall(r"np\.tanh\((\w+)\)", reverse_code)
    assert re.search(rf"{tanh} = ss\[\w+, \w+, 1\]", reverse_code), "tanh of the stored cell"


def test_the_lstm_gradient_makes_no_cotangent_of_all_its_states():
    # the loss reads the stacked states at one layer: their cotangent, zeros but for that
    # layer, is read by the reverse loop row by row, never made (simplify.row_of_scatter)
    fn = _function(LSTM, "lstm_grad")
    (states,) = {t.shape for t in binding_types(fn).values()
                 if isinstance(t, ArrayType) and t.rank == 4 and t.shape[1:3] == (Dim.of("l"), Dim(2))}
    made = [b for b in fn.body.bindings if isinstance(b.expr, Call) and b.expr.prim.name == "zeros"
            and dict(b.expr.params)["shape"] == states]
    assert not made, made


def test_a_value_that_does_not_change_from_step_to_step_is_not_stored():
    # exp(v) is the same at every step: stacking it would cost T copies of v
    fn = _function("fn f(v: f64[m], xs: f64[n]) -> f64 {\n"
                   "    sum(fold(v, xs, |s, p| tanh(s * p) * exp(v)))\n}\n"
                   "fn g = grad(f, wrt = v);\n", "g")
    forward = _top_loops(fn)[0]
    state = binding_types(fn)[forward.acc]
    assert isinstance(state, TupleType) and len(state.items) == 2, state  # the state, tanh(s * p)


@pytest.mark.parametrize("body", ["sin(s * p + w)", "s * p + w", "tanh(s * p + w)"])
def test_a_residual_the_reverse_loop_does_not_read_is_not_stored(body):
    # sin's adjoint reads its argument (cos(s * p + w)), not sin's value; tanh's value is
    # the new state, stored already; the linear body needs no forward loop at all
    fn = _function(f"fn f(w: f64, xs: f64[n]) -> f64 {{\n    fold(w, xs, |s, p| {body})\n}}\n"
                   "fn g = grad(f, wrt = w);\n", "g")
    *forward, _ = _top_loops(fn)
    assert len(forward) == (body != "s * p + w")
    assert all(isinstance(binding_types(fn)[loop.acc], ArrayType) for loop in forward), \
        "a residual stacked beside the states"


@pytest.mark.parametrize("body, stacked", [
    # exp of the state before the step: the reverse step has the state, one call makes it
    ("s * exp(s) + p", 1),
    # tanh of the new state's item 1, which the forward loop stores as a state anyway
    ("{ let (h, c) = s; let cell = c * p + h; (tanh(cell) * h, cell) }", 2),
    # a contraction of the state before stays stored: one product costs more than the step
    ("s * (W @ s) + p", 2),
])
def test_a_special_function_of_values_the_reverse_step_has_is_made_again_not_stored(body, stacked):
    init = "(u, u)" if body.startswith("{") else "u"
    result = "let (h, c) = last; sum(h * c)" if body.startswith("{") else "sum(last)"
    fn = _function(f"fn f(u: f64[m], W: f64[m, m], xs: f64[n]) -> f64 {{\n"
                   f"    let last = fold({init}, xs, |s, p| {body});\n    {result}\n}}\n"
                   "fn g = grad(f, wrt = u);\n", "g")
    forward = _top_loops(fn)[0]
    assert _stacked_items(fn, forward) == stacked


# ---- derivatives --------------------------------------------------------------------------

BODIES = {
    # gates and tanh stored in a tuple-state fold; an inner scan's residuals stored by the
    # fold around it
    "gated-and-nested": """
    let (h, c) = fold((u, u * 0.5), xs, |s, p| {
        let (h, c) = s;
        let forget = sigmoid(h * w + p);
        let ingate = sigmoid(h * p - w);
        let change = tanh(h + u * p);
        let cell = c * forget + ingate * change;
        (exp(-0.5 * cell * cell) * h + tanh(cell), cell)
    });
    let nested = fold(u, xs, |t, q| t * 0.5 + sum(scan(t, u, |r, y| tanh(r * y + q) * exp(-r * r))));
    sum(h * c) + sum(nested * nested)""",
    # a state of nested tuples (flattened into the scan's items beside the residuals)
    "nested-tuple-state": """
    let (ab, c) = fold(((w, 0.5), u), xs, |s, p| {
        let (ab, c) = s;
        let (a, b) = ab;
        ((tanh(a * p + b), exp(-b * b) + p), c * sigmoid(a + p))
    });
    let (a, b) = ab;
    a * b + sum(c)""",
    # three loops deep: the innermost residuals stored by each loop around them
    "three-deep": """
    fold(w, xs, |s, p| s * 0.5 + sum(scan(u * s, u, |r, y|
        r * 0.7 + sum(fold(r * y, u, |q, z| tanh(q * z + p))))))""",
}

DERIVED = """
fn g = grad(f, wrt = w);
fn gu = grad(f, wrt = u);
fn h = grad(g, wrt = w);
fn jg = jvp(gu, wrt = w);
"""

STEP = 1e-5


def _source(body: str) -> str:
    return f"fn f(w: f64, u: f64[m], x: f64[n]) -> f64 {{\n    let xs = x * w + 0.1;{body}\n}}\n{DERIVED}"


@pytest.fixture(scope="module", params=sorted(BODIES))
def model(request):
    return catad.compile(_source(BODIES[request.param]))


def _along_w(fn, w, u, x):
    return (fn(w + STEP, u, x) - fn(w - STEP, u, x)) / (2 * STEP)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_derivatives_through_loops_that_store_residuals_match_central_differences(model, n):
    rng = np.random.default_rng(n)
    w, u, x = 0.7, 0.5 * rng.standard_normal(3), rng.standard_normal(n)
    np.testing.assert_allclose(model.g(w, u, x), _along_w(model.f, w, u, x), rtol=1e-6, atol=1e-7)
    along_u = np.array([(model.f(w, u + STEP * d, x) - model.f(w, u - STEP * d, x)) / (2 * STEP)
                        for d in np.eye(3)])
    np.testing.assert_allclose(model.gu(w, u, x), along_u, rtol=1e-6, atol=1e-7)
    # second order: reverse over a reverse loop that replays stored residuals, and forward over it
    np.testing.assert_allclose(model.h(w, u, x), _along_w(model.g, w, u, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.jg(w, u, x, 1.0)[1], _along_w(model.gu, w, u, x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("body", sorted(BODIES))
def test_the_models_store_residuals(body):
    # (so that the test above differentiates through stored residuals)
    fn = _function(_source(BODIES[body]), "g")
    forward = _top_loops(fn)[0]
    assert isinstance(binding_types(fn)[forward.acc], TupleType) and _stacked_items(fn, forward) >= 2
