"""Tests of the parser: grammar/catad.lark and compiler/parse.py."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

from catad.compiler import ast
from catad.compiler import parse as parse_module
from catad.compiler.ast import (ArrayTypeExpr, At, BinOp, Block, BlockExpr, BoolLit, Call,
                                DerivedFunction, FloatLit, For, Function, If, Index, IntLit,
                                Keyword, Lambda, Let, Name, NamePattern, Param, Program,
                                ScalarTypeExpr, Slice, TupleExpr, TuplePattern, TupleTypeExpr,
                                UnaryOp)
from catad.compiler.errors import NO_SPAN, CatadError, InputError, ParseError, Source, Span
from catad.compiler.parse import (ELEMENT_TYPES, MAX_BYTES, MAX_DEPTH, decode_source,
                                  lark_parser, parse)
from catad.compiler.types import DType
from catad.grammar import grammar_text

EXAMPLES = """\
fn mlp(W1: f64[h, d], b1: f64[h], W2: f64[k, h], b2: f64[k], X: f64[n, d]) -> f64[n, k] {
    let H = tanh(X @ transpose(W1) + b1);
    H @ transpose(W2) + b2
}
fn f(xs: f64[n]) -> f64 {
    let ys = for i in 0..n - 1 { xs[i + 1] - xs[i] };
    let (s, t) = (sum(ys), max(ys, axis = 0));
    let h = fold(0.0, xs, |acc, x| acc * 0.5 + x);
    if s > t { s } else if s < 0.0 { -s } else { { let u = 2.0; u * h } }
}
fn g(A: f64[n, m]) -> f64[n] { map(A, |row| sum(row ** 2)) + A[:, 0] * A[1:, :][0, 0] }
fn g2 = grad(f, wrt = xs);
"""

LOGISTIC = """\
# logistic regression
fn loss(w: f64[d], b: f64, X: f64[n, d], y: f64[n]) -> f64 {
    let z = X @ w + b;
    let p = sigmoid(z);
    -mean(y * log(p) + (1.0 - y) * log(1.0 - p))
}
fn loss_grad = grad(loss, wrt = (w, b));   # derived function
"""


def program(text: str) -> Program:
    return parse(Source(text, "t.catad"))


def expr(text: str) -> ast.Expr:
    """The AST of the expression `text`, as the body of a function."""
    return program(f"fn f() -> f64 {{ {text} }}").functions[0].body.result


def error(text: str) -> CatadError:
    with pytest.raises(CatadError) as info:
        program(text)
    return info.value


def body_error(text: str) -> CatadError:
    """The error for `text` as a function body (it starts at column 17)."""
    return error(f"fn f() -> f64 {{ {text} }}")


def n(name: str) -> Name:
    return Name(name)


def i(value: int) -> IntLit:
    return IntLit(value)


def nodes(node):
    """Every AST node in `node`, itself included."""
    yield node
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, ast.Node):
                yield from nodes(item)


# ---- the grammar ------------------------------------------------------------------

def test_grammar_has_no_lalr_conflicts(caplog):
    with caplog.at_level(logging.DEBUG, logger="lark"):
        Lark(grammar_text(), parser="lalr", lexer="basic", debug=True)
    assert not [r for r in caplog.records if "conflict" in r.getMessage().lower()]


def test_conflict_detection_works(caplog):
    """The check above would see a conflict: a grammar with one is reported."""
    with caplog.at_level(logging.DEBUG, logger="lark"):
        Lark('start: e\ne: e "+" e | "x"', parser="lalr", debug=True)
    assert [r for r in caplog.records if "conflict" in r.getMessage().lower()]


def test_grammar_loads_in_strict_mode():
    pytest.importorskip("interegular")  # Lark's strict mode needs it
    Lark(grammar_text(), parser="lalr", strict=True, propagate_positions=True)
    Lark(grammar_text(), parser="lalr", lexer="basic", strict=True, propagate_positions=True)


def test_element_types_are_the_dtypes():
    assert set(ELEMENT_TYPES) == {dtype.value for dtype in DType}


# ---- whole programs -----------------------------------------------------------------

def test_examples_parse():
    functions = program(EXAMPLES).functions
    assert [f.name for f in functions] == ["mlp", "f", "g", "g2"]
    mlp, f, g, g2 = functions
    assert mlp.params[0] == Param("W1", ArrayTypeExpr("f64", (n("h"), n("d"))))
    assert mlp.result == ArrayTypeExpr("f64", (n("n"), n("k")))
    assert mlp.body.lets == (Let(NamePattern("H"), Call("tanh", (BinOp(
        "+", BinOp("@", n("X"), Call("transpose", (n("W1"),))), n("b1")),))),)
    assert mlp.body.result == BinOp("+", BinOp("@", n("H"), Call("transpose", (n("W2"),))),
                                    n("b2"))

    ys, st_, h = f.body.lets
    assert ys == Let(NamePattern("ys"), For("i", i(0), BinOp("-", n("n"), i(1)), Block((), BinOp(
        "-", Index(n("xs"), (At(BinOp("+", n("i"), i(1))),)), Index(n("xs"), (At(n("i")),))))))
    assert st_ == Let(TuplePattern((NamePattern("s"), NamePattern("t"))), TupleExpr((
        Call("sum", (n("ys"),)), Call("max", (n("ys"),), (Keyword("axis", i(0)),)))))
    assert h == Let(NamePattern("h"), Call("fold", (FloatLit(0.0), n("xs"), Lambda(
        ("acc", "x"), BinOp("+", BinOp("*", n("acc"), FloatLit(0.5)), n("x"))))))
    inner = BlockExpr(Block((Let(NamePattern("u"), FloatLit(2.0)),), BinOp("*", n("u"), n("h"))))
    assert f.body.result == If(
        BinOp(">", n("s"), n("t")), Block((), n("s")),
        Block((), If(BinOp("<", n("s"), FloatLit(0.0)), Block((), UnaryOp("-", n("s"))),
                     Block((), inner))))

    assert g.body.result == BinOp(
        "+",
        Call("map", (n("A"), Lambda(("row",), Call("sum", (BinOp("**", n("row"), i(2)),))))),
        BinOp("*", Index(n("A"), (Slice(None, None), At(i(0)))),
              Index(Index(n("A"), (Slice(i(1), None), Slice(None, None))), (At(i(0)), At(i(0))))))
    assert g2 == DerivedFunction("g2", Call("grad", (n("f"),), (Keyword("wrt", n("xs")),)))


def test_logistic_regression_parses():
    loss, loss_grad = program(LOGISTIC).functions
    assert [p.name for p in loss.params] == ["w", "b", "X", "y"]
    assert loss.params[1].type == ScalarTypeExpr("f64")
    assert isinstance(loss.body.result, UnaryOp) and loss.body.result.op == "-"
    assert loss_grad.call == Call("grad", (n("loss"),),
                                  (Keyword("wrt", TupleExpr((n("w"), n("b")))),))


def test_function_forms():
    assert program("fn c() -> i64 { 1 }").functions[0] == Function(
        "c", (), ScalarTypeExpr("i64"), Block((), i(1)))
    two = program("fn f(x: f64, y: bool,) -> (f64, (i64[3], bool)) { (x, y) }").functions[0]
    assert two.params == (Param("x", ScalarTypeExpr("f64")), Param("y", ScalarTypeExpr("bool")))
    assert two.result == TupleTypeExpr((ScalarTypeExpr("f64"), TupleTypeExpr((
        ArrayTypeExpr("i64", (i(3),)), ScalarTypeExpr("bool")))))


def test_size_expressions_in_types():
    param = program("fn f(x: f32[n + 1, 2 * m, (n - 1) * 2]) -> f32 { 0.0 }").functions[0].params[0]
    assert param.type == ArrayTypeExpr("f32", (
        BinOp("+", n("n"), i(1)), BinOp("*", i(2), n("m")),
        BinOp("*", BinOp("-", n("n"), i(1)), i(2))))


def test_comments_and_whitespace_are_ignored():
    assert program("# a\nfn f() -> f64 {  # b\n\t1.0 # c\n}\n# d").functions[0].body == \
        Block((), FloatLit(1.0))


# ---- expressions ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("3", i(3)),
    ("007", i(7)),
    ("9223372036854775807", i(2**63 - 1)),
    ("3.0", FloatLit(3.0)),
    ("1e-3", FloatLit(1e-3)),
    ("2.5e3", FloatLit(2500.0)),
    ("2E+2", FloatLit(200.0)),
    ("true", BoolLit(True)),
    ("false", BoolLit(False)),
    ("x_1", n("x_1")),
    ("index", n("index")),  # names may start with a keyword
    ("iffy + fnord", BinOp("+", n("iffy"), n("fnord"))),
    ("f()", Call("f", ())),
    ("f(x, y, axis = 1)", Call("f", (n("x"), n("y")), (Keyword("axis", i(1)),))),
    ("f(x,)", Call("f", (n("x"),))),
    ("f(axis = 1)", Call("f", (), (Keyword("axis", i(1)),))),
    ("(a, b)", TupleExpr((n("a"), n("b")))),
    ("((a, b), c)", TupleExpr((TupleExpr((n("a"), n("b"))), n("c")))),
    ("(a)", n("a")),
    ("a[i]", Index(n("a"), (At(n("i")),))),
    ("A[i, j]", Index(n("A"), (At(n("i")), At(n("j"))))),
    ("a[1:]", Index(n("a"), (Slice(i(1), None),))),
    ("a[:n - 1]", Index(n("a"), (Slice(None, BinOp("-", n("n"), i(1))),))),
    ("a[lo:hi]", Index(n("a"), (Slice(n("lo"), n("hi")),))),
    ("a[:]", Index(n("a"), (Slice(None, None),))),
    ("a[:-1]", Index(n("a"), (Slice(None, UnaryOp("-", i(1))),))),
    ("f(x)[0]", Index(Call("f", (n("x"),)), (At(i(0)),))),
    ("if c { a } else { b }", If(n("c"), Block((), n("a")), Block((), n("b")))),
    ("if a { 1 } else if b { 2 } else { 3 }", If(n("a"), Block((), i(1)), Block((), If(
        n("b"), Block((), i(2)), Block((), i(3)))))),
    ("for i in 0..n { i }", For("i", i(0), n("n"), Block((), n("i")))),
    ("for j in 1..n + 1 { x[j - 1] }", For("j", i(1), BinOp("+", n("n"), i(1)), Block((), Index(
        n("x"), (At(BinOp("-", n("j"), i(1))),))))),
    ("|x, y| x * y", Lambda(("x", "y"), BinOp("*", n("x"), n("y")))),
    ("|| 1", Lambda((), i(1))),
    ("|x| |y| x", Lambda(("x",), Lambda(("y",), n("x")))),
    ("{ let a = 1.0; a * 2.0 }", BlockExpr(Block((Let(NamePattern("a"), FloatLit(1.0)),),
                                                 BinOp("*", n("a"), FloatLit(2.0))))),
    ("{ 1 }", BlockExpr(Block((), i(1)))),
])
def test_expression(text, expected):
    assert expr(text) == expected


def test_range_lexes_as_int_dots_name():
    assert expr("for k in 0..n { k }") == For("k", i(0), n("n"), Block((), n("k")))
    assert expr("for k in 2..5 { k }") == For("k", i(2), i(5), Block((), n("k")))


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//", "%", "@", "**",
                                "<", "<=", ">", ">=", "==", "!=", "and", "or", "xor"])
def test_binary_operators(op):
    assert expr(f"a {op} b") == BinOp(op, n("a"), n("b"))


@pytest.mark.parametrize("text, expected", [
    ("-x ** 2", UnaryOp("-", BinOp("**", n("x"), i(2)))),
    ("a - b - c", BinOp("-", BinOp("-", n("a"), n("b")), n("c"))),
    ("a / b * c", BinOp("*", BinOp("/", n("a"), n("b")), n("c"))),
    ("2 ** 3 ** 2", BinOp("**", i(2), BinOp("**", i(3), i(2)))),
    ("2 ** -1", BinOp("**", i(2), UnaryOp("-", i(1)))),
    ("a + b * c", BinOp("+", n("a"), BinOp("*", n("b"), n("c")))),
    ("(a + b) * c", BinOp("*", BinOp("+", n("a"), n("b")), n("c"))),
    ("a @ b * c", BinOp("*", BinOp("@", n("a"), n("b")), n("c"))),
    ("-a * b", BinOp("*", UnaryOp("-", n("a")), n("b"))),
    ("- -a", UnaryOp("-", UnaryOp("-", n("a")))),
    ("-a[0]", UnaryOp("-", Index(n("a"), (At(i(0)),)))),
    ("x[1] ** 2", BinOp("**", Index(n("x"), (At(i(1)),)), i(2))),
    ("not a and b", BinOp("and", UnaryOp("not", n("a")), n("b"))),
    ("not a < b", UnaryOp("not", BinOp("<", n("a"), n("b")))),
    ("a or b xor c and d", BinOp("or", n("a"), BinOp("xor", n("b"), BinOp("and", n("c"),
                                                                          n("d"))))),
    ("a < b + 1", BinOp("<", n("a"), BinOp("+", n("b"), i(1)))),
    ("a == b and c != d", BinOp("and", BinOp("==", n("a"), n("b")), BinOp("!=", n("c"),
                                                                          n("d")))),
    ("|x| x + 1", Lambda(("x",), BinOp("+", n("x"), i(1)))),
    ("if c { 1 } else { 2 } + 3", BinOp("+", If(n("c"), Block((), i(1)), Block((), i(2))), i(3))),
])
def test_precedence_and_associativity(text, expected):
    assert expr(text) == expected


def test_let_patterns():
    block = program("fn f() -> f64 { let ((a, b), c) = e; let d = a; d }").functions[0].body
    assert block.lets == (
        Let(TuplePattern((TuplePattern((NamePattern("a"), NamePattern("b"))), NamePattern("c"))),
            n("e")),
        Let(NamePattern("d"), n("a")),
    )


# ---- spans ------------------------------------------------------------------------

def test_spans_of_nodes():
    f = program("fn f(x: f64) -> f64 {\n  let y = sin(x) + 2.0;\n  y\n}").functions[0]
    assert f.span == Span(1, 1, 4, 2)
    assert f.name_span == Span(1, 4, 1, 5)
    assert f.params[0].span == Span(1, 6, 1, 12)
    assert f.params[0].type.span == Span(1, 9, 1, 12)
    let = f.body.lets[0]
    assert let.span == Span(2, 3, 2, 24)
    assert let.target.span == Span(2, 7, 2, 8)
    total = let.value
    assert total.span == Span(2, 11, 2, 23)
    assert total.left.span == Span(2, 11, 2, 17)
    assert total.left.func_span == Span(2, 11, 2, 14)
    assert total.left.args[0].span == Span(2, 15, 2, 16)
    assert total.right.span == Span(2, 20, 2, 23)
    assert f.body.result.span == Span(3, 3, 3, 4)


def test_spans_of_derived_function_and_slices():
    g = program("\n  fn g = grad(f, wrt = x);").functions[0]
    assert g.span == Span(2, 3, 2, 27)
    assert g.name_span == Span(2, 6, 2, 7)
    assert g.call.func_span == Span(2, 10, 2, 14)
    assert g.call.kwargs[0].span == Span(2, 18, 2, 25)
    index = expr("a[:, 1:n]")
    assert [item.span for item in index.items] == [Span(1, 19, 1, 20), Span(1, 22, 1, 25)]


def test_every_node_has_a_span():
    for function in program(EXAMPLES + LOGISTIC).functions:
        for node in nodes(function):
            assert node.span != NO_SPAN and node.span.line >= 1, node


# ---- syntax errors --------------------------------------------------------------------

def assert_reported(err: CatadError, kind: type, line: int, column: int, message: str):
    assert isinstance(err, kind), err
    assert (err.span.line, err.span.column) == (line, column), str(err)
    assert message in err.message, err.message
    rendered = str(err)
    assert rendered.startswith(f"t.catad:{line}:{column}: ")
    lines = rendered.splitlines()
    assert lines[2].strip().startswith("^") and lines[2].index("^") == column + 1  # 2 of indent


@pytest.mark.parametrize("text, line, column, message", [
    ("fn f() -> f64 {\n  let x = 1.0 x\n}", 2, 15, "expected ';' after the let binding, found 'x'"),
    ("fn f() -> f64 { let x = 1.0; }", 1, 30, "a block must end with an expression, found '}'"),
    ("fn f() -> f64 { let x = 1.0;", 1, 29,
     "unexpected end of file: a block must end with an expression"),
    ("fn f() -> f64 { x", 1, 18,
     "unexpected end of file: expected '}' in the block opened at 1:15"),
    ("fn f(x: f64) -> bool { 1 < x < 2 }", 1, 30, "comparisons cannot be chained, found '<'"),
    ("fn f(x: f64) -> bool { a == b == c }", 1, 31, "comparisons cannot be chained"),
    ("fn f(x: f64) { x }", 1, 14, "expected '->' in the definition of 'f', found '{'"),
    ("fn f(x f64) -> f64 { x }", 1, 8, "expected ':' in the parameters of 'f', found 'f64'"),
    ("fn f() -> f64 { if a { b } c }", 1, 28, "expected 'else' after the first branch of the 'if'"),
    ("fn f() -> f64 { g(a b) }", 1, 21, "in the call to 'g', found 'b'"),
    ("fn f() -> f64 { map(xs, |x| x y) }", 1, 31, "in the call to 'map', found 'y'"),
    ("fn f() -> f64 { map(xs, |x y| x) }", 1, 28, "in the parameters of the lambda, found 'y'"),
    ("fn f() -> f64 { (a b) }", 1, 20, "in the parentheses opened at 1:17, found 'b'"),
    ("fn f() -> f64 { a[1 2] }", 1, 21, "in the brackets opened at 1:18, found '2'"),
    ("fn f() -> f64 { for i in 0:n { i } }", 1, 27, "expected '..' in the 'for' expression"),
    ("fn f() -> f64 { x; }", 1, 18, "expected '}' in the block opened at 1:15, found ';'"),
    ("fn f() -> f64 { if a { b } else { c } d }", 1, 39,
     "expected '}' in the block opened at 1:15"),
    ("fn f() -> f64 { let in = 2; in }", 1, 21, "expected a name or '(' in the let binding"),
    ("let x = 1;", 1, 1, "expected 'fn' to start a function, found 'let'"),
    ("fn f() -> f64 { 1 } }", 1, 21, "expected 'fn' to start a function, found '}'"),
    ("fn g = grad(f)", 1, 15, "unexpected end of file: expected ';' after the definition of 'g'"),
    ("fn", 1, 3, "unexpected end of file: expected a name after 'fn'"),
    ("fn f() -> f64 { x ! y }", 1, 19, "unexpected character '!'"),
    ("fn f() -> f64 { 1. }", 1, 18, "unexpected character '.'"),
])
def test_syntax_error(text, line, column, message):
    assert_reported(error(text), ParseError, line, column, message)


@pytest.mark.parametrize("text, hint", [
    ("fn f(x: f64) -> bool { 1 < x < 2 }", "a < b and b < c"),
    ("fn f() -> f64 { x; }", "only `let` bindings end with ';'"),
    ("fn f() -> f64 { if x = 1 { 1 } else { 2 } }", "'=='"),
    ("fn f() -> f64 { let in = 2; in }", "'in' is a reserved word"),
    ("fn f() -> f64 { x ! y }", "'not'"),
    ("fn f() -> f64 { a b }", "two expressions in a row: is an operator missing?"),
    ("fn f() -> f64 { g(a b) }", "is an operator or a ',' missing?"),
    ("fn f() -> f64 { let x = 1.0 x }", "is an operator or a ';' missing?"),
    ("fn f(x: f64) { x }", "-> f64"),
])
def test_syntax_error_hints(text, hint):
    err = error(text)
    assert hint in err.hint
    assert str(err).splitlines()[-1] == f"hint: {err.hint}"


def test_unknown_element_type():
    err = error("fn f(x: float[n]) -> f64 { 1.0 }")
    assert_reported(err, ParseError, 1, 9,
                    "unknown element type 'float': expected f64, f32, i64 or bool")
    assert err.span == Span(1, 9, 1, 14)
    assert str(err).splitlines()[2] == "          ^~~~~"
    assert "f64" in err.hint
    assert_reported(error("fn f(x: (f64, n)) -> f64 { 1.0 }"), ParseError, 1, 15,
                    "unknown element type 'n'")


def test_integer_too_large():
    err = body_error("9223372036854775808")
    assert_reported(err, ParseError, 1, 17, "the integer 9223372036854775808 is too large for i64")
    assert_reported(body_error("1" * 5000), ParseError, 1, 17, "is too large for i64")
    assert_reported(error("fn f(x: f64[99999999999999999999]) -> f64 { 1.0 }"), ParseError,
                    1, 13, "too large for i64")


def test_float_too_large():
    assert_reported(body_error("1e999"), ParseError, 1, 17, "the number 1e999 is too large for f64")


def test_positional_argument_after_keyword():
    err = body_error("f(a, axis = 1, b)")
    assert_reported(err, ParseError, 1, 32,
                    "a positional argument cannot follow a keyword argument")


def test_reserved_words_are_never_names():
    for word in ["fn", "let", "if", "else", "for", "in", "and", "or", "not", "xor", "true",
                 "false"]:
        assert isinstance(error(f"fn f({word}: f64) -> f64 {{ 1.0 }}"), ParseError), word


# ---- input errors --------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   \n\t\n", "# only a comment", "# a\n\n# b\n"])
def test_empty_program(text):
    assert_reported(error(text), InputError, 1, 1, "the file has no functions")


@contextlib.contextmanager
def recursion_limit(limit: int):
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


@pytest.mark.parametrize("shape", [
    lambda k: "+".join(["1"] * k),
    lambda k: "-(" * k + "1" + ")" * k,
    lambda k: "(" * k + "1" + ")" * k,
    lambda k: "-" * k + "1",
    lambda k: "2 ** " * k + "2",
    lambda k: "f(" * k + "1" + ")" * k,
    lambda k: "{ " * k + "1" + " }" * k,
    lambda k: "a" + "[0]" * k,
    lambda k: "|x| " * k + "x",
    lambda k: "if a { 1 } else " * k + "{ 2 }",
])
def test_deep_nesting_is_an_input_error(shape):
    # no recursion on the input's depth: 10 000 levels parse and are refused within
    # 150 Python frames of this test's own
    with recursion_limit(len(inspect.stack()) + 150):
        err = body_error(shape(10_000))
    assert isinstance(err, InputError)
    assert f"nested too deeply: more than {MAX_DEPTH} levels" in err.message
    assert str(err).startswith(f"t.catad:1:{err.span.column}: input error:")


def test_moderate_nesting_parses():
    assert isinstance(expr("+".join(["1"] * 100)), BinOp)
    assert expr("(" * 100 + "1" + ")" * 100) == i(1)


def test_deep_type_is_an_input_error():
    deep = "(" * 300 + "f64, f64" + "), f64" * 299 + ")"
    assert isinstance(error(f"fn f(x: {deep}) -> f64 {{ 1.0 }}"), InputError)


def test_too_large_input(monkeypatch):
    text = "fn f() -> f64 { 1.0 }\n" + "# padding\n" * 200_000
    assert len(text.encode()) > MAX_BYTES

    def never_parse():
        raise AssertionError("a too large input reached the parser")
    monkeypatch.setattr(parse_module, "lark_parser", never_parse)  # refused before parsing
    assert_reported(error(text), InputError, 1, 1, "the file is too large")
    with pytest.raises(InputError):
        decode_source(text.encode(), "big.catad")


# ---- decoding ---------------------------------------------------------------------------

def test_decode_source_strips_a_bom():
    source = decode_source(b"\xef\xbb\xbffn f() -> f64 { 1.0 }", "m.catad")
    assert source == Source("fn f() -> f64 { 1.0 }", "m.catad")
    assert parse(source).functions[0].span == Span(1, 1, 1, 22)


def test_parse_accepts_a_bom_in_text_and_keeps_columns():
    f = parse(Source("\ufefffn f() -> f64 { 1.0 }")).functions[0]
    assert f.name_span == Span(1, 5, 1, 6)


def test_decode_source_rejects_non_utf8():
    with pytest.raises(InputError) as info:
        decode_source(b"fn f() -> f64 {\n  1.0 \xff\xfe\n}", "m.catad")
    err = info.value
    assert (err.span.line, err.span.column) == (2, 7)
    assert "not UTF-8" in err.message and "0xff" in err.message
    assert str(err).startswith("m.catad:2:7: input error:")
    assert str(err).splitlines()[2] == "        ^"


def test_decode_source_reports_a_bad_first_byte_at_1_1():
    with pytest.raises(InputError) as info:
        decode_source(b"\x80fn", "m.catad")
    assert (info.value.span.line, info.value.span.column) == (1, 1)


def test_decode_source_reads_utf8():
    text = "fn f() -> f64 { 1.0 } # é ∑"
    assert decode_source(text.encode(), "m.catad") == Source(text, "m.catad")


# ---- generated programs ---------------------------------------------------------------------

# Drawing from the grammar costs hypothesis ~0.1 s an example: keep the counts small.
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(from_lark(lark_parser(), start="start"))
def test_grammar_strings_parse_or_raise_catad_error(text):
    try:
        parse(Source(text))
    except CatadError:
        pass


def _spaced(strategy):
    return strategy.map(lambda token: f" {token} ")


# Tokens padded with spaces and comments ending their line, so that most strings re-lex.
_RELEXABLE = {
    "NAME": _spaced(st.sampled_from(["x", "n", "f64", "i64", "bool", "f32", "sum"])),
    "INT": _spaced(st.sampled_from(["0", "1", "42", "99999999999999999999"])),
    "FLOAT": _spaced(st.sampled_from(["1.5", "2e3", "1e999"])),
    "COMMENT": st.just("# comment\n"),
    **{terminal.name: st.just(f" {terminal.pattern.value} ")
       for terminal in lark_parser().terminals
       if terminal.pattern.type == "str" and terminal.pattern.value.isalpha()},
}


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(from_lark(lark_parser(), start="start", explicit=_RELEXABLE))
def test_relexable_grammar_strings_give_spanned_ast_or_catad_error(text):
    try:
        result = parse(Source(text))
    except CatadError as err:
        assert err.source is not None and err.span.line >= 1
    else:
        assert all(node.span.line >= 1 for node in nodes(result))
