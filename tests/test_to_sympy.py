"""to_sympy: the target IR at concrete sizes as SymPy, the oracle of the derivatives.

* every primitive has a translation; every differentiable primitive's tangent
  and transposed-Jacobian rules agree with `sympy.diff` of its translation
  (the one-primitive cases of test_derivative_rules, at random points);
* values agree with the generated code for programs that use symbolic
  branches, comparisons, bool logic and counts, integer conversions, loops;
* sharing: a loop unrolls to a graph linear in its length; limits and time
  budgets raise `TooLargeForSympy`; an index computed from real inputs is
  refused with an error naming the primitive;
* `expressions` gives the SymPy expression one would write by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import catad
from catad.compiler import primitives as P
from catad.compiler.errors import UnsupportedError
from catad.compiler.forward import jvp_function
from catad.compiler.jvp_rules import JVP_RULES
from catad.compiler.reverse import vjp_function
from catad.compiler.to_sympy import (SYMPY, Kind, SymbolicFunction, TooLargeForSympy, evaluate, expressions,
                                     input_value, partial_derivative, placeholder, tangent, to_sympy)
from catad.compiler.to_target import to_target
from catad.compiler.unary_eval import evaluate as evaluate_unary
from catad.compiler.vjp_rules import VJP_RULES

from test_derivative_rules import CASES, Case, function


def test_every_primitive_has_a_sympy_translation():
    assert set(SYMPY) == set(P.ALL)


def _real_slots(value) -> np.ndarray:
    leaves = value if isinstance(value, tuple) else (value,)
    return np.concatenate([leaf.ids.ravel() for leaf in leaves])


def _sympy_jacobian(sf: SymbolicFunction, wrt: tuple[int, ...], args: list) -> np.ndarray:
    """[result entries, entries of the wrt parameters]: SymPy's partial derivatives."""
    one = sf.graph.constant(1.0, Kind.REAL)
    columns = []
    for k in wrt:
        for slot in sf.inputs[k].ids.ravel():
            dot = tangent(sf.graph, sf.result, {int(slot): one})
            column = evaluate(SymbolicFunction("d", sf.params, sf.inputs, dot, sf.graph), args)
            columns.append(np.ravel(column))
    return np.stack(columns, axis=1)


def _translate(case: Case, xs: list) -> SymbolicFunction:
    target = to_target(function(case.prim, case.ps, case.types))
    fixed = {p: x for (p, t), x in zip(target.params, xs) if not t.dtype.is_float}
    return to_sympy(target, {}, fixed)


def _disagreements(case: Case) -> list[str]:
    """The modes ("forward": J v, "reverse": J^T w) whose rules disagree with the
    Jacobian SymPy differentiates from the primitive's translation, at a random point."""
    rng = np.random.default_rng(7)
    fn = function(case.prim, case.ps, case.types)
    xs = case.sample(rng)
    sf = _translate(case, xs)
    double = all(t.dtype.name == "F64" for t in case.types if t.dtype.is_float)
    tolerance, derivative_tolerance = (1e-12, 1e-9) if double else (1e-6, 1e-6)
    np.testing.assert_allclose(np.asarray(evaluate(sf, xs), np.float64),
                               np.asarray(evaluate_unary(fn, xs), np.float64), rtol=tolerance, atol=tolerance)
    jacobian = _sympy_jacobian(sf, case.wrt, xs)
    vs = [rng.standard_normal(np.shape(xs[k])).astype(np.asarray(xs[k]).dtype) for k in case.wrt]
    _, tangent_value = evaluate_unary(jvp_function(fn, case.wrt, "f_jvp"), [*xs, *vs])
    w = rng.standard_normal(np.shape(tangent_value))
    _, grads = evaluate_unary(vjp_function(fn, case.wrt, "f_vjp", cotangent_param=True), [*xs, w])
    grads = grads if len(case.wrt) > 1 else (grads,)
    results = {
        "forward": (np.ravel(tangent_value), jacobian @ np.concatenate([np.ravel(v) for v in vs])),
        "reverse": (np.concatenate([np.ravel(g) for g in grads]), jacobian.T @ np.ravel(w)),
    }
    return [mode for mode, (actual, expected) in results.items()
            if not np.allclose(actual, expected, rtol=derivative_tolerance, atol=derivative_tolerance)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_derivative_rules_match_sympy(case):
    assert _disagreements(case) == []


SOFTPLUS = next(c for c in CASES if c.prim is P.BY_NAME["softplus"])


def test_a_broken_reverse_rule_is_caught(monkeypatch):
    """softplus' transposed Jacobian made the identity (as if softplus(x) were x)."""
    monkeypatch.setitem(VJP_RULES, SOFTPLUS.prim, lambda b, alg, ps, args, out, ct, term: (ct,))
    assert _disagreements(SOFTPLUS) == ["reverse"]


def test_a_broken_forward_rule_is_caught(monkeypatch):
    """softplus' tangent rule made the identity."""
    monkeypatch.setitem(JVP_RULES, SOFTPLUS.prim, lambda b, alg, ps, primals, tangents, term: (
        b.prim(SOFTPLUS.prim, ps, *primals), tangents[0]))
    assert _disagreements(SOFTPLUS) == ["forward"]


# ---- translated programs against the generated code ----------------------------------------

PROGRAMS = """
fn comparisons(x: f64[n], y: f64[n]) -> f64[n] {
    f64(x < y) + 2.0 * f64(x <= y) + 4.0 * f64(x > y) + 8.0 * f64(x >= y) + 16.0 * f64(x == x)
      + 32.0 * f64(x != y)
}
fn logic(x: f64[n], y: f64[n]) -> f64[n] {
    let a = x > 0.0;
    let b = y > 0.0;
    f64(a and b) + 2.0 * f64(a or b) + 4.0 * f64(a xor b) + 8.0 * f64(not a) + 16.0 * f64(a + b)
      + 32.0 * f64(a * b)
}
fn counts(x: f64[n, m], y: f64[n, m]) -> f64[n] {
    f64(parity(x > 0.0, axis = 1)) + 2.0 * f64(popcount_le(x > 0.0, y > 0.0))
      + 4.0 * f64(max(x > y, axis = 1)) + 8.0 * f64(min(x > y, axis = 1))
      + 16.0 * f64(sum(x > 0.0, axis = 1)) + mean(x > y, axis = 1)
}
fn scans(x: f64[n, m], y: f64[n, m]) -> f64[n, m] {
    cumsum(x, axis = 0) + cumprod(y, axis = -1) + f64(cumsum(x > 0.0, axis = 1))
      + 2.0 * f64(cumprod(y > 0.0, axis = 0))
}
fn integers(x: f64[n], k: i64) -> f64[n] {
    f64(i64(x * 3.0)) + x // 0.7 + x % 0.9 + sign(x) + f64(k) * x + f64(bool(x)) + f64(i64(x > 0.0) * 3 // 2)
}
fn branches(x: f64[n]) -> f64 {
    let s = if x[0] > 0.0 { sum(x * x) } else { -sum(x) };
    let (a, b) = if x[1] > 0.0 { (x[0], x[1]) } else { (x[1], x[0]) };
    s + sum(where(x > 0.0, x, 2.0 * x)) + a - b
}
fn loops(x: f64[n], W: f64[n, n]) -> f64[n] {
    let h = fold(x, for i in 0..3 { i }, |acc, t| if sum(acc) > 0.0 { tanh(W @ acc) } else { acc * f64(t) });
    h + scan(0.0, x, |acc, v| acc * 0.5 + v * v)
}
"""


@pytest.fixture(scope="module")
def programs():
    return catad.stages(PROGRAMS), catad.compile(PROGRAMS)


@pytest.mark.parametrize("name", ["comparisons", "logic", "counts", "scans", "integers", "branches",
                                  "loops"])
def test_translations_agree_with_the_generated_code(programs, name):
    stages, module = programs
    target = next(fn for fn in stages.target.functions if fn.name == name)
    sizes = {"n": 3, "m": 4}
    rng = np.random.default_rng(3)
    sf = to_sympy(target, {s.name: sizes[s.name] for s in target.sizes}, {"k": 2})
    for _ in range(4):  # several points, so that both branches of each `if` are taken
        args = [rng.standard_normal(tuple(d.const for d in t.shape)) if t.dtype.is_float else 2
                for _, t in sf.params]
        np.testing.assert_allclose(evaluate(sf, args), getattr(module, name)(*args), rtol=1e-12, atol=1e-12)


def test_a_scan_over_no_steps_is_empty():
    source = "fn f(x: f64[n]) -> f64[n - 1, 2] { scan(zeros(2), x[1:], |a, v| a + v) }"
    sf = to_sympy(catad.stages(source).target.functions[0], {"n": 1})
    assert evaluate(sf, [np.ones(1)]).shape == (0, 2)


def test_a_branch_on_real_inputs_is_piecewise(programs):
    stages, _ = programs
    source = "fn f(x: f64) -> f64 { if x > 0.0 { x * x } else { -x } }"
    sf = to_sympy(catad.stages(source).target.functions[0], {})
    (expr,) = [expressions(sf)[()]]
    assert expr.has(sympy.Piecewise)
    x = sf.graph.inputs[int(sf.inputs[0].ids)]
    assert sympy.diff(expr, x).subs(x, 2.0) == 4.0
    one = sf.graph.constant(1.0, Kind.REAL)
    dot = SymbolicFunction("d", sf.params, sf.inputs, tangent(sf.graph, sf.result, {int(sf.inputs[0].ids): one}),
                           sf.graph)
    assert evaluate(dot, [2.0]) == 4.0 and evaluate(dot, [-1.0]) == -1.0


def test_expressions_are_what_one_writes_by_hand():
    stages = catad.stages("fn predict(w: f64[d], b: f64, X: f64[n, d]) -> f64[n] { sigmoid(X @ w + b) }")
    sf = to_sympy(stages.target.functions[0], {"d": 2, "n": 1})
    (entry,) = expressions(sf)
    w0, w1, b, x0, x1 = sympy.symbols("w_0 w_1 b X_0_0 X_0_1", real=True)
    assert sympy.simplify(entry - 1 / (1 + sympy.exp(-(x0 * w0 + x1 * w1 + b)))) == 0


def test_tangent_parameters_are_inputs_of_their_own():
    stages = catad.stages("fn f(x: f64[2]) -> f64 { sum(exp(x)) }")
    sf = to_sympy(stages.target.functions[0], {})
    dot = input_value(sf.graph, "x_dot", sf.params[0][1])
    seeds = dict(zip(sf.inputs[0].ids.tolist(), dot.ids.tolist()))
    jvp = SymbolicFunction("j", sf.params + (("x_dot", sf.params[0][1]),), sf.inputs + (dot,),
                           tangent(sf.graph, sf.result, seeds), sf.graph)
    x, v = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    assert evaluate(jvp, [x, v]) == pytest.approx(np.exp(x) @ v)


# ---- sharing, limits, what cannot be expressed ---------------------------------------------

RNN = "fn rnn(W: f64[h, h], xs: f64[t, h]) -> f64[h] { fold(zeros(h), xs, |s, x| tanh(W @ s + x)) }"


def test_loops_unroll_to_a_graph_linear_in_their_length():
    """Every state reads the previous one by its slot: no expression swell, so
    40 steps cost twice 20, and a deep recurrence evaluates exactly."""
    target = catad.stages(RNN).target.functions[0]
    short, long = (to_sympy(target, {"h": 3, "t": t}) for t in (20, 40))
    assert long.graph.operations == 2 * short.graph.operations
    rng = np.random.default_rng(0)
    W, xs = 0.5 * rng.standard_normal((3, 3)), rng.standard_normal((40, 3))
    np.testing.assert_allclose(evaluate(long, [W, xs]), catad.compile(RNN).rnn(W, xs), rtol=1e-12)


def test_expressions_refuse_to_swell():
    """Materialised, a recurrence repeats every earlier state: its size is counted on
    the graph first, and refused past the bound before SymPy builds anything."""
    target = catad.stages(RNN).target.functions[0]
    sf = to_sympy(target, {"h": 3, "t": 12})
    with pytest.raises(TooLargeForSympy, match="grow past 20000 terms"):
        expressions(sf)
    assert expressions(to_sympy(target, {"h": 2, "t": 2}))[0].has(sympy.tanh)


def test_too_many_operations_raise():
    target = catad.stages(RNN).target.functions[0]
    with pytest.raises(TooLargeForSympy, match="more than 100 operations"):
        to_sympy(target, {"h": 3, "t": 50}, max_operations=100)


def test_the_time_budget_is_kept():
    target = catad.stages(RNN).target.functions[0]
    with pytest.raises(TooLargeForSympy, match="time budget"):
        to_sympy(target, {"h": 3, "t": 50}, time_budget=0.0)


def test_an_index_computed_from_real_inputs_is_refused_by_name():
    target = catad.stages("fn f(x: f64[n]) -> f64 { x[i64(x[0] > 0.0)] }").target.functions[0]
    with pytest.raises(UnsupportedError) as caught:
        to_sympy(target, {"n": 3})
    assert caught.value.message.startswith("index with an index computed from the real inputs")


def test_integer_valued_functions_have_zero_derivatives():
    """floor, sign: locally constant, so 0 (SymPy would leave them unevaluated)."""
    u0, u1 = placeholder(Kind.REAL, 0), placeholder(Kind.REAL, 1)
    kinds = (Kind.REAL, Kind.REAL)
    assert partial_derivative(sympy.floor(u0 / u1), kinds, 0) == 0
    assert partial_derivative(u0 - u1 * sympy.floor(u0 / u1), kinds, 0) == 1
    assert partial_derivative(u0 - u1 * sympy.floor(u0 / u1), kinds, 1) == -sympy.floor(u0 / u1)
    assert partial_derivative(sympy.sign(u0) * u1, kinds, 0) == 0
