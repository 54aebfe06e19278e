"""`catad check` and `catad.check`: every example passes; a broken derivative
rule fails (exit status 1); declared derivatives of every kind are checked;
user rules, refused derivatives, Z2 and functions too large for SymPy are
reported as such; bad sizes are one clear error; `show --stage sympy`."""

from __future__ import annotations

from pathlib import Path

import pytest

import catad
from catad.checking import CheckReport, check, parse_sizes
from catad.cli import main
from catad.compiler import primitives as P
from catad.compiler.errors import CatadError, InputError
from catad.compiler.vjp_rules import VJP_RULES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# sizes that cannot be chosen freely: the GMM packs d + d (d - 1) / 2 entries per component in icf
SIZES = {"gmm": "d=2,m=3"}
ORACLE_FREE = {"digits_circuit", "iris_circuit"}  # bool circuits: no real derivative to check


def _rows(report: CheckReport, **match) -> list:
    return [r for r in report.rows if all(getattr(r, k) == v for k, v in match.items())]


@pytest.mark.parametrize("example", sorted(p.stem for p in EXAMPLES.glob("*.catad")))
def test_every_example_passes(example):
    report = check(EXAMPLES / f"{example}.catad", SIZES.get(example), points=1)
    assert report.passed, report.format()
    assert report.rows and all(r.passed is not None or r.mode == "generated" for r in report.rows)
    if example not in ORACLE_FREE:
        assert any(r.sympy_error is not None and r.mode in ("forward", "reverse") for r in report.rows)


def test_the_command_prints_a_table_and_exits_0(capsys):
    assert main(["check", str(EXAMPLES / "logistic.catad"), "--sizes", "n=3,d=2", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].endswith("logistic.catad: sizes d = 2, n = 3; seed 4; 2 random points")
    assert lines[2].split() == ["function", "argument", "mode", "vs", "SymPy", "vs", "FD", "result"]
    body = [line.split() for line in lines[4:] if line and not line.startswith(("note", "19 checks"))]
    assert {(row[0], row[1], row[2]) for row in body} >= {
        ("loss", "w", "forward"), ("loss", "w", "reverse"), ("loss", "(value)", "value"),
        ("loss_grad", "b", "generated")}
    assert all(row[-1] == "PASS" for row in body)
    assert lines[-1] == "19 checks: all passed"


def test_the_same_seed_gives_the_same_table():
    source = (EXAMPLES / "rnn.catad").read_text()
    assert check(source, seed=3).format() == check(source, seed=3).format()


def _identity_softplus(monkeypatch):
    """Break softplus' transposed Jacobian: the identity, as if softplus(x) were x."""
    monkeypatch.setitem(VJP_RULES, P.BY_NAME["softplus"], lambda b, alg, ps, args, out, ct, term: (ct,))


def test_a_broken_derivative_rule_is_caught(monkeypatch, capsys):
    _identity_softplus(monkeypatch)
    report = check(EXAMPLES / "logistic.catad")
    failed = {(r.function, r.argument, r.mode) for r in report.failures}
    assert failed == {("loss", "w", "reverse"), ("loss", "b", "reverse"), ("loss", "X", "reverse"),
                      ("loss_grad", "w", "generated"), ("loss_grad", "b", "generated")}
    for row in report.failures:  # both oracles see it, and forward mode disagrees
        assert row.sympy_error > 1e-3 and row.fd_error > 1e-3
    assert all(r.passed for r in _rows(report, mode="forward"))
    assert main(["check", str(EXAMPLES / "logistic.catad")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and out.rstrip().endswith("19 checks: 5 FAILED")


DERIVATIVES = """
fn smooth(x: f64[n], y: f64[n]) -> f64 { sum(sin(x) * y * y) + logsumexp(x * y) }
fn branches(x: f64[n], y: f64[n]) -> f64 {
    let s = if sum(x) > 0.0 { sum(x * y) } else { sum(exp(y)) };
    s + sum(where(x > y, x, y * 2.0)) + max(x) - min(y) + sum(x // 0.7) + sum(y % 0.9)
}
fn loop(x: f64[n], W: f64[n, n]) -> f64[n] {
    let h = fold(x, for i in 0..3 { i }, |acc, t| tanh(W @ acc + f64(t)));
    h + scan(0.0, x, |acc, v| acc * 0.5 + v * v)
}
fn g = grad(smooth, wrt = x);
fn vg = value_and_grad(branches);
fn v = vjp(loop, wrt = W);
fn j = jvp(loop, wrt = (x, W));
fn hs = hessian(smooth, wrt = y);
fn jac = jacobian(loop, wrt = x);
fn hvp = jvp(grad(smooth, wrt = x), wrt = x);
fn twice = jvp(g, wrt = y);
"""


def test_declared_derivatives_of_every_kind_are_checked_against_both_oracles():
    report = check(DERIVATIVES, {"n": 3}, points=1)
    assert report.passed, report.format()
    generated = {(r.function, r.argument) for r in _rows(report, mode="generated")}
    assert generated == {
        ("g", "x"), ("vg", "(value)"), ("vg", "x"), ("vg", "y"), ("v", "(value)"), ("v", "W"),
        ("j", "(value)"), ("j", "x, W"), ("hs", "y"), ("jac", "x"), ("hvp", "(value)"), ("hvp", "x"),
        ("twice", "(value)"), ("twice", "y")}
    assert all(r.sympy_error is not None and r.fd_error is not None for r in _rows(report, mode="generated"))
    assert not report.notes


def test_a_broken_rule_shows_in_second_derivatives(monkeypatch):
    """sin's transposed Jacobian broken: the Hessian and Hessian-vector products fail too."""
    monkeypatch.setitem(VJP_RULES, P.BY_NAME["sin"], lambda b, alg, ps, args, out, ct, term: (ct,))
    report = check(DERIVATIVES, {"n": 3}, points=1)
    failed = {r.function for r in report.failures}
    assert {"g", "hvp", "twice"} <= failed and "jac" not in failed


FAST = "fn f(x: f64[2]) -> f64 { sum(sin(1.0e4 * x)) }"


def test_inaccurate_finite_differences_are_judged_within_their_own_error():
    """Far from linear at the finite differences' step, they are off by 6e-4; SymPy's
    exact derivative shows it is their error, so the rows pass, with a note."""
    report = check(FAST)
    assert report.passed
    assert all(r.fd_error > 1e-4 for r in report.rows if r.mode != "value")
    assert report.notes[0].startswith("f: finite differences are inaccurate for x")


def test_inaccurate_finite_differences_still_catch_a_broken_rule(monkeypatch):
    monkeypatch.setitem(VJP_RULES, P.BY_NAME["sin"], lambda b, alg, ps, args, out, ct, term: (ct,))
    (row,) = check(FAST).failures
    assert (row.argument, row.mode) == ("x", "reverse") and row.sympy_error > 1 and row.fd_error > 1


def test_user_rules_compare_forward_with_reverse_mode():
    report = check(EXAMPLES / "binarized.catad", points=1)
    assert report.passed, report.format()
    for row in _rows(report, function="loss", mode="reverse"):
        assert row.sympy_error is None and row.fd_error is None and row.other_mode_error is not None
    assert {r.passed for r in _rows(report, function="loss_grad")} == {None}
    assert any("follow the rule binarize_vjp" in note for note in report.notes)
    assert "fwd vs rev" in report.format()
    assert all(r.sympy_error is not None for r in _rows(report, function="binarize_vjp"))


def test_refused_derivatives_are_noted_and_values_still_checked():
    report = check("fn f(x: f64[n], y: f64[n]) -> f64 { sum(f64(x < y)) }", {"n": 2})
    assert [(r.argument, r.mode, r.passed) for r in report.rows] == [("(value)", "value", True)]
    assert report.notes and "catad refuses its derivatives" in report.notes[0]


def test_a_function_too_large_for_sympy_falls_back_to_finite_differences():
    report = check(EXAMPLES / "rnn.catad", {"t": 3}, points=1, max_operations=20)
    assert report.passed
    assert all(r.sympy_error is None for r in report.rows)
    assert all(r.fd_error is not None for r in report.rows if r.mode in ("forward", "reverse"))
    assert report.notes == ("rnn_last: too large for SymPy (unrolls to more than 20 operations); checked "
                            "against finite differences only",
                            "rnn_states: too large for SymPy (unrolls to more than 20 operations); checked "
                            "against finite differences only")
    assert "note: rnn_last: too large for SymPy" in report.format()


def test_the_python_api_is_exported():
    report = catad.check("fn f(x: f64) -> f64 { x * x }")
    assert report.passed and len(report.rows) == 3 and "3 checks: all passed" in report.format()


# ---- bad sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, message", [
    ("q=3", "the program has no size 'q'; its sizes are d, n"),
    ("n3", "--sizes takes NAME=INTEGER items separated by commas (e.g. n=3,d=2), not 'n3'"),
    ("n=x", "not 'n=x'"),
    ("n=0", "the size n must be at least 1, not 0"),
    ("n=2,n=3", "--sizes gives the size n twice"),
])
def test_bad_sizes_are_one_clear_line(sizes, message, capsys):
    assert main(["check", str(EXAMPLES / "logistic.catad"), "--sizes", sizes]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_a_size_that_contradicts_a_shape_is_refused(tmp_path, capsys):
    path = tmp_path / "short.catad"
    path.write_text("fn f(a: f64[n], b: f64[n - 3]) -> f64 { sum(a) + sum(b) }\n")
    assert main(["check", str(path), "--sizes", "n=2"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"{path}: input error: with n = 2, the parameter b of f (f64[n - 3]) would "
                           "have the shape [-1]")


def test_sizes_that_break_the_program_point_at_the_line(capsys):
    """The GMM's m is not free: at the defaults (d = 3, m = 2) a slice runs out of range."""
    assert main(["check", str(EXAMPLES / "gmm.catad")]) == 1
    err = capsys.readouterr().err
    assert "gmm.catad:10:14: shape error: at the sizes" in err and "let qs = icf[:, :d];" in err
    assert "Traceback" not in err


def test_parse_sizes():
    assert parse_sizes(" n = 3, d=2 ,") == {"n": 3, "d": 2}
    with pytest.raises(InputError):
        parse_sizes("n=")
    with pytest.raises(CatadError):
        check("fn f(x: f64[n]) -> f64 { sum(x) }", {"n": -1})


# ---- the SymPy listing -----------------------------------------------------------------------


def test_show_sympy_lists_values_and_derivatives(capsys):
    assert main(["show", str(EXAMPLES / "logistic.catad"), "--stage", "sympy", "--sizes", "d=1,n=1"]) == 0
    out = capsys.readouterr().out
    assert "fn predict(w: f64[1], b: f64, X: f64[1, 1]) -> f64[1]    at d = 1, n = 1" in out
    assert "  predict[0] = 1/c1" in out and "  c1 = c0 + 1" in out
    assert "  d predict[0] / d w_0 = X_0_0*c2" in out
    assert "  d loss / d y_0 = " in out
    assert "loss_grad" not in out  # derived functions are the derivatives listed


def test_show_sympy_as_latex(capsys):
    assert main(["show", str(EXAMPLES / "logistic.catad"), "--stage", "sympy", "--sizes", "d=1,n=1",
                 "--latex"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("% fn predict(w: f64[1], b: f64, X: f64[1, 1]) -> f64[1]    at d = 1, n = 1\n"
                          "\\begin{align*}\n")
    assert "\\mathrm{predict}_{0} &= \\frac{1}{c_{1}} \\\\" in out
    assert "\\frac{\\partial \\mathrm{loss}}{\\partial b} &= " in out
    assert out.count("\\begin{align*}") == out.count("\\end{align*}") == 2


def test_show_sympy_says_when_a_function_is_too_large(capsys):
    assert main(["show", str(EXAMPLES / "rnn.catad"), "--stage", "sympy", "--sizes", "h=3,t=12"]) == 0
    out = capsys.readouterr().out
    assert out.count("too large for SymPy (its expressions grow past 2000 terms); try smaller --sizes") == 2


def test_latex_needs_the_sympy_stage(capsys):
    assert main(["show", str(EXAMPLES / "logistic.catad"), "--latex"]) == 1
    assert "--sizes and --latex apply to --stage sympy only" in capsys.readouterr().err
