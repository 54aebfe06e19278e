"""Error messages as a user meets them: each mistake below is compiled, and its
rendered report (`file:line:col`, the line, a caret, the sentence, notes, a
hint) is compared with tests/snapshots/errors/<case>.txt.

After changing a message on purpose, rewrite the snapshots and read the diff:

    CATAD_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_error_snapshots.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import catad
from catad.compiler.errors import CatadError

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots" / "errors"
UPDATE = os.environ.get("CATAD_UPDATE_SNAPSHOTS") == "1"

CASES = {
    # -- syntax --
    "syntax_missing_semicolon": "fn f(x: f64) -> f64 {\n    let y = x * 2.0\n    y\n}\n",
    "syntax_missing_else": "fn f(x: f64) -> f64 {\n    if x > 0.0 { x }\n}\n",
    "syntax_chained_comparison": "fn f(x: f64) -> bool {\n    0.0 < x < 1.0\n}\n",
    "syntax_bang": "fn f(x: bool) -> bool {\n    !x\n}\n",
    "syntax_block_without_value": "fn f(x: f64) -> f64 {\n    let y = x;\n}\n",
    "syntax_no_result_type": "fn f(x: f64) {\n    x\n}\n",
    "syntax_single_equals": "fn f(x: f64) -> bool {\n    x = 1.0\n}\n",
    "syntax_reserved_word": "fn f(in: f64) -> f64 {\n    in\n}\n",
    "syntax_unknown_element_type": "fn f(x: f46[n]) -> f64 {\n    sum(x)\n}\n",
    "syntax_python_element_type": "fn f(x: float[n]) -> f64 {\n    sum(x)\n}\n",
    "input_no_functions": "# nothing here yet\n",
    # -- names: did you mean --
    "name_misspelt_variable": "fn f(weights: f64[n]) -> f64 {\n    sum(wieghts)\n}\n",
    "name_misspelt_library_function": "fn f(x: f64[n]) -> f64[n] {\n    sigmod(x)\n}\n",
    "name_misspelt_user_function": ("fn predict(x: f64[n]) -> f64[n] { x }\n"
                                    "fn f(x: f64[n]) -> f64[n] {\n    predcit(x)\n}\n"),
    "name_misspelt_keyword": "fn f(x: f64[n, m]) -> f64[n] {\n    sum(x, axs = 1)\n}\n",
    "name_misspelt_dtype_keyword": "fn f(x: f64[n]) -> f64[n] {\n    zeros(n, dtype = f46)\n}\n",
    "name_unknown_size": "fn f(x: f64[n]) -> f64[n] {\n    for i in 0..m { x[i] }\n}\n",
    "name_result_size_unbound": "fn f(x: f64[n]) -> f64[m] {\n    x\n}\n",
    "name_defined_twice": "fn f(x: f64) -> f64 { x }\nfn f(y: f64) -> f64 { y }\n",
    "name_library_function_redefined": "fn sum(x: f64[n]) -> f64 { x[0] }\n",
    "name_size_rebound": "fn f(x: f64[n]) -> f64 {\n    let n = 2.0;\n    n\n}\n",
    "name_function_as_value": ("fn g(x: f64) -> f64 { x }\n"
                               "fn f(x: f64) -> f64 {\n    g + x\n}\n"),
    "name_value_as_function": "fn f(x: f64) -> f64 {\n    x(2.0)\n}\n",
    # -- calls of derived functions: checked at the call --
    "derived_call_arity": ("fn loss(w: f64[n], x: f64[n]) -> f64 { sum((w - x) * (w - x)) }\n"
                           "fn loss_grad = grad(loss, wrt = w);\n"
                           "fn step(w: f64[n], x: f64[n]) -> f64[n] {\n"
                           "    w - 0.1 * loss_grad(w)\n}\n"),
    "derived_call_argument_type": ("fn loss(w: f64[n], k: i64) -> f64 { sum(w * w) * f64(k) }\n"
                                   "fn loss_grad = grad(loss, wrt = w);\n"
                                   "fn step(w: f64[n], k: f64) -> f64[n] {\n"
                                   "    w - 0.1 * loss_grad(w, k)\n}\n"),
    "derived_call_argument_shape": ("fn loss(w: f64[n], x: f64[n]) -> f64 { sum((w - x) * (w - x)) }\n"
                                    "fn loss_grad = grad(loss, wrt = w);\n"
                                    "fn step(w: f64[n], x: f64[m]) -> f64[n] {\n"
                                    "    w - 0.1 * loss_grad(w, x)\n}\n"),
    "derived_call_recursion": ("fn f(x: f64) -> f64 {\n    x * g_grad(x)\n}\n"
                               "fn g(x: f64) -> f64 { sin(f(x)) }\n"
                               "fn g_grad = grad(g, wrt = x);\n"),
    "derived_made_from_itself": ("fn f(x: f64) -> f64 { x * x }\n"
                                 "fn a = grad(b, wrt = x);\n"
                                 "fn b = jvp(a, wrt = x);\n"),
    # -- derived functions: did you mean --
    "derived_misspelt_transformation": "fn f(x: f64) -> f64 { x * x }\nfn g = gard(f, wrt = x);\n",
    "derived_misspelt_rule": ("fn f(x: f64) -> f64 { x }\n"
                              "fn r = custom_vpj(f, |x, y_bar| y_bar);\n"),
    "derived_misspelt_function": "fn loss(x: f64) -> f64 { x * x }\nfn g = grad(los, wrt = x);\n",
    "derived_misspelt_wrt": ("fn loss(weights: f64[n]) -> f64 { sum(weights) }\n"
                             "fn g = grad(loss, wrt = wieghts);\n"),
    "derived_misspelt_wrt_keyword": "fn loss(x: f64) -> f64 { x * x }\nfn g = grad(loss, wtr = x);\n",
    "derived_integer_wrt": ("fn loss(x: f64, k: i64) -> f64 { x * f64(k) }\n"
                            "fn g = grad(loss, wrt = k);\n"),
    "derived_hessian_of_tensor": ("fn loss(X: f64[n, m, k]) -> f64 { sum(X * X) }\n"
                                  "fn g = hessian(loss, wrt = X);\n"),
    "derived_jacobian_of_tensor": ("fn f(X: f64[n, m, k]) -> f64[n] { sum(X * X, axis = (1, 2)) }\n"
                                   "fn g = jacobian(f, wrt = X);\n"),
    "derived_rule_unknown_function": ("fn f(x: f64) -> f64 { x }\n"
                                      "fn r = custom_vjp(ff, |x, y_bar| y_bar);\n"),
    "derived_rule_wrong_arity": "fn f(x: f64) -> f64 { x }\nfn r = custom_vjp(f, |x| x);\n",
    # -- shapes: both shapes, both places --
    "shape_broadcast_names": "fn f(x: f64[n], y: f64[m]) -> f64[n] {\n    x + y\n}\n",
    "shape_broadcast_expression": ("fn f(X: f64[n, d], w: f64[d], b: f64[k]) -> f64[n] {\n"
                                   "    X @ w + b\n}\n"),
    "shape_matmul": ("fn f(A: f64[n, d], B: f64[k, m]) -> f64[n, m] {\n"
                     "    let C = A @ B;\n    C\n}\n"),
    "shape_result": "fn f(x: f64[n]) -> f64[n, n] {\n    x * 2.0\n}\n",
    "shape_call_argument": ("fn g(a: f64[n], b: f64[n]) -> f64 { sum(a * b) }\n"
                            "fn f(x: f64[n], y: f64[m]) -> f64 {\n    g(x, y)\n}\n"),
    "shape_if_branches": "fn f(x: f64[n], y: f64[m], c: bool) -> f64[n] {\n    if c { x } else { y }\n}\n",
    "shape_where": "fn f(x: f64[n], y: f64[m]) -> f64[n] {\n    where(x > 0.0, x, y)\n}\n",
    "shape_map_lengths": "fn f(x: f64[n], y: f64[m]) -> f64[n] {\n    map(x, y, |a, b| a + b)\n}\n",
    "shape_fold_state": "fn f(xs: f64[t, d]) -> f64[d] {\n    fold(0.0, xs, |acc, x| acc + x)\n}\n",
    "shape_axis_out_of_range": "fn f(x: f64[n]) -> f64 {\n    sum(x, axis = 2)\n}\n",
    "shape_scan_needs_axis": "fn f(A: f64[n, m]) -> f64[n, m] {\n    cumsum(A)\n}\n",
    "shape_scan_axis_out_of_range": "fn f(x: f64[n]) -> f64[n] {\n    cumprod(x, axis = 1)\n}\n",
    "shape_scan_of_scalar": "fn f(x: f64) -> f64 {\n    cumsum(x)\n}\n",
    "shape_scan_result": "fn f(A: f64[n, m]) -> f64[n] {\n    cumprod(A, axis = 0)\n}\n",
    "shape_too_many_indices": "fn f(x: f64[n]) -> f64 {\n    x[0, 1]\n}\n",
    "shape_index_out_of_range": "fn f(x: f64[3]) -> f64 {\n    x[3]\n}\n",
    "shape_size_product": "fn f(x: f64[n, m]) -> f64[n * m] {\n    x[0]\n}\n",
    # -- types --
    "type_if_condition_array": "fn f(x: f64[n]) -> f64[n] {\n    if x > 0.0 { x } else { -x }\n}\n",
    "type_result": "fn f(x: f64) -> i64 {\n    x * 2.0\n}\n",
    "type_float_index": "fn f(x: f64[n]) -> f64 {\n    x[1.0]\n}\n",
    "type_destructure_scalar": "fn f(x: f64) -> f64 {\n    let (a, b) = x;\n    a\n}\n",
    "type_lambda_arity": "fn f(x: f64[n]) -> f64[n] {\n    map(x, |a, b| a)\n}\n",
    "type_library_arity": "fn f(x: f64[n]) -> f64 {\n    sum(x, x)\n}\n",
    "type_call_arity": "fn g(a: f64, b: f64) -> f64 { a * b }\nfn f(x: f64) -> f64 {\n    g(x)\n}\n",
    "type_axis_not_literal": "fn f(x: f64[n, m], k: i64) -> f64[n] {\n    sum(x, axis = k)\n}\n",
    "type_stack_needs_tuple": "fn f(x: f64[n]) -> f64[2, n] {\n    stack(x, axis = 0)\n}\n",
    # -- unsupported --
    "unsupported_recursion": "fn f(x: f64) -> f64 {\n    f(x)\n}\n",
    "unsupported_slice_by_value": "fn f(x: f64[n], k: i64) -> f64[n] {\n    x[k:]\n}\n",
}

# the hint must offer the right spelling, whatever the snapshot says
DID_YOU_MEAN = {
    "name_misspelt_variable": "weights", "name_misspelt_library_function": "sigmoid",
    "name_misspelt_user_function": "predict", "name_misspelt_keyword": "axis",
    "name_misspelt_dtype_keyword": "f64", "syntax_unknown_element_type": "f64",
    "derived_misspelt_transformation": "grad", "derived_misspelt_rule": "custom_vjp",
    "derived_misspelt_function": "loss", "derived_misspelt_wrt": "weights",
    "derived_misspelt_wrt_keyword": "wrt", "derived_rule_unknown_function": "f",
}
# a shape mismatch names both shapes and shows both places
BOTH_SHAPES = {
    "shape_broadcast_names": ("f64[n]", "f64[m]"), "shape_broadcast_expression": ("f64[n]", "f64[k]"),
    "shape_matmul": ("f64[n, d]", "f64[k, m]"), "shape_result": ("f64[n, n]", "f64[n]"),
    "shape_call_argument": ("f64[n]", "f64[m]"), "shape_if_branches": ("f64[n]", "f64[m]"),
    "shape_where": ("f64[n]", "f64[m]"), "shape_map_lengths": ("f64[n]", "f64[m]"),
    "shape_fold_state": ("as f64 and", "f64[d]"),
}


def render(case: str) -> str:
    with pytest.raises(CatadError) as caught:
        catad.to_python(CASES[case], f"{case}.catad")
    return caught.value.render() + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_report_matches_snapshot(case):
    report = render(case)
    assert "Traceback" not in report
    path = SNAPSHOTS / f"{case}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report, encoding="utf-8")
    assert path.exists(), f"no snapshot for {case}: run with CATAD_UPDATE_SNAPSHOTS=1"
    assert report == path.read_text(encoding="utf-8")


def test_every_snapshot_has_a_case():
    stale = {p.stem for p in SNAPSHOTS.glob("*.txt")} - set(CASES)
    if UPDATE:
        for name in stale:
            (SNAPSHOTS / f"{name}.txt").unlink()
        stale = set()
    assert not stale, f"snapshots without a case: {sorted(stale)}"


@pytest.mark.parametrize("case", sorted(DID_YOU_MEAN))
def test_misspelt_names_get_a_suggestion(case):
    assert re.search(rf"^hint: did you mean `?{DID_YOU_MEAN[case]}`?\?$", render(case), re.M)


@pytest.mark.parametrize("case", sorted(BOTH_SHAPES))
def test_shape_mismatch_shows_both_shapes_and_places(case):
    report = render(case)
    first_line = report.splitlines()[0]
    for shape in BOTH_SHAPES[case]:
        assert shape in first_line
    places = re.findall(rf"^{case}\.catad:\d+:\d+: ", report, re.M)
    carets = [line for line in report.splitlines() if line.lstrip().startswith("^")]
    assert len(places) >= 2 and len(carets) == len(places)


def test_every_report_points_at_the_source():
    for case in CASES:
        report = render(case)
        assert report.startswith(f"{case}.catad:"), case
        assert any(line.lstrip().startswith("^") for line in report.splitlines()), case
