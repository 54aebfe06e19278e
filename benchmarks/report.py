"""docs/benchmarks.md and its plots, generated from a results dict (the JSON
`python -m benchmarks` writes). `python -m benchmarks.report results.json`
regenerates the page without running anything."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

TARGETS = {
    "gmm_ratio": 3.0,           # GMM gradient / objective
    "vs_pytorch": 1.0,          # catad gradient time / PyTorch eager
    "vs_jax": 1.5,              # catad gradient time / JAX jit
    "vs_autograd": 0.1,         # catad gradient time / autograd
    "gmm_compile_s": 0.5,       # GMM gradient compile time
    "memory_ratio": 3.0,        # gradient peak memory / objective peak memory
}

TOOL_ORDER = ("catad", "manual", "jax", "pytorch", "autograd", "sympy", "catad-torch", "catad-jax",
              "catad-dask")


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f}"


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _loads(values) -> str:
    return "n/a" if not values else "/".join(f"{v:.1f}" for v in values)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _problem_rows(results: dict, problem: str) -> list[dict]:
    return [r for r in results["problems"] if r["problem"] == problem]


def _sizes(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["size"] for r in rows))


def _tools(rows: list[dict]) -> list[str]:
    present = {r["tool"] for r in rows}
    return [t for t in TOOL_ORDER if t in present]


def _cell(row: dict | None, key: str, fmt) -> str:
    if row is None:
        return "—"
    if "skipped" in row:
        return "skipped-too-slow" if row["skipped"].startswith("skipped-too-slow") else "skipped"
    text = fmt(row.get(key))
    return text + (" **INVALID**" if row.get("valid") is False else "")


def _problem_section(results: dict, problem: str, plot_dir: Path, plots: bool) -> list[str]:
    rows = _problem_rows(results, problem)
    if not rows:
        return []
    sizes, tools = _sizes(rows), _tools(rows)
    find = {(r["size"], r["tool"]): r for r in rows}
    out = [f"### {problem}", ""]
    header = "| size | " + " | ".join(tools) + " |"
    rule = "|---" * (len(tools) + 1) + "|"
    for title, key, fmt in (
            ("Gradient time (ms, minimum over repeats after a warm-up)", "gradient_s", _ms),
            ("Objective time (ms)", "objective_s", _ms),
            ("Gradient time / objective time", "ratio", lambda v: _fmt(v)),
            ("catad's gradient time / the tool's gradient time (below 1: catad is faster)",
             "catad_over_tool", lambda v: _fmt(v))):
        out += [f"{title}:", "", header, rule]
        for size in sizes:
            out.append(f"| {size} | " + " | ".join(_cell(find.get((size, t)), key, fmt) for t in tools) + " |")
        out.append("")
    memory = [r for r in rows if "memory_ratio" in r]
    if memory:
        out += ["Peak traced memory (tracemalloc), gradient vs objective. The last column is the "
                "floor of the ratio: the arrays the gradient returns, over the objective's peak "
                "(no tool's gradient can peak lower):", "",
                "| size | tool | objective (MiB) | gradient (MiB) | gradient / objective | returned gradient / objective |",
                "|---|---|---|---|---|---|"]
        for r in memory:
            floor = r.get("memory_floor_ratio")
            out.append(f"| {r['size']} | {r['tool']} | {r['objective_peak_bytes'] / 2**20:.2f} | "
                       f"{r['gradient_peak_bytes'] / 2**20:.2f} | {r['memory_ratio']:.2f} | "
                       f"{'' if floor is None else f'{floor:.2f}'} |")
        out.append("")
    skipped = [r for r in rows if "skipped" in r]
    for reason in dict.fromkeys(f"{r['tool']}: {r['skipped']}" for r in skipped):
        out.append(f"* {reason}")
    if skipped:
        out.append("")
    if plots:
        name = f"{problem}.png"
        _plot_problem(rows, sizes, tools, plot_dir / name, problem)
        out += [f"![{problem}: gradient time per tool](benchmarks/{name})", ""]
    return out


def _plot_problem(rows, sizes, tools, path: Path, problem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    find = {(r["size"], r["tool"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(tools), 1)
    for i, tool in enumerate(tools):
        xs = [j + i * width for j in range(len(sizes))]
        grad = [find.get((s, tool), {}).get("gradient_s", float("nan")) * 1e3 for s in sizes]
        ratio = [find.get((s, tool), {}).get("ratio", float("nan")) for s in sizes]
        axes[0].bar(xs, grad, width, label=tool)
        axes[1].bar(xs, ratio, width, label=tool)
    for ax, title in ((axes[0], "gradient time (ms, log)"), (axes[1], "gradient / objective")):
        ax.set_xticks([j + width * (len(tools) - 1) / 2 for j in range(len(sizes))])
        ax.set_xticklabels(sizes, fontsize=7, rotation=25 if len(sizes) > 3 else 0, ha="right" if len(sizes) > 3 else "center")
        ax.set_title(f"{problem}: {title}")
    axes[0].set_yscale("log")
    axes[1].axhline(3.0, color="grey", linestyle="--", linewidth=0.8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_scaling(scaling: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scaling["rows"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog([r["depth"] for r in rows], [r["catad_s"] for r in rows], "o-", label="catad (source to Python)")
    sym = [r for r in rows if "sympy_s" in r]
    if sym:
        ax.loglog([r["depth"] for r in sym], [r["sympy_s"] for r in sym], "s-", label="SymPy (diff + lambdify)")
    ax.set_xlabel("chained layers")
    ax.set_ylabel("seconds")
    ax.set_title("gradient compile time against program depth")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target of the issue that the results cover."""
    out = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "**not met**")

    gmm = [r for r in results["problems"] if r["problem"] == "gmm" and r["tool"] == "catad" and "ratio" in r]
    if gmm:
        worst = max(r["ratio"] for r in gmm)
        out.append((f"GMM gradient / objective <= {TARGETS['gmm_ratio']}",
                    ", ".join(f"{r['size']}: {r['ratio']:.2f}" for r in gmm),
                    verdict(worst <= TARGETS["gmm_ratio"])))
    for tool, key, label in (("pytorch", "vs_pytorch", "PyTorch eager"), ("jax", "vs_jax", "JAX jit"),
                             ("autograd", "vs_autograd", "autograd")):
        rows = [r for r in results["problems"] if r["tool"] == tool and "catad_over_tool" in r]
        if not rows:
            continue
        by_problem = []
        ok = True
        for problem in dict.fromkeys(r["problem"] for r in rows):
            values = [r["catad_over_tool"] for r in rows if r["problem"] == problem]
            g = _geomean(values)
            by_problem.append(f"{problem} {g:.2f}x (worst {max(values):.2f}x)")
            ok = ok and max(values) <= TARGETS[key]
        out.append((f"catad gradient time <= {TARGETS[key]}x {label}", "; ".join(by_problem), verdict(ok)))
    jitted = {(r["problem"], r["size"]): r for r in results["problems"]
              if r["tool"] == "catad-jax" and "gradient_s" in r}
    pairs = [(key, jitted[key]["gradient_s"] / r["gradient_s"]) for r in results["problems"]
             if r["tool"] == "jax" and "gradient_s" in r and (key := (r["problem"], r["size"])) in jitted]
    if pairs:
        by_problem = []
        for problem in dict.fromkeys(key[0] for key, _ in pairs):
            values = [v for key, v in pairs if key[0] == problem]
            setup = max(jitted[key].get("setup_s") or 0.0 for key, _ in pairs if key[0] == problem)
            by_problem.append(f"{problem} {_geomean(values):.2f}x (worst {max(values):.2f}x; "
                              f"first call up to {setup:.1f} s)")
        out.append((f"catad's array-API gradient under `jax.jit` (catad-jax) <= {TARGETS['vs_jax']}x "
                    "JAX jit (not a target of the issue: the same generated code compiled by XLA)",
                    "; ".join(by_problem), verdict(max(v for _, v in pairs) <= TARGETS["vs_jax"])))
    compile_rows = results.get("compile") or []
    gmm_compile = next((r for r in compile_rows if r["problem"] == "gmm"), None)
    scaling = results.get("scaling")
    if gmm_compile:
        out.append((f"GMM gradient compile < {TARGETS['gmm_compile_s']} s",
                    f"{gmm_compile['catad_compile_s']:.3f} s",
                    verdict(gmm_compile["catad_compile_s"] < TARGETS["gmm_compile_s"])))
    if scaling:
        e = scaling["catad_exponent"]
        out.append(("compile time linear in program depth (exponent about 1)",
                    f"fitted exponent {e:.2f} over depths 16..{scaling['rows'][-1]['depth']}",
                    verdict(e <= 1.2)))
    memory = [r for r in results["problems"] if r["tool"] == "catad" and "memory_ratio" in r]
    if memory:
        worst = max(memory, key=lambda r: r["memory_ratio"])
        unreachable = [r for r in memory if r.get("memory_floor_ratio", 0.0) > TARGETS["memory_ratio"]]
        floors = ("; the returned gradient alone is over the bound at "
                  + ", ".join(f"{r['problem']} {r['size']} ({r['memory_floor_ratio']:.1f}x)" for r in unreachable)
                  if unreachable else "")
        out.append((f"gradient peak memory <= {TARGETS['memory_ratio']}x objective",
                    f"worst {worst['memory_ratio']:.2f}x ({worst['problem']} {worst['size']}); "
                    + ", ".join(f"{r['problem']} {r['size']}: {r['memory_ratio']:.1f}" for r in memory)
                    + floors,
                    verdict(worst["memory_ratio"] <= TARGETS["memory_ratio"])))
    return out


def render(results: dict, plot_dir: Path, plots: bool = True) -> str:
    env = results["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks` (benchmarks/report.py); edit the generator, not this file. -->",
        "",
        f"Measured {results['created']} with `--sizes {results['sizes']}` on {env['cpus']} CPU cores "
        f"({env['machine']}, {env['platform']}); {versions}."
        + (f" Threading environment: {env['blas_env']}." if env.get("blas_env") else
           " Threading environment: none set, so each library used its default number of threads"
           " (NumPy's elementwise operations always run on one).")
        + (f" Allocator: {env['allocator']}." if env.get("allocator") else "")
        + (f" Load average (1, 5, 15 min) at start {_loads(env.get('load_average'))}, at end "
           f"{_loads(env.get('load_average_at_end'))}: with more than {env['cpus']} the machine was "
           "shared with other jobs and the times are noisy (each is still a minimum over repeats)."
           if env.get("load_average") else ""),
        "All tools run in one process, in float64, on the same inputs. Times are the minimum over",
        "repeated runs after one warm-up run (at least 3 runs). Before timing, every tool's value and",
        "gradient are compared with the hand-written NumPy gradient (`manual`, ADBench's reference):",
        "a relative error of 1e-8 or more marks that tool's row **INVALID**.",
        "",
        "## Targets (project issue #5)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(results)]
    lines += ["", "## Problems", "", _PROBLEMS_TEXT, ""]
    if plots:
        plot_dir.mkdir(parents=True, exist_ok=True)
    for problem in dict.fromkeys(r["problem"] for r in results["problems"]):
        lines += _problem_section(results, problem, plot_dir, plots)
    if results.get("compile"):
        lines += ["## Compile time", "",
                  "catad: source text to Python source for the whole model file (objective and",
                  "gradient; minimum of 3 after a warm-up). JAX: the first call of",
                  "`jit(value_and_grad(f))` (trace and XLA compile) at the problem's first small size.", "",
                  "| problem | catad compile (s) | JAX first call (s) |", "|---|---|---|"]
        for r in results["compile"]:
            lines.append(f"| {r['problem']} | {r['catad_compile_s']:.3f} | {_fmt(r.get('jax_first_call_s'), 3)} |")
        lines.append("")
    scaling = results.get("scaling")
    if scaling:
        lines += ["## Compile time against program size", "",
                  "A family of programs of growing depth: `let h_i = tanh(w * h_{i-1} + x);` chained",
                  "`depth` times, `sum(h_depth)`, with `value_and_grad` over `(x, w)`. SymPy derives the",
                  "same chain on scalars (`diff` + `lambdify(cse=True)`).", "",
                  "| depth | catad (s) | SymPy (s) |", "|---|---|---|"]
        for r in scaling["rows"]:
            lines.append(f"| {r['depth']} | {r['catad_s']:.3f} | {_fmt(r.get('sympy_s'), 3) if 'sympy_s' in r else 'not run'} |")
        lines += ["", f"Fitted exponent (log time against log depth, depths >= 16): catad "
                      f"**{scaling['catad_exponent']:.2f}**"
                  + (f", SymPy **{scaling['sympy_exponent']:.2f}**" if "sympy_exponent" in scaling else "")
                  + (f" (SymPy {scaling['sympy_note']})" if "sympy_note" in scaling else "") + ".", ""]
        if plots:
            _plot_scaling(scaling, plot_dir / "compile_scaling.png")
            lines += ["![compile time against depth](benchmarks/compile_scaling.png)", ""]
    lines += [_notes_text(results.get("sizes", "small")), "", _GRADBENCH_TEXT]
    return "\n".join(lines) + "\n"


def write_report(results: dict, page: Path, plot_dir: Path, plots: bool = True) -> None:
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: the page is written without plots", file=sys.stderr)
            plots = False
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render(results, plot_dir, plots), encoding="utf-8")


_PROBLEMS_TEXT = """\
* **gmm**: ADBench's GMM objective, `benchmarks/models/gmm.catad` (the same definition as
  `examples/gmm.catad`, without the parameter-free constant K·log Γ_D(n'/2), which no tool
  computes here), gradient with respect to `(alphas, means, icf)`; N = 1000 points, γ = 1, m = 0.
* **lstm**: ADBench's LSTM as GradBench's `lstm` eval defines it (`benchmarks/models/lstm.catad`):
  l layers, c characters of b = 14 bits, gates from elementwise (diagonal) weights, loss a
  cross-entropy normalised by log(2 + Σ exp y); gradient with respect to the main and extra
  parameters. The text is random bits (ADBench's text file is not shipped). catad, NumPy and
  autograd/PyTorch loop in Python; JAX uses `lax.scan`.
* **mlp**: a two-layer perceptron (tanh, d = 784, 10 classes) with softmax cross-entropy on a batch
  (`benchmarks/models/mlp.catad`), gradient with respect to both layers' weights and biases.
* **lse**: logsumexp of a vector written from a maximum and a sum (`benchmarks/models/lse.catad`).

Peers: `manual` (hand-written NumPy, `benchmarks/manual.py`), `jax` (`jit`, CPU, timed with
`jax.block_until_ready`; trace and compile time reported separately), `pytorch` (eager, CPU),
`autograd` (HIPS), `sympy` (`diff` + `lambdify(cse=True)`, only where the scalar expression can
be derived within its time budget). catad's own rows: `catad` (its NumPy module), and its array-API
module on other libraries: `catad-torch` (PyTorch CPU tensors), `catad-jax` (under `jax.jit`, so
compiled by XLA, its loops `jax.lax.scan`; its first call, in `setup_s`, traces and compiles it) and `catad-dask` (chunked Dask arrays, the data-parallel problems only)."""

def _notes_text(sizes: str) -> str:
    return f"""\
## Running

```sh
pip install -e ".[bench]"                       # torch==2.13.0 (CPU), jax, jaxlib, autograd, matplotlib
python -m benchmarks --suite all --sizes small --out results.json
python -m benchmarks --suite gmm --sizes full --out gmm.json
python -m benchmarks.report results.json        # regenerate this page from saved results
```

The page's numbers come from `docs/benchmarks/results_{sizes}.json`; the threading environment
they had is said at the top of the page. They are meant to be measured with every tool on one
thread (the machine was shared with other jobs, where multi-threaded BLAS and PyTorch timings
swung by 10-100x, and at their defaults PyTorch runs elementwise work on every core, NumPy on one):
`OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
python -m benchmarks --suite all --sizes {sizes} --budget 2 --keep-freed-memory` (freed buffers
kept for reuse, for every tool alike: see `benchmarks/allocator.py`).

A tool that is not installed is skipped with its reason printed. `tests/test_benchmarks_smoke.py`
runs the harness at the smallest sizes with catad and the manual gradients only (CI, no extra).

What changed in the compiler to reach these numbers, what each change bought, and why the
missed targets are missed: [performance.md](performance.md)."""


_GRADBENCH_TEXT = """\
## GradBench

`benchmarks/gradbench_tool.py` is a [GradBench](https://github.com/gradbench/gradbench) tool
backed by catad for the evals `hello`, `gmm` (GradBench's corrected definition:
`benchmarks/models/gmm_gradbench.catad`), `lstm` and `lse`. It speaks GradBench's JSON-lines
protocol on stdin/stdout (`start`, `define`, `evaluate` with `min_runs`/`min_seconds` and one
`evaluate` timing per run, `analysis`, `end`), logging to stderr.

GradBench's Rust CLI needs the crates registry; without it, run an eval's Python driver and pipe
it to the tool with a small driver (`benchmarks/gradbench_tool.py --drive`). From a checkout of
GradBench, with its `python/gradbench` package installed (`pip install -e python/gradbench`):

```sh
cd gradbench                                      # evals read their data relative to the repository root
python /path/to/catad/benchmarks/gradbench_tool.py --drive \\
    python -m gradbench.evals.hello.run
python /path/to/catad/benchmarks/gradbench_tool.py --drive \\
    python -m gradbench.evals.lse.run --no-validation     # validation needs GradBench's C++ `manual` tool
python /path/to/catad/benchmarks/gradbench_tool.py --drive \\
    python -m gradbench.evals.gmm.run -d 2 10 -k 5 10 --no-validation
```

With the real CLI: `gradbench run --eval 'python -m gradbench.evals.gmm.run' --tool 'python
/path/to/catad/benchmarks/gradbench_tool.py'`. Evals validate against GradBench's C++ `manual`
tool (build it as GradBench's README says; its JSON header is Debian's `nlohmann-json3-dev`).

Run here with the driver (GradBench's C++ `manual` tool not built): the `hello` eval, all
analyses valid; the `gmm` eval with `-d 2 5 -k 3 5 -n 100 --validate-naive`, `objective`
valid against GradBench's direct (naive) log posterior; `jacobian` answered but not validated
(its validator needs the C++ `manual` tool). The `lstm` eval needs `evals/lstm/data/lstm_full.txt`,
which the stored GradBench snapshot lacks. The tool's output formats are checked in
`tests/test_benchmarks_smoke.py`; its gradients come from the same compiled models as the harness,
whose gradients agree with the hand-written ones."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Regenerate docs/benchmarks.md and its plots from a results file.")
    parser.add_argument("results", nargs="?", default="results.json",
                        help="the JSON that `python -m benchmarks --out` wrote")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    try:
        results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        parser.exit(1, f"python -m benchmarks.report: cannot read {args.results}: {error}\n")
    write_report(results, root / "docs" / "benchmarks.md", root / "docs" / "benchmarks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
