"""Like applications of a special function in a loop's body, made as one
(compiler/grouped_applications.py): where they group, where they must not, and
that the grouped code computes what the program means."""

from __future__ import annotations

import re

import numpy as np
import pytest

import catad
from catad.compiler.lower import load_module
from catad.compiler.unary_eval import evaluate


def _loop_body(source: str) -> str:
    text = catad.to_python(source)
    return text[text.index("    for "):]


GATES = """
fn f(xs: f64[t, n], w: f64[3, n]) -> f64[n] {
    fold(zeros(n), xs, |h, x| {
        let a = sigmoid(x * w[0] + h);
        let b = sigmoid(x * w[1] - h);
        let c = tanh(x + h);
        let d = sigmoid(x * w[2]);
        a * c + b * d
    })
}
"""


def test_three_sigmoids_of_a_step_are_one_call_on_their_stack():
    body = _loop_body(GATES)
    assert len(re.findall(r"_sigmoid\(", body)) == 1, body
    made = re.search(r"(\w+) = _sigmoid\(np\.array\(\[x \* w\[0\] \+ h, x \* w\[1\] - h, x \* w\[2\]\]\)\)\n", body)
    assert made, body
    for k, name in enumerate("abd"):
        assert f"        {name} = {made.group(1)}[{k}]\n" in body, body
    assert "np.tanh(x + h)" in body  # alone of its kind: as it was


@pytest.mark.parametrize("source, why", [
    ("fn f(xs: f64[t, n]) -> f64[n] { fold(zeros(n), xs, |h, x| sigmoid(sigmoid(x + h) + h)) }",
     "the second reads the first"),
    ("fn f(xs: f64[t, n]) -> f64 { fold(0.0, xs, |h, x| sigmoid(h) + sum(sigmoid(x))) }",
     "a scalar and an array"),
    ("fn f(x: f64[n], y: f64[n]) -> f64[n] { sigmoid(x) + sigmoid(y) }",
     "no loop: large arrays, where the stack is one more pass"),
    ("fn f(xs: f64[t, n]) -> f64[n] { fold(zeros(n), xs, |h, x| exp(x) + sigmoid(h)) }",
     "two functions"),
])
def test_applications_that_must_stay_apart(source, why):
    text = catad.to_python(source)
    assert "np.array([" not in text and "np.stack(" not in text, f"{why}:\n{text}"


def test_a_group_waits_for_its_last_argument_and_comes_before_its_first_reader():
    # b's argument reads a: b cannot join a; d's can, so a and d go together, made
    # after d's argument and before a's first reader (b's argument)
    source = """
fn f(xs: f64[t, n]) -> f64[n] {
    fold(zeros(n), xs, |h, x| {
        let a = exp(x - h);
        let d = exp(h * 0.25);
        let b = exp(a * 0.5);
        a + b + d
    })
}
"""
    body = _loop_body(source)
    assert len(re.findall(r"np\.exp\(", body)) == 2, body
    assert body.index("np.array([x - h, h * 0.25])") < body.index("np.exp(a * 0.5)"), body


@pytest.mark.parametrize("source", [GATES, """
fn f(xs: f64[t, n], w: f64[3, n]) -> f64 {
    sum(scan(zeros(n), xs, |h, x| {
        let a = tanh(x * w[0] + h);
        let b = tanh(x * w[1] - h);
        a * b + tanh(x)
    }))
}
fn f_grad = grad(f);
"""])
def test_grouped_code_computes_what_the_program_means(source):
    stages = catad.stages(source)
    module = load_module(catad.to_python(source), "grouped")
    rng = np.random.default_rng(3)
    for length in (0, 1, 4):
        args = (rng.standard_normal((length, 5)), rng.standard_normal((3, 5)))
        for fn in stages.unary.functions:
            expected, got = evaluate(fn, args), getattr(module, fn.name)(*args)
            for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                            got if isinstance(got, tuple) else (got,)):
                np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
