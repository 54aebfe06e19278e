"""The benchmark suites: problems timed across tools, compile times, and the
compile-time scaling on programs of growing depth."""

from __future__ import annotations

import platform
import sys
import time

import numpy as np

from benchmarks.measure import TOLERANCE, min_time, peak_bytes, relative_error
from benchmarks.problems import MODELS, PROBLEMS, Problem
from benchmarks.tools import tool_modules

DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_problem(problem: Problem, sizes: str, tool_names: tuple[str, ...] | None = None,
                budget_s: float = 1.0, seed: int = 0) -> list[dict]:
    """One row per (size, tool): times, ratios, agreement with the manual gradient
    and, for the NumPy tools, peak memory."""
    tools = [t for t in tool_modules() if tool_names is None or t.NAME in tool_names]
    rows = []
    for tool in tools:
        reason = tool.unavailable()
        if reason:
            log(f"[{problem.name}] {tool.NAME}: skipped: {reason}")
    tools = [t for t in tools if t.unavailable() is None]
    for size in problem.sizes[sizes]:
        label = problem.label(size)
        inputs = problem.make_inputs(size, np.random.default_rng(seed))
        ref_value, ref_grads = problem.manual_gradient(*inputs.values())
        for tool in tools:
            row = {"problem": problem.name, "size": label, "tool": tool.NAME}
            try:  # preparing, or the first gradient (a backend may fail only when run)
                prepared = tool.prepare(problem, inputs)
                if not isinstance(prepared, str):
                    value, grads = prepared.to_numpy(prepared.gradient())
            except Exception as err:  # a peer's failure is reported, not fatal
                prepared = f"failed: {type(err).__name__}: {err}"
            if isinstance(prepared, str):
                row["skipped"] = prepared
                log(f"[{problem.name} {label}] {tool.NAME}: {prepared}")
                rows.append(row)
                continue
            error = relative_error(value, grads, ref_value, ref_grads)
            row["relative_error"] = error
            row["valid"] = bool(error < TOLERANCE)
            if not row["valid"]:
                log(f"!!! [{problem.name} {label}] {tool.NAME}: gradient DISAGREES with the "
                    f"manual reference (relative error {error:.3g} >= {TOLERANCE}); its timing is invalid")
            row["objective_s"], row["objective_runs"] = min_time(prepared.objective, budget_s=budget_s)
            row["gradient_s"], row["gradient_runs"] = min_time(prepared.gradient, budget_s=budget_s)
            row["ratio"] = row["gradient_s"] / row["objective_s"]
            if prepared.setup_s is not None:
                row["setup_s"] = prepared.setup_s
            if tool.NAME in ("catad", "manual"):
                row["objective_peak_bytes"] = peak_bytes(prepared.objective)
                row["gradient_peak_bytes"] = peak_bytes(prepared.gradient)
                row["memory_ratio"] = row["gradient_peak_bytes"] / max(row["objective_peak_bytes"], 1)
                # what any tool's gradient must hold: the arrays it returns
                row["returned_gradient_bytes"] = sum(np.asarray(g).nbytes for g in grads)
                row["memory_floor_ratio"] = row["returned_gradient_bytes"] / max(row["objective_peak_bytes"], 1)
            log(f"[{problem.name} {label}] {tool.NAME}: objective {row['objective_s'] * 1e3:.3f} ms, "
                f"gradient {row['gradient_s'] * 1e3:.3f} ms, ratio {row['ratio']:.2f}, "
                f"rel. error {error:.1e}")
            rows.append(row)
        catad = next((r for r in rows if r["size"] == label and r["tool"] == "catad"
                      and "gradient_s" in r and r["problem"] == problem.name), None)
        for r in rows:
            if catad and r["size"] == label and r["problem"] == problem.name and "gradient_s" in r:
                r["catad_over_tool"] = catad["gradient_s"] / r["gradient_s"]
    return rows


def compile_times(repeats: int = 3) -> list[dict]:
    """catad's source-to-Python time for each model (objective and gradient) against
    JAX's first call of jit(value_and_grad) at the problem's first small size."""
    import catad

    rows = []
    for problem in PROBLEMS.values():
        source = (MODELS / problem.model).read_text(encoding="utf-8")
        catad.to_python(source)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            catad.to_python(source)
            seconds.append(time.perf_counter() - start)
        row = {"problem": problem.name, "catad_compile_s": min(seconds),
               "source_lines": len(source.splitlines())}
        from benchmarks.tools import jax_tool

        if jax_tool.unavailable() is None:
            size = problem.sizes["small"][0]
            prepared = jax_tool.prepare(problem, problem.make_inputs(size, np.random.default_rng(0)))
            row["jax_first_call_s"] = prepared.setup_s
            row["jax_size"] = problem.label(size)
        log(f"[compile {problem.name}] catad {row['catad_compile_s']:.3f} s, "
            f"jax first call {row.get('jax_first_call_s', float('nan')):.3f} s")
        rows.append(row)
    return rows


def chain_source(depth: int) -> str:
    """A program of `depth` chained layers h = tanh(w * h + x) and its gradient."""
    lines = ["fn chain(x: f64[n], w: f64[n]) -> f64 {", "    let h0 = x;"]
    lines += [f"    let h{i} = tanh(w * h{i - 1} + x);" for i in range(1, depth + 1)]
    lines += [f"    sum(h{depth})", "}", "fn chain_grad = value_and_grad(chain, wrt = (x, w));"]
    return "\n".join(lines) + "\n"


def _sympy_chain(depth: int) -> None:
    import sympy as sp

    x, w = sp.symbols("x w")
    h = x
    for _ in range(depth):
        h = sp.tanh(w * h + x)
    sp.lambdify([x, w], [h, sp.diff(h, x), sp.diff(h, w)], modules="numpy", cse=True)


def fit_exponent(depths, seconds) -> float:
    """The slope of log(seconds) against log(depth), least squares."""
    slope, _ = np.polyfit(np.log(depths), np.log(seconds), 1)
    return float(slope)


def scaling(depths=DEPTHS, sympy_budget_s: float = 20.0) -> dict:
    """Compile time of the chain family for catad and SymPy; fitted exponents over
    the depths from 16 on (where fixed costs no longer dominate)."""
    import catad

    catad.to_python(chain_source(1))
    rows = []
    sympy_stopped = None
    for depth in depths:
        source = chain_source(depth)
        start = time.perf_counter()
        catad.to_python(source)
        row = {"depth": depth, "catad_s": time.perf_counter() - start}
        if sympy_stopped is None:
            try:
                import sympy  # noqa: F401
                start = time.perf_counter()
                _sympy_chain(depth)
                row["sympy_s"] = time.perf_counter() - start
                if row["sympy_s"] * 2.5 > sympy_budget_s:
                    sympy_stopped = f"stopped after depth {depth}: the next depth would pass the {sympy_budget_s:.0f} s budget"
            except ImportError:
                sympy_stopped = "sympy is not installed"
            except RecursionError:
                sympy_stopped = f"failed at depth {depth}: RecursionError (the expression is nested too deeply)"
        log(f"[scaling depth {depth}] catad {row['catad_s']:.3f} s, sympy {row.get('sympy_s', float('nan')):.3f} s")
        rows.append(row)
    tail = [r for r in rows if r["depth"] >= 16] or rows
    result = {"rows": rows, "catad_exponent": fit_exponent([r["depth"] for r in tail],
                                                          [r["catad_s"] for r in tail])}
    sympy_rows = [r for r in tail if "sympy_s" in r]
    if len(sympy_rows) >= 2:
        result["sympy_exponent"] = fit_exponent([r["depth"] for r in sympy_rows],
                                                [r["sympy_s"] for r in sympy_rows])
    if sympy_stopped:
        result["sympy_note"] = sympy_stopped
    return result


def environment() -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("jax", "torch", "autograd", "sympy", "matplotlib"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "installed")
        except ImportError:
            versions[name] = None
    import os

    return {"load_average": os.getloadavg(), "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "platform": platform.platform(), "versions": versions,
            "blas_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}}


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                    "OPENBLAS_L2_SIZE", "XLA_FLAGS")
"""The environment that decides how many threads NumPy's BLAS, PyTorch and XLA use: recorded
with the results, since the page compares tools on one thread each."""
