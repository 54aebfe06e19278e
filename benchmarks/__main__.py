"""python -m benchmarks [--suite gmm|lstm|mlp|lse|compile|all] [--sizes small|full]
[--out results.json] [--tools catad,manual,...] [--no-report] [--keep-freed-memory]

Runs the suites, writes the results as JSON and regenerates docs/benchmarks.md
with its plots (docs/benchmarks/*.png)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import suites
from benchmarks.problems import PROBLEMS

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--suite", choices=[*PROBLEMS, "compile", "all"], default="all")
    parser.add_argument("--sizes", choices=["tiny", "small", "full"], default="small")
    parser.add_argument("--out", default="results.json", help="where to write the JSON results")
    parser.add_argument("--tools", default=None,
                        help="comma-separated tools to run (default: all installed)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of repeats per timing after the minimum 3 runs")
    parser.add_argument("--no-report", action="store_true",
                        help="do not regenerate docs/benchmarks.md and its plots")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="have glibc keep freed buffers for reuse instead of returning them to "
                             "the OS (fewer page faults for every tool; see benchmarks/allocator.py)")
    args = parser.parse_args(argv)
    tools = tuple(args.tools.split(",")) if args.tools else None

    results = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "sizes": args.sizes,
               "environment": suites.environment(), "problems": [], "compile": None, "scaling": None}
    if args.keep_freed_memory:
        from benchmarks.allocator import keep_freed_memory

        results["environment"]["allocator"] = keep_freed_memory()
        print(f"allocator: {results['environment']['allocator']}", file=sys.stderr)
    names = list(PROBLEMS) if args.suite == "all" else [args.suite] if args.suite in PROBLEMS else []
    for name in names:
        results["problems"] += suites.run_problem(PROBLEMS[name], args.sizes, tools, args.budget)
    if args.suite in ("compile", "all"):
        results["compile"] = suites.compile_times()
        results["scaling"] = suites.scaling()
    results["environment"]["load_average_at_end"] = __import__("os").getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    invalid = [r for r in results["problems"] if r.get("valid") is False]
    if not args.no_report:
        from benchmarks.report import write_report

        write_report(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks")
        print("wrote docs/benchmarks.md", file=sys.stderr)
    if invalid:
        print(f"{len(invalid)} gradient(s) disagreed with the manual reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
