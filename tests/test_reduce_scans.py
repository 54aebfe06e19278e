"""Derivatives of `reduce` with an associative body that is not a known monoid.

Such a reduce is vectorised to a fold marked associative, and reverse mode
differentiates it by Huot & Shaikhha's rule: the cotangent of x_i comes from
the partial derivatives of P_(i-1) ⊕ x_i ⊕ S_(i+1), with the prefixes P and
suffixes S computed as scans in log2(n) whole-array rounds (compiler/scans.py);
forward mode takes the tangent from the same scans. These tests check the
gradients against finite differences of the compiled primal (a plain left
fold) and against forward mode, at lengths 0, 1, 2, 3, 8 and 17, Hessians
(forward over reverse) and Z2 gradients too; that no loop over the items is
left (none at all for a constant length, only the loop over the log2 rounds for
a size variable); and that the gradient costs O(n log n) against the primal's
O(n) (compiler/cost.py).
"""

from __future__ import annotations

import ast as pyast
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import catad
from catad.compiler.cost import function_cost
from catad.compiler.scans import UNROLLED_ROUNDS
from catad.compiler.simplify import atom_type, binding_types
from catad.compiler.target import Block, IfElse, LoopE
from catad.compiler.types import ArrayType
from catad.compiler.unary import Custom, If, Loop, Seq, Term

from program_strategy import compile_source, programs, scaled, size_values

LENGTHS = (0, 1, 2, 3, 8, 17)

# Each reduce (associative, not one of + * maximum minimum) in a scalar function of
# its parameters, and `make(n, rng)`, which makes the arguments for a length n.
PROGRAMS = {
    "shifted product": (
        "fn f(x: f64[n]) -> f64 { reduce(x, 0.0, |a, b| a + b + a * b) }",
        lambda n, rng: (0.4 * rng.standard_normal(n),)),
    "unit that is not the identity": (
        "fn f(x: f64[n], u: f64) -> f64 { reduce(x, u, |a, b| a + b + a * b) }",
        lambda n, rng: (0.4 * rng.standard_normal(n), 0.3)),
    "body reading a parameter": (
        "fn f(x: f64[n], c: f64) -> f64 { reduce(x, 0.0, |a, b| a + b + c * a * b) }",
        lambda n, rng: (0.5 * rng.standard_normal(n), 0.7)),
    "logaddexp": (
        "fn f(x: f64[n], c: f64) -> f64 { reduce(c * x, -1.0e300, |a, b| log(exp(a) + exp(b))) }",
        lambda n, rng: (rng.standard_normal(n), 1.3)),
    "2x2 matrix product as a tuple body": ("""
        fn f(A: f64[n, 4], w: f64[4]) -> f64 {
            let p = reduce(A, stack((1.0, 0.0, 0.0, 1.0)), |a, b| {
                let (a00, a01, a10, a11) = (a[0], a[1], a[2], a[3]);
                let (b00, b01, b10, b11) = (b[0], b[1], b[2], b[3]);
                stack((a00 * b00 + a01 * b10, a00 * b01 + a01 * b11,
                       a10 * b00 + a11 * b10, a10 * b01 + a11 * b11))
            });
            sum(w * p * p)
        }""", lambda n, rng: (0.8 * rng.standard_normal((n, 4)), rng.standard_normal(4))),
    "matrix product": (
        "fn f(A: f64[n, 2, 2], u: f64[2, 2]) -> f64 { sum(sin(reduce(A, u, |a, b| a @ b))) }",
        lambda n, rng: (0.8 * rng.standard_normal((n, 2, 2)), np.eye(2) + 0.1 * rng.standard_normal((2, 2)))),
    "max with its index": ("""
        fn f(x: f64[n]) -> f64 {
            let items = for i in 0..n { stack((x[i], f64(i))) };
            let best = reduce(items, stack((-1.0e300, -1.0)), |a, b| if a[0] >= b[0] { a } else { b });
            best[0] * (best[1] + 2.0)
        }""", lambda n, rng: (rng.permutation(n) + 0.1 * rng.standard_normal(n),)),
    "vector items with a vector read by the body": (
        "fn f(A: f64[n, 3], w: f64[3]) -> f64 { sum(reduce(A, zeros(3), |a, b| a + b + w * a * b)) }",
        lambda n, rng: (0.5 * rng.standard_normal((n, 3)), rng.standard_normal(3))),
    "reduce in the body of a reduce": ("""
        fn f(x: f64[n], w: f64[3]) -> f64 {
            reduce(x, 0.0, |a, b| a + b + reduce(w, 0.0, |p, q| p + q + p * q) * a * b)
        }""", lambda n, rng: (0.4 * rng.standard_normal(n), 0.3 * rng.standard_normal(3))),
    "reduce per row, in a comprehension": ("""
        fn f(A: f64[m, n], c: f64[m]) -> f64 {
            sum(for i in 0..m { reduce(A[i], c[i], |a, b| a + b - a * b) })
        }""", lambda n, rng: (0.5 * rng.standard_normal((3, n)), 0.2 * rng.standard_normal(3))),
}


def _value_and_grad_source(text: str) -> str:
    return text + "\nfn f_vg = value_and_grad(f);\nfn f_jvp = jvp(f);\n"


@pytest.fixture(scope="module", params=sorted(PROGRAMS))
def compiled(request):
    text, make = PROGRAMS[request.param]
    return catad.compile(_value_and_grad_source(text)), make


def _central_difference(f, args, direction, step=1e-6):
    plus = f(*(a + step * v for a, v in zip(args, direction)))
    minus = f(*(a - step * v for a, v in zip(args, direction)))
    return (plus - minus) / (2 * step)


@pytest.mark.parametrize("n", LENGTHS)
def test_gradient_matches_finite_differences_and_forward_mode(compiled, n):
    module, make = compiled
    rng = np.random.default_rng(n)
    args = tuple(np.asarray(a, dtype=np.float64) for a in make(n, rng))
    value, grads = module.f_vg(*args)
    grads = grads if len(args) > 1 else (grads,)
    np.testing.assert_allclose(value, module.f(*args), rtol=1e-12, atol=1e-12)
    for g, a in zip(grads, args):
        assert np.shape(g) == np.shape(a)
    for _ in range(3):
        direction = tuple(rng.standard_normal(np.shape(a)) for a in args)
        along = sum(float(np.sum(g * v)) for g, v in zip(grads, direction))
        scale = 1.0 + sum(float(np.sum(np.abs(g * v))) for g, v in zip(grads, direction))
        _, tangent = module.f_jvp(*args, *direction)
        assert abs(tangent - along) <= 1e-10 * scale, (tangent, along)
        difference = _central_difference(module.f, args, direction)
        assert abs(difference - along) <= 1e-6 * scale, (difference, along)


@pytest.mark.parametrize("name", ["shifted product", "logaddexp", "reduce in the body of a reduce"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_the_hessian_forward_over_the_scans_matches_the_gradient(name, n):
    text, make = PROGRAMS[name]
    module = catad.compile(text + "\nfn f_gx = grad(f, wrt = x);\nfn f_hess = hessian(f, wrt = x);\n")
    args = tuple(np.asarray(a, dtype=np.float64) for a in make(n, np.random.default_rng(n)))
    hessian = module.f_hess(*args)
    for i in range(n):
        direction = (np.eye(n)[i],) + tuple(np.zeros_like(a) for a in args[1:])
        column = _central_difference(module.f_gx, args, direction)
        np.testing.assert_allclose(hessian[:, i], column, rtol=1e-6, atol=1e-6)


def test_an_empty_reduce_passes_the_cotangent_to_the_unit():
    module = catad.compile(_value_and_grad_source(PROGRAMS["unit that is not the identity"][0]))
    value, (x_bar, u_bar) = module.f_vg(np.zeros(0), 0.3)
    assert value == 0.3 and x_bar.shape == (0,) and u_bar == 1.0


def test_one_item_is_combined_once_with_the_unit():
    """f = u + x + u x: the gradient is (1 + u, 1 + x)."""
    module = catad.compile(_value_and_grad_source(PROGRAMS["unit that is not the identity"][0]))
    _, (x_bar, u_bar) = module.f_vg(np.array([0.5]), 0.3)
    np.testing.assert_allclose(x_bar, [1.3], rtol=1e-15)
    np.testing.assert_allclose(u_bar, 1.5, rtol=1e-15)


# ---- the shape of the code ------------------------------------------------------------------

def _function_code(python: str, name: str) -> pyast.FunctionDef:
    tree = pyast.parse(python)
    return next(node for node in tree.body if isinstance(node, pyast.FunctionDef) and node.name == name)


def _constant_length(text: str, n: int) -> str:
    """The program with the size variable n replaced by the constant `n`."""
    return text.replace("f64[n", f"f64[{n}").replace("f64[m, n]", f"f64[m, {n}]").replace("0..n", f"0..{n}")


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("n", LENGTHS)
def test_a_constant_length_leaves_no_loop_in_the_gradient(name, n):
    text, make = PROGRAMS[name]
    text = _constant_length(text, n) + "\nfn f_grad = grad(f);\n"
    python = catad.to_python(text)
    loops = [node for node in pyast.walk(_function_code(python, "f_grad"))
             if isinstance(node, (pyast.For, pyast.While))]
    # a reduce's own value is the fold: the inner reduce, applied in the scans of the
    # outer one, still loops over its 3 items
    inner = {"reduce in the body of a reduce": "w"}.get(name)
    assert all(isinstance(loop, pyast.For) and pyast.unparse(loop.iter) == inner for loop in loops), \
        pyast.unparse(loops[0])
    # the primal is still the left fold: a Python loop over the items
    assert any(isinstance(node, pyast.For) for node in pyast.walk(_function_code(python, "f")))
    module = catad.compile(text)
    rng = np.random.default_rng(n)
    args = tuple(np.asarray(a, dtype=np.float64) for a in make(n, rng))
    grads = module.f_grad(*args)
    grads = grads if len(args) > 1 else (grads,)
    direction = tuple(rng.standard_normal(np.shape(a)) for a in args)
    along = sum(float(np.sum(g * v)) for g, v in zip(grads, direction))
    scale = 1.0 + sum(float(np.sum(np.abs(g * v))) for g, v in zip(grads, direction))
    assert abs(_central_difference(module.f, args, direction) - along) <= 1e-6 * scale


def _loops(block: Block):
    for bind in block.bindings:
        match bind.expr:
            case LoopE(body=body):
                yield bind.expr
                yield from _loops(body)
            case IfElse(then=then, orelse=orelse):
                yield from _loops(then)
                yield from _loops(orelse)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_size_variable_leaves_only_the_loop_over_the_rounds(name):
    """Every loop left in the gradient runs a constant number of times: the
    doubling rounds of a scan, never the items."""
    stages = catad.stages(PROGRAMS[name][0] + "\nfn f_grad = grad(f);\n")
    grad = next(fn for fn in stages.optimised.functions if fn.name == "f_grad")
    types = binding_types(grad)
    loops = list(_loops(grad.body))
    assert loops, "a size variable needs a loop over the rounds"
    for loop in loops:
        xs = atom_type(loop.xs, types)
        assert isinstance(xs, ArrayType) and xs.shape[0].is_constant, loop


def _associative_folds(term: Term) -> list[Loop]:
    match term:
        case Loop():
            return [term] * term.associative + _associative_folds(term.body)
        case Seq(terms=terms):
            return [f for t in terms for f in _associative_folds(t)]
        case If(then=then, orelse=orelse):
            return _associative_folds(then) + _associative_folds(orelse)
        case Custom(body=body):
            return _associative_folds(body)
        case _:
            return []


def test_vectorising_marks_the_fold_of_a_reduce_associative():
    stages = catad.stages("""
        fn f(x: f64[n]) -> f64 { reduce(x, 0.0, |a, b| a + b + a * b) }
        fn g(x: f64[n]) -> f64 { fold(0.0, x, |a, b| a + b + a * b) }
        fn h(x: f64[n]) -> f64 { reduce(x, 0.0, |a, b| a + b) }
    """)
    counts = {fn.name: len(_associative_folds(fn.body)) for fn in stages.vectorised.functions}
    assert counts == {"f": 1, "g": 0, "h": 0}


def test_a_body_calling_a_function_with_a_rule_is_folded_as_it_is():
    """Its body cannot be applied to all items at once (the rule is for one call):
    the fold is not marked, and reverse mode loops over the stored states."""
    text = """
        fn clipped(x: f64) -> f64 { minimum(x, 1.0) }
        fn clipped_vjp = custom_vjp(clipped, |x, y_bar| y_bar);
        fn f(x: f64[n]) -> f64 { reduce(x, 0.0, |a, b| clipped(a + b)) }
        fn f_grad = grad(f);
    """
    stages = catad.stages(text)
    assert not _associative_folds(stages.vectorised.function("f").body)
    module = catad.compile(text)
    np.testing.assert_allclose(module.f_grad(np.array([0.2, 0.3, 0.4])), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("n", [2 ** UNROLLED_ROUNDS - 40, 2 ** UNROLLED_ROUNDS + 40])
def test_unrolled_looped_and_guarded_rounds_agree(n):
    """A constant length up to 2^UNROLLED_ROUNDS unrolls its rounds, a longer one
    loops over exactly its rounds, a size variable over 63 guarded ones."""
    text = PROGRAMS["2x2 matrix product as a tuple body"][0] + "\nfn f_grad = grad(f);\n"
    constant = catad.compile(_constant_length(text, n))
    symbolic = catad.compile(text)
    rng = np.random.default_rng(n)
    A, w = 0.3 * rng.standard_normal((n, 4)) + np.array([1.0, 0.0, 0.0, 1.0]), rng.standard_normal(4)
    A_bar, w_bar = constant.f_grad(A, w)
    for got, expected in zip(symbolic.f_grad(A, w), (A_bar, w_bar)):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    direction = rng.standard_normal(A.shape)
    along = float(np.sum(A_bar * direction))
    difference = _central_difference(lambda a: constant.f(a, w), (A,), (direction,))
    assert abs(difference - along) <= 1e-6 * (1.0 + float(np.sum(np.abs(A_bar * direction))))


# ---- cost ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["shifted product", "2x2 matrix product as a tuple body",
                                  "vector items with a vector read by the body"])
def test_the_gradient_costs_n_log_n_against_the_primal(name):
    """cost(gradient) <= C * log2(n) * cost(primal), with one C for every n: the
    scans do ceil(log2 n) rounds of n applications of the body."""
    ratios = {}
    for n in (2, 4, 16, 64, 256):
        stages = catad.stages(_constant_length(PROGRAMS[name][0], n) + "\nfn f_grad = grad(f);\n")
        by_name = {fn.name: fn for fn in stages.optimised.functions}
        sizes = {"m": 3}
        ratios[n] = (function_cost(by_name["f_grad"], sizes).total
                     / function_cost(by_name["f"], sizes).total)
    for n, ratio in ratios.items():
        assert ratio <= 5 * math.log2(2 * n), ratios
    # doubling n four times adds rounds, it does not multiply the cost by n
    assert ratios[256] <= 4 * ratios[16], ratios


# ---- random programs ----------------------------------------------------------------------

REDUCE_FEATURES = ("associative", "reduce", "arithmetic", "elementwise", "broadcast", "let", "for", "index")


@scaled(0.5)
@given(programs(features=REDUCE_FEATURES), size_values(), st.integers(0, 2**32 - 1))
def test_random_programs_with_reduces_differentiate_alike(program, sizes, seed):
    """value_and_grad against jvp on random programs built mostly of reduces."""
    _, module = compile_source(program.with_lines("fn f_vg = value_and_grad(f);", "fn f_jvp = jvp(f);"))
    rng = np.random.default_rng(seed)
    args = program.inputs(sizes, rng)
    value, grads = module.f_vg(*args)
    grads = grads if len(args) > 1 else (grads,)
    np.testing.assert_allclose(value, module.f(*args), rtol=1e-10, atol=1e-10)
    direction = tuple(rng.standard_normal(np.shape(a)) for a in args)
    along = sum(float(np.sum(g * v)) for g, v in zip(grads, direction))
    scale = 1.0 + sum(float(np.sum(np.abs(g * v))) for g, v in zip(grads, direction))
    _, tangent = module.f_jvp(*args, *direction)
    assert abs(tangent - along) <= 1e-9 * scale, (tangent, along)


# ---- over Z2 ------------------------------------------------------------------------------

def test_over_z2_the_scans_agree_with_the_stepwise_rule():
    """(a and b and c) xor a xor b is associative (a or b when c): the gradient by
    scans equals that of the same body as a fold, which reverse mode runs step by
    step, on every bool input of up to 5 items (a fold over no items is not
    compared: its reverse rule indexes the last of no states)."""
    module = catad.compile("""
        fn f(x: bool[n], c: bool) -> bool { reduce(x, false, |a, b| (a and b and c) xor a xor b) }
        fn f_grad = grad(f);
        fn g(x: bool[n], c: bool) -> bool { fold(false, x, |a, b| (a and b and c) xor a xor b) }
        fn g_grad = grad(g);
    """)
    for n in range(1, 6):
        for bits in range(2 ** n):
            x = np.array([(bits >> k) & 1 for k in range(n)], dtype=bool)
            for c in (False, True):
                (x_bar, c_bar), (expected_x, expected_c) = module.f_grad(x, c), module.g_grad(x, c)
                assert np.array_equal(x_bar, expected_x) and c_bar == expected_c, (x, c)
    x_bar, c_bar = module.f_grad(np.zeros(0, dtype=bool), True)
    assert x_bar.shape == (0,) and not c_bar
