"""lower: the generated NumPy module — its text, its checks, and every primitive's
printing against the reference semantics of prim_eval."""

from __future__ import annotations

import importlib.util
import itertools
import math
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest

import catad
from catad.compiler import lower as L
from catad.compiler import primitives as P
from catad.compiler.errors import Source, Span
from catad.compiler.backend import literal_arg
from catad.compiler.lower import BACKENDS, comment_text, load_module, lower
from catad.compiler.prim_eval import apply, numpy_dtype
from catad.compiler.prim_types import result_type
from catad.compiler.primitives import params
from catad.compiler.target import (Bind, Block, Call, Lambda, Lit, LoopE, Name, Project,
                                   TargetFunction, TargetProgram)
from catad.compiler.typed import SizeBinding
from catad.compiler.types import F64, ArrayType, Dim, DType, TupleType

N = Dim.of("n")
VEC = ArrayType(DType.F64, (N,))
LOGISTIC = """\
# logistic regression
fn loss(w: f64[d], b: f64, X: f64[n, d], y: f64[n]) -> f64 {
    let z = X @ w + b;
    let p = sigmoid(z);
    -mean(y * log(p) + (1.0 - y) * log(1.0 - p))
}
"""


def program(*fns: TargetFunction) -> TargetProgram:
    return TargetProgram(fns)


def module_of(*fns: TargetFunction, path: str = "test.catad", source: Source | None = None,
              backend: str = "numpy"):
    text = lower(program(*fns), source_path=path, source=source, backend=BACKENDS[backend])
    return text, load_module(text, "generated")


def function(name, ps, result, bindings, out, sizes=(), span=Span(0, 0)) -> TargetFunction:
    return TargetFunction(name, ps, tuple(p for p, _ in ps), result, sizes, Block(bindings, out),
                          span=span)


# ---- the table ------------------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_table_covers_every_primitive(backend):
    assert set(BACKENDS[backend].forms) == set(P.ALL)


def t(dtype: DType, *shape) -> ArrayType:
    return ArrayType(dtype, tuple(Dim.of(d) for d in shape))


def f64(*shape):
    return t(DType.F64, *shape)


def f32(*shape):
    return t(DType.F32, *shape)


def i64(*shape):
    return t(DType.I64, *shape)


def b(*shape):
    return t(DType.BOOL, *shape)


# A case: primitive name, params, arguments (a type: a parameter drawn from `domain`;
# a Python scalar: a literal), the domain of the random values, the value of n.
POSITIVE = {"log", "log1p", "sqrt"}
CASES: list[tuple] = [
    *[(name, {}, (f64(3, 4),), "positive" if name in POSITIVE else "normal")
      for name in ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid",
                   "softplus", "relu", "gelu", "silu", "elu", "erf")],
    *[(name, {}, (f32(5),), "positive" if name in POSITIVE else "normal")
      for name in ("exp", "log", "sigmoid", "softplus", "relu", "gelu", "silu", "elu", "erf")],
    ("sigmoid", {}, (f64(4),), "huge"), ("softplus", {}, (f64(4),), "huge"),
    ("elu", {}, (f64(4),), "huge"),  # gelu's tail: the reference's 1 + erf(x) underflows, see below
    ("neg", {}, (f64(5),), "normal"), ("neg", {}, (i64(5),), "int"),
    ("abs", {}, (i64(5),), "int"), ("sign", {}, (f64(5),), "normal"), ("not", {}, (b(5),), "bool"),
    *[(name, {}, (f64(2, 3), f64(3)), "normal") for name in ("add", "sub", "mul", "div", "minimum",
                                                             "maximum", "lt", "le", "gt", "ge", "eq", "ne")],
    ("pow", {}, (f64(4), f64(4)), "positive"), ("pow", {}, (i64(4), i64(4)), "positive_int"),
    ("floordiv", {}, (i64(4), i64(4)), "nonzero_int"), ("mod", {}, (i64(4), i64(4)), "nonzero_int"),
    ("floordiv", {}, (f64(4), f64(4)), "normal"), ("mod", {}, (f64(4), f64(4)), "normal"),
    ("add", {}, (f64(3), 2.0), "normal"), ("sub", {}, (1.0, f64(3)), "normal"),
    ("pow", {}, (f64(3), -1.0), "positive"), ("mul", {}, (-2, i64(3)), "int"),
    ("pow", {}, (-2.0, i64(3)), "positive_int"), ("sub", {}, (f32(3), 1.5), "normal"),
    ("lt", {}, (i64(3), 1), "int"), ("add", {}, (i64(3), f32(3)), "int"),
    *[(name, {}, (b(4), b(4)), "bool") for name in ("and", "or", "xor")],
    ("xor", {}, (b(4), True), "bool"),
    ("where", {}, (b(2, 3), f64(2, 3), f64(3)), "mixed"), ("where", {}, (b(3), f64(3), -0.5), "mixed"),
    ("const", {"value": 2.5, "dtype": DType.F64}, (), None),
    ("const", {"value": 3, "dtype": DType.I64}, (), None),
    ("const", {"value": True, "dtype": DType.BOOL}, (), None),
    ("const", {"value": -2.0, "dtype": DType.F64, "weak": False}, (), None),
    ("const", {"value": -1.5, "dtype": DType.F32, "weak": False}, (), None),
    ("const", {"value": float("-inf"), "dtype": DType.F64}, (), None),
    ("size", {"dim": N + 1}, (), None),
    *[(name, {"shape": (N, Dim(2)), "dtype": dtype}, (), None)
      for name in ("zeros", "ones") for dtype in DType],
    ("full", {"shape": (N, Dim(3))}, (f64(),), "normal"),
    ("arange", {"lo": Dim(0), "hi": N}, (), None), ("arange", {"lo": Dim(1), "hi": N + 2}, (), None),
    *[("astype", {"dtype": dtype}, (f64(4),), "normal") for dtype in DType],
    ("astype", {"dtype": DType.F64}, (i64(4),), "int"),
    *[(name, {"axes": axes}, (f64(3, 4),), "normal")
      for name in ("sum", "mean", "prod", "max", "min", "logsumexp") for axes in ((0,), (1,), (0, 1))],
    ("sum", {"axes": (0,)}, (b(3, 4),), "bool"), ("prod", {"axes": (1,)}, (i64(3, 4),), "int"),
    ("logsumexp", {"axes": (1,)}, (f64(3, 4),), "neginf_row"),
    ("logsumexp", {"axes": (0,)}, (f64(3, 4),), "huge"),
    ("softmax", {"axis": 0}, (f64(3, 4),), "normal"), ("softmax", {"axis": 1}, (f64(3, 4),), "huge"),
    *[(name, {"axis": axis, "reverse": reverse, "exclusive": exclusive}, (x,), domain)
      for name in ("cumsum", "cumprod") for axis in (0, 1) for reverse in (False, True)
      for exclusive in (False, True) for x, domain in ((f64(3, 4), "normal"), (i64(3, 4), "int"))],
    ("cumsum", {"axis": 0, "reverse": False, "exclusive": False}, (i64(4),), "int"),
    ("cumprod", {"axis": 0, "reverse": True, "exclusive": True}, (f32(4),), "normal"),
    ("matmul", {}, (f64(3, 4), f64(4, 2)), "normal"), ("matmul", {}, (f64(4), f64(4, 2)), "normal"),
    ("matmul", {}, (f64(3, 4), f64(4)), "normal"), ("matmul", {}, (f64(2, 3, 4), f64(4, 5)), "normal"),
    ("transpose", {"perm": (1, 0)}, (f64(3, 4),), "normal"),
    ("transpose", {"perm": (2, 0, 1)}, (f64(2, 3, 4),), "normal"),
    ("expand_dims", {"axis": 0}, (f64(3, 4),), "normal"), ("expand_dims", {"axis": 2}, (f64(3, 4),), "normal"),
    ("broadcast_to", {"shape": (Dim(2), Dim(3))}, (f64(3),), "normal"),
    ("broadcast_to", {"shape": (N,)}, (f64(),), "normal"),
    ("reshape", {"shape": (Dim(2), Dim(6))}, (f64(3, 4),), "normal"),
    ("reshape", {"shape": (N.scale(3),)}, (f64("n", 3),), "normal"),
    ("stack", {"axis": 0}, (f64(3), f64(3), f64(3)), "normal"),
    ("stack", {"axis": 1}, (f64(3), f64(3)), "normal"),
    ("concat", {"axis": 0}, (f64(2, 3), f64(4, 3)), "normal"),
    ("concat", {"axis": 1}, (f64(2, 3), f64(2, 1), f64(2, 2)), "normal"),
    ("index", {"spec": (("at",), ("slice", Dim(1), Dim(4)))}, (f64(3, 4), i64()), "index"),
    ("index", {"spec": (("slice", Dim(0), Dim(2)),)}, (f64(3, 4),), "normal"),
    ("index", {"spec": (("slice", Dim(1), N),)}, (f64("n", 2),), "normal"),
    ("index", {"spec": (("at",), ("at",))}, (f64(3, 4), i64(), i64()), "index"),
    ("gather", {"clip": False}, (f64(3, 4), i64(2, 5)), "index"),
    ("gather", {"clip": False}, (f64(3, 4), i64(5), i64(2, 1)), "index"),
    ("gather", {"clip": True}, (f64(3, 4), i64(6), i64(6)), "wide_int"),
    ("index_add", {"spec": (("at",), ("slice", Dim(1), Dim(4)))}, (f64(3, 4), f64(3), i64()), "index"),
    ("index_add", {"spec": (("slice", Dim(0), Dim(2)),)}, (f64(3, 4), f64(4)), "normal"),
    ("index_add", {"spec": (("slice", Dim(1), N),)}, (f64("n", 2), f64(2)), "normal"),
    ("gather_add", {"clip": False}, (f64(3, 4), f64(5, 4), i64(5)), "index"),
    ("gather_add", {"clip": True}, (f64(3, 4), f64(6), i64(6), i64(6)), "wide_int"),
]


def _value(typ: ArrayType, domain: str, rng: np.random.Generator, n: int):
    shape = tuple(d.evaluate({"n": n}) for d in typ.shape)
    if typ.dtype is DType.BOOL:
        return rng.random(shape) < 0.5
    if typ.dtype is DType.I64:
        lo, hi = {"int": (-5, 6), "positive_int": (0, 4), "nonzero_int": (1, 6), "index": (0, 3),
                  "wide_int": (-4, 8), "mixed": (-5, 6)}[domain]
        values = rng.integers(lo, hi, size=shape)
        if domain == "nonzero_int":
            values = values * rng.choice([-1, 1], size=shape)
        return values
    normal = {"positive": lambda: rng.uniform(0.1, 3.0, shape),
              "huge": lambda: rng.normal(size=shape) * 800.0,
              "neginf_row": lambda: np.where(np.arange(shape[0])[:, None] == 1, -np.inf,
                                             rng.normal(size=shape)),
              "int": lambda: rng.integers(-5, 6, size=shape).astype(float),
              "positive_int": lambda: rng.uniform(0.5, 3.0, shape)}
    values = normal.get(domain, lambda: rng.normal(size=shape))()
    return values.astype(numpy_dtype(typ.dtype))


def _case_function(prim, ps, args):
    """`f(a0, a1, ..., n_source)`: the primitive applied to the parameters and literals."""
    names = [f"a{k}" for k in range(len(args))]
    fparams = [(name, a) for name, a in zip(names, args) if isinstance(a, ArrayType)]
    fparams.append(("sizer", f64("n")))
    atoms = tuple(Name(name) if isinstance(a, ArrayType) else Lit(a) for name, a in zip(names, args))
    types = tuple(a if isinstance(a, ArrayType) else L.atom_type(Lit(a), {}) for a in args)
    rtype = result_type(prim, ps, types)
    sizes = (SizeBinding("n", len(fparams) - 1, 0),)
    return function("f", tuple(fparams), rtype, (Bind("r", Call(prim, ps, atoms)),), Name("r"),
                    sizes), rtype


# How each backend is run: the printer's backend, and the array library of the inputs.
RUNS = {"numpy": ("numpy", np.asarray), "array-api/strict": ("array-api", lambda v: STRICT.asarray(v)),
        "array-api/numpy": ("array-api", np.asarray)}
STRICT = pytest.importorskip("array_api_strict", reason="the array-api backend is tested on "
                             "array_api_strict: pip install '.[test]'")


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}".replace(" ", ""))
def test_every_primitive_prints_as_its_reference_semantics(case, run):
    """Each backend's code for each primitive against the reference evaluator, on
    NumPy arrays and (array-api) on array_api_strict's, which refuses all that
    the standard does not define."""
    name, ps_dict, args, domain = case
    backend, convert = RUNS[run]
    prim, ps = P.BY_NAME[name], params(**ps_dict)
    fn, rtype = _case_function(prim, ps, args)
    _, module = module_of(fn, backend=backend)
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    for n in (4, 3):
        values = [_value(a, domain, rng, n) for a in args if isinstance(a, ArrayType)]
        literals = iter(values)
        ref_args = [next(literals) if isinstance(a, ArrayType) else a for a in args]
        with np.errstate(all="ignore"):
            got = module.f(*map(convert, values), convert(np.zeros(n)))
            got = np.asarray(got)
        expected = apply(prim, ps, ref_args, {"n": n})
        assert np.shape(got) == np.shape(expected)
        rtol = 1e-6 if rtype.dtype is DType.F32 else 1e-13  # a few ulps either way
        np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(expected, dtype=float),
                                   rtol=rtol, atol=1e-300, equal_nan=True)
        assert np.asarray(got).dtype == numpy_dtype(rtype.dtype), "the dtype prim_types promises"


def test_literals_print_as_python_and_negative_ones_are_parenthesised_as_operands():
    assert [literal_arg(v, "np").text for v in (True, -3, 0.5, -0.0, 1e-300, float("inf"), -float("inf"))] == \
        ["True", "-3", "0.5", "-0.0", "1e-300", "np.inf", "-np.inf"]
    assert literal_arg(float("nan"), "np").text == "np.nan"
    fn, _ = _case_function(P.POW, (), (-2.0, f64(3)))
    text, _ = module_of(fn)
    assert "return (-2.0) ** a1" in text


@pytest.mark.parametrize("spec, code", [
    ((("at",), ("slice", Dim(0), Dim(4))), "a0[a1]"),
    ((("slice", Dim(1), Dim(3)), ("at",)), "a0[1:, a1]"),
    ((("slice", Dim(0), Dim(2)), ("slice", Dim(0), Dim(4))), "a0[:2]"),
])
def test_index_prints_as_numpy_indexing(spec, code):
    fn, _ = _case_function(P.INDEX, params(spec=spec), (f64(3, 4), i64()) if len(spec) and
                           any(item[0] == "at" for item in spec) else (f64(3, 4),))
    text, _ = module_of(fn)
    assert f"return {code}\n" in text


# ---- erf and the other helpers ----------------------------------------------------


@pytest.fixture(scope="module")
def helpers():
    x = Name("x")
    binds = tuple(Bind(n, Call(P.BY_NAME[n], (), (x,))) for n in ("erf", "gelu", "silu"))
    fn = function("f", (("x", VEC),), VEC, binds, Name("gelu"), (SizeBinding("n", 0, 0),))
    return module_of(fn)


def test_erf_matches_math_erf_to_double_precision(helpers):
    _, m = helpers
    x = np.concatenate([np.linspace(-7, 7, 6001), np.logspace(-300, 1.2, 2000),
                        -np.logspace(-300, 1.2, 2000), [0.46875, -0.46875, 4.0, -4.0, 5.9, 27.0, 1e10]])
    got = m._erf(x)
    expected = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(got - expected) / np.abs(expected)) < 1e-14
    assert m._erf(-0.0) == 0.0 and math.copysign(1.0, m._erf(-0.0)) == -1.0
    assert m._erf(np.inf) == 1.0 and m._erf(-np.inf) == -1.0 and np.isnan(m._erf(np.nan))
    assert m._erf(np.float32(0.5)).dtype == np.float32 and m._erf(np.arange(3)).dtype == np.float64


def test_erfc_and_gelu_keep_relative_precision_in_the_tail(helpers):
    _, m = helpers
    x = np.linspace(-6, 26, 6001)
    expected = np.array([math.erfc(v) for v in x])
    assert np.max(np.abs(m._erfc(x) - expected) / expected) < 1e-13
    assert m._erfc(np.inf) == 0.0 and m._erfc(-np.inf) == 2.0
    z = np.linspace(-36, 10, 4001)
    gelu = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in z])
    nonzero = gelu != 0
    assert np.max(np.abs(m._gelu(z)[nonzero] - gelu[nonzero]) / np.abs(gelu[nonzero])) < 1e-13


def test_only_the_helpers_used_are_emitted_in_a_fixed_order(helpers):
    text, _ = helpers
    defined = re.findall(r"^def (_\w+)\(", text, flags=re.MULTILINE)
    assert defined == ["_erf_near_zero", "_erfc_away_from_zero", "_float_dtype", "_erf", "_erfc",
                       "_sigmoid", "_gelu", "_silu"]
    logistic = catad.to_python(LOGISTIC)
    assert re.findall(r"^def (_\w+)\(", logistic, flags=re.MULTILINE) == ["_sigmoid"]



@pytest.mark.parametrize("dtype", [DType.F64, DType.F32, DType.I64])
@pytest.mark.parametrize("count", [10, 5000])
def test_gather_add_adds_as_add_at_does_on_the_flat_positions_too(dtype, count):
    """5000 values in range take the flat positions (`_add_at`), 10 add.at's general
    path: each the same numbers as np.add.at, repeats accumulating in the same order;
    a negative index (wrapping in add.at) or one past the end (IndexError) goes to add.at."""
    fn, _ = _case_function(P.GATHER_ADD, params(clip=False),
                           (t(dtype, 64, 32), t(dtype, "n"), t(DType.I64, "n"), t(DType.I64, "n")))
    text, module = module_of(fn)
    assert "_add_at(out, key, value)" in text
    rng = np.random.default_rng(count)
    target, value = (rng.normal(size=shape).astype(numpy_dtype(dtype)) * 100 for shape in ((64, 32), count))
    rows, cols = rng.integers(0, 64, count), rng.integers(0, 32, count)
    rows[1], cols[1] = -1, -32
    for key in ((rows[2:], cols[2:]), (rows, cols)):
        expected = target.copy()
        np.add.at(expected, key, value[:key[0].size])
        got = module.f(target, value[:key[0].size], *key, np.zeros(key[0].size))
        np.testing.assert_array_equal(got, expected, strict=True)
    with pytest.raises(IndexError):
        module.f(target, value[:3], np.array([0, 64, 1]), cols[:3], np.zeros(3))

# ---- the text of the module ------------------------------------------------------------


def test_the_exact_text_of_a_tiny_function():
    source = Source("fn double(x: f64[n]) -> f64[n] {\n    x * 2.0\n}\n", "double.catad")
    fn = function("double", (("x", VEC),), VEC,
                  (Bind("y", Call(P.MUL, (), (Name("x"), Lit(2.0))), Span(2, 5)),), Name("y"),
                  (SizeBinding("n", 0, 0),), span=Span(1, 1))
    assert lower(program(fn), source_path="double.catad", source=source) == '''\
# Generated by catad from double.catad. Do not edit.
import numpy as np


# double.catad:1  fn double(x: f64[n]) -> f64[n] {
def double(x):
    """double(x: f64[n]) -> f64[n]

    Compiled by catad from double.catad, line 1.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"double: argument x should have 1 axis (f64[n]), got shape {x.shape}")
    n = x.shape[0]
    # double.catad:2  x * 2.0
    return x * 2.0
'''


def test_the_logistic_regression_module_reads_like_numpy():
    text = catad.to_python(LOGISTIC, "logistic.catad")
    assert "    # logistic.catad:3  let z = X @ w + b;\n    z = X @ w + b\n" in text
    assert "    return -np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p), axis=0)\n" in text
    assert "    p = _sigmoid(z)\n" in text
    assert "np.mean(" in text and "axis=0)" in text
    assert text.count("import") == 1 and text.startswith("# Generated by catad from logistic.catad.")


def test_compiling_twice_gives_identical_text_even_across_hash_seeds():
    first = catad.to_python(LOGISTIC)
    assert catad.to_python(LOGISTIC) == first
    script = ("import sys, catad; sys.stdout.write(catad.to_python(sys.stdin.read()))")
    outputs = {subprocess.run([sys.executable, "-c", script], input=LOGISTIC, capture_output=True,
                              text=True, env={"PYTHONHASHSEED": seed}, check=True).stdout
               for seed in ("1", "2")}
    assert outputs == {first}


def test_keywords_and_builtins_are_mangled_and_still_run():
    src = ("fn print(lambda: f64[len], str: f64, np: f64, t1: f64) -> f64 {\n"
           "    let list = lambda * str + np;\n"
           "    let _hidden = mean(list) + t1;\n"
           "    _hidden\n"
           "}\n"
           "fn print_(x: f64) -> f64 { x }\n")
    text = catad.to_python(src)
    assert "def print__1(lambda_, str_, np_, t1):" in text and "def print_(x):" in text
    assert "len_ = lambda_.shape[0]" in text and "list_ = " in text
    m = load_module(text, "mangled")
    assert m.print__1(np.ones(3), 2.0, 1.0, 0.5) == 3.5 and m.print_(3.0) == 3.0


# ---- entry checks --------------------------------------------------------------


@pytest.fixture(scope="module")
def logistic():
    return catad.compile(LOGISTIC)


@pytest.mark.parametrize("args, message", [
    ((np.ones(2), 0.0, np.ones((3, 2)), np.ones(4)),
     "loss: argument y should have shape (3,) (f64[n] with n = 3), got (4,)"),
    ((np.ones(2), 0.0, np.ones(3), np.ones(3)),
     "loss: argument X should have 2 axes (f64[n, d]), got shape (3,)"),
    ((np.ones(2), 0.0, np.ones((3, 5)), np.ones(3)),
     "loss: argument X should have shape (3, 2) (f64[n, d] with n = 3, d = 2), got (3, 5)"),
    ((np.ones(2), np.ones(2), np.ones((3, 2)), np.ones(3)),
     "loss: argument b should have shape () (f64), got (2,)"),
])
def test_shape_errors_name_the_function_argument_type_and_sizes(logistic, args, message):
    with pytest.raises(ValueError) as err:
        logistic.loss(*args)
    assert str(err.value) == message


def test_constant_shapes_and_tuple_arguments_are_checked():
    pair = TupleType((F64, ArrayType(DType.F64, (Dim(3),))))
    fn = function("g", (("p", pair),), F64, (Bind("a", Project(Name("p"), 0)),), Name("a"))
    text, m = module_of(fn)
    assert "p = (np.asarray(p[0], dtype=np.float64), np.asarray(p[1], dtype=np.float64))" in text
    assert m.g((1.5, [1.0, 2.0, 3.0])) == 1.5
    with pytest.raises(ValueError, match=re.escape("g: argument p should be a tuple of 2 items "
                                                   "((f64, f64[3]))")):
        m.g(1.5)
    with pytest.raises(ValueError, match=re.escape("g: argument p[1] should have shape (3,) "
                                                   "(f64[3]), got (2,)")):
        m.g((1.5, [1.0, 2.0]))


def test_arguments_are_converted_to_the_declared_dtype(logistic):
    assert logistic.loss([0, 1], 0, [[1, 2], [3, 4], [5, 6]], [1, 0, 1]) > 0


# ---- text from the user goes only into comments ------------------------------------------


@pytest.mark.parametrize("bind", [
    Bind("os.system", Call(P.NEG, (), (Name("x"),))),
    Bind("r", Call(P.ZEROS, params(dtype=DType.F64, shape=(Dim.of("__import__('os')"),)), ())),
    Bind("r", Call(P.NEG, (), (Name("x; import os"),))),
    Bind("class", Call(P.NEG, (), (Name("x"),))),
])
def test_a_name_that_is_not_a_plain_identifier_never_reaches_the_code(bind):
    use = Bind("out", Call(P.NEG, (), (Name(bind.name),)))
    fn = function("f", (("x", F64),), F64, (bind, use), Name("out"))
    with pytest.raises(AssertionError, match="unsafe identifier"):
        lower(program(fn), source_path="x", source=None)


def test_comment_text_cannot_end_a_comment():
    nasty = "a\nb\rc\x00d\u2028e\u2029f\x85g\x0bh\x0ci\tj\ud800"
    safe = comment_text(nasty)
    assert len(safe.splitlines()) == 1 and "\x00" not in safe and "\tj" in safe
    assert safe.startswith("a\\nb\\rc\\x00d\\u2028e")


def test_paths_and_lines_with_line_breaks_stay_inside_comments_and_docstrings():
    path = 'evil\nraise SystemExit("owned")\r\x00"""\\ coding: bogus é.catad'
    source = Source("fn f(x: f64) -> f64 {\n    x \x00 * 2.0 \u2028 raise\n}\n", path)
    fn = function("f", (("x", F64),), F64,
                  (Bind("y", Call(P.MUL, (), (Name("x"), Lit(2.0))), Span(2, 5)),), Name("y"),
                  span=Span(1, 1))
    text, m = module_of(fn, path=path, source=source)
    assert m.f(2.0) == 4.0
    assert f"Compiled by catad from {path}, line 1." in m.f.__doc__
    lines = text.splitlines()
    assert len(lines) == text.count("\n")  # no other line breaks anywhere
    assert not any(line.lstrip().startswith("raise SystemExit") for line in lines)
    # the path is in the header and two comments, and escaped in the docstring; nowhere else
    assert all(line.lstrip().startswith("#") or "Compiled by catad from evil\\n" in line
               for line in lines if "owned" in line)
    cookie = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
    assert not any(cookie.match(line) for line in text.splitlines()[:2])


def test_a_generated_file_imports_even_when_its_path_looks_like_an_encoding(tmp_path):
    text = catad.to_python(LOGISTIC, "model coding: bogus.catad")
    file = tmp_path / "model.py"
    file.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("model_from_file", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.loss)


# ---- branches and loops ------------------------------------------------------------


def test_if_else_assigns_one_variable():
    # one expression a branch: one line; more: an if statement
    src = "fn f(x: f64, c: bool) -> f64 {\n    let y = if c { x * 2.0 } else { -x };\n    y + 1.0\n}\n"
    text = catad.to_python(src)
    assert "    y = x * 2.0 if c else -x\n" in text, text
    m = load_module(text, "branch")
    assert m.f(3.0, True) == 7.0 and m.f(3.0, False) == -2.0
    src = ("fn f(x: f64[n], c: bool) -> f64 {\n    let y = if c { let s = sum(x); s * s } else { -x[0] };\n"
           "    y + 1.0\n}\n")
    text = catad.to_python(src)
    assert re.search(r"if c:\n +s = .*\n +y = s \* s\n +else:\n +y = -x\[0\]\n", text), text
    m = load_module(text, "branch")
    assert m.f(np.array([1.0, 2.0]), True) == 10.0 and m.f(np.array([1.0, 2.0]), False) == 0.0


def test_an_if_in_a_conditional_expression_only_evaluates_its_branch():
    # x[0] over no items would raise: the branch not taken is never run
    src = "fn f(x: f64[n]) -> f64 {\n    if n == 0 { 0.5 } else { x[0] }\n}\n"
    m = load_module(catad.to_python(src), "lazy_branch")
    assert m.f(np.zeros(0)) == 0.5 and m.f(np.array([2.0])) == 2.0


def test_scan_with_tuple_states_stacks_each_item_and_handles_no_steps():
    src = ("fn f(xs: f64[t, n], v: f64[n]) -> (f64[t], f64[t, n]) {\n"
           "    scan((0.0, v), xs, |acc, x| { let (s, w) = acc; (s + sum(x), w * x) })\n"
           "}\n")
    text = catad.to_python(src)
    m = load_module(text, "scan")
    xs, v = np.arange(6.0).reshape(3, 2), np.array([1.0, 2.0])
    sums, prods = m.f(xs, v)
    np.testing.assert_array_equal(sums, np.cumsum(xs.sum(axis=1)))
    np.testing.assert_array_equal(prods, v * np.cumprod(xs, axis=0))
    empty_sums, empty_prods = m.f(np.zeros((0, 2)), v)
    assert empty_sums.shape == (0,) and empty_prods.shape == (0, 2)
    assert "for step, x in enumerate(xs):" in text


def test_a_tuple_state_is_held_in_one_variable_per_item():
    # fold and scan: `acc_0, acc_1 = ...` (portable code: assigned by `_fold` and
    # `_scan`, and unpacked in the step function), items read as variables (no
    # `acc[0]`), a fold's result read item by item; a scan's unstacked item left in
    # its variable
    src = ("fn f(xs: f64[t, n], v: f64[n]) -> (f64, f64[n]) {\n"
           "    fold((0.0, v), xs, |acc, x| { let (s, w) = acc; (s + sum(w * x), w * x) })\n"
           "}\n"
           "fn g(xs: f64[t, n], v: f64[n]) -> f64 {\n"
           "    let (s, w) = fold((0.0, v), xs, |acc, x| { let (s, w) = acc; (s + sum(w), w * x) });\n"
           "    s * sum(w)\n"
           "}\n")
    for backend in BACKENDS:
        text = catad.to_python(src, backend=backend)
        initial = (r"\n +(\w+)_0, \1_1 = \S.*, v\n" if backend == "numpy" else
                   r"\n +\(?(\w+)_0, \1_1\)?.* = _(fold|scan)\(xp, \w+, \(\S.*, v\), xs")
        assert re.search(initial, text), text
        assert backend == "numpy" or re.search(r"\n +(\w+)_0, \1_1 = \1_?\n", text), text
        assert not re.search(r"\b(acc|t\d+)\[[01]\]", text), text
        m = load_module(text, f"tuple_state_{backend}")
        xs, v = np.arange(6.0).reshape(3, 2), np.array([1.0, 2.0])
        s, w = m.f(xs, v)
        assert w == pytest.approx(v * np.prod(xs, axis=0))
        assert s == pytest.approx(sum(np.sum(v * np.prod(xs[:k + 1], axis=0)) for k in range(3)))
        ws = [v * np.prod(xs[:k], axis=0) for k in range(4)]
        assert m.g(xs, v) == pytest.approx(sum(np.sum(u) for u in ws[:3]) * np.sum(ws[3]))


def test_a_loop_sequence_is_printed_where_the_loop_reads_it_once():
    # NumPy iterates over it once: `for x in np.exp(x)`; portable code passes it
    # once to `_fold`, which indexes its rows
    src = "fn f(x: f64[t]) -> f64 {\n    fold(0.0, exp(x), |acc, e| acc * 0.5 + e)\n}\n"
    text = catad.to_python(src)
    assert re.search(r"for \w+ in np\.exp\(x\):", text), text
    portable = catad.to_python(src, backend="array-api")
    assert re.search(r"= _fold\(xp, step, .*, xp\.exp\(x\)\)\n", portable), portable
    x = np.array([1.0, 2.0, 3.0])
    expected = (np.exp(1.0) * 0.5 + np.exp(2.0)) * 0.5 + np.exp(3.0)
    for backend, code in (("numpy", text), ("array-api", portable)):
        m = load_module(code, f"sequence_{backend.replace('-', '_')}")
        assert m.f(x) == pytest.approx(expected)


@pytest.mark.parametrize("stacked", [False, True])
def test_a_loop_over_its_steps_counts_with_range(stacked):
    # over arange(t) NumPy code counts with a Python range, no array made; a scan's
    # item is its step (`for step in range(t)`, not `enumerate(np.arange(t))`)
    loop = "scan" if stacked else "fold"
    src = f"fn f(x: f64[t]) -> f64 {{\n    sum({loop}(0.0, arange(t), |acc, i| acc * 0.5 + x[i] * f64(i)))\n}}\n"
    text = catad.to_python(src)
    assert re.search(r"for (\w+) in range\(t\):", text), text
    assert "np.arange" not in text and "enumerate" not in text, text
    m = load_module(text, f"range_{loop}")
    x = np.array([0.5, -1.0, 2.0, 3.0])
    states = list(itertools.accumulate(x * np.arange(4.0), lambda acc, v: acc * 0.5 + v, initial=0.0))[1:]
    assert m.f(x) == pytest.approx(sum(states) if stacked else states[-1])
    assert m.f(np.zeros(0)) == 0.0


def test_a_loop_over_a_tuple_of_arrays_walks_them_together():
    xs_type = TupleType((ArrayType(DType.F64, (N,)), ArrayType(DType.F64, (N, Dim(2)))))
    body = Block((Bind("a", Project(Name("x"), 0)), Bind("bb", Project(Name("x"), 1)),
                  Bind("sb", Call(P.SUM, params(axes=(0,)), (Name("bb"),))),
                  Bind("m", Call(P.MUL, (), (Name("a"), Name("sb")))),
                  Bind("acc2", Call(P.ADD, (), (Name("acc"), Name("m"))))), Name("acc2"))
    fn = function("f", (("p", xs_type), ("u", VEC)), F64,
                  (Bind("r", LoopE(Lit(0.0), Name("p"), "acc", "x", body, False)),), Name("r"),
                  (SizeBinding("n", 1, 0),))
    text, m = module_of(fn)
    assert "for x in zip(p[0], p[1]):" in text and "    r = 0.0\n" in text
    a, bb = np.array([1.0, 2.0, 3.0]), np.arange(6.0).reshape(3, 2)
    assert m.f((a, bb), np.zeros(3)) == pytest.approx(np.sum(a * bb.sum(axis=1)))


def test_a_fold_whose_body_is_the_state_has_a_loop_body():
    fn = function("f", (("x", VEC),), F64,
                  (Bind("r", LoopE(Lit(1.5), Name("x"), "acc", "xi", Block((), Name("acc")), False)),),
                  Name("r"), (SizeBinding("n", 0, 0),))
    text, m = module_of(fn)
    assert "pass" in text and m.f(np.ones(3)) == 1.5


def test_a_lambda_left_after_simplification_is_an_error():
    fn = function("f", (("x", F64),), F64,
                  (Bind("g", Lambda(("a",), Block((), Name("a")))),), Name("x"))
    with pytest.raises(AssertionError, match="Lambda in f is left"):
        lower(program(fn), source_path="x", source=None)


def test_load_module_names_the_module_and_shows_its_lines_in_tracebacks():
    m = load_module("def boom():\n    raise RuntimeError('here')\n", "boomer")
    assert m.__name__ == "boomer"
    import traceback
    try:
        m.boom()
    except RuntimeError:
        assert "raise RuntimeError('here')" in traceback.format_exc()


# ---- temporaries printed where they are read ----------------------------------------------


def _call(prim, *args, **ps) -> Call:
    return Call(P.BY_NAME[prim] if isinstance(prim, str) else prim, params(**ps),
                tuple(a if isinstance(a, Name | Lit) else Name(a) if isinstance(a, str) else Lit(a)
                      for a in args))


def _vec_function(*bindings: Bind, result: str = "r"):
    return function("f", (("x", VEC), ("y", VEC)), VEC, bindings, Name(result), (SizeBinding("n", 0, 0),))


@pytest.mark.parametrize("bindings, code, value", [
    # (x + y) * x: the sum is parenthesised;  x - (y - x): the right operand of - is
    ((Bind("t1", _call("add", "x", "y")), Bind("r", _call("mul", "t1", "x"))), "(x + y) * x",
     lambda x, y: (x + y) * x),
    ((Bind("t1", _call("sub", "y", "x")), Bind("r", _call("sub", "x", "t1"))), "x - (y - x)",
     lambda x, y: x - (y - x)),
    # x * y + x: no parentheses;  -(x * y) and (-x) ** 2 where Python would bind otherwise
    ((Bind("t1", _call("mul", "x", "y")), Bind("r", _call("add", "t1", "x"))), "x * y + x",
     lambda x, y: x * y + x),
    ((Bind("t1", _call("mul", "x", "y")), Bind("r", _call("neg", "t1"))), "-(x * y)",
     lambda x, y: -(x * y)),
    ((Bind("t1", _call("neg", "x")), Bind("r", _call("pow", "t1", 2))), "(-x) ** 2",
     lambda x, y: (-x) ** 2),
    ((Bind("t1", _call("pow", "x", 2)), Bind("r", _call("neg", "t1"))), "-x ** 2",
     lambda x, y: -(x ** 2)),
    # x < y compared again: a chain would mean something else
    ((Bind("t1", _call("lt", "x", "y")), Bind("r", _call("eq", "t1", Lit(True)))), "(x < y) == True",
     lambda x, y: (x < y) == True),  # noqa: E712
    # a call is an atom: np.exp(x).T needs nothing, (x + y).T needs parentheses
    ((Bind("t1", _call("add", "x", "y")), Bind("r", _call("exp", "t1"))), "np.exp(x + y)",
     lambda x, y: np.exp(x + y)),
])
def test_a_temporary_read_once_is_printed_where_it_is_read(bindings, code, value):
    text, m = module_of(_vec_function(*bindings))
    assert f"    return {code}\n" in text and "t1 =" not in text
    x, y = np.array([0.5, -1.0, 2.0]), np.array([1.5, 2.0, -0.5])
    np.testing.assert_array_equal(m.f(x, y), value(x, y))


def test_a_temporary_read_twice_or_named_keeps_its_line():
    bindings = (Bind("t1", _call("exp", "x")), Bind("z", _call("log", "y")),
                Bind("r", _call("add", "t1", "t1")), Bind("r2", _call("mul", "r", "z")))
    text, _ = module_of(_vec_function(*bindings, result="r2"))
    assert "    t1 = np.exp(x)\n" in text and "    z = np.log(y)\n" in text


def test_a_temporary_read_inside_a_loop_is_not_moved_into_it():
    body = Block((Bind("t2", _call("add", "acc", "t1")),), Name("t2"))
    bindings = (Bind("t1", _call("exp", "y")),
                Bind("r", LoopE(Name("y"), Name("x"), "acc", "xi", body, False)))
    fn = function("f", (("x", VEC), ("y", F64)), F64, bindings, Name("r"), (SizeBinding("n", 0, 0),))
    text, m = module_of(fn)
    assert "    t1 = np.exp(y)\n" in text and "        r = r + t1\n" in text
    assert m.f(np.ones(4), 0.0) == pytest.approx(4.0)


def test_a_line_that_would_grow_too_wide_assigns_its_widest_temporaries_first():
    bindings = [Bind("t1", _call("exp", "x"))]
    for k in range(2, 12):
        bindings.append(Bind(f"t{k}", _call("add", f"t{k - 1}", "y")))
    bindings.append(Bind("r", _call("mul", "t11", "t11")))
    text, m = module_of(_vec_function(*bindings))
    assert all(len(line) <= 4 + len("t11 = ") + L.INLINE_WIDTH for line in text.splitlines()
               if not line.lstrip().startswith(("#", "raise", "if", '"""')) and "ValueError" not in line)
    x, y = np.array([0.5, -1.0, 2.0]), np.array([1.5, 2.0, -0.5])
    np.testing.assert_allclose(m.f(x, y), (np.exp(x) + 10 * y) ** 2)


def test_a_scalar_cast_prints_as_a_scalar_and_a_clipped_gather_clips_to_the_size():
    fn = function("f", (("x", VEC), ("i", ArrayType(DType.I64, (N,)))), VEC,
                  (Bind("t1", _call("size", dim=N)), Bind("t2", _call("astype", "t1", dtype=DType.F64)),
                   Bind("t3", _call("gather", "x", "i", clip=True)), Bind("r", _call("div", "t3", "t2"))),
                  Name("r"), (SizeBinding("n", 0, 0),))
    text, m = module_of(fn)
    assert "return x[np.clip(i, 0, n - 1)] / np.float64(n)" in text
    np.testing.assert_allclose(m.f(np.arange(3.0), np.array([5, -1, 1])), [2 / 3, 0.0, 1 / 3])


def test_size_only_values_are_of_sizes_and_int_literals_by_exact_arithmetic_and_print_as_python():
    """`size_only`: sizes, int literals and what exact int arithmetic, comparisons and
    ifs make of them; not data, not a float, not `//` by a size (Python raises where
    NumPy gives 0), not a loop's step. The array-API module prints them as Python
    numbers, and as arrays where an array is read, with the NumPy module's numbers."""
    from catad.compiler.simplify import binding_types
    from catad.compiler.size_only import size_only
    from catad.compiler.target import IfElse

    k = ArrayType(DType.I64)
    body = Block((Bind("u", _call("add", "i", "t2")),), Name("u"))
    fn = function("f", (("x", VEC), ("k", k)), F64, (
        Bind("t1", _call("size", dim=N)), Bind("t2", _call("sub", "t1", 1)), Bind("t3", _call("eq", "t2", 0)),
        Bind("t4", _call("floordiv", "t1", 2)), Bind("t5", _call("floordiv", 2, "t1")),
        Bind("t6", _call("add", "t1", "k")), Bind("t7", _call("astype", "t2", dtype=DType.F64)),
        Bind("t8", IfElse(Name("t3"), Block((), Name("t1")), Block((), Name("t4")))),
        Bind("t9", _call("arange", lo=Dim(0), hi=N)), Bind("t10", LoopE(Lit(0), Name("t9"), "acc", "i", body, False)),
        Bind("t11", _call("mul", "t8", "t10")), Bind("t12", _call("add", "t11", "t6")),
        Bind("t13", _call("astype", "t12", dtype=DType.F64)), Bind("t14", _call("index", "x", "t2", spec=(("at",),))),
        Bind("t15", _call("mul", "t13", "t7")), Bind("r", _call("add", "t15", "t14"))),
        Name("r"), (SizeBinding("n", 0, 0),))
    assert size_only(fn, binding_types(fn)) == {"t1", "t2", "t3", "t4", "t8"}
    text, portable = module_of(fn, backend="array-api")
    assert "t8 = n if t2 == 0 else t4" in text and "t5 = 2 // xp.asarray(n, dtype=xp.int64" in text, text
    _, reference = module_of(fn)
    for x in (np.array([2.0]), np.array([0.5, -1.0, 3.0, 4.0])):
        np.testing.assert_allclose(portable.f(x, np.int64(3)), reference.f(x, np.int64(3)))


def test_a_broadcast_the_function_returns_is_an_array_of_the_callers_own():
    fn = function("f", (("x", VEC), ("s", F64)), VEC,
                  (Bind("r", _call("broadcast_to", "s", shape=(N,))),), Name("r"), (SizeBinding("n", 0, 0),))
    text, m = module_of(fn)
    assert "return np.broadcast_to(s, (n,)).copy()" in text
    out = m.f(np.zeros(3), 2.0)
    out += 1.0
    np.testing.assert_array_equal(out, [3.0, 3.0, 3.0])


def test_a_loop_is_printed_with_the_names_of_its_lambda():
    # the state and the item carry the lambda's parameter names; an unnamed fold's
    # result is its state, an unnamed scan's its states; a name Python would misread
    # is escaped as every other source name is
    src = ("fn last(xs: f64[t, n]) -> f64[n] { fold(zeros(n), xs, |h, row| h * 0.5 + row) }\n"
           "fn all(xs: f64[t, n]) -> f64[t, n] { scan(zeros(n), xs, |h, row| h * 0.5 + row) }\n"
           "fn odd(xs: f64[t, n]) -> f64[n] { fold(zeros(n), xs, |print, x| print + x) }\n")
    text = catad.to_python(src)
    assert "for row in xs:\n        h = h * 0.5 + row\n    return h\n" in text, text
    assert "for step, row in enumerate(xs):\n        h = h * 0.5 + row\n        hs[step] = h\n" in text, text
    assert "print_ = print_ + x" in text, text
    m = load_module(text, "loop_names")
    xs = np.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(m.all_(xs)[-1], m.last(xs))
    np.testing.assert_allclose(m.odd(xs), xs.sum(axis=0))


def test_the_loops_of_a_gradient_are_printed_with_the_names_of_the_source():
    # the forward loop keeps the fold's `|h, x|` once its residuals leave its state (`hs`
    # its states); the reverse loop replays the step from `h_before` (the forward loop's
    # variable keeps `h`), carries `h_bar` and, accumulated, `main_bar`, and stacks
    # `x_bars`; no `acc` and no arange for a loop over the steps is left
    src = ("fn f(main: f64[n, n], xs: f64[t, n]) -> f64 {\n"
           "    sum(fold(zeros(n), xs, |h, x| sin(main[0] * h + main[1] * x)))\n}\n"
           "fn f_grad = grad(f);\n")
    text = catad.to_python(src)
    gradient = text[text.index("def f_grad("):]
    for line in ("    for step, x in enumerate(xs):\n", "        hs[step] = h\n", "    h_bar, main_bar",
                 "        h_before = t", "        x_bars[step_1] = ", "    xs_bar = x_bars[::-1]\n"):
        assert line in gradient, gradient
    assert re.search(r"\bmain_bar\b.* = ", gradient) and not re.search(r"\bacc|np\.arange", gradient), gradient
    m = load_module(text, "gradient_names")
    rng = np.random.default_rng(2)
    args = (rng.standard_normal((3, 3)), rng.standard_normal((4, 3)))
    for k, g in enumerate(m.f_grad(*args)):
        np.testing.assert_allclose(g, _central_differences(m.f, args, k), rtol=1e-6, atol=1e-8)


def _central_differences(f, args: tuple, k: int, step: float = 1e-6) -> np.ndarray:
    """The gradient of f(*args) with respect to args[k], by central differences."""
    numeric = np.zeros_like(args[k])
    for i in np.ndindex(args[k].shape):
        plus, minus = [list(args) for _ in range(2)]
        plus[k], minus[k] = args[k].copy(), args[k].copy()
        plus[k][i] += step
        minus[k][i] -= step
        numeric[i] = (f(*plus) - f(*minus)) / (2 * step)
    return numeric


def test_the_rows_a_reverse_loop_adds_to_an_accumulator_are_stacked_under_its_name():
    # a loop over layers reading W[i] owes W's cotangent row i at step i: the reverse
    # loop stacks those rows (no copy of the accumulator per step) in `W_bars`, read
    # back last first into the accumulator `W_bar`
    src = ("fn f(W: f64[l, n], x: f64[n]) -> f64 {\n"
           "    sum(fold(x, arange(l), |h, i| tanh(W[i] * h)))\n}\n"
           "fn f_grad = grad(f, wrt = W);\n")
    text = catad.to_python(src)
    gradient = text[text.index("def f_grad("):]
    assert re.search(r"\n +W_bars\[step_?\d*\] = ", gradient) and "W_bars[::-1]" in gradient, gradient
    assert not re.search(r"\bt\d+_\d+\[step", gradient), gradient
    m = load_module(text, "accumulated_rows")
    rng = np.random.default_rng(3)
    W, x = rng.standard_normal((4, 3)), rng.standard_normal(3)
    np.testing.assert_allclose(m.f_grad(W, x), _central_differences(m.f, (W, x), 0), rtol=1e-6, atol=1e-8)


def test_an_inner_scan_stacks_its_rows_straight_into_the_outer_scans_row():
    # NumPy: the inner scan's stack is the outer's row at this step (a view), not fresh
    # zeros copied there after the inner loop; the next step reads it as its state
    src = ("fn f(xs: f64[t, n], W: f64[l, n]) -> f64[t, l, n] {\n"
           "    scan(zeros((l, n)), xs, |s, x| scan(x, arange(l), |h, i| tanh(W[i] * h + s[i])))\n}\n")
    text = catad.to_python(src)
    assert "    for step, x in enumerate(xs):\n        hs = ss[step]\n" in text, text
    assert "ss[step] = " not in text and "np.zeros((l, n))\n        h = x" not in text, text
    rng = np.random.default_rng(5)
    for t in (0, 1, 3):
        xs, W = rng.standard_normal((t, 2)), rng.standard_normal((3, 2))
        s, expected = np.zeros((3, 2)), []
        for x in xs:
            h, rows = x, []
            for i in range(3):
                h = np.tanh(W[i] * h + s[i])
                rows.append(h)
            s = np.array(rows)
            expected.append(s)
        got = load_module(text, f"inner_rows_{t}").f(xs, W)
        np.testing.assert_allclose(got, np.reshape(expected, (t, 3, 2)))


def test_a_stack_of_an_inner_scans_stacks_is_named_after_them():
    # the gradient's forward loop stores each layer's gate: the inner scan stacks
    # `gates` over the layers, straight into the outer stack over the steps, which is
    # named after it too, and the reverse loop reads `gates[t, i]`
    src = ("fn f(xs: f64[t, n], W: f64[l, n]) -> f64 {\n"
           "    sum(fold(zeros((l, n)), xs, |s, x| scan(x, arange(l), |h, i| {\n"
           "        let gate = sigmoid(W[i] * h + s[i]);\n"
           "        gate * h\n"
           "    })))\n}\n"
           "fn f_grad = grad(f);\n")
    text = catad.to_python(src)
    gradient = text[text.index("def f_grad("):]
    assert "    gates = np.zeros((t, l, n))\n" in gradient and "        gates_1 = gates[step]\n" in gradient, gradient
    assert re.search(r"gate_\d+ = gates\[\w+, \w+\]", gradient), gradient
    m = load_module(text, "inner_names")
    rng = np.random.default_rng(6)
    xs, W = rng.standard_normal((3, 2)), rng.standard_normal((2, 2))
    grads = m.f_grad(xs, W)
    step = 1e-6
    for k, arg in enumerate((xs, W)):
        numeric = np.zeros_like(arg)
        for i in np.ndindex(arg.shape):
            plus, minus = [[xs.copy(), W.copy()] for _ in range(2)]
            plus[k][i] += step
            minus[k][i] -= step
            numeric[i] = (m.f(*plus) - m.f(*minus)) / (2 * step)
        np.testing.assert_allclose(grads[k], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stacked_item_that_no_step_reads_is_not_state(backend):
    # item 1 of the state is stacked and never read: it has no variable and no initial
    # value (full(n, 7.0) is not printed); its row, which reads the state before the
    # step, is made before the state changes (NumPy: written; portable code: the step
    # function returns it beside the state, which is item 0 alone); its array is named
    # after its value
    src = ("fn f(xs: f64[t, n]) -> (f64[t, n], f64[t, n]) {\n"
           "    scan((zeros(n), full(n, 7.0)), xs, |s, x| { let (h, before) = s; (h * 0.5 + x, h) })\n}\n")
    text = catad.to_python(src, backend=backend)
    if backend == "numpy":
        assert ("    s = np.zeros((n,))\n    for step, x in enumerate(xs):\n        hs[step] = s\n"
                "        s = s * 0.5 + x\n") in text, text
    else:
        assert "    def step(s, x):\n        row = s\n        s = s * 0.5 + x\n        return s, (s, row)\n" in text
        assert "_scan(xp, step, xp.zeros((n,)" in text, text
    assert "np.full" not in text and "xp.full" not in text, text
    xs = np.arange(8.0).reshape(4, 2)
    states, befores = load_module(text, f"rows_only_{backend}").f(xs)
    h, expected_states, expected_befores = np.zeros(2), [], []
    for x in xs:
        expected_befores.append(h)
        h = h * 0.5 + x
        expected_states.append(h)
    np.testing.assert_allclose(states, expected_states)
    np.testing.assert_allclose(befores, expected_befores)


MAT = ArrayType(DType.F64, (N, Dim.of("m")))


@pytest.mark.parametrize("x_type, y_type, axes, code", [
    # two float arrays of one shape: the sum of their product in one pass, no product array
    (MAT, MAT, (1,), 'np.einsum("ij,ij->i", x, y)'),
    (MAT, MAT, (0,), 'np.einsum("ij,ij->j", x, y)'),
    (MAT, MAT, (0, 1), 'np.einsum("ij,ij->", x, y)'),
    (VEC, VEC, (0,), 'np.einsum("i,i->", x, y)'),
    # a factor broadcast along the leading axes: its subscripts are the last ones
    (MAT, ArrayType(DType.F64, (Dim.of("m"),)), (1,), 'np.einsum("ij,j->i", x, y)'),
    (ArrayType(DType.F64, (Dim.of("m"),)), MAT, (0,), 'np.einsum("j,ij->j", x, y)'),
    # a factor broadcast along a size-1 axis, or booleans (einsum would not count them):
    # the product, then its sum
    (MAT, ArrayType(DType.F64, (N, Dim(1))), (0, 1), "np.sum(x * y, axis=(0, 1))"),
    (MAT, ArrayType(DType.F64, (N, Dim(1))), (1,), 'np.einsum("ij->i", x * y)'),
    (ArrayType(DType.BOOL, (N,)), ArrayType(DType.BOOL, (N,)), (0,), "np.sum(x * y, axis=0)"),
])
def test_a_sum_of_a_product_of_arrays_of_one_shape_prints_as_einsum(x_type, y_type, axes, code):
    shape = x_type.shape if x_type.rank >= y_type.rank else y_type.shape
    kept = tuple(d for k, d in enumerate(shape) if k not in axes)
    result = ArrayType(DType.I64 if x_type.dtype is DType.BOOL else DType.F64, kept)
    bound = {}
    for param, t in enumerate((x_type, y_type)):
        for k, d in enumerate(t.shape):
            if not d.is_constant:
                bound.setdefault(str(d), SizeBinding(str(d), param, k))
    sizes = tuple(bound.values())
    fn = function("f", (("x", x_type), ("y", y_type)), result,
                  (Bind("t1", _call("mul", "x", "y")), Bind("r", _call("sum", "t1", axes=axes))),
                  Name("r"), sizes)
    text, m = module_of(fn)
    assert f"    return {code}\n" in text
    rng = np.random.default_rng(0)
    shape_of = {"n": 3, "m": 4, "1": 1}
    x = rng.standard_normal([shape_of[str(d)] for d in x_type.shape])
    y = rng.standard_normal([shape_of[str(d)] for d in y_type.shape])
    if x_type.dtype is DType.BOOL:
        x, y = x > 0, y > 0
    np.testing.assert_allclose(m.f(x, y), np.sum(x * y, axis=axes))


@pytest.mark.parametrize("x_type, axes, code", [
    # a float array summed over some of its axes: einsum (NumPy's sum pays per row of a short last axis)
    (MAT, (1,), 'np.einsum("ij->i", x)'),
    (MAT, (0,), 'np.einsum("ij->j", x)'),
    (ArrayType(DType.F64, (N, Dim.of("m"), Dim.of("k"))), (0, 2), 'np.einsum("ijk->j", x)'),
    # over every axis (pairwise, more accurate), or integers: the sum
    (MAT, (0, 1), "np.sum(x, axis=(0, 1))"),
    (VEC, (0,), "np.sum(x, axis=0)"),
    (ArrayType(DType.I64, (N, Dim.of("m"))), (1,), "np.sum(x, axis=1)"),
])
def test_a_partial_sum_of_a_float_array_prints_as_einsum(x_type, axes, code):
    kept = tuple(d for k, d in enumerate(x_type.shape) if k not in axes)
    result = ArrayType(x_type.dtype, kept)
    sizes = tuple(SizeBinding(str(d), 0, k) for k, d in enumerate(x_type.shape))
    fn = function("f", (("x", x_type),), result, (Bind("r", _call("sum", "x", axes=axes)),), Name("r"), sizes)
    text, m = module_of(fn)
    assert f"    return {code}\n" in text
    x = np.random.default_rng(0).standard_normal([3, 4, 5][:x_type.rank])
    if x_type.dtype is DType.I64:
        x = (x * 10).astype(np.int64)
    np.testing.assert_allclose(m.f(x), np.sum(x, axis=axes), rtol=1e-14)


K, R, C = Dim.of("k"), Dim.of("r"), Dim.of("c")


@pytest.mark.parametrize("b_type, perm, code", [
    # a transpose of a product is a view of it, whichever axes move: made in C order and
    # read through the view, the product took 0.83-0.95x the time of one written through
    # a transposed `out` in the GMM's gradient (docs/performance.md)
    (ArrayType(DType.F64, (K, C, C)), (1, 0, 2), "np.transpose(x @ y, (1, 0, 2))"),
    (ArrayType(DType.F64, (C, C)), (1, 0, 2), "np.transpose(x @ y, (1, 0, 2))"),
    (ArrayType(DType.F64, (K, C, C)), (0, 2, 1), "np.transpose(x @ y, (0, 2, 1))"),
    (ArrayType(DType.F64, (K, C, C)), (2, 1, 0), "np.transpose(x @ y, (2, 1, 0))"),
])
def test_a_transpose_of_a_product_is_a_view_of_it(b_type, perm, code):
    a_type = ArrayType(DType.F64, (K, R, C))
    product = (K, R, C)
    result = ArrayType(DType.F64, tuple(product[p] for p in perm))
    fn = function("f", (("x", a_type), ("y", b_type)), result,
                  (Bind("t1", _call("matmul", "x", "y")), Bind("r", _call("transpose", "t1", perm=perm))),
                  Name("r"), (SizeBinding("k", 0, 0), SizeBinding("r", 0, 1), SizeBinding("c", 0, 2)))
    text, m = module_of(fn)
    assert f"    return {code}\n" in text
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    y = rng.standard_normal((2, 4, 4) if b_type.rank == 3 else (4, 4))
    np.testing.assert_allclose(m.f(x, y), np.transpose(x @ y, perm))
