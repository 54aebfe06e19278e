"""Smoke run of the benchmark harness at its smallest sizes, catad and the
hand-written NumPy gradients only: the gradients must agree (times are not
checked), so the harness cannot rot. Needs no benchmark extra."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import gradbench_tool
from benchmarks.measure import TOLERANCE, relative_error
from benchmarks.problems import PROBLEMS
from benchmarks.report import render
from benchmarks.suites import chain_source, fit_exponent, run_problem


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_catad_gradient_agrees_with_manual(name):
    rows = run_problem(PROBLEMS[name], "tiny", ("catad", "manual"), budget_s=0.0)
    assert {r["tool"] for r in rows} == {"catad", "manual"}
    for row in rows:
        assert row["valid"], row
        assert row["relative_error"] < TOLERANCE
        assert row["gradient_s"] > 0 and row["objective_s"] > 0
    catad = next(r for r in rows if r["tool"] == "catad")
    assert catad["gradient_peak_bytes"] > 0
    # the gradient's peak holds the arrays it returns: its floor
    assert 0 < catad["returned_gradient_bytes"] <= catad["gradient_peak_bytes"]


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_catad_jax_gradient_agrees_with_manual(name):
    """catad's array-api module under jax.jit (the catad-jax tool)."""
    from benchmarks.tools import catad_jax_tool

    reason = catad_jax_tool.unavailable()
    if reason:
        pytest.skip(reason)
    rows = run_problem(PROBLEMS[name], "tiny", ("catad-jax", "manual"), budget_s=0.0)
    assert {r["tool"] for r in rows} == {"catad-jax", "manual"}
    for row in rows:
        assert row["valid"], row
    assert next(r for r in rows if r["tool"] == "catad-jax")["setup_s"] > 0


def test_a_wrong_gradient_is_flagged():
    grads = (np.array([1.0, 2.0]),)
    assert relative_error(1.0, grads, 1.0, grads) == 0.0
    assert relative_error(1.0, (np.array([1.0, 2.1]),), 1.0, grads) > TOLERANCE


def test_report_renders_from_results(tmp_path):
    rows = run_problem(PROBLEMS["lse"], "tiny", ("catad", "manual"), budget_s=0.0)
    results = {"created": "now", "sizes": "tiny", "problems": rows, "compile": None,
               "scaling": {"rows": [{"depth": 16, "catad_s": 0.1}, {"depth": 32, "catad_s": 0.2}],
                           "catad_exponent": 1.0},
               "environment": {"cpus": 2, "machine": "x", "platform": "p", "versions": {"numpy": "2"}}}
    page = render(results, tmp_path, plots=False)
    assert "### lse" in page and "gradient peak memory" in page
    assert "**INVALID** |" not in page
    assert "alone is over the bound" not in page
    catad = next(r for r in rows if r["tool"] == "catad")
    catad["memory_floor_ratio"] = 5.0  # a gradient larger than anything the objective holds
    page = render(results, tmp_path, plots=False)
    assert f"alone is over the bound at lse {catad['size']} (5.0x)" in page


def test_chain_family_compiles_and_exponent_fits():
    import catad

    module = catad.compile(chain_source(3))
    value, (gx, gw) = module.chain_grad(np.full(2, 0.1), np.full(2, 0.5))
    assert gx.shape == (2,) and np.isfinite(value)
    assert fit_exponent([1, 2, 4], [1.0, 2.0, 4.0]) == pytest.approx(1.0)


def test_gradbench_tool_answers_the_protocol():
    messages = [
        {"id": 0, "kind": "start", "eval": "lse"},
        {"id": 1, "kind": "define", "module": "lse"},
        {"id": 2, "kind": "evaluate", "module": "lse", "function": "gradient",
         "input": {"x": [1.0, 2.0, 3.0], "min_runs": 2, "min_seconds": 0}},
        {"id": 3, "kind": "analysis", "of": 2, "valid": True},
        {"id": 4, "kind": "define", "module": "nope"},
        {"id": 5, "kind": "end"},
    ]
    out = []
    gradbench_tool.serve((json.dumps(m) for m in messages), out.append)
    replies = [json.loads(line) for line in out]
    assert [r["id"] for r in replies] == [0, 1, 2, 3, 4]
    assert replies[1]["success"] and not replies[4]["success"]
    e = np.exp([1.0, 2.0, 3.0])
    assert np.allclose(replies[2]["output"], e / e.sum())
    assert len(replies[2]["timings"]) == 2


def test_gradbench_gmm_and_lstm_formats():
    rng = np.random.default_rng(0)
    k, d, n = 2, 3, 4
    gmm_input = {"k": k, "d": d, "n": n, "m": 0, "gamma": 1.0, "alpha": rng.normal(size=k).tolist(),
                 "mu": rng.normal(size=(k, d)).tolist(), "q": rng.normal(size=(k, d)).tolist(),
                 "l": rng.normal(size=(k, 3)).tolist(), "x": rng.normal(size=(n, d)).tolist()}
    reply = gradbench_tool.respond({"id": 0, "kind": "evaluate", "module": "gmm",
                                    "function": "jacobian", "input": gmm_input})
    assert reply["success"], reply
    assert np.shape(reply["output"]["l"]) == (k, 3)
    l, b, c = 2, 14, 3
    lstm_input = {"main_params": rng.random((2 * l, 4 * b)).tolist(),
                  "extra_params": rng.random((3, b)).tolist(), "state": rng.random((2 * l, b)).tolist(),
                  "sequence": rng.integers(0, 2, (c, b)).astype(float).tolist()}
    reply = gradbench_tool.respond({"id": 1, "kind": "evaluate", "module": "lstm",
                                    "function": "jacobian", "input": lstm_input})
    assert reply["success"], reply
    assert len(reply["output"]) == 2 * l * 4 * b + 3 * b


def test_the_command_line_runs_a_suite_and_records_the_allocator_setting(tmp_path):
    # in a child process: --keep-freed-memory changes the allocator of the whole process
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "results.json"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--suite", "lse", "--sizes", "tiny",
                           "--tools", "catad,manual", "--budget", "0", "--no-report",
                           "--keep-freed-memory", "--out", str(out)],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["environment"]["allocator"]  # what was set, or why not
    assert [r["valid"] for r in results["problems"]] == [True, True]


def test_a_tool_that_fails_when_run_is_reported_not_fatal(monkeypatch):
    import types

    from benchmarks import suites
    from benchmarks.tools import Prepared, manual_tool

    def broken():
        raise NotImplementedError("no assignment here")

    failing = types.SimpleNamespace(NAME="broken", unavailable=lambda: None,
                                    prepare=lambda problem, inputs: Prepared(broken, broken, None))
    monkeypatch.setattr(suites, "tool_modules", lambda: (manual_tool, failing))
    rows = suites.run_problem(PROBLEMS["lse"], "tiny", None, budget_s=0.0)
    (row,) = [r for r in rows if r["tool"] == "broken"]
    assert row["skipped"] == "failed: NotImplementedError: no assignment here"
    assert next(r for r in rows if r["tool"] == "manual")["valid"]
