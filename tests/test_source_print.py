"""The source printer: canonical text, parentheses only where precedence needs
them, and parse(format(tree)) == tree for the examples, for hand-picked trees,
for strings drawn from the grammar and for random well-typed programs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from catad.compiler import ast
from catad.compiler.errors import CatadError, Source
from catad.compiler.parse import parse
from catad.compiler.source_print import format_expr, format_program, format_type

from program_strategy import grammar_strings, programs, scaled

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.catad"))


def parse_text(text: str) -> ast.Program:
    return parse(Source(text))


def parse_expr(text: str) -> ast.Expr:
    (fn,) = parse_text(f"fn f() -> f64 {{ {text} }}").functions
    return fn.body.result


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_round_trip_and_format_is_idempotent(path):
    tree = parse_text(path.read_text())
    text = format_program(tree)
    assert parse_text(text) == tree
    assert format_program(parse_text(text)) == text


# Canonical text: each prints back exactly as written.
CANONICAL = [
    "a + b * c",
    "(a + b) * c",
    "a - (b - c)",
    "a - b - c",
    "a / (b * c)",
    "a / b * c",
    "-x ** 2",
    "(-x) ** 2",
    "2 ** -1",
    "a ** b ** c",
    "(a ** b) ** c",
    "-(a + b)",
    "--x",
    "a - -b",
    "not a and b",
    "not (a and b)",
    "a or b and c",
    "(a or b) and c",
    "a xor b or c",
    "a xor (b or c)",
    "(a < b) == c",
    "a < b + c",
    "not a < b",
    "x[i][j]",
    "(x + y)[i]",
    "f(x)[0, 1:]",
    "A[:, j]",
    "a[1:]",
    "a[:-1]",
    "a[:n - 1]",
    "a[lo:hi]",
    "a[:]",
    "-x[i]",
    "x[i] ** 2",
    "(a, (b, c))",
    "f()",
    "sum(x, axis = -1)",
    "map(xs, ys, |a, b| a * b)",
    "fold(0.0, xs, |acc, x| acc + x)",
    "g(|| 1.0)",
    "true and false",
    "1e-05 + 2.5e+16 + 0.1 + 3.0",
    "i // 2 % n",
    "A @ x @ y",
    "A @ (x @ y)",
    "if a < b { a } else { b }",
    "if a { 1.0 } else if b { 2.0 } else { 3.0 }",
    "for i in 0..n - 1 { x[i + 1] - x[i] }",
    "1.0 + if c { a } else { b }",
    "if c { a } else { b } + 1.0",
    "{ x }",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_prints_back_unchanged(text):
    expr = parse_expr(text)
    assert format_expr(expr) == text
    assert parse_expr(format_expr(expr)) == expr


@pytest.mark.parametrize("text, canonical", [
    ("((a))+(b)", "a + b"),
    ("a+b*c", "a + b * c"),
    ("(a*b)+c", "a * b + c"),
    ("-(x**2)", "-x ** 2"),
    ("(x[i])", "x[i]"),
    ("f(x,axis=1)", "f(x, axis = 1)"),
    ("if a { 1.0 } else { if b { 2.0 } else { 3.0 } }",
     "if a { 1.0 } else if b { 2.0 } else { 3.0 }"),
    ("(not a) and b", "not a and b"),
    ("0.50", "0.5"),
    ("1E3", "1000.0"),
])
def test_redundant_parentheses_and_spacing_are_normalised(text, canonical):
    assert format_expr(parse_expr(text)) == canonical


def test_a_lambda_is_parenthesised_where_its_body_would_swallow_more():
    lam = ast.Lambda(("x",), ast.Name("x"))
    text = format_expr(ast.BinOp("+", lam, ast.FloatLit(1.0)))
    assert text == "(|x| x) + 1.0"
    assert parse_expr(text) == ast.BinOp("+", lam, ast.FloatLit(1.0))


def test_blocks_with_lets_span_lines_with_four_space_indents():
    text = ("fn f(x: f64[n], A: f64[n, 3]) -> (f64, f64[n]) {\n"
            "    let (a, (b, c)) = (x, (A, 2.0));\n"
            "    let y = for i in 0..n {\n"
            "        let t = x[i];\n"
            "        t * 2.0\n"
            "    };\n"
            "    (sum(y), y)\n"
            "}\n"
            "\n"
            "fn g = grad(f, wrt = x);\n")
    assert format_program(parse_text(text)) == text


def test_types_print_with_their_dims():
    (fn,) = parse_text("fn f(x: f64[n + 1, 2 * (m - 1)]) -> (f64, bool[3]) { 1.0 }").functions
    assert format_type(fn.params[0].type) == "f64[n + 1, 2 * (m - 1)]"
    assert format_type(fn.result) == "(f64, bool[3])"


def test_trees_the_parser_cannot_make_print_as_their_nearest_source_or_fail():
    assert format_expr(ast.IntLit(-3)) == "-3"
    assert format_expr(ast.BinOp("**", ast.FloatLit(-2.0), ast.IntLit(2))) == "(-2.0) ** 2"
    with pytest.raises(ValueError, match="1 items"):
        format_expr(ast.TupleExpr((ast.Name("a"),)))
    with pytest.raises(ValueError, match="inf"):
        format_expr(ast.FloatLit(float("inf")))
    with pytest.raises(ValueError, match="operator"):
        format_expr(ast.BinOp("<<", ast.Name("a"), ast.Name("b")))


@scaled(0.5)
@given(programs())
def test_generated_programs_round_trip(program):
    text = program.source
    tree = parse_text(text)
    assert tree == program.program
    assert format_program(tree) == text


# Drawing from the grammar costs hypothesis ~0.3 s an example: keep the count small.
@settings(scaled(0.15), suppress_health_check=list(HealthCheck))
@given(grammar_strings())
def test_any_parsed_tree_round_trips(text):
    try:
        tree = parse_text(text)
    except CatadError:
        return
    printed = format_program(tree)
    assert parse_text(printed) == tree
    assert format_program(parse_text(printed)) == printed
