"""The generated derivative code of every example, against golden files, and its
derivatives against finite differences.

Each example with derived functions (declared in the file, or added here as the
CLI's --grad/--vjp/--jvp/--hessian add them) compiles, byte for byte, to
tests/golden/<example>.py. A change to the compiler that changes generated code
shows up here as a diff to review; when it is wanted, rewrite the files with

    CATAD_UPDATE_GOLDEN=1 python -m pytest tests/test_gradient_code.py

Every real derivative in those modules is checked against central differences
of the primal function in the same module, along random directions.
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path

import numpy as np
import pytest

from catad.compiler import ast
from catad.compiler.errors import Source
from catad.compiler.lower import load_module
from catad.compiler.parse import parse
from catad.compiler.pipeline import Stages, compile_stages

from examples_reference import inputs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("CATAD_UPDATE_GOLDEN") == "1"

# (transformation, function, wrt or None for every real parameter), as the CLI declares them
EXTRA: dict[str, tuple[tuple[str, str, tuple[str, ...] | None], ...]] = {
    "logistic": (("hessian", "loss", ("w",)), ("jvp", "predict", None)),
    "mlp": (("value_and_grad", "loss", None),),
    "gmm": (("value_and_grad", "gmm", ("alphas", "means", "icf")),),
    "attention": (("vjp", "attention", None), ("vjp", "causal_attention", None)),
    "rnn": (("vjp", "rnn_last", None), ("vjp", "rnn_states", None), ("jvp", "rnn_last", None)),
}
_SUFFIX = {"value_and_grad": "grad", "grad": "grad", "vjp": "vjp", "jvp": "jvp", "hessian": "hessian"}


def _declaration(kind: str, fn: str, wrt: tuple[str, ...] | None) -> ast.DerivedFunction:
    keywords = () if wrt is None else (ast.Keyword("wrt", ast.TupleExpr(tuple(ast.Name(w) for w in wrt))),)
    return ast.DerivedFunction(f"{fn}_{_SUFFIX[kind]}", ast.Call(kind, (ast.Name(fn),), keywords))


def _source(stem: str) -> Source:
    return Source((EXAMPLES / f"{stem}.catad").read_text(encoding="utf-8"), f"examples/{stem}.catad")


@functools.cache
def _stages(stem: str) -> Stages:
    return compile_stages(_source(stem), extra=tuple(_declaration(*d) for d in EXTRA.get(stem, ())))


def _derived(stages: Stages) -> list[ast.DerivedFunction]:
    return [f for f in stages.ast.functions if isinstance(f, ast.DerivedFunction)]


def _with_derivatives() -> list[str]:
    """The examples that have derived functions (declared, or in EXTRA)."""
    stems = sorted(p.stem for p in EXAMPLES.glob("*.catad"))
    return [s for s in stems if s in EXTRA or any(isinstance(f, ast.DerivedFunction)
                                                  for f in parse(_source(s)).functions)]


STEMS = _with_derivatives()


@pytest.fixture(scope="module")
def compiled() -> dict[str, Stages]:
    return {stem: _stages(stem) for stem in STEMS}


# ---- golden files -----------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_generated_code_is_the_golden_file(compiled, stem):
    text = compiled[stem].python
    golden = GOLDEN / f"{stem}.py"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert golden.exists(), f"no golden file for {stem}: run CATAD_UPDATE_GOLDEN=1 pytest {__file__}"
    expected = golden.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True),
                                            text.splitlines(keepends=True), f"golden/{stem}.py",
                                            "generated", n=2))
        pytest.fail(f"the generated code of {stem} changed (CATAD_UPDATE_GOLDEN=1 accepts it):\n{diff}")


def test_every_golden_file_belongs_to_an_example_with_derivatives():
    assert {p.stem for p in GOLDEN.glob("*.py")} == set(STEMS)


def test_every_example_with_derivatives_is_checked():
    assert set(EXTRA) <= set(STEMS)
    assert {"logistic", "mlp", "gmm", "attention", "rnn"} <= set(STEMS)


# ---- the derivatives, against finite differences ------------------------------------


def _cases() -> list[str]:
    """`stem.derived` for each real derivative of a function with reference inputs
    (derivatives over Z2, of bools, are tested against brute force in test_z2)."""
    cases = []
    reference = inputs(np.random.default_rng(0))
    for stem in STEMS:
        stages = _stages(stem)
        if stages.typed.rules:  # a user's derivative rule (straight-through) is not the calculus
            continue
        for decl in _derived(stages):
            fn = decl.call.args[0].id
            if f"{stem}.{fn}" not in reference:
                continue
            args = reference[f"{stem}.{fn}"][0]
            params = [p for p, _ in next(f for f in stages.typed.functions if f.name == fn).params]
            if all(np.asarray(args[i]).dtype.kind == "f" for i in _wrt(decl, params, args)):
                cases.append(f"{stem}.{decl.name}")
    return cases


def _wrt(decl: ast.DerivedFunction, params: list[str], args: list) -> list[int]:
    for kw in decl.call.kwargs:
        if kw.name == "wrt":
            names = [n.id for n in kw.value.items] if isinstance(kw.value, ast.TupleExpr) else [kw.value.id]
            return [params.index(n) for n in names]
    return [i for i, a in enumerate(args) if np.asarray(a).dtype.kind == "f"]


@pytest.mark.parametrize("case", _cases())
def test_golden_derivatives_agree_with_finite_differences(compiled, case):
    stem, name = case.split(".")
    stages = compiled[stem]
    decl = next(d for d in _derived(stages) if d.name == name)
    kind, fn = decl.call.func, decl.call.args[0].id
    module = load_module(stages.python, stem)
    primal, derived = getattr(module, fn), getattr(module, name)
    params = [p for p, _ in next(f for f in stages.typed.functions if f.name == fn).params]
    args, _ = inputs(np.random.default_rng(5))[f"{stem}.{fn}"]
    args = [np.asarray(a, dtype=float) if np.asarray(a).dtype.kind == "f" else a for a in args]
    wrt = _wrt(decl, params, args)
    rng = np.random.default_rng(6)
    v = [rng.standard_normal(np.shape(args[i])) for i in wrt]

    def along(t: float):
        moved = list(args)
        for i, d in zip(wrt, v):
            moved[i] = args[i] + t * d
        return np.asarray(primal(*moved))

    eps = 1e-6
    slope = (along(eps) - along(-eps)) / (2 * eps)  # D f(x) v
    if kind in ("grad", "value_and_grad"):
        out = derived(*args)
        value, grads = out if kind == "value_and_grad" else (None, out)
        grads = grads if len(wrt) > 1 else (grads,)
        if value is not None:
            np.testing.assert_allclose(value, primal(*args), rtol=1e-12)
        np.testing.assert_allclose(sum(np.sum(g * d) for g, d in zip(grads, v)), slope, rtol=1e-5, atol=1e-7)
    elif kind == "vjp":
        w = rng.standard_normal(np.shape(slope))
        value, cotangents = derived(*args, w)
        cotangents = cotangents if len(wrt) > 1 else (cotangents,)
        np.testing.assert_allclose(value, primal(*args), rtol=1e-12)
        np.testing.assert_allclose(sum(np.sum(c * d) for c, d in zip(cotangents, v)), np.sum(slope * w),
                                   rtol=1e-5, atol=1e-7)
    elif kind == "jvp":
        value, tangent = derived(*args, *v)
        np.testing.assert_allclose(value, primal(*args), rtol=1e-12)
        np.testing.assert_allclose(tangent, slope, rtol=1e-5, atol=1e-7)
    elif kind == "hessian":
        (d,) = v
        h = 1e-4
        curvature = (along(h) - 2 * along(0.0) + along(-h)) / h ** 2  # vᵀ H v
        hessian = derived(*args)
        np.testing.assert_allclose(hessian, np.swapaxes(hessian, 0, 1), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d @ hessian @ d, curvature, rtol=1e-4, atol=1e-6)
    else:
        raise AssertionError(f"no check for {kind}")
