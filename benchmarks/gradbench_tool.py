"""A GradBench tool backed by catad, for the evals hello, gmm, lstm and lse.

    python benchmarks/gradbench_tool.py                 # a tool: JSON lines on stdin/stdout
    python benchmarks/gradbench_tool.py --drive EVAL... # run the eval command EVAL and answer it

It reads one message per line (`start`, `define`, `evaluate`, `analysis`,
`end`) and answers each but `end` with one line carrying the same `id`; logs go
to stderr. An `evaluate` runs the function until both its `min_runs` and
`min_seconds` are met, one `evaluate` timing per run, with the JSON conversion
outside the timings.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parent / "models"


@cache
def _model(name: str):
    import catad

    return catad.load(MODELS / f"{name}.catad")


def _gmm_constant(k: int, d: int, m: int, gamma: float) -> float:
    """K (n' D log(gamma / sqrt 2) - log Gamma_D(n' / 2)), n' = D + m + 1."""
    n = d + m + 1
    log_gamma_d = d * (d - 1) / 4 * math.log(math.pi) + sum(
        math.lgamma(n / 2 + (1 - j) / 2) for j in range(1, d + 1))
    return k * (n * d * math.log(gamma / math.sqrt(2)) - log_gamma_d)


def _prepare(module: str, function: str, data):
    """(run, to_json): a closure computing the function on converted inputs, and
    the conversion of its result to GradBench's output format."""
    if module == "hello":
        f = _model("hello").square if function == "square" else _model("hello").double
        x = float(data)
        return (lambda: f(x)), float
    if module == "lse":
        x = np.asarray(data["x"], dtype=np.float64)
        lse = _model("lse")
        if function == "primal":
            return (lambda: lse.lse(x)), float
        return (lambda: lse.lse_grad(x)[1]), lambda g: np.asarray(g).tolist()
    if module == "gmm":
        k, d = int(data["k"]), int(data["d"])
        args = (np.asarray(data["alpha"], dtype=np.float64).reshape(k),
                np.asarray(data["mu"], dtype=np.float64).reshape(k, d),
                np.asarray(data["q"], dtype=np.float64).reshape(k, d),
                np.asarray(data["l"], dtype=np.float64).reshape(k, d * (d - 1) // 2),
                np.asarray(data["x"], dtype=np.float64).reshape(-1, d),
                float(data["gamma"]), int(data["m"]))
        gmm = _model("gmm_gradbench")
        if function == "objective":
            constant = _gmm_constant(k, d, int(data["m"]), float(data["gamma"]))
            return (lambda: gmm.gmm(*args) + constant), float
        return (lambda: gmm.gmm_grad(*args)), lambda g: {
            "alpha": g[0].tolist(), "mu": g[1].tolist(), "q": g[2].tolist(), "l": g[3].tolist()}
    if module == "lstm":
        main = np.asarray(data["main_params"], dtype=np.float64)
        extra = np.asarray(data["extra_params"], dtype=np.float64)
        b = extra.shape[1]
        layers = main.shape[0] // 2
        args = (main.reshape(layers, 2, 4, b), extra,
                np.asarray(data["state"], dtype=np.float64).reshape(layers, 2, b),
                np.asarray(data["sequence"], dtype=np.float64))
        lstm = _model("lstm")
        if function == "objective":
            return (lambda: lstm.lstm(*args)), float
        return (lambda: lstm.lstm_grad(*args)[1]), lambda g: np.concatenate(
            [np.ravel(g[0]), np.ravel(g[1])]).tolist()
    raise ValueError(f"unknown module {module!r}")


MODULES = ("hello", "gmm", "lstm", "lse")


def _evaluate(message: dict) -> dict:
    data = message["input"]
    min_runs = int(data.get("min_runs", 1)) if isinstance(data, dict) else 1
    min_seconds = float(data.get("min_seconds", 0)) if isinstance(data, dict) else 0.0
    run, to_json = _prepare(message["module"], message["function"], data)
    timings, total, result = [], 0, None
    while len(timings) < min_runs or total < min_seconds * 1e9:
        start = time.perf_counter_ns()
        result = run()
        elapsed = time.perf_counter_ns() - start
        timings.append({"name": "evaluate", "nanoseconds": elapsed})
        total += elapsed
    return {"success": True, "output": to_json(result), "timings": timings}


def respond(message: dict) -> dict | None:
    """The answer to one message, or None for `end`."""
    kind, reply = message.get("kind"), {"id": message.get("id")}
    if kind == "end":
        return None
    if kind == "start":
        reply["tool"] = "catad"
    elif kind == "define":
        reply["success"] = message["module"] in MODULES
        if reply["success"]:
            try:
                _model("gmm_gradbench" if message["module"] == "gmm" else message["module"])
            except Exception as err:
                reply.update(success=False, error=f"{type(err).__name__}: {err}")
    elif kind == "evaluate":
        try:
            reply |= _evaluate(message)
        except Exception as err:
            reply |= {"success": False, "error": f"{type(err).__name__}: {err}"}
    return reply


def serve(lines, write) -> None:
    for line in lines:
        if not line.strip():
            continue
        reply = respond(json.loads(line))
        if reply is None:
            return
        write(json.dumps(reply) + "\n")


def drive(eval_command: list[str]) -> int:
    """Run an eval and answer it; print one line per evaluation and analysis."""
    proc = subprocess.Popen(eval_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pending, invalid = {}, 0
    for line in proc.stdout:
        if not line.strip():
            continue
        message = json.loads(line)
        reply = respond(message)
        if message.get("kind") == "evaluate":
            pending[message["id"]] = (message["function"], message.get("description", ""), reply)
            ns = [t["nanoseconds"] for t in reply.get("timings", [])]
            print(f"{message['function']:>10} {message.get('description', ''):<16} "
                  f"success={reply['success']} min={min(ns) / 1e6 if ns else float('nan'):.3f} ms "
                  f"runs={len(ns)}" + ("" if reply["success"] else f" error={reply['error']}"),
                  file=sys.stderr, flush=True)
        if message.get("kind") == "analysis":
            function, description, _ = pending.get(message["of"], ("?", "", None))
            if not message.get("valid"):
                invalid += 1
            print(f"{'':>10} analysis of {function} {description}: valid={message.get('valid')}"
                  + (f" {message.get('error')}" if message.get("error") else ""),
                  file=sys.stderr, flush=True)
        if reply is None:
            break
        proc.stdin.write(json.dumps(reply) + "\n")
        proc.stdin.flush()
    proc.stdin.close()
    code = proc.wait()
    return code or (1 if invalid else 0)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--drive":
        return drive(argv[1:])
    serve(sys.stdin, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
