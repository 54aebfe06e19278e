"""cumsum and cumprod end to end, and the gradient of prod made of them.

* compiled gradients, jvps, Hessians and gradients of gradients against
  central differences at points with one zero, two zeros and all zeros
  (cumprod and prod are polynomials: central differences are exact up to
  rounding there), and at random points;
* `catad check`: every derivative against SymPy and finite differences;
* the array-API module on array_api_strict, PyTorch and under jax.jit gives the
  NumPy module's numbers; bools are counted, as by sum and NumPy;
* prod's gradient has no division and no selection, and the right shape for an
  empty group;
* cumprod's derivatives divide in O(n) where that is exact and take the scan
  elsewhere: against the exact products of the others (no division) to second
  order at one zero (first, inside, last: division), two and all zeros (scan),
  at random points against the scan, and where the products underflow, go
  subnormal or overflow (scan); which form ran is read off the lines traced.
"""

from __future__ import annotations

import numpy as np
import pytest

import catad
from catad.checking import check

SOURCE = """
fn running(x: f64[n], A: f64[k, m]) -> f64 {
    sum(sin(cumsum(x)) * cumprod(x)) + sum(cos(cumprod(A, axis = 1)) * cumsum(A, axis = 0))
}
fn running_grad = grad(running, wrt = (x, A));
fn running_jvp = jvp(running, wrt = x);

fn p(x: f64[n]) -> f64 { prod(x) }
fn p_grad = grad(p);
fn p_hessian = hessian(p);
fn p_grad_norm(x: f64[n]) -> f64 { sum(p_grad(x) * p_grad(x)) }
fn p_grad_grad = grad(p_grad_norm);

fn q(A: f64[n, m]) -> f64 { prod(A) + sum(prod(A, axis = 0) * cumsum(prod(A, axis = 1))[0]) }
fn q_grad = grad(q);
fn q_hessian = hessian(q);

fn c(x: f64[n]) -> f64 { sum(cumprod(x) * cumprod(x)) }
fn c_hessian = hessian(c);
"""

COUNTS = """
fn counts(p: bool[n]) -> (i64[n], i64[n]) { (cumsum(p), cumprod(p)) }
fn weighted(p: bool[n], x: f64[n]) -> f64 { sum(cumsum(p) * x) }
fn weighted_grad = grad(weighted, wrt = x);
"""

X_POINTS = {"one zero": [1.5, 0.0, -2.0, 0.5], "two zeros": [0.0, 2.0, 0.0, -1.5],
            "all zeros": [0.0, 0.0, 0.0, 0.0], "no zero": [0.7, -1.2, 1.9, 0.4]}
A_POINTS = {"one zero": [[1.5, 0.5], [0.0, 2.0], [-1.0, 0.5]],
            "two zeros": [[0.0, 0.5], [1.5, 0.0], [-1.0, 2.0]],
            "all zeros": [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
            "no zero": [[0.9, -1.1], [1.3, 0.6], [-0.8, 1.7]]}


@pytest.fixture(scope="module")
def module():
    return catad.compile(SOURCE)


def central(f, x, h=1e-5):
    """∂f/∂x by central differences, with f's shape first and x's last."""
    x = np.asarray(x, dtype=float)
    columns = []
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        columns.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    out = np.stack(columns, axis=-1)
    return out.reshape(out.shape[:-1] + x.shape)


@pytest.mark.parametrize("point", sorted(X_POINTS))
def test_gradients_and_jvps_at_zeros(module, point):
    x, A = np.array(X_POINTS[point]), np.array(A_POINTS[point])
    gx, gA = module.running_grad(x, A)
    np.testing.assert_allclose(gx, central(lambda v: module.running(v, A), x), atol=1e-8)
    np.testing.assert_allclose(gA, central(lambda v: module.running(x, v), A), atol=1e-8)
    v = np.array([0.3, -1.0, 0.5, 2.0])
    _, tangent = module.running_jvp(x, A, v)
    assert tangent == pytest.approx(float(gx @ v), abs=1e-10)
    np.testing.assert_allclose(module.p_grad(x), central(module.p, x), atol=1e-9)
    np.testing.assert_allclose(module.q_grad(A), central(module.q, A), atol=1e-9)


@pytest.mark.parametrize("point", sorted(X_POINTS))
def test_second_derivatives_of_prod_and_cumprod_are_exact_at_zeros(module, point):
    x, A = np.array(X_POINTS[point]), np.array(A_POINTS[point])
    np.testing.assert_allclose(module.p_hessian(x), central(module.p_grad, x), atol=1e-8)
    np.testing.assert_allclose(module.p_grad_grad(x), central(module.p_grad_norm, x), atol=1e-7)
    np.testing.assert_allclose(module.q_hessian(A), central(module.q_grad, A), atol=1e-8)
    np.testing.assert_allclose(module.c_hessian(x), central(lambda v: central(module.c, v), x, 1e-3),
                               atol=1e-5)


def test_prod_at_zeros_by_hand(module):
    """∂prod/∂x_i is the product of the others: nonzero only at the one zero."""
    np.testing.assert_array_equal(module.p_grad(np.array([2.0, 0.0, 3.0, 0.5])), [0.0, 3.0, 0.0, 0.0])
    np.testing.assert_array_equal(module.p_grad(np.array([2.0, 0.0, 3.0, 0.0])), np.zeros(4))
    hessian = module.p_hessian(np.array([2.0, 0.0, 3.0, 0.0]))
    assert hessian[1, 3] == hessian[3, 1] == 6.0
    assert np.count_nonzero(hessian) == 2


def test_catad_check_proves_every_derivative():
    report = check(SOURCE, {"n": 3, "m": 2}, points=1)
    assert report.passed, report.format()
    checked = {r.function for r in report.rows if r.sympy_error is not None}
    assert {"running_grad", "running_jvp", "p_grad", "p_hessian", "p_grad_grad", "q_grad",
            "q_hessian", "c_hessian"} <= checked


def test_the_gradient_of_prod_divides_and_selects_nothing():
    text = catad.to_python("fn p(x: f64[n]) -> f64 { prod(x) }\nfn p_grad = grad(p);\n")
    body = text[text.index("def p_grad"):]
    assert "/" not in body.split('"""')[2] and "np.where" not in body
    assert "np.cumprod(_shifted(x, 0, 1), axis=0)" in body
    assert "np.flip(np.cumprod(_shifted(np.flip(x, axis=0), 0, 1), axis=0), axis=0)" in body


def test_empty_groups(module):
    assert module.p_grad(np.zeros(0)).shape == (0,)
    assert module.running_grad(np.zeros(0), np.zeros((0, 2)))[1].shape == (0, 2)
    assert module.q_grad(np.zeros((3, 0))).shape == (3, 0)


# ---- the array-API module ----------------------------------------------------------------

def _libraries():
    import array_api_strict
    torch = pytest.importorskip("torch")
    return {"array_api_strict": array_api_strict.asarray, "torch": lambda v: torch.asarray(np.array(v))}


def _numpy(value):
    if isinstance(value, tuple):
        return tuple(_numpy(v) for v in value)
    return np.asarray(value.detach().numpy() if hasattr(value, "detach") else value)


def _assert_close(got, expected, what: str) -> None:
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected), what
        for a, b in zip(got, expected):
            _assert_close(a, b, what)
        return
    np.testing.assert_allclose(_numpy(got), expected, rtol=1e-12, atol=1e-12, err_msg=what)


CALLS = [("running", ("x", "A")), ("running_grad", ("x", "A")), ("p_grad", ("x",)), ("q_grad", ("A",)),
         ("running_jvp", ("x", "A", "x")), ("p_hessian", ("x",)), ("c_hessian", ("x",))]


@pytest.mark.parametrize("point", ["one zero", "two zeros", "no zero"])
def test_the_array_api_module_agrees_with_numpy(module, point):
    pytest.importorskip("array_api_compat")
    portable = catad.compile(SOURCE, backend="array-api")
    values = {"x": np.array(X_POINTS[point]), "A": np.array(A_POINTS[point])}
    for library, convert in _libraries().items():
        for name, args in CALLS:
            expected = getattr(module, name)(*(values[a] for a in args))
            got = getattr(portable, name)(*(convert(values[a]) for a in args))
            _assert_close(got, expected, f"{name} on {library}")


def test_the_array_api_module_runs_under_jax_jit(module):
    pytest.importorskip("array_api_compat")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    portable = catad.compile(SOURCE, backend="array-api")
    # cumprod's derivatives are a jax.lax.cond between the division and the scan: one
    # point takes the division for x and the scan for A (two zeros in a line), the
    # other the scan for x and the division for A
    points = [{"x": np.array(X_POINTS["one zero"]), "A": np.array(A_POINTS["two zeros"])},
              {"x": np.array(X_POINTS["two zeros"]), "A": np.array(A_POINTS["one zero"])}]
    for name, args in CALLS[:4]:  # XLA compiles a scan's 63 guarded rounds slowly: one of them
        jitted = jax.jit(getattr(portable, name))
        for values in points:
            expected = getattr(module, name)(*(values[a] for a in args))
            got = jitted(*(jax.numpy.asarray(values[a]) for a in args))
            _assert_close(got, expected, f"{name} under jax.jit")


def test_bools_are_counted_on_every_backend():
    """cumsum and cumprod of bools are NumPy's: i64 running counts of trues, and
    1 while every item so far is true; as i64s, they weight a gradient."""
    pytest.importorskip("array_api_compat")
    jax = pytest.importorskip("jax")
    reference, portable = (catad.compile(COUNTS, backend=b) for b in ("numpy", "array-api"))
    p = np.array([True, True, False, True, False, True])
    x = np.linspace(-1.0, 1.0, 6)
    sums, prods = reference.counts(p)
    np.testing.assert_array_equal(sums, np.cumsum(p))
    np.testing.assert_array_equal(prods, np.cumprod(p))
    assert sums.dtype == prods.dtype == np.int64
    np.testing.assert_array_equal(reference.weighted_grad(p, x), np.cumsum(p).astype(float))
    for name, args in (("counts", (p,)), ("weighted_grad", (p, x))):
        expected = getattr(reference, name)(*args)
        for convert in [*_libraries().values(), jax.numpy.asarray]:
            _assert_close(getattr(portable, name)(*map(convert, args)), expected, name)
        _assert_close(jax.jit(getattr(portable, name))(*map(jax.numpy.asarray, args)), expected, name)


# ---- cumprod's derivatives: by division in O(n) where that is exact, else the scan ------

WEIGHTED = """
fn weighted(x: f64[n], w: f64[n]) -> f64 { sum(w * cumprod(x)) }
fn weighted_grad = grad(weighted, wrt = x);
fn weighted_jvp = jvp(weighted, wrt = x);
fn weighted_hessian = hessian(weighted, wrt = x);
fn weighted_hvp = jvp(grad(weighted, wrt = x), wrt = x);
fn weighted_grad_dot(x: f64[n], w: f64[n], v: f64[n]) -> f64 { sum(weighted_grad(x, w) * v) }
fn weighted_grad_grad = grad(weighted_grad_dot, wrt = x);

fn rows(A: f64[k, m], W: f64[k, m]) -> f64 { sum(W * cumprod(A, axis = 1)) }
fn rows_grad = grad(rows, wrt = A);
fn rows_hessian = hessian(rows, wrt = A);
"""


def others(x, skip):
    """Row i: the product of x_k for k <= i, k not in `skip`, multiplied left to right
    with no division: ∂y_i/∂x_j for y = cumprod(x) with skip = {j} (j <= i), and
    ∂²y_i/∂x_j∂x_l with skip = {j, l}."""
    out, p = [], 1.0
    for k, v in enumerate(x):
        p = p if k in skip else p * v
        out.append(p)
    return np.array(out)


def exact_gradient(x, w):
    """∂/∂x_j of sum(w * cumprod(x)): Σ_{i>=j} w_i ∂y_i/∂x_j."""
    return np.array([_weighted_sum(w, others(x, {j}), j) for j in range(len(x))])


def _weighted_sum(w, products, start):
    """Σ_{i>=start} w_i products_i over the nonzero weights (0 · inf is no term)."""
    return float(sum(w[i] * products[i] for i in range(start, len(w)) if w[i] != 0))


def exact_hessian(x, w):
    n = len(x)
    return np.array([[0.0 if j == l else _weighted_sum(w, others(x, {j, l}), max(j, l))
                      for l in range(n)] for j in range(n)])


def forms_run(fn, *args):
    """fn(*args) and which forms of cumprod's derivative ran in it, by tracing its
    lines: "division" (a line dividing by `safe`) and "scan" (a round composing the
    affine maps, `np.stack([a2 * a1, a2 * c1 + c2], ...)`). The lines are read from
    linecache by the module's name: give each traced module its own."""
    import linecache
    import re
    import sys
    filename, lines = fn.__code__.co_filename, set()

    def trace(frame, event, arg):
        if frame.f_code.co_filename != filename:
            return None
        if event == "line":
            lines.add(linecache.getline(filename, frame.f_lineno))
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        result = fn(*args)
    finally:
        sys.settrace(previous)
    forms = {"division" for line in lines if re.search(r"/ safe\b", line)}
    forms |= {"scan" for line in lines if re.search(r"np\.stack\(\[.* \* .* \+ ", line)}
    return result, forms


@pytest.fixture(scope="module")
def weighted():
    return catad.compile(WEIGHTED, module_name="catad_cumprod_weighted")


@pytest.fixture(scope="module")
def weighted_by_scan():
    """WEIGHTED with cumprod's derivatives always by the scan, as before the division."""
    from catad.compiler import jvp_rules, vjp_rules
    by_scan = lambda s, a, division, scan: scan(s.b)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jvp_rules, "cumprod_by_division", by_scan)
        patch.setattr(vjp_rules, "cumprod_by_division", by_scan)
        return catad.compile(WEIGHTED, module_name="catad_cumprod_weighted_by_scan")


def assert_derivatives(module, x, w, v, form, rtol=1e-13):
    """Every derivative of `weighted` at x against the exact products, each run by
    `form` ("division", or "scan" when the fallback must have run)."""
    gradient, hessian = exact_gradient(x, w), exact_hessian(x, w)
    calls = {"weighted_grad": ((x, w), gradient),
             "weighted_jvp": ((x, w, v), (float(np.sum(w * np.cumprod(x))), gradient @ v)),
             "weighted_hessian": ((x, w), hessian),
             "weighted_hvp": ((x, w, v), (gradient, hessian @ v)),
             "weighted_grad_grad": ((x, w, v), hessian @ v)}
    for name, (args, expected) in calls.items():
        got, forms = forms_run(getattr(module, name), *args)
        assert form in forms, f"{name} ran {forms}, not the {form}"
        if form == "division":
            assert forms == {"division"}, f"{name} ran {forms}"
        _assert_close_to(got, expected, rtol, name)


def _assert_close_to(got, expected, rtol, what):
    if isinstance(expected, tuple):
        for a, b in zip(got, expected):
            _assert_close_to(a, b, rtol, what)
        return
    # rounding to the scale of the values: a zero of the Hessian's diagonal comes out
    # as y_i (1/x_j)² - (y_i/x_j)/x_j, not exactly 0
    atol = rtol * float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=what)


ZERO_POINTS = {  # (x, the form that runs): one zero divides, two or more take the scan
    "zero first": ([0.0, 1.5, -2.0, 0.5, 3.0], "division"),
    "zero inside": ([1.5, -2.0, 0.0, 0.5, 3.0], "division"),
    "zero last": ([1.5, -2.0, 0.5, 3.0, 0.0], "division"),
    "two zeros": ([1.5, 0.0, -2.0, 0.0, 3.0], "scan"),
    "all zeros": ([0.0, 0.0, 0.0, 0.0, 0.0], "scan"),
}


@pytest.mark.parametrize("point", sorted(ZERO_POINTS))
def test_cumprod_derivatives_are_exact_at_zeros_to_second_order(weighted, point):
    """Holding the masks, the division form is an identity of polynomials near a
    point whose line has one zero (y_i / x_j where x_j ≠ 0, the product with x_j
    replaced by 1 where x_j = 0), so its own derivatives are exact there; with
    two zeros it would replace both by 1, so they take the scan."""
    x, form = ZERO_POINTS[point]
    w, v = np.array([0.5, -1.0, 2.0, 0.25, 1.5]), np.array([1.0, -0.5, 2.0, 0.75, -1.25])
    assert_derivatives(weighted, np.array(x), w, v, form)


def test_cumprod_derivatives_by_division_agree_with_the_scan_at_random_points(weighted, weighted_by_scan):
    rng = np.random.default_rng(7)
    for _ in range(5):
        x = rng.uniform(0.3, 2.0, 7) * rng.choice([-1.0, 1.0], 7)
        w, v = rng.normal(size=7), rng.normal(size=7)
        assert_derivatives(weighted, x, w, v, "division", rtol=1e-11)
        for name, args in (("weighted_grad", (x, w)), ("weighted_jvp", (x, w, v)),
                           ("weighted_hessian", (x, w)), ("weighted_grad_grad", (x, w, v))):
            got, forms = forms_run(getattr(weighted_by_scan, name), *args)
            assert forms == {"scan"}, f"{name} ran {forms}"
            _assert_close_to(getattr(weighted, name)(*args), got, 1e-11, name)


UNDER_AND_OVERFLOW = {  # the products leave [tiny, max] with no zero in x: the scan runs
    "underflow to 0": ([1e-200, 1e-200, 1e-200, 3.0, 0.5], [0.0, 1.0, 0.0, 0.0, 0.0]),
    "subnormal": ([1e-160, 1e-160, 1e10, 2.0, 0.5], [0.0, 0.0, 1.0, 0.0, 1.0]),
    "overflow": ([1e200, 1e200, 1e-250, 0.5, 2.0], [0.0, 1.0, 1.0, 1.0, 1.0]),
}


@pytest.mark.parametrize("point", sorted(UNDER_AND_OVERFLOW))
def test_cumprod_derivatives_take_the_scan_where_the_products_under_or_overflow(
        weighted, weighted_by_scan, point):
    """Where y underflows, y_i / x_j lost what the product of the others keeps
    (x̄_0 = w_1 x_1 = 1e-200 while y_1 = 0; from a subnormal y, a few digits), and
    where it overflows, inf / x_j is inf where the product of the others is not.
    The second derivatives are the scan's, as before: exact products where y
    underflows; where it overflows, NaN in the rows of the items after the
    overflow (the scan multiplies the overflowed prefix by 0), a limit of the scan;
    where the true value overflows, inf before may be NaN now."""
    x, w = (np.array(v) for v in UNDER_AND_OVERFLOW[point])
    v = np.array([1.0, -0.5, 2.0, 0.75, -1.25])
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        gradient, forms = forms_run(weighted.weighted_grad, x, w)
        assert forms == {"scan"}
        np.testing.assert_allclose(gradient, exact_gradient(x, w), rtol=1e-14, atol=0.0)
        _, tangent = weighted.weighted_jvp(x, w, v)
        np.testing.assert_array_equal(tangent, weighted_by_scan.weighted_jvp(x, w, v)[1])
        quotients = np.cumsum((w * np.cumprod(x))[::-1])[::-1] / x  # what division would give
        assert not np.allclose(quotients, exact_gradient(x, w), rtol=1e-6, atol=0.0)
        for name, args in (("weighted_hessian", (x, w)), ("weighted_grad_grad", (x, w, v))):
            got, forms = forms_run(getattr(weighted, name), *args)
            assert "scan" in forms
            before = getattr(weighted_by_scan, name)(*args)
            finite = np.isfinite(before)  # where the true value overflows: inf before, inf or NaN now
            assert finite.any()
            np.testing.assert_array_equal(got[finite], before[finite], err_msg=name)
        if point != "overflow":
            np.testing.assert_allclose(weighted.weighted_hessian(x, w), exact_hessian(x, w),
                                       rtol=1e-14, atol=0.0)


def test_cumprod_derivatives_take_the_scan_where_an_item_is_out_of_reach(weighted):
    """The products are normal, but the second derivatives by division divide by
    x_j²: with x_1 = 1e-160, y_i/x_1² overflows, and the Hessian's diagonal
    y_i/x_1² - y_i/x_1² would be inf - inf. Items beyond 2^±256 take the scan."""
    x, w = np.array([1e200, 1e-160, 3.0, 0.5, 2.0]), np.array([0.25, 0.5, 1.0, 1.0, 1.0])
    with np.errstate(over="ignore", invalid="ignore"):  # the scan's rounds overflow on the way
        assert np.isnan(np.cumprod(x)[2] / x[1] ** 2 - np.cumprod(x)[2] / x[1] ** 2)
        hessian, forms = forms_run(weighted.weighted_hessian, x, w)
    assert "scan" in forms
    np.testing.assert_allclose(hessian, exact_hessian(x, w), rtol=1e-14, atol=0.0)
    gradient, forms = forms_run(weighted.weighted_grad, x, w)
    assert forms == {"scan"}
    np.testing.assert_allclose(gradient, exact_gradient(x, w), rtol=1e-14, atol=0.0)
    inside = np.array([1e70, 1e-70, 3.0, 0.5, 2.0])  # within reach: divides, and its Hessian rounds
    hessian, forms = forms_run(weighted.weighted_hessian, inside, w)
    assert forms == {"division"}
    assert np.isfinite(hessian).all()


def test_cumprod_along_an_axis_divides_unless_a_line_fails(weighted):
    """The choice is one `if` on the whole array: a line with two zeros sends every
    line to the scan; each line's derivative is its own either way."""
    rows = catad.compile(WEIGHTED, module_name="catad_cumprod_rows")
    A = np.array([[1.5, 0.0, -2.0, 0.5], [0.7, -1.2, 1.9, 0.4], [0.0, 2.0, 0.5, -1.0]])
    W = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, -0.5, 2.0], [-1.5, 0.5, 1.0, 1.0]])
    for A_, form in ((A, "division"), (np.vstack([A, [[0.0, 1.0, 0.0, 2.0]]]), "scan")):
        W_ = np.vstack([W, np.ones((len(A_) - len(A), 4))])
        gradient, forms = forms_run(rows.rows_grad, A_, W_)
        assert forms == {form}
        np.testing.assert_allclose(gradient, [exact_gradient(a, w) for a, w in zip(A_, W_)], rtol=1e-13)
        hessian, forms = forms_run(rows.rows_hessian, A_, W_)
        assert form in forms
        for r, (a, w) in enumerate(zip(A_, W_)):
            np.testing.assert_allclose(hessian[r, :, r, :], exact_hessian(a, w), rtol=1e-13, atol=1e-15)
            assert not np.any(np.delete(hessian[r], r, axis=1))  # lines do not meet


def test_prod_hessian_by_division_is_exact_at_one_zero_and_at_random_points():
    """prod's weights are exclusive cumprods, forward and reversed: their derivatives
    divide too, and the Hessian of prod stays exact."""
    module = catad.compile(SOURCE, module_name="catad_cumulative_prod")  # its own lines to trace
    rng = np.random.default_rng(3)
    points = [np.array(X_POINTS["one zero"]), rng.uniform(0.5, 1.5, 6) * rng.choice([-1.0, 1.0], 6)]
    for x in points:
        n = len(x)
        expected = np.array([[0.0 if j == l else np.prod(np.delete(x, [j, l])) for l in range(n)]
                             for j in range(n)])
        hessian, forms = forms_run(module.p_hessian, x)
        assert forms == {"division"}
        np.testing.assert_allclose(hessian, expected, rtol=1e-13, atol=1e-15)
