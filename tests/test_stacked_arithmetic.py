"""A stack of like elementwise arithmetic in a loop's body, made as arithmetic on
stacks (compiler/stacked_arithmetic.py): where it is, where it must not be, and
that the code computes what the program means on both backends."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import catad
from catad.compiler.lower import load_module
from catad.compiler.unary_eval import evaluate

MODELS = Path(__file__).resolve().parent.parent / "benchmarks" / "models"


def _loop_body(source: str, function: str = "f") -> str:
    """The code (not the comments quoting the source) from `function`'s first loop on."""
    text = catad.to_python(source)
    text = text[text.index(f"def {function}("):]
    return "\n".join(line for line in text[text.index("    for "):].splitlines()
                     if not line.lstrip().startswith("#"))


GATES = """
fn f(xs: f64[t, n], w: f64[4, n], b: f64[4, n]) -> f64 {
    sum(fold(zeros(n), xs, |h, x| {
        let f = sigmoid(x * w[0] + b[0]);
        let i = sigmoid(h * w[1] + b[1]);
        let o = sigmoid(x * w[2] + b[2]);
        f * h + i * o + tanh(h * w[3])
    }))
}
fn f_grad = grad(f, wrt = (w, b));
"""


def test_the_gates_pre_activations_are_a_stack_of_inputs_times_rows_plus_rows():
    body = _loop_body(GATES)
    # one stack made afresh; the weights' and biases' first three rows as views
    assert "_sigmoid(np.array([x, h, x]) * w[:3] + b[:3])" in body, body
    assert "w[0]" not in body and "b[2]" not in body, body
    assert "np.tanh(h * w[3])" in body, body  # alone of its kind: as it was


def test_every_row_of_an_array_is_the_array():
    source = GATES.replace("w: f64[4, n], b: f64[4, n]", "w: f64[3, n], b: f64[3, n]").replace(
        " + tanh(h * w[3])", "")
    assert "_sigmoid(np.array([x, h, x]) * w + b)" in _loop_body(source)


def test_an_atom_shared_by_every_item_is_kept_as_it_is():
    source = """
fn f(xs: f64[t, n], w: f64[2, n]) -> f64[n] {
    fold(zeros(n), xs, |h, x| {
        let a = sigmoid(1.0 - h * w[0]);
        let b = sigmoid(1.0 - h * w[1]);
        a * b + x
    })
}
"""
    assert "_sigmoid(1.0 - h * w)" in _loop_body(source)


def test_a_stack_the_block_has_made_is_read_again():
    # the LSTM's reverse layer step: the weights' cotangent rows are the inputs
    # times the biases' cotangent rows, which it stacks already
    text = catad.to_python((MODELS / "lstm.catad").read_text(encoding="utf-8"))
    gradient = text[text.index("def lstm_grad("):]
    assert "w_bar = np.array([inp_2, hidden_2, inp_2, hidden_2]) * bias_bar\n" in gradient, gradient


def test_like_arithmetic_beside_the_stack_joins_it():
    # the LSTM's fourth gate goes through tanh, not sigmoid: its pre-activation
    # joins the stack of the other three, whose operands become whole arrays
    text = catad.to_python((MODELS / "lstm.catad").read_text(encoding="utf-8"))
    for function in ("lstm", "lstm_grad"):
        code = text[text.index(f"def {function}("):]
        made = re.search(r"(t\d+) = np\.array\(\[inp, hidden, inp, hidden\]\) \* w \+ bias\n", code)
        assert made, code
        assert f"_sigmoid({made.group(1)}[:3])" in code and f"change = np.tanh({made.group(1)}[3])" in code, code


@pytest.mark.parametrize("gates, why", [
    ("let c = x * w[3] + b[3]; let e = tanh(c); let f = sigmoid(x * w[0] + b[0]); "
     "let i = sigmoid(e * w[1] + b[1]);",
     "it is read before the stack (by what the stack reads)"),
    ("let f = sigmoid(x * w[0] + b[0]); let i = sigmoid(h * w[1] + b[1]); let c = (f * h) * w[3] + b[3];",
     "it reads what is made from the stack"),
])
def test_like_arithmetic_that_cannot_join(gates, why):
    source = """
fn f(xs: f64[t, n], w: f64[4, n], b: f64[4, n]) -> f64[n] {
    fold(zeros(n), xs, |h, x| {
        GATES
        let o = sigmoid(x * w[2] + b[2]);
        f * h + i * o + tanh(c)
    })
}
""".replace("GATES", gates)
    body = _loop_body(source)
    assert re.search(r"np\.array\(\[\w+, \w+, \w+\]\) \* w\[:3\] \+ b\[:3\]", body), f"{why}:\n{body}"
    assert re.search(r"c = \w+ \* w\[3\] \+ b\[3\]", body), f"{why}:\n{body}"


ROWS_OF_A_STACK = """
fn f(xs: f64[t, n], w: f64[2, n]) -> f64[2, n] {
    fold(zeros((2, n)), xs, |s, x| {
        let a = sin(x + s[0]);
        let c = cos(x - s[1]);
        let st = stack((a, c));
        BODY
        st * s + stack((p + q, p - q))
    })
}
"""


def test_like_arithmetic_of_the_rows_of_a_stack_is_the_rows_of_its_arithmetic():
    body = _loop_body(ROWS_OF_A_STACK.replace("BODY", "let p = a * w[0]; let q = c * w[1];"))
    made = re.search(r"(t\d+) = st \* w\n", body)
    assert made, body
    assert f"p = {made.group(1)}[0]" in body and f"q = {made.group(1)}[1]" in body, body
    # the LSTM's reverse step: each gate's cotangent times its row of the weights
    text = catad.to_python((MODELS / "lstm.catad").read_text(encoding="utf-8"))
    gradient = text[text.index("def lstm_grad("):]
    made = re.search(r"(t\d+) = bias_bar \* w_2\n", gradient)
    assert made, gradient
    assert f"hidden_bar = {made.group(1)}[3] + {made.group(1)}[1]\n" in gradient, gradient
    assert f"inp_bar = {made.group(1)}[2] + {made.group(1)}[0]\n" in gradient, gradient


@pytest.mark.parametrize("body, why", [
    ("let p = a * w[0]; let q = c * x;", "the other operands' stack would be made afresh"),
    ("let p = a * w[1]; let q = c * w[0];", "the rows are in another order"),
    ("let p = a * w[0]; let q = c + w[1];", "not one op"),
])
def test_arithmetic_of_rows_of_a_stack_that_stays(body, why):
    source = ROWS_OF_A_STACK.replace("BODY", body)
    assert "p = a * w[" in _loop_body(source), why


def test_arithmetic_of_rows_of_a_stack_that_the_stack_reads_stays():
    # p feeds c, an item of the stack: p cannot be a row of a product of the stack
    source = ROWS_OF_A_STACK.replace("let c = cos(x - s[1]);", "").replace(
        "BODY", "").replace("let st = stack((a, c));",
                            "let p = a * w[0]; let c = cos(x - p); let st = stack((a, c)); let q = c * w[1];")
    body = _loop_body(source)
    assert "p = a * w[0]" in body and "st * w" not in body, body


@pytest.mark.parametrize("source, why", [
    ("fn f(x: f64[n], y: f64[n], w: f64[2, n]) -> f64[2, n] { stack((x * w[0], y * w[1])) }",
     "no loop: large arrays, where the stack is one more pass"),
    ("fn f(xs: f64[t, n], w: f64[2, n]) -> f64[n] { fold(zeros(n), xs, |h, x| "
     "{ let s = stack((x * w[0], h + w[1])); s[0] * s[1] }) }",
     "two ops"),
    ("fn f(xs: f64[t, n], w: f64[2, n]) -> f64[n] { fold(zeros(n), xs, |h, x| "
     "{ let s = stack((x * h, w[0] * x)); s[0] - s[1] }) }",
     "both operand stacks made afresh: the calls do not go down"),
    ("fn f(xs: f64[t, n], w: f64[2, n], c: f64) -> f64[n] { fold(zeros(n), xs, |h, x| "
     "{ let s = stack((x * c, h * w[1])); s[0] - s[1] }) }",
     "a scalar and an array on one side"),
    ("fn f(xs: f64[t, n], w: f64[2, n]) -> f64[n] { fold(zeros(n), xs, |h, x| "
     "{ let s = stack((x * 2.0, h * 3.0)); s[0] - s[1] }) }",
     "literals: weak, their stack would be f64 where they take their partner's type"),
    ("fn f(xs: f64[t, n], w: f64[2, n]) -> f64[n] { fold(zeros(n), xs, |h, x| "
     "{ let a = x * w[0]; let s = stack((a, h * w[1])); s[0] - s[1] * a }) }",
     "an item read again elsewhere: its work stays"),
    ("fn f(xs: f64[t, n], w: f64[2, n], m: f64[2, n]) -> f64[n] { fold(zeros(n), xs, |h, x| "
     "{ let s = stack((x * w[0], h * m[1])); s[0] - s[1] }) }",
     "rows of two arrays on one side, and the other side made afresh"),
])
def test_stacks_that_must_stay_as_they_are(source, why):
    text = catad.to_python(source)
    assert re.search(r"np\.array\(\[[^\]]* [*+-] ", text), f"{why}:\n{text}"


def test_rows_counted_down_or_apart_are_no_slice():
    source = """
fn f(xs: f64[t, n], w: f64[3, n]) -> f64[n] {
    fold(zeros(n), xs, |h, x| {
        let s = stack((x * w[2], h * w[0], x * w[1]));
        s[0] - s[1] * s[2]
    })
}
"""
    assert "w[:" not in _loop_body(source)


def test_the_stack_of_an_operand_of_higher_rank_is_not_misaligned():
    # m * x_i: m of (k, n) broadcast against rows of n; stacking the rows would
    # line up their new axis with m's first: kept as it was
    source = """
fn f(xs: f64[t, n], m: f64[k, n], w: f64[2, n]) -> f64[n] {
    fold(zeros(n), xs, |h, x| {
        let s = stack((m * w[0], m * w[1]));
        h + sum(s, axis = 1)[0] * x
    })
}
"""
    stages = catad.stages(source)
    module = load_module(stages.python, "misaligned")
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((2, 4)))
    np.testing.assert_allclose(module.f(*args), evaluate(stages.vectorised.functions[0], args), rtol=1e-12)


INTEGERS = """
fn f(xs: i64[t, n], k: i64[3, n]) -> i64[n] {
    fold(xs[0], xs, |h, x| {
        let s = stack((x * k[0] + h, h * k[1] + h, x * k[2] + h));
        s[0] - s[1] * s[2]
    })
}
"""

INTEGERS_TIMES_FLOATS = """
fn f(xs: i64[t, n], w: f64[2, n]) -> f64[n] {
    fold(zeros(n), xs, |h, x| {
        let s = stack((x * w[0] + 1, (x + 1) * w[1] + 1));
        h * s[0] - s[1]
    })
}
"""


@pytest.mark.parametrize("source, made", [
    (INTEGERS, "s = np.array([x, h, x]) * k + h"),
    (INTEGERS_TIMES_FLOATS, "s = np.array([x, x + 1]) * w + 1"),  # i64 rows times f64 rows, plus a weak 1
])
def test_integers_and_floats_keep_their_types(source, made):
    assert made in _loop_body(source)


LSTM = (MODELS / "lstm.catad").read_text(encoding="utf-8")


def _lstm_args(rng):
    l, c, b = 2, 4, 5
    return (rng.random((l, 2, 4, b)), rng.random((3, b)), rng.random((l, 2, b)),
            rng.integers(0, 2, (c, b)).astype(np.float64))


CASES = {
    "gates": (GATES, lambda rng: (rng.standard_normal((4, 5)), rng.standard_normal((4, 5)),
                                  rng.standard_normal((4, 5)))),
    "integers": (INTEGERS, lambda rng: (rng.integers(-3, 3, (4, 5)), rng.integers(-3, 3, (3, 5)))),
    "integers times floats": (INTEGERS_TIMES_FLOATS, lambda rng: (rng.integers(-3, 3, (4, 5)),
                                                                  rng.standard_normal((2, 5)))),
    "lstm": (LSTM, _lstm_args),
    "rows of a stack": (ROWS_OF_A_STACK.replace("BODY", "let p = a * w[0]; let q = c * w[1];"),
                        lambda rng: (rng.standard_normal((4, 5)), rng.standard_normal((2, 5)))),
}


def _strict(value):
    return pytest.importorskip("array_api_strict").asarray(value)


def _jax(value):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax.numpy.asarray(value)


# backend, and how the inputs are made (the array-API module's loops are `lax.scan` on JAX)
RUNS = {"numpy": ("numpy", np.asarray), "array-api/numpy": ("array-api", np.asarray),
        "array-api/strict": ("array-api", _strict), "array-api/jax": ("array-api", _jax)}


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_code_computes_what_the_program_means(case, run):
    backend, convert = RUNS[run]
    if backend == "array-api":
        pytest.importorskip("array_api_compat")
    source, make = CASES[case]
    stages = catad.stages(source, backend=backend)
    assert "np.array([" in stages.python or "xp.stack([" in stages.python
    module = load_module(stages.python, f"stacked_{case.replace(' ', '_')}")
    for seed in range(3):
        args = make(np.random.default_rng(seed))
        for fn in stages.vectorised.functions:
            expected, got = evaluate(fn, args), getattr(module, fn.name)(*map(convert, args))
            for e, g in zip(_leaves(expected), _leaves(got), strict=True):
                g = np.asarray(g)
                assert g.dtype == np.asarray(e).dtype, (fn.name, g.dtype)
                np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def _leaves(value) -> list:
    return [leaf for item in value for leaf in _leaves(item)] if isinstance(value, tuple) else [value]
