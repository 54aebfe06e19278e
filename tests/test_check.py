"""check: the types of well-typed programs, the typed nodes they become, and the errors."""

from __future__ import annotations

import dataclasses

import pytest

from catad.compiler import ast
from catad.compiler import primitives as P
from catad.compiler.check import check, check_source
from catad.compiler.errors import (ShapeError, Source, Span, TypeMismatchError,
                                   UnknownNameError, UnsupportedError)
from catad.compiler.library import LIBRARY
from catad.compiler.typed import (SizeBinding, TCall, TConst, TExpr, TFor, TIf, TLambda, TLet,
                                  TLoop, TMap, TNode, TPrim, TReduce, TSize, TVar)
from catad.compiler.types import ArrayType, Dim, DType

n, m = Dim.of("n"), Dim.of("m")


def fn(text: str, name: str | None = None):
    """The typed function `name` (default: the last) of the program `text`."""
    program = check_source(text)
    return program.function(name) if name else program.functions[-1]


def body_type(text: str) -> str:
    return str(fn(text).body.type)


def nodes(expr: TExpr):
    """Every typed node under `expr`, lambda bodies included."""
    yield expr
    for field in dataclasses.fields(expr):
        value = getattr(expr, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, TLambda):
                yield from nodes(item.body)
            elif isinstance(item, TNode):
                yield from nodes(item)


def prims(expr: TExpr) -> list[str]:
    return [node.prim.name for node in nodes(expr) if isinstance(node, TPrim)]


# ---- well-typed programs -------------------------------------------------------

LOGREG = """
# logistic regression
fn loss(w: f64[d], b: f64, X: f64[n, d], y: f64[n]) -> f64 {
    let z = X @ w + b;
    let p = sigmoid(z);
    -mean(y * log(p) + (1.0 - y) * log(1.0 - p))
}
"""


def test_logistic_regression():
    f = fn(LOGREG)
    assert [str(t) for _, t in f.params] == ["f64[d]", "f64", "f64[n, d]", "f64[n]"]
    assert f.sizes == (SizeBinding("d", 0, 0), SizeBinding("n", 2, 0))
    assert isinstance(f.body, TLet) and f.body.names == ("z",)
    assert str(f.body.value.type) == "f64[n]"
    assert f.body.value.prim is P.ADD and f.body.value.args[0].prim is P.MATMUL
    assert f.body.body.value.prim.name == "sigmoid"
    assert str(f.body.type) == "f64"
    mean = f.body.body.body.args[0]
    assert mean.prim is P.MEAN and mean.params == P.params(axes=(0,))


def test_mlp():
    f = fn("""
    fn mlp(x: f64[n, d], W1: f64[d, h], b1: f64[h], W2: f64[h, k], b2: f64[k]) -> f64[n, k] {
        let a = relu(x @ W1 + b1);
        softmax(a @ W2 + b2, axis = -1)
    }""")
    assert [b.name for b in f.sizes] == ["n", "d", "h", "k"]
    softmax = f.body.body
    assert softmax.prim is P.SOFTMAX and softmax.params == P.params(axis=1)
    assert str(softmax.type) == "f64[n, k]"


def test_attention_with_softmax():
    f = fn("""
    fn attention(Q: f64[s, d], K: f64[t, d], V: f64[t, e]) -> f64[s, e] {
        let scores = Q @ transpose(K) / sqrt(f64(d));
        softmax(scores) @ V
    }""")
    scores = f.body.value
    assert str(scores.type) == "f64[s, t]"
    assert "transpose" in prims(scores) and "astype" in prims(scores)
    assert str(f.body.body.type) == "f64[s, e]"


def test_gmm_with_logsumexp_over_an_axis():
    f = fn("""
    fn gmm(x: f64[n, d], mu: f64[k, d], logw: f64[k]) -> f64 {
        let sq = for i in 0..n { for j in 0..k { sum((x[i] - mu[j]) ** 2) } };
        sum(logsumexp(logw - 0.5 * sq, axis = 1))
    }""")
    sq = f.body.value
    assert isinstance(sq, TFor) and sq.lo == Dim(0) and sq.hi == n
    assert str(sq.type) == "f64[n, k]"
    lse = f.body.body.args[0]
    assert lse.prim is P.LOGSUMEXP and lse.params == P.params(axes=(1,))
    assert str(lse.type) == "f64[n]"


def test_fold_and_scan():
    f = fn("""
    fn running(xs: f64[t]) -> (f64, f64[t]) {
        (fold(0.0, xs, |acc, x| acc + x), scan(0.0, xs, |acc, x| acc * 0.5 + x))
    }""")
    fold, scan = f.body.items
    assert isinstance(fold, TLoop) and not fold.stacked and str(fold.type) == "f64"
    assert isinstance(scan, TLoop) and scan.stacked and str(scan.type) == "f64[t]"
    assert [(name, str(t)) for name, t in scan.fn.params] == [("acc", "f64"), ("x", "f64")]


def test_scan_of_a_tuple_state_stacks_each_item():
    f = fn("""
    fn count(xs: f64[t]) -> (f64[t], i64[t]) {
        scan((0.0, 0), xs, |acc, x| { let (s, c) = acc; (s + x, c + 1) })
    }""")
    assert str(f.body.type) == "(f64[t], i64[t])"
    assert str(f.body.init.type) == "(f64, i64)"


def test_a_weak_literal_state_takes_the_dtype_of_the_step():
    f = fn("fn total(xs: f32[t]) -> f32 { fold(0.0, xs, |acc, x| acc + x) }")
    assert str(f.body.type) == "f32"
    assert f.body.init == TConst(ArrayType(DType.F32), 0.0)
    assert str(f.body.fn.params[0][1]) == "f32"


def test_an_int_state_is_promoted_by_a_float_step():
    f = fn("fn total(xs: f64[t]) -> f64 { fold(0, xs, |acc, x| acc + x) }")
    assert f.body.init == TConst(ArrayType(DType.F64), 0.0)
    assert isinstance(f.body.init.value, float)


def test_comprehension_with_indexing():
    f = fn("fn diffs(x: f64[n]) -> f64[n - 1] { for i in 0..n - 1 { x[i + 1] - x[i] } }")
    assert isinstance(f.body, TFor) and f.body.hi == n - 1 and str(f.body.type) == "f64[n - 1]"
    index = f.body.body.args[0]
    assert index.prim is P.INDEX and index.params == P.params(spec=(("at",),))
    assert index.args[1].prim is P.ADD and index.args[1].args[0] == TVar(ArrayType(DType.I64), "i")


def test_slices_and_negative_indices():
    f = fn("fn s(x: f64[n], A: f64[n, m]) -> f64[n - 2] { x[1:-1] + A[0, 1:][-1] - x[-1] }")
    index_nodes = [node for node in nodes(f.body)
                   if isinstance(node, TPrim) and node.prim is P.INDEX]
    specs = [node.params[0][1] for node in index_nodes]
    assert (("slice", Dim(1), n - 1),) in specs
    assert (("at",), ("slice", Dim(1), m)) in specs
    assert TSize(ArrayType(DType.I64), n - 1) in [node.args[-1] for node in index_nodes]
    assert TSize(ArrayType(DType.I64), m - 2) in [node.args[-1] for node in index_nodes]


def test_size_variables_are_i64_values():
    f = fn("fn avg(x: f64[n]) -> f64 { sum(x) / n + f64(2 * n) }")
    sizes = [node for node in nodes(f.body) if isinstance(node, TSize)]
    assert sizes == [TSize(ArrayType(DType.I64), n), TSize(ArrayType(DType.I64), n)]
    assert str(f.body.type) == "f64"


def test_calls_substitute_the_callee_sizes():
    program = check_source("""
    fn diffs(x: f64[n]) -> f64[n - 1] { x[1:] - x[:-1] }
    fn second(y: f64[k]) -> f64[k - 2] { diffs(diffs(y)) }
    """)
    outer = program.function("second").body
    assert isinstance(outer, TCall) and outer.function == "diffs"
    assert outer.subst == (("n", Dim.of("k") - 1),)
    assert str(outer.type) == "f64[k - 2]"


def test_compound_dims_are_compared_after_substitution():
    callee = "fn pad(x: f64[n], y: f64[n + 1]) -> f64[2 * n + 1] { concat((x, y)) }\n"
    call = check_source(callee + "fn use(a: f64[m], b: f64[m + 1]) -> f64[2 * m + 1] "
                                 "{ pad(a, b) }").function("use").body
    assert call.subst == (("n", m),) and str(call.type) == "f64[2 * m + 1]"
    with pytest.raises(ShapeError, match=r"argument 2 \(`y`\) of `pad` must have type "
                                         r"f64\[m \+ 1\], but it has type f64\[m\]"):
        check_source(callee + "fn use(a: f64[m]) -> f64[2 * m + 1] { pad(a, a) }")


def test_call_arguments_are_promoted_to_the_parameter_types():
    program = check_source("""
    fn scale(x: f64[n], a: f32) -> f64[n] { x * a }
    fn use(v: i64[m]) -> f64[m] { scale(v, 2.0) }
    """)
    call = program.function("use").body
    assert call.args[0].prim is P.ASTYPE and str(call.args[0].type) == "f64[m]"
    assert call.args[1] == TConst(ArrayType(DType.F32), 2.0)


def test_results_are_promoted_to_the_declared_type():
    f = fn("fn widen(x: i64[n]) -> f64[n] { x }")
    assert f.body.prim is P.ASTYPE and f.body.params == P.params(dtype=DType.F64)
    assert fn("fn one() -> f32 { 1.0 }").body == TConst(ArrayType(DType.F32), 1.0)
    assert fn("fn unit() -> f64 { 1 }").body == TConst(ArrayType(DType.F64), 1.0)


def test_if_promotes_branches_to_one_type():
    f = fn("fn pick(c: bool, x: i64[n]) -> f64[n] { if c { x } else { zeros(n) } }")
    assert isinstance(f.body, TIf) and str(f.body.type) == "f64[n]"
    assert f.body.then.prim is P.ASTYPE
    g = fn("fn lit(c: bool) -> f64 { if c { 1 } else { 2.5 } }")
    assert g.body.then == TConst(ArrayType(DType.F64), 1.0)
    weak = fn("fn lit(c: bool) -> f64 { let z = if c { 1.5 } else { 2.5 }; z }").body.value
    assert weak.type == ArrayType(DType.F64, (), weak=True)


def test_nested_tuple_patterns_use_a_hidden_name():
    f = fn("fn d(x: f64[n]) -> f64 { let (p, (q, r)) = (1.0, (x, 2)); p + sum(q) * r }")
    assert f.body.names == ("p", "%t1")
    assert f.body.body.names == ("q", "r") and f.body.body.value.name == "%t1"


def test_let_may_shadow():
    f = fn("fn z(x: f64[n]) -> f64 { let x = sum(x); x * 2.0 }")
    assert str(f.body.value.type) == "f64" and str(f.body.body.args[0].type) == "f64"


@pytest.mark.parametrize("call, expected", [
    ("outer(x, y)", "f64[n, m]"),
    ("dot(A, x)", "f64[n]"),
    ("dot(x, x)", "f64"),
    ("transpose(A)", "f64[n, n]"),
    ("transpose(B, axes = (2, 0, 1))", "f64[3, n, m]"),
    ("zeros((n, 3), dtype = f32)", "f32[n, 3]"),
    ("ones(n + 1)", "f64[n + 1]"),
    ("full(n, 0)", "i64[n]"),
    ("full((2, m), 1, dtype = f64)", "f64[2, m]"),
    ("arange(n)", "i64[n]"),
    ("arange(1, n)", "i64[n - 1]"),
    ("stack((x, x), axis = 1)", "f64[n, 2]"),
    ("stack((x, x, x))", "f64[3, n]"),
    ("concat((x, y, x))", "f64[m + 2 * n]"),
    ("concat((A, A), axis = -1)", "f64[n, 2 * n]"),
    ("sum(B, axis = (0, -1))", "f64[m]"),
    ("mean(i64(x))", "f64"),
    ("sum(A > 0.0)", "i64"),
    ("max(B, axis = 1)", "f64[n, 3]"),
    ("sum(2.5)", "f64"),
    ("mean(2)", "f64"),
    ("logsumexp(A, axis = 0)", "f64[n]"),
    ("softmax(A, axis = 0)", "f64[n, n]"),
    ("cumsum(x)", "f64[n]"),
    ("cumprod(B, axis = -2)", "f64[n, m, 3]"),
    ("cumsum(x > 0.0)", "i64[n]"),
    ("cumprod(A > 0.0, axis = 0)", "i64[n, n]"),
    ("cumprod(i64(A), axis = 1)", "i64[n, n]"),
    ("where(x > 0.0, x, 0.0)", "f64[n]"),
    ("pow(x, 2)", "f64[n]"),
    ("maximum(x, 0)", "f64[n]"),
    ("f32(x)", "f32[n]"),
    ("bool(x)", "bool[n]"),
    ("map(A, |row| sum(row))", "f64[n]"),
    ("map(A, x, |row, a| row * a)", "f64[n, n]"),
    ("map2(x, x, |a, b| a * b)", "f64[n]"),
    ("reduce(A, zeros(n), |a, b| a + b)", "f64[n]"),
    ("reduce(x, 0, |a, b| maximum(a, b))", "f64"),
])
def test_library_calls(call, expected):
    text = (f"fn f(x: f64[n], y: f64[m], A: f64[n, n], B: f64[n, m, 3]) -> f64 "
            f"{{ let r = {call}; 0.0 }}")
    assert str(fn(text).body.value.type) == expected


def test_outer_is_a_product_of_expanded_vectors():
    f = fn("fn o(x: f64[n], y: f64[m]) -> f64[n, m] { outer(x, y) }")
    assert prims(f.body) == ["mul", "expand_dims", "expand_dims"]
    assert [a.params for a in f.body.args] == [P.params(axis=1), P.params(axis=0)]


def test_map_and_reduce_nodes():
    f = fn("fn s(A: f64[n, d]) -> f64 { reduce(map(A, |row| sum(row)), 0.0, |a, b| a + b) }")
    assert isinstance(f.body, TReduce) and isinstance(f.body.array, TMap)
    assert f.body.unit == TConst(ArrayType(DType.F64), 0.0)
    assert [(name, str(t)) for name, t in f.body.array.fn.params] == [("row", "f64[d]")]


def test_check_without_the_parser():
    """A hand-built AST: fn f(x: f64[n]) -> f64 { sum(x) }."""
    program = ast.Program((ast.Function(
        "f", (ast.Param("x", ast.ArrayTypeExpr("f64", (ast.Name("n"),))),),
        ast.ScalarTypeExpr("f64"),
        ast.Block((), ast.Call("sum", (ast.Name("x"),)))),))
    f = check(program).function("f")
    assert f.body.prim is P.SUM and f.sizes == (SizeBinding("n", 0, 0),)


def test_library_names():
    expected = {"exp", "log", "log1p", "expm1", "sqrt", "abs", "sin", "cos", "tan", "tanh",
                "sigmoid", "softplus", "relu", "gelu", "silu", "elu", "erf", "sign", "pow",
                "minimum", "maximum", "where", "f64", "f32", "i64", "bool", "sum", "mean",
                "prod", "max", "min", "logsumexp", "softmax", "dot", "transpose", "outer",
                "zeros", "ones", "full", "arange", "stack", "concat", "map", "map2", "reduce",
                "fold", "scan", "parity", "popcount_le", "cumsum", "cumprod"}
    assert set(LIBRARY) == expected
    assert all(entry.usage.startswith(name + "(") and entry.summary
               for name, entry in LIBRARY.items())


# ---- errors ------------------------------------------------------------------

ERRORS = [
    # (source, error class, words in the message, line:column)
    ("fn f(x: f64[n], y: f64[m]) -> f64[n] {\n    let z = x + y;\n    z\n}",
     ShapeError, "cannot apply `+` to f64[n] and f64[m]: shapes [n] and [m] do not broadcast",
     "2:13"),
    ("fn f(X: f64[n, d], y: f64[m]) -> f64[n] {\n    X @ y\n}",
     ShapeError, "the inner dims of [n, d] and [m] differ", "2:5"),
    ("fn f(x: f64[n]) -> f64 {\n    sum(xs)\n}", UnknownNameError, "unknown name `xs`", "2:9"),
    ("fn f(x: f64[n]) -> f64 {\n    summ(x)\n}", UnknownNameError, "unknown function `summ`",
     "2:5"),
    ("fn f(x: f64[n + 1]) -> f64 { 0.0 }", UnsupportedError,
     "cannot infer the size n from the arguments", "1:13"),
    ("fn f(x: f64[n]) -> f64[n] { f(x) }", UnsupportedError, "`f` calls itself", "1:29"),
    ("fn f(x: f64[n]) -> f64[n] { g(x) }\nfn g(x: f64[n]) -> f64[n] { f(x) }",
     UnsupportedError, "f -> g -> f", "1:29"),
    ("fn f(x: f64[n]) -> f64 { 0.0 }\nfn f = grad(f, wrt = x);", UnknownNameError,
     "the function `f` is defined twice", "2:4"),
    ("fn f(x: f64[n]) -> f64 {\n  if x > 0.0 { 1.0 } else { 2.0 }\n}", TypeMismatchError,
     "the condition of `if` must be a bool scalar, but it is bool[n]", "2:6"),
    ("fn f(x: f64[n], y: f64[m]) -> f64 { if true { x } else { y } }", ShapeError,
     "the branches of `if` have different shapes: f64[n] and f64[m]", "1:37"),
    ("fn f(x: f64[n]) -> f64 { if true { x } else { (x, x) } }", TypeMismatchError,
     "different types", "1:26"),
    ("fn f(x: f64[n]) -> f64[n] { sum(x, axis = 1) }", ShapeError,
     "axis 1 is out of range for an array of rank 1", "1:43"),
    ("fn f(x: f64[n]) -> i64[n] { x }", TypeMismatchError,
     "the result of `f` must have type i64[n], but it has type f64[n]", "1:29"),
    ("fn f(x: f64[n]) -> f64[n - 1] {\n  x\n}", ShapeError,
     "must have type f64[n - 1], but it has type f64[n]", "2:3"),
    ("fn f(x: f64[n], k: i64) -> f64[n] { for i in 0..k { x[i] } }", UnsupportedError,
     "the end of a `for` range must be a size expression, but `k` is a value", "1:49"),
    ("fn f(x: f64[n]) -> f64[n] { for i in 0..n { (x, x) } }", TypeMismatchError,
     "the body of `for` must be an array", "1:45"),
    ("fn f(x: f64[n], m: f64[k]) -> f64 { let y = for i in 0..n * k { 0.0 }; 0.0 }",
     UnsupportedError, "multiplies two sizes", "1:57"),
    ("fn f(x: f64[n]) -> f64 { x[1, 2] }", ShapeError, "too many indices", "1:26"),
    ("fn f(x: f64[3]) -> f64[2] { x[2:5] }", ShapeError, "the slice 2:5 is out of range", "1:29"),
    ("fn f(x: f64[3]) -> f64 { x[3] }", ShapeError, "index 3 is out of range", "1:28"),
    ("fn f(x: f64[n]) -> f64 { x[1.0] }", TypeMismatchError,
     "an index must be an i64 scalar, but it is f64", "1:28"),
    ("fn f(x: f64[n], i: i64) -> f64[3] { x[i:i + 3] }", UnsupportedError,
     "a slice bound must be a size expression, but `i` is a value", "1:39"),
    ("fn f(x: f64[n]) -> f64 { map(x, |a, b| a) }", TypeMismatchError,
     "the function of `map` takes 1 parameter, but this lambda has 2", "1:33"),
    ("fn f(x: f64[n]) -> f64[n] { map(x, |a| (a, a)) }", TypeMismatchError,
     "must return an array", "1:40"),
    ("fn f(x: f64[n], y: f64[m]) -> f64[n] { map2(x, y, |a, b| a * b) }", ShapeError,
     "leading dims n and m", "1:48"),
    ("fn f(x: f64[n]) -> f64 { fold(zeros(2), x, |acc, a| acc[0]) }", ShapeError,
     "the state of `fold` must keep its shape", "1:53"),
    ("fn f(x: i64[n]) -> f64 { reduce(x, 0, |a, b| a / b) }", TypeMismatchError,
     "the result of the function of `reduce` must have type i64, but it has type f64", "1:46"),
    ("fn f(x: f64[n]) -> f64 { map(x, 2.0) }", TypeMismatchError, "must be a lambda", "1:33"),
    ("fn f(x: f64[n]) -> f64 { let g = |a| a; 0.0 }", TypeMismatchError,
     "a lambda can only be the last argument", "1:34"),
    ("fn f(x: f64[n]) -> f64 { let (a, b) = x; a }", TypeMismatchError,
     "cannot destructure f64[n] into 2 names", "1:30"),
    ("fn f(x: f64[n]) -> f64 { let (a, b) = (x, x, x); 0.0 }", TypeMismatchError,
     "3-tuple", "1:30"),
    ("fn f(x: f64[n]) -> f64 { let (a, a) = (x, x); 0.0 }", UnknownNameError,
     "`a` is bound twice", "1:34"),
    ("fn f(x: f64[n], x: f64) -> f64 { 0.0 }", UnknownNameError,
     "the parameter `x` of `f` is declared twice", "1:17"),
    ("fn f(x: f64[n]) -> f64 { 0.0 }\nfn f(y: f64) -> f64 { y }", UnknownNameError,
     "the function `f` is defined twice", "2:4"),
    ("fn exp(x: f64) -> f64 { x }", UnknownNameError, "`exp` is a library function", "1:4"),
    ("fn f(x: f64[n]) -> f64[n] { let n = 3; x }", UnknownNameError,
     "`n` is a size variable of `f`", "1:33"),
    ("fn f(n: i64, x: f64[n]) -> f64 { 0.0 }", UnknownNameError,
     "`n` is a size variable of `f`, so it cannot also be a parameter", "1:6"),
    ("fn f(x: f64[n]) -> f64[m] { x }", UnknownNameError,
     "the result type uses the size m, which no parameter has", "1:24"),
    ("fn f(x: f64[n]) -> f64 { 0.0 }\nfn g(y: f64[m], z: f64[k]) -> f64 { f(y, z) }",
     TypeMismatchError, "`f` takes 1 argument, got 2", "2:37"),
    ("fn f(x: f64[n], y: f64[n]) -> f64 { 0.0 }\nfn g(y: f64[m], z: f64[k]) -> f64 { f(y, z) }",
     ShapeError, "argument 2 (`y`) of `f` must have type f64[m], but it has type f64[k]", "2:42"),
    ("fn f(x: f64[n]) -> f64 { 0.0 }\nfn g(y: f64[m, m]) -> f64 { f(y) }",
     ShapeError, "argument 1 (`x`) of `f` must have type f64[n]", "2:31"),
    ("fn f(x: i64) -> i64 { x }\nfn g(y: f64) -> i64 { f(y) }", TypeMismatchError,
     "argument 1 (`x`) of `f` must have type i64, but it has type f64", "2:25"),
    ("fn f(x: bool[n]) -> bool[n] { x and 1.0 }", TypeMismatchError,
     "cannot apply `and` to bool[n] and f64: f64 is not bool", "1:31"),
    ("fn f(x: bool[n]) -> bool[n] { -x }", TypeMismatchError, "does not take bool", "1:31"),
    ("fn f(x: f64[n]) -> f64 { sum(x, axs = 0) }", TypeMismatchError,
     "`sum` has no keyword argument `axs`", "1:33"),
    ("fn f(x: f64[n]) -> f64 { exp(x, x) }", TypeMismatchError, "`exp` takes 1 argument, got 2",
     "1:26"),
    ("fn f(x: f64[n]) -> f64 { sum(x, axis = k) }", TypeMismatchError,
     "axis must be an int literal", "1:40"),
    ("fn f(x: f64[n]) -> f64 { let z = exp; 0.0 }", TypeMismatchError,
     "`exp` is a function, not a value", "1:34"),
    ("fn f(x: f64[n]) -> f64 { x(1) }", TypeMismatchError,
     "`x` is a value of type f64[n], not a function", "1:26"),
    ("fn f(x: f64[n]) -> f64 { zeros(n, dtype = f16) }", TypeMismatchError,
     "dtype must be one of f64, f32, i64, bool", "1:43"),
    ("fn f(x: f64[n]) -> f64[n] { stack(x) }", TypeMismatchError,
     "`stack` takes a tuple of arrays", "1:35"),
    ("fn f(x: f64[n, m]) -> f64 { outer(x, x) }", ShapeError, "`outer` takes two vectors",
     "1:35"),
]


@pytest.mark.parametrize("text, error, words, where", ERRORS)
def test_error(text, error, words, where):
    with pytest.raises(error) as info:
        check_source(text, "model.catad")
    err = info.value
    assert words in err.message
    assert str(err.span) == where
    assert str(err).startswith(f"model.catad:{where}: {error.kind}: ")


def test_errors_show_the_line_and_both_declarations():
    with pytest.raises(ShapeError) as info:
        check_source("fn f(x: f64[n], y: f64[m]) -> f64[n] {\n    let z = x + y;\n    z\n}",
                     "model.catad")
    text = str(info.value)
    assert "      let z = x + y;\n              ^~~~~" in text
    assert "model.catad:1:6: note: `x` is f64[n], declared here" in text
    assert "model.catad:1:17: note: `y` is f64[m], declared here" in text
    assert "hint: dims fit when they are equal or one of them is 1" in text


def test_unknown_names_suggest_a_close_one():
    with pytest.raises(UnknownNameError) as info:
        check_source("fn f(weights: f64[n]) -> f64 { sum(weigths) }")
    assert info.value.hint == "did you mean `weights`?"
    with pytest.raises(UnknownNameError) as info:
        check_source("fn f(x: f64[n]) -> f64 { logsumexpp(x) }")
    assert info.value.hint == "did you mean `logsumexp`?"


def test_check_attaches_the_source():
    program = ast.Program((ast.Function(
        "f", (), ast.ScalarTypeExpr("f64"),
        ast.Block((), ast.Name("y", span=Span(1, 20, 1, 21)))),))
    source = Source("fn f() -> f64 {    y }", "m.catad")
    with pytest.raises(UnknownNameError) as info:
        check(program, source)
    assert info.value.source is source
    assert str(info.value).splitlines()[0] == "m.catad:1:20: name error: unknown name `y`"
