"""The array API backend: every example and its reverse derivative give the
NumPy backend's numbers on NumPy, array_api_strict (the standard's reference
namespace, which refuses everything the standard leaves out), PyTorch on the
CPU, Dask (chunked arrays, and a two-worker cluster) and JAX; bad inputs are a
TypeError at the function's entry. GPU runs are in docs/backends.md."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import catad

from examples_reference import inputs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CASES = sorted(inputs(np.random.default_rng(0)))

array_api_compat = pytest.importorskip("array_api_compat", reason="the array-api backend needs "
                                       "array_api_compat: pip install '.[test]'")


def _library(name: str):
    module = importlib.util.find_spec(name)
    if module is None:
        pytest.skip(f"{name} is not installed (pip install '.[test]' installs it)")
    return importlib.import_module(name)


def _dask_array(value):
    da = _library("dask.array")
    value = np.asarray(value)
    return da.from_array(value, chunks=tuple(max(1, s // 2) for s in value.shape) or ())


def _jax_array(value):
    jax = _library("jax")
    jax.config.update("jax_enable_x64", True)
    return jax.numpy.asarray(value)


# How the inputs are made for each library: NumPy's as they are (Python numbers too).
LIBRARIES = {
    "numpy": lambda v: v,
    "array_api_strict": lambda v: _library("array_api_strict").asarray(v),
    "torch": lambda v: _library("torch").asarray(np.array(v)),  # a copy: torch refuses negative strides
    "dask": _dask_array,
    "jax": _jax_array,
}


def to_numpy(value):
    """A result (an array of any library, or a tuple of them) as NumPy; Dask's
    computed at once (item by item would recompute what the items share)."""
    if "dask" in type(value).__module__ or isinstance(value, tuple) and any(
            "dask" in type(v).__module__ for v in value):
        dask = _library("dask")
        (value,) = dask.compute(value, scheduler="sync")
    if isinstance(value, tuple):
        return tuple(to_numpy(v) for v in value)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


@pytest.fixture(scope="module")
def modules():
    """(numpy module, array-api module) per example, each with `derived = vjp(fn)`
    of every real function."""
    made = {}
    for case in CASES:
        file, fn = case.split(".")
        args, _ = inputs(np.random.default_rng(0))[case]
        source = (EXAMPLES / f"{file}.catad").read_text()
        if any(np.asarray(a).dtype.kind == "f" for a in args):
            source += f"\nfn derived = vjp({fn});\n"
        made[case] = tuple(catad.compile(source, f"{file}.catad", backend=b) for b in ("numpy", "array-api"))
    return made


@pytest.mark.parametrize("library", sorted(LIBRARIES))
@pytest.mark.parametrize("case", CASES)
def test_examples_and_their_vjps_agree_with_the_numpy_backend(modules, case, library):
    file, fn = case.split(".")
    args, _ = inputs(np.random.default_rng(1))[case]
    reference, portable = modules[case]
    convert = LIBRARIES[library]
    expected = getattr(reference, fn)(*args)
    got = to_numpy(getattr(portable, fn)(*map(convert, args)))
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12)
    if hasattr(reference, "derived"):
        w = np.random.default_rng(2).standard_normal(np.shape(expected))
        value, cotangents = reference.derived(*args, w)
        got_value, got_cotangents = to_numpy(portable.derived(*map(convert, args), convert(w)))
        np.testing.assert_allclose(got_value, value, rtol=1e-11, atol=1e-12)
        for a, b in zip(np.atleast_1d(got_cotangents) if not isinstance(cotangents, tuple) else got_cotangents,
                        np.atleast_1d(cotangents) if not isinstance(cotangents, tuple) else cotangents):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_the_result_is_an_array_of_the_inputs_library_on_their_device():
    torch = _library("torch")
    m = catad.compile((EXAMPLES / "logistic.catad").read_text(), backend="array-api")
    args, _ = inputs(np.random.default_rng(0))["logistic.loss"]
    value, grads = m.loss_grad(*(torch.asarray(np.asarray(a)) for a in args))
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float64
    assert all(isinstance(g, torch.Tensor) and g.device.type == "cpu" for g in grads)


LOGISTIC = (EXAMPLES / "logistic.catad").read_text()


def test_inputs_from_two_libraries_are_a_type_error_naming_both():
    torch = _library("torch")
    m = catad.compile(LOGISTIC, backend="array-api")
    w, b, X, y = inputs(np.random.default_rng(0))["logistic.loss"][0]
    with pytest.raises(TypeError) as err:
        m.loss(w, b, torch.asarray(X), y)
    message = str(err.value)
    assert message.startswith("loss: arguments w (numpy.ndarray) and X (torch.Tensor) come from "
                              "different array libraries"), message


def test_a_dtype_the_library_cannot_make_is_a_type_error():
    jax = _library("jax")
    m = catad.compile(LOGISTIC, backend="array-api")
    w, b, X, y = inputs(np.random.default_rng(0))["logistic.loss"][0]
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(TypeError, match=r"^loss: .*jax.* cannot make float64 arrays .*jax_enable_x64"):
            m.loss(*(jax.numpy.asarray(np.asarray(a, dtype=np.float32)) for a in (w, b, X, y)))
    finally:
        jax.config.update("jax_enable_x64", previous)


def test_python_numbers_alone_run_on_numpy():
    m = catad.compile("fn f(x: f64, y: f64) -> f64 { x * y + sin(x) }\nfn g = grad(f);\n",
                      backend="array-api")
    value, (dx, dy) = m.f(2.0, 3.0), m.g(2.0, 3.0)
    assert isinstance(value, np.ndarray | np.generic) and value == pytest.approx(6.0 + np.sin(2.0))
    assert dx == pytest.approx(3.0 + np.cos(2.0)) and dy == pytest.approx(2.0)


def test_the_portable_module_keeps_to_the_standard():
    """What array_api_strict would refuse anyway, checked in the text: no NumPy
    spelling, no iteration over arrays (loops are `_fold` and `_scan` calls), no
    writes into arrays outside helpers."""
    text = catad.to_python((EXAMPLES / "rnn.catad").read_text() + "\nfn g = vjp(rnn_states);\n",
                           backend="array-api")
    body = text[text.index("\ndef rnn_last("):]
    assert "np." not in text and "import numpy" not in text.split("\ndef ")[0]
    assert "for " not in body and "_fold(xp, step, " in body and "_scan(xp, step, " in body
    assert "] = " not in body.replace("xp.", "")  # no item assignment in the functions


def test_the_gmm_gradient_runs_on_a_two_worker_dask_cluster():
    """The GMM gradient over chunked points on a LocalCluster gives NumPy's numbers."""
    distributed = _library("distributed")
    dask = _library("dask")
    da = _library("dask.array")
    m = catad.compile((EXAMPLES / "gmm.catad").read_text() + "\nfn g = value_and_grad(gmm, "
                      "wrt = (alphas, means, icf));\n", backend="array-api")
    rng = np.random.default_rng(5)
    k, d, n = 3, 2, 4000
    alphas, means, icf = rng.standard_normal(k), rng.standard_normal((k, d)), 0.3 * rng.standard_normal((k, 3))
    x = rng.standard_normal((n, d))
    expected = catad.compile((EXAMPLES / "gmm.catad").read_text() + "\nfn g = value_and_grad(gmm, "
                             "wrt = (alphas, means, icf));\n").g(alphas, means, icf, x, 1.5, 2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        lazy = m.g(da.from_array(alphas), da.from_array(means), da.from_array(icf),
                   da.from_array(x, chunks=(1000, d)), da.asarray(1.5), da.asarray(2))
        (value, grads), = dask.compute(lazy)
    np.testing.assert_allclose(value, expected[0], rtol=1e-12)
    for a, b in zip(grads, expected[1]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_the_command_line_writes_the_portable_module(tmp_path, capsys):
    from catad.cli import main

    out = tmp_path / "logistic_any.py"
    assert main(["compile", str(EXAMPLES / "logistic.catad"), "--backend", "array-api", "-o", str(out)]) == 0
    text = out.read_text()
    assert "import array_api_compat" in text and "\nimport numpy" not in text
    assert main(["show", str(EXAMPLES / "logistic.catad"), "--backend", "array-api"]) == 0
    assert capsys.readouterr().out == text


def test_an_unknown_backend_is_a_value_error_naming_the_backends():
    with pytest.raises(ValueError, match=r"unknown backend 'cuda'; the backends are numpy, array-api"):
        catad.to_python(LOGISTIC, backend="cuda")


# ---- under jax.jit: the generated code traced by JAX and compiled by XLA -------------


def _jit_call(function, args):
    """`jax.jit(function)(*args)` on JAX float64 arrays, Python numbers passed as
    static arguments (as the benchmarks' catad-jax tool passes them), as NumPy."""
    jax = _library("jax")
    jax.config.update("jax_enable_x64", True)
    static = tuple(k for k, a in enumerate(args) if isinstance(a, (bool, int, float)))
    converted = tuple(a if k in static else jax.numpy.asarray(np.asarray(a)) for k, a in enumerate(args))
    return to_numpy(jax.jit(function, static_argnums=static)(*converted))


def _assert_close(got, expected, rtol=1e-10):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for a, b in zip(got, expected):
            _assert_close(a, b, rtol)
        return
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_examples_and_their_vjps_run_under_jax_jit(modules, case):
    file, fn = case.split(".")
    args, _ = inputs(np.random.default_rng(1))[case]
    reference, portable = modules[case]
    expected = getattr(reference, fn)(*args)
    _assert_close(_jit_call(getattr(portable, fn), args), expected)
    if hasattr(reference, "derived"):
        w = np.random.default_rng(2).standard_normal(np.shape(expected))
        _assert_close(_jit_call(portable.derived, (*args, w)), reference.derived(*args, w))


BENCHMARKS = pytest.importorskip("benchmarks.problems", reason="the benchmark models are in benchmarks/")


@pytest.mark.parametrize("problem", sorted(BENCHMARKS.PROBLEMS))
def test_benchmark_gradients_run_under_jax_jit_and_agree_with_numpy(problem):
    """Each benchmark model's value_and_grad from the array-api module, traced by
    jax.jit (Python ifs and int() on traced values would fail there), gives the
    NumPy module's numbers."""
    p = BENCHMARKS.PROBLEMS[problem]
    source = BENCHMARKS.model_source(p)
    numpy_module = catad.compile(source, p.model)
    portable = catad.compile(source, p.model, backend="array-api")
    for size in p.sizes["tiny"]:  # the tiny sizes: quick to trace and compile
        args = tuple(p.make_inputs(size, np.random.default_rng(3)).values())
        expected = getattr(numpy_module, p.gradient)(*args)
        _assert_close(_jit_call(getattr(portable, p.gradient), args), expected)
        _assert_close(_jit_call(getattr(portable, p.objective), args), getattr(numpy_module, p.objective)(*args))


BRANCHING = """\
fn f(xs: f64[t, n], v: f64[n]) -> f64 {
    let ends = scan(0.0, arange(t), |acc, i| {
        let previous = if i == 0 { v } else { xs[i - 1] };
        acc + sum(previous * xs[i])
    });
    sum(ends) + sum(xs[:, n - 1])
}

fn g = value_and_grad(f);
"""


def test_a_branch_on_a_traced_value_and_an_index_beside_slices_run_everywhere():
    """A scalar `if` prints as `_cond` (a Python if, jax.lax.cond under jax.jit);
    an index beside slices as `_int(i)` (a Python int, a JAX array as it is): the
    gradient gives NumPy's numbers on every library, and under jax.jit."""
    text = catad.to_python(BRANCHING, backend="array-api")
    assert "_cond(" in text and "_int(" in text, text
    functions = text[text.index("\ndef f("):]
    assert re.search(r"\n +if (?!\w+\.ndim|\w+\.shape)", functions) is None, functions  # checks of shapes only
    numpy_module = catad.compile(BRANCHING)
    portable = catad.compile(BRANCHING, backend="array-api")
    rng = np.random.default_rng(4)
    args = (rng.standard_normal((4, 3)), rng.standard_normal(3))
    expected = numpy_module.g(*args)
    for library, convert in sorted(LIBRARIES.items()):
        _assert_close(to_numpy(portable.g(*map(convert, args))), expected)
    _assert_close(_jit_call(portable.g, args), expected)


SIZE_ONLY = """\
fn last(xs: f64[t, n], v: f64[n]) -> f64 {
    let row = if t == 0 { v } else { xs[t - 1] };
    let scale = if t > 1 and n > 1 { f64(t * n) } else { 1.0 };
    sum(row * row) / scale + sum(xs[:, n - 1])
}

fn g = value_and_grad(last);
"""


@pytest.mark.parametrize("length", [0, 3])
def test_values_of_the_sizes_alone_are_python_numbers_and_an_if_on_them_a_python_if(length):
    """Sizes and what is computed from them alone (`t - 1`, `t == 0`) print as Python
    ints and bools: an `if` on them is a Python `if` (no `_cond`), an index made of
    them needs no `_int`, so under jax.jit no `cond` is traced (it would trace
    `xs[t - 1]` on 0 rows, an IndexError at t = 0); the numbers are NumPy's on every
    library and under jax.jit."""
    jax = _library("jax")
    jax.config.update("jax_enable_x64", True)
    text = catad.to_python(SIZE_ONLY, backend="array-api")
    functions = text[text.index("\ndef last("):]
    assert "_cond(" not in text and "_int(" not in text, functions
    assert " if t == 0 else " in functions and "xp.asarray(t," not in functions, functions
    numpy_module = catad.compile(SIZE_ONLY)
    portable = catad.compile(SIZE_ONLY, backend="array-api")
    rng = np.random.default_rng(7)
    args = (rng.standard_normal((length, 2)), rng.standard_normal(2))
    for name in ("last", "g"):
        expected = getattr(numpy_module, name)(*args)
        for library, convert in sorted(LIBRARIES.items()):
            _assert_close(to_numpy(getattr(portable, name)(*map(convert, args))), expected)
        _assert_close(_jit_call(getattr(portable, name), args), expected)
        jaxpr = str(jax.make_jaxpr(getattr(portable, name))(*map(jax.numpy.asarray, args)))
        assert "cond[" not in jaxpr, jaxpr


# ---- sizes as Python ints, rows read back as reversed views --------------------------


def _evaluated(source: str, name: str, args: tuple) -> tuple:
    """The unary evaluator's value of function `name` of `source` (derived ones too)."""
    from catad.compiler.unary_eval import evaluate
    return evaluate(catad.stages(source).vectorised.function(name), list(args))


def _assert_equal_with_dtypes(got, expected, rtol=0.0, atol=0.0):
    for g, e in zip(got, expected, strict=True):
        if isinstance(e, tuple):
            _assert_equal_with_dtypes(g, e, rtol, atol)
            continue
        assert np.asarray(g).dtype == np.asarray(e).dtype, (g, e)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


SIZE_ARITHMETIC = """\
fn sizes(x: f64[n], y: f32[n]) -> (f64, f64, f64, i64) {
    (x[n - 1] / f64(n - 1), n / (n - 1), sum(y * n), n * 3 - 1)
}
"""


@pytest.mark.parametrize("length", [1, 4])
def test_the_numpy_module_computes_sizes_as_python_ints_and_numpy_numbers_where_numpy_computes(length):
    """The NumPy module prints the values of the sizes alone as Python ints (`n - 1`,
    not `np.int64(n - 1)`), and makes one a NumPy number where NumPy's arithmetic is
    meant: `n / (n - 1)` divides int64s (inf at n = 1, where Python's `/` raises),
    `y * n` is f64 as typed (y, f32, would keep its dtype beside a Python int), a
    float cast is `np.float64`. Every backend gives the evaluator's numbers and dtypes."""
    text = catad.to_python(SIZE_ARITHMETIC)
    body = text[text.index("\ndef sizes("):]
    last = re.search(r"(\w+) = n - 1\n", body)
    assert last is not None, body
    assert f"x[{last[1]}] / np.float64({last[1]})" in body and f"np.int64(n) / np.int64({last[1]})" in body, body
    assert "y * np.int64(n)" in body and "np.int64(n * 3 - 1))" in body, body
    x, y = np.arange(1.0, length + 1), np.arange(length, dtype=np.float32)
    portable = catad.compile(SIZE_ARITHMETIC, backend="array-api")
    with np.errstate(divide="ignore"):
        expected = _evaluated(SIZE_ARITHMETIC, "sizes", (x, y))
        _assert_equal_with_dtypes(catad.compile(SIZE_ARITHMETIC).sizes(x, y), expected)
        for library, convert in sorted(LIBRARIES.items()):
            _assert_equal_with_dtypes(to_numpy(portable.sizes(convert(x), convert(y))), expected)


REVERSALS = (EXAMPLES / "rnn.catad").read_text() + """
fn derived = vjp(rnn_last);

fn backwards(xs: f64[t, n]) -> f64[t, n] { for i in 0..t { xs[t - 1 - i] } }

fn shifted(xs: f64[t, n]) -> f64[t - 1, n] { for i in 0..t - 1 { xs[t - 2 - i] } }
"""


@pytest.mark.parametrize("length", [0, 1, 5])
def test_rows_read_last_first_are_a_reversed_view_and_a_reverse_loop_steps_on_python_ints(length):
    """A gather of every row of an array, last first (`x[t - 1 - arange(t)]`: the RNN's
    vjp puts the rows its reverse loop stacked back in order), prints as the reversed
    array: NumPy's view `x[::-1]`, `xp.flip(x, axis=0)` on the array API (PyTorch has
    no negative steps); its index is not computed. Rows of an array of another length
    stay a gather. The reverse loop's row `t - 1 - step` is Python int arithmetic.
    Every backend gives the evaluator's numbers."""
    text = catad.to_python(REVERSALS)
    start = text.index("\ndef derived(")
    derived = text[start:text.index("\ndef ", start + 1)]
    assert re.search(r"xs_bar = \w+\[::-1\]\n", derived) and "np.arange(" not in derived, derived
    assert "np.int64(" not in derived and " = t - 1 - step_1\n" in derived, derived
    assert "return xs[::-1]\n" in text and "return xs[t - 2 - np.arange(t - 1)]\n" in text, text
    portable_text = catad.to_python(REVERSALS, backend="array-api")
    assert re.search(r"xs_bar = xp.flip\(\w+, axis=0\)\n", portable_text), portable_text
    assert "return xp.flip(xs, axis=0)\n" in portable_text, portable_text
    numpy_module, portable = catad.compile(REVERSALS), catad.compile(REVERSALS, backend="array-api")
    rng = np.random.default_rng(8)
    h, d = 3, 2
    args = {"derived": tuple(rng.standard_normal(s) for s in ((h, d), (h, h), (h,), (length, d), (h,))),
            "backwards": (rng.standard_normal((length, d)),),
            "shifted": (rng.standard_normal((length + 1, d)),)}
    for name, arguments in args.items():
        expected = _evaluated(REVERSALS, name, arguments)
        got = getattr(numpy_module, name)(*arguments)
        _assert_equal_with_dtypes(got, expected, rtol=1e-11, atol=1e-14)
        for library, convert in sorted(LIBRARIES.items()):
            _assert_equal_with_dtypes(to_numpy(getattr(portable, name)(*map(convert, arguments))), expected,
                                      rtol=1e-11, atol=1e-14)
    xs_bar = numpy_module.derived(*args["derived"])[1][3]
    assert xs_bar.strides[0] < 0 or length < 2, xs_bar.strides  # a view, read back to front


# ---- loops under jax.jit: jax.lax.scan, compiled once -----------------------------------

LOOPS = """\
fn fold_rnn(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64 {
    sum(fold(h0, xs, |s, x| tanh(W @ s + U @ x)))
}

fn tuple_scan(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64 {
    let (hs, cs) = scan((h0, h0), xs, |state, x| {
        let (s, c) = state;
        let c2 = c * sigmoid(U @ x) + tanh(W @ s);
        (tanh(c2) * sigmoid(W @ s), c2)
    });
    sum(hs * hs) + sum(cs)
}

fn nested(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64 {
    let states = scan(h0, xs, |s, x| fold(s, arange(3), |u, i| tanh(W @ u + f64(i) * (U @ x))));
    sum(states * states)
}

fn counted(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64 {
    sum(fold(h0, arange(t), |s, i| tanh(W @ s + f64(i) * (U @ xs[i]))))
}
"""
LOOP_FUNCTIONS = ("fold_rnn", "tuple_scan", "nested", "counted")


@pytest.fixture(scope="module")
def loop_modules():
    """(NumPy module, array-api module) of LOOPS, each function with `<name>_grad`
    (its value_and_grad: reverse loops, per-item stacking, the state before each step)
    and `<name>_states`, a vjp of the states of a scan."""
    source = LOOPS + "".join(f"fn {f}_grad = value_and_grad({f});\n" for f in LOOP_FUNCTIONS)
    source += ("fn states(W: f64[h, h], U: f64[h, d], h0: f64[h], xs: f64[t, d]) -> f64[t, h] {\n"
               "    scan(h0, xs, |s, x| tanh(W @ s + U @ x))\n}\n"
               "fn states_vjp = vjp(states);\n")
    return tuple(catad.compile(source, "loops.catad", backend=b) for b in ("numpy", "array-api"))


def _loop_args(length: int, seed: int = 5) -> tuple:
    rng = np.random.default_rng(seed)
    return (0.5 * rng.standard_normal((3, 3)), 0.5 * rng.standard_normal((3, 2)),
            rng.standard_normal(3), rng.standard_normal((length, 2)))


@pytest.mark.parametrize("length", [0, 1, 4])
@pytest.mark.parametrize("function", [*(f"{f}_grad" for f in LOOP_FUNCTIONS), "states", "states_vjp"])
def test_loops_and_their_derivatives_agree_on_eager_libraries_and_under_jax_jit(loop_modules, function,
                                                                                 length):
    """Folds, scans of tuple states, nested loops, a loop over a size, and the reverse
    loops of their gradients, over 0, 1 and 4 steps: the array-api module on NumPy
    and array_api_strict (a Python loop) and under jax.jit (jax.lax.scan) gives the
    NumPy module's numbers."""
    reference, portable = loop_modules
    args = _loop_args(length)
    if function == "states_vjp":
        args = (*args, np.random.default_rng(6).standard_normal((length, 3)))
    expected = getattr(reference, function)(*args)
    for library in ("numpy", "array_api_strict"):
        _assert_close(to_numpy(getattr(portable, function)(*map(LIBRARIES[library], args))), expected)
    _assert_close(_jit_call(getattr(portable, function), args), expected)


def test_under_jax_jit_a_loop_is_one_scan_traced_once(loop_modules):
    """The gradient's loops are jax.lax.scan: the traced program has scans and the
    same equations over 2 steps as over 40, where unrolled loops would grow with them."""
    jax = _library("jax")
    jax.config.update("jax_enable_x64", True)
    _, portable = loop_modules
    traced = {}
    for length in (2, 40):
        args = tuple(jax.numpy.asarray(a) for a in _loop_args(length))
        traced[length] = str(jax.make_jaxpr(jax.jit(portable.nested_grad))(*args))
    assert traced[2].count("scan[") >= 3, traced[2]  # the forward loops (nested) and the reverse one
    assert len(traced[2].splitlines()) == len(traced[40].splitlines())


def test_the_lstm_gradient_under_jax_jit_traces_no_cond():
    """The LSTM gradient's ifs are on sizes alone (Python ifs) or, in its reverse
    loops, on the step, choosing the state before it (`init` at step 0, else
    `states[t - 1]`): two reads, which `_cond` picks with `where` under jax.jit. So
    its jaxpr has no `cond`, and it gives NumPy's numbers."""
    jax = _library("jax")
    jax.config.update("jax_enable_x64", True)
    p = BENCHMARKS.PROBLEMS["lstm"]
    source = BENCHMARKS.model_source(p)
    text = catad.to_python(source, p.model, backend="array-api")
    assert "where=xp.where)" in text, text
    portable = catad.compile(source, p.model, backend="array-api")
    args = tuple(p.make_inputs(p.sizes["tiny"][0], np.random.default_rng(3)).values())
    jaxpr = str(jax.make_jaxpr(getattr(portable, p.gradient))(*map(jax.numpy.asarray, args)))
    assert "scan[" in jaxpr and "cond[" not in jaxpr, jaxpr
    _assert_close(_jit_call(getattr(portable, p.gradient), args),
                  getattr(catad.compile(source, p.model), p.gradient)(*args))


def test_a_loop_module_run_on_numpy_imports_no_jax(tmp_path):
    """jax is imported by the loop helpers only on JAX arrays: a fresh process that
    runs a gradient through loops on NumPy has not imported it."""
    module = tmp_path / "loops_any.py"
    module.write_text(catad.to_python(LOOPS + "fn g = value_and_grad(nested);\n", backend="array-api"))
    script = ("import sys, numpy as np, loops_any\n"
              "loops_any.g(np.eye(3), np.ones((3, 2)), np.ones(3), np.ones((4, 2)))\n"
              "assert not any(name.split('.')[0] == 'jax' for name in sys.modules), 'jax imported'\n")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)


# ---- a logsumexp and its softmax weights: one call ----------------------------------

LOGSUMEXP_WEIGHTS = """\
fn rows(x: f64[n, c]) -> f64 { sum(logsumexp(x, axis = 1)) }
fn rows_grad = value_and_grad(rows);
fn rows_only_grad = grad(rows);
fn columns(x: f32[n, c]) -> f32 { sum(logsumexp(x, axis = 0)) }
fn columns_grad = value_and_grad(columns);
fn whole(x: f64[n, c]) -> f64 { logsumexp(x) }
fn whole_jvp = jvp(whole);
"""


def _function_text(text: str, name: str) -> str:
    start = text.index(f"\ndef {name}(")
    end = text.find("\ndef ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_a_logsumexp_and_its_weights_print_as_one_call_with_the_evaluators_numbers():
    """NumPy: the weights `exp(x - logsumexp(x))` of a logsumexp's derivative (both
    modes) come from the helper that computes the logsumexp, as `e / sum(e)` of its own
    `e = exp(x - max)`: one call, `l, w = _logsumexp_weights(x, axis=k)` (`_, w` where
    only the weights are read), and no `exp` of `x - l`. The array-API module keeps the
    two (its helper would need a guard for +inf rows that costs the `exp` saved). Both
    give the evaluator's numbers: f32, rows all -inf or holding +inf (nan weights, as
    exp(x - l)), and an empty axis."""
    text = catad.to_python(LOGSUMEXP_WEIGHTS)
    derived = "".join(_function_text(text, name) for name in ("rows_grad", "rows_only_grad", "columns_grad",
                                                              "whole_jvp"))
    assert "    t1, t8 = _logsumexp_weights(x, axis=1)\n    return (" in derived, derived
    assert "    _, t8 = _logsumexp_weights(x, axis=1)\n    return t8\n" in derived, derived
    assert " = _logsumexp_weights(x, axis=0)\n" in derived and " = _logsumexp_weights(x, axis=(0, 1))\n" in derived
    assert "np.exp(" not in derived and "_logsumexp(" not in derived, derived
    assert "_logsumexp_weights" not in catad.to_python(LOGSUMEXP_WEIGHTS, backend="array-api")
    numpy_module, portable = catad.compile(LOGSUMEXP_WEIGHTS), catad.compile(LOGSUMEXP_WEIGHTS, backend="array-api")
    rng = np.random.default_rng(5)
    x = rng.uniform(-100.0, 100.0, (4, 6))
    x[1] = -np.inf
    x[2, 3] = np.inf
    x[3, :2] = -np.inf
    cases = {"rows_grad": (x,), "rows_only_grad": (x,), "columns_grad": (x.T.astype(np.float32),),
             "whole_jvp": (x[[0, 3]], rng.standard_normal((2, 6)))}
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for name, arguments in cases.items():
            expected = _evaluated(LOGSUMEXP_WEIGHTS, name, arguments)
            single = (expected,) if name == "rows_only_grad" else expected
            # the evaluator's f32 exp(x - l) rounds x - l (|x| ~ 100): some 10 ulps off
            rtol = 2e-5 if name == "columns_grad" else 1e-12
            got = getattr(numpy_module, name)(*arguments)
            _assert_equal_with_dtypes((got,) if name == "rows_only_grad" else got, single, rtol=rtol)
            for library, convert in sorted(LIBRARIES.items()):
                got = to_numpy(getattr(portable, name)(*map(convert, arguments)))
                _assert_equal_with_dtypes((got,) if name == "rows_only_grad" else got, single, rtol=rtol)
    # f32 weights against exact ones: e / sum(e) rounds e and the sum, exp(x - l) rounds x - l
    finite = rng.uniform(-10.0, 10.0, 6)
    exact = np.exp(finite - numpy_module.whole(finite[None]))
    np.testing.assert_allclose(numpy_module.columns_grad(finite[:, None].astype(np.float32))[1][:, 0], exact,
                               rtol=8 * 2.0**-23)
    empty = (np.zeros((3, 0)),)
    _assert_equal_with_dtypes(numpy_module.rows_grad(*empty), _evaluated(LOGSUMEXP_WEIGHTS, "rows_grad", empty),
                              rtol=0)
