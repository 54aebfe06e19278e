"""Checking a program's derivatives against SymPy and finite differences.

    report = catad.check(source, sizes={"n": 3, "d": 2}, seed=0)
    print(report.format()); report.passed

At concrete sizes and seeded random points, for every function `f` of the
program and every real parameter `a` (one row each):

    value      the generated code of f        against its SymPy translation
    forward    catad's forward mode (jvp)     against SymPy's derivative and
    reverse    catad's reverse mode (vjp)     central finite differences
    generated  each declared derivative (`fn g = grad(f, wrt = a);`), as
               `catad compile` emits it, one row per part of its result

Forward and reverse mode are compiled through the whole pipeline, as
`catad compile --jvp/--vjp` would. SymPy's side is `compiler/to_sympy.py`:
the function's target IR unrolled at these sizes, each primitive's partial
derivatives by `sympy.diff`. A declared derivative's expectation is its
transformation (grad, jvp, ..., nested too) applied to the SymPy function;
its finite differences differentiate the compiled function it transforms.
A function too large for SymPy (or not expressible in it) is checked
against finite differences only, and the report says so.

A function whose derivatives follow a user's rule (`custom_vjp`, e.g. a
straight-through estimator) is not differentiated by calculus: its forward
and reverse mode are checked against each other (the "fwd vs rev" column),
and the derivatives declared of it are skipped. A function catad refuses to
differentiate (its result depends on the parameters only through
comparisons) gets its value row and a note.

The error of a row is the largest, over its entries and the points, of
`|actual - expected| / max(1, max |expected|)` (relative, and absolute for
small entries). Finite differences have an error of their own, large where
the function is far from linear at their step: a row is judged on the part
of the difference beyond it (where SymPy's exact derivative is known, the
distance of the finite differences from it; else how far they move between
steps h and 2h), and a note says when that mattered. Parameters of type i64
or bool are not differentiated: they take random values in {0, 1}, the same
at every point. Derivatives over Z2 (bool parameters) have neither oracle
and are listed as skipped.

`format_sympy` is the listing of `catad show --stage sympy`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy

from catad.compiler import ast
from catad.compiler.errors import CatadError, DerivativeError, InputError, Source, UnsupportedError
from catad.compiler.lower import load_module
from catad.compiler.parse import decode_source
from catad.compiler.pipeline import Stages, compile_stages
from catad.compiler.prim_eval import numpy_dtype
from catad.compiler.target import TargetFunction
from catad.compiler.typed import TCall, TProgram
from catad.compiler.to_sympy import (MAX_OPERATIONS, TIME_BUDGET, Kind, Slots, SymbolicFunction,
                                     TooLargeForSympy, evaluate, expressions, inner_products,
                                     input_value, tangent, to_sympy, value_type)
from catad.compiler.types import ArrayType, Dim, DType, TupleType, Type, substitute_type

LISTING_TERMS = 2_000   # the largest expression `format_sympy` lists
DEFAULT_SIZES = (2, 3)  # sizes not given take these in turn, in order of first appearance
SYMPY_TOLERANCE = {DType.F64: 1e-8, DType.F32: 1e-4}
FD_TOLERANCE = {DType.F64: 1e-5, DType.F32: 1e-2}
VALUE = "(value)"
_ATTEMPTS = 10  # random points tried for one where the function is finite


@dataclass(frozen=True)
class CheckRow:
    function: str
    argument: str              # a parameter, or "(value)"
    mode: str                  # value | forward | reverse | generated
    sympy_error: float | None       # None: not compared with SymPy
    fd_error: float | None          # None: not compared with finite differences
    other_mode_error: float | None  # forward against reverse mode (None: not compared)
    passed: bool | None             # None: skipped


@dataclass(frozen=True)
class CheckReport:
    path: str
    sizes: tuple[tuple[str, int], ...]
    seed: int
    points: int
    rows: tuple[CheckRow, ...]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(row.passed is not False for row in self.rows)

    @property
    def failures(self) -> tuple[CheckRow, ...]:
        return tuple(row for row in self.rows if row.passed is False)

    def format(self) -> str:
        """The report as a table, then its notes and a summary line."""
        sizes = ", ".join(f"{n} = {v}" for n, v in self.sizes) or "none"
        plural = "s" if self.points != 1 else ""
        # forward against reverse mode: only for functions that follow a user's rule
        other = any(row.other_mode_error is not None for row in self.rows)
        table = [("function", "argument", "mode", "vs SymPy", "vs FD", *(("fwd vs rev",) if other else ()),
                  "result")]
        for row in self.rows:
            table.append((row.function, row.argument, row.mode, _number(row.sympy_error), _number(row.fd_error),
                          *((_number(row.other_mode_error),) if other else ()),
                          {True: "PASS", False: "FAIL", None: "skip"}[row.passed]))
        widths = [max(len(r[k]) for r in table) for k in range(len(table[0]))]
        lines = [f"catad check {self.path}: sizes {sizes}; seed {self.seed}; {self.points} random point{plural}",
                 ""]
        for k, cells in enumerate(table):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines.extend(f"note: {n}" for n in self.notes)
        checked = sum(row.passed is not None for row in self.rows)
        failed = len(self.failures)
        lines.append(f"{checked} checks: " + (f"{failed} FAILED" if failed else "all passed"))
        return "\n".join(lines) + "\n"


def _number(error: float | None) -> str:
    return "-" if error is None else f"{error:.1e}"


# ---- sizes ------------------------------------------------------------------------------


def parse_sizes(text: str) -> dict[str, int]:
    """`"n=3,d=2"` as `{"n": 3, "d": 2}`; a malformed list is an `InputError`."""
    sizes: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not name.isidentifier() or not value.lstrip("-").isdigit():
            raise InputError(f"--sizes takes NAME=INTEGER items separated by commas (e.g. n=3,d=2), "
                             f"not '{item}'")
        if name in sizes:
            raise InputError(f"--sizes gives the size {name} twice")
        sizes[name] = int(value)
    return sizes


def choose_sizes(stages: Stages, given: Mapping[str, int] | str | None) -> dict[str, int]:
    """A value for every size variable of the program: the `given` ones (checked
    against the program), the others `DEFAULT_SIZES` in turn."""
    given = parse_sizes(given) if isinstance(given, str) else dict(given or {})
    names = list(dict.fromkeys(s.name for fn in stages.vectorised.functions for s in fn.sizes))
    for name, value in given.items():
        if name not in names:
            known = ("its sizes are " + ", ".join(names)) if names else "it has no size variables"
            raise InputError(f"the program has no size '{name}'; {known}", source=stages.source)
        if value < 1:
            raise InputError(f"the size {name} must be at least 1, not {value}", source=stages.source)
    defaults = itertools.cycle(DEFAULT_SIZES)
    sizes = {name: given[name] if name in given else next(defaults) for name in names}
    for fn in stages.vectorised.functions:
        for p, t in fn.params:
            for leaf in _array_leaves(t):
                if any(d.evaluate(sizes) < 0 for d in leaf.shape):
                    used = dict.fromkeys(v for d in leaf.shape for v in d.variables)
                    at = ", ".join(f"{v} = {sizes[v]}" for v in used)
                    shape = ", ".join(str(d.evaluate(sizes)) for d in leaf.shape)
                    raise InputError(f"with {at}, the parameter {p} of {fn.name} ({leaf}) would have "
                                     f"the shape [{shape}]", source=stages.source)
    return sizes


# ---- values by type -------------------------------------------------------------------


def _array_leaves(t: Type) -> list[ArrayType]:
    if isinstance(t, TupleType):
        return [leaf for item in t.items for leaf in _array_leaves(item)]
    return [t]


def _real(t: Type) -> bool:
    return any(leaf.dtype.is_float for leaf in _array_leaves(t))


def _pairs(value: Any, t: Type) -> list[tuple[Any, ArrayType]]:
    """The leaves of a value of type `t`, with their types."""
    if isinstance(t, TupleType):
        return [pair for v, item in zip(value, t.items) for pair in _pairs(v, item)]
    return [(value, t)]


def _flat(value: Any, t: Type, reals_only: bool = True) -> np.ndarray:
    """The (real) leaves of a value of type `t`, raveled and concatenated, as f64."""
    parts = [np.ravel(np.asarray(v, dtype=np.float64)) for v, leaf in _pairs(value, t)
             if leaf.dtype.is_float or not reals_only]
    return np.concatenate(parts) if parts else np.zeros(0)


def _size(t: Type) -> int:
    return sum(int(np.prod(_shape(leaf))) for leaf in _array_leaves(t) if leaf.dtype.is_float)


def _shape(t: ArrayType) -> tuple[int, ...]:
    return tuple(d.const for d in t.shape)


def _unflat(vector: np.ndarray, t: Type, like: Any = None) -> Any:
    """A value of type `t` whose real leaves are `vector`'s entries in order; its
    other leaves are `like`'s (default: zeros)."""
    entries = iter(vector)

    def build(u: Type, base: Any) -> Any:
        if isinstance(u, TupleType):
            return tuple(build(item, None if base is None else base[k]) for k, item in enumerate(u.items))
        shape = _shape(u)
        if not u.dtype.is_float:
            return base if base is not None else np.zeros(shape, numpy_dtype(u.dtype))
        values = [next(entries) for _ in range(int(np.prod(shape)))]
        return np.array(values, dtype=numpy_dtype(u.dtype)).reshape(shape)
    return build(t, like)


def _draw(rng: np.random.Generator, t: Type, spread: str = "normal") -> Any:
    """A random value of type `t`: reals normal (or in [0.5, 1.5]), integers and bools in {0, 1}."""
    if isinstance(t, TupleType):
        return tuple(_draw(rng, item, spread) for item in t.items)
    shape = _shape(t)
    if t.dtype.is_float:
        values = rng.standard_normal(shape) if spread == "normal" else rng.uniform(0.5, 1.5, shape)
        return np.asarray(values, dtype=numpy_dtype(t.dtype))
    return np.asarray(rng.integers(0, 2, shape), dtype=numpy_dtype(t.dtype))


def _error(actual: np.ndarray, expected: np.ndarray, error_bar: np.ndarray | None = None) -> float:
    """max |actual - expected| / max(1, max |expected|), the differences less the
    expectation's `error_bar` first; infinite on a shape or NaN mismatch."""
    if actual.shape != expected.shape:
        return float("inf")
    if actual.size == 0:
        return 0.0
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    difference = np.where(same, 0.0, np.abs(actual - expected))
    if error_bar is not None:
        difference = np.maximum(difference - error_bar, 0.0)
    finite = np.abs(expected[np.isfinite(expected)])
    error = float(np.max(difference)) / max(1.0, float(np.max(finite)) if finite.size else 1.0)
    return float("inf") if np.isnan(error) else error


def _within(error: float | None, tolerance: float) -> bool:
    return error is None or error <= tolerance


# ---- the program, compiled ---------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    """One function of the compiled program, at the chosen sizes."""

    target: TargetFunction   # before simplification: what SymPy translates
    call: Callable[..., Any]
    params: tuple[tuple[str, Type], ...]
    result: Type
    sizes: dict[str, int]    # by the target's names of the size variables

    @property
    def dtype(self) -> DType:
        """The least precise float type of its parameters and result."""
        leaves = [leaf for _, t in self.params for leaf in _array_leaves(t)] + _array_leaves(self.result)
        return DType.F32 if any(leaf.dtype is DType.F32 for leaf in leaves) else DType.F64


@dataclass(frozen=True)
class _Transform:
    """A derivative as declared, `kind(inner, wrt = names)` (None: the default),
    compiled as the function `name`; `inner` is a transformation or the name of a
    function written in the source."""

    kind: str
    inner: "_Transform | str"
    wrt: tuple[str, ...] | None
    name: str


def _inner_name(node: _Transform) -> str:
    return node.inner if isinstance(node.inner, str) else node.inner.name


def _leaf(node: _Transform | str) -> str:
    return node if isinstance(node, str) else _leaf(node.inner)


class _Program:
    """The program compiled with what the check needs besides: the forward and
    reverse mode of every function, and the inner transformations of the
    declared derivatives (`hessian(f)` is read as `jacobian(grad(f))`)."""

    def __init__(self, stages: Stages, sizes: dict[str, int]):
        items = stages.ast.functions
        self.taken = {item.name for item in items}
        self.extras: list[ast.DerivedFunction] = []
        self.order = [item.name for item in items]
        rules = {rule: f for f, _, rule in stages.typed.rules}  # a rule function -> the function it is for
        functions = [item.name for item in items if isinstance(item, ast.Function) or item.name in rules]
        made_from = {item.name: _names_in(item.call) for item in items
                     if isinstance(item, ast.DerivedFunction) and item.name not in rules}
        self.rule_of = _rules_followed(stages.typed, rules, made_from)
        unary = {fn.name: fn for fn in stages.vectorised.functions}
        self.modes: dict[str, tuple[str, str]] = {}  # function -> (its jvp, its vjp), wrt every real parameter
        for name in functions:
            wrt = tuple(p for p, t in unary[name].params if _real(t))
            if wrt and _real(unary[name].result):
                self.modes[name] = (self._declare(_call("jvp", ast.Name(name), wrt), name),
                                    self._declare(_call("vjp", ast.Name(name), wrt), name))
        declared = {item.name: item.call for item in items
                    if isinstance(item, ast.DerivedFunction) and item.name not in rules}
        self.derived = {name: self._tree(call, name, declared) for name, call in declared.items()}
        self.refused: dict[str, str] = {}  # function -> why catad refuses its derivatives
        try:
            full = compile_stages(stages.source, extra=tuple(self.extras))
        except DerivativeError:
            full = self._without_refused(stages.source)
        module = load_module(full.python, "catad_check")
        dims = {name: Dim(value) for name, value in sizes.items()}
        self.compiled = {
            item.name: _Compiled(target, getattr(module, optimised.name),
                                 tuple((p, substitute_type(t, dims)) for p, t in fn.params),
                                 substitute_type(fn.result, dims),
                                 {t.name: sizes[u.name] for u, t in zip(fn.sizes, target.sizes)})
            for item, fn, target, optimised in zip(full.ast.functions, full.vectorised.functions,
                                                   full.target.functions, full.optimised.functions)}

    def _without_refused(self, source: Source) -> Stages:
        """The program compiled without the forward and reverse modes catad refuses
        to make (a function differentiable only through comparisons, say)."""
        for name, pair in list(self.modes.items()):
            mine = tuple(e for e in self.extras if e.name in pair)
            try:
                compile_stages(source, extra=mine)
            except DerivativeError as err:
                self.refused[name] = err.message
                self.extras = [e for e in self.extras if e.name not in pair]
                del self.modes[name]
        return compile_stages(source, extra=tuple(self.extras))

    def _declare(self, call: ast.Call, base: str) -> str:
        """Add `fn <fresh name> = call;` to the program; the name."""
        name = next(n for n in (f"{base}_check_{call.func}{k or ''}" for k in itertools.count())
                    if n not in self.taken)
        self.taken.add(name)
        self.extras.append(ast.DerivedFunction(name, call))
        return name

    def _tree(self, call: ast.Call, name: str, declared: dict[str, ast.Call]) -> _Transform:
        arg = call.args[0]
        if isinstance(arg, ast.Name):
            inner: _Transform | str = self._tree(declared[arg.id], arg.id, declared) if arg.id in declared \
                else arg.id
        else:
            inner = self._tree(arg, self._declare(arg, name), declared)
        given = [k.value for k in call.kwargs if k.name == "wrt"]
        wrt = None if not given else tuple(
            item.id for item in (given[0].items if isinstance(given[0], ast.TupleExpr) else (given[0],)))
        if call.func == "hessian":
            grad = ast.Call("grad", (arg,), call.kwargs)
            inner = _Transform("grad", inner, wrt, self._declare(grad, name))
            return _Transform("jacobian", inner, wrt, name)
        return _Transform(call.func, inner, wrt, name)

    def wrt(self, node: _Transform) -> tuple[int, ...]:
        """The indices, among the inner function's parameters, of those differentiated."""
        params = self.compiled[_inner_name(node)].params
        names = [p for p, _ in params]
        if node.wrt is not None:
            return tuple(names.index(w) for w in node.wrt)
        reals = tuple(k for k, (_, t) in enumerate(params) if _real(t))
        return reals or tuple(range(len(params)))


def _rules_followed(typed: TProgram, rules: Mapping[str, str],
                    made_from: Mapping[str, set[str]]) -> dict[str, str]:
    """For each function with a user's rule, or that calls one directly or not
    (through a derived function too, which "calls" the functions it is made
    from: `made_from`): that rule (by its name)."""
    ruled = {f: rule for rule, f in rules.items()}
    callees = {**made_from, **{fn.name: _callees(fn.body) for fn in typed.functions}}
    followed: dict[str, str] = {}
    for name in callees:
        seen, todo = set(), [name]
        while todo:
            callee = todo.pop()
            if callee in ruled:
                followed[name] = ruled[callee]
                break
            if callee not in seen:
                seen.add(callee)
                todo.extend(callees.get(callee, ()))
    return followed


def _names_in(call: ast.Call) -> set[str]:
    """The functions a transformation is applied to, through nested ones."""
    found: set[str] = set()
    for arg in call.args:
        if isinstance(arg, ast.Name):
            found.add(arg.id)
        elif isinstance(arg, ast.Call):
            found |= _names_in(arg)
    return found


def _callees(node: Any) -> set[str]:
    """The functions called in a typed expression (in its lambdas too)."""
    found = {node.function} if isinstance(node, TCall) else set()
    if isinstance(node, tuple):
        for item in node:
            found |= _callees(item)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            found |= _callees(getattr(node, f.name))
    return found


def _call(kind: str, inner: ast.Expr, wrt: tuple[str, ...]) -> ast.Call:
    return ast.Call(kind, (inner,), (ast.Keyword("wrt", ast.TupleExpr(tuple(ast.Name(w) for w in wrt))),))


# ---- the check --------------------------------------------------------------------------


def check(program: str | Path | Source, sizes: Mapping[str, int] | str | None = None, *, seed: int = 0,
          points: int = 2, path: str | None = None, max_operations: int = MAX_OPERATIONS,
          time_budget: float = TIME_BUDGET) -> CheckReport:
    """Check every function and declared derivative of `program` (source text
    reported as `path`, a `Path` to read, or a `Source`) at `sizes` (by name, or
    `"n=3,d=2"`; the others default to small values) at `points` random points
    drawn with `seed`. Mistakes in the program or the sizes raise `CatadError`."""
    if isinstance(program, Path):
        try:
            source = decode_source(program.read_bytes(), path or str(program))
        except OSError as err:
            raise InputError(f"cannot read {program}: {err.strerror or err}") from None
    elif isinstance(program, Source):
        source = program
    else:
        source = Source(program, path or "<string>")
    try:
        stages = compile_stages(source)
        chosen = choose_sizes(stages, sizes)
        checker = _Checker(_Program(stages, chosen), seed, points, max_operations, time_budget)
        rows = checker.run()
    except CatadError as err:
        raise err.with_source(source)
    return CheckReport(source.path, tuple(chosen.items()), seed, points, tuple(rows), tuple(checker.notes))


class _Errors:
    """The largest error of each (argument, mode) against each oracle: "sympy",
    "fd", or "other" (the other mode); shown as they are, and judged less the
    oracle's error bar (that of finite differences)."""

    def __init__(self) -> None:
        self.shown: dict[tuple[str, str, str], float] = {}
        self.judged: dict[tuple[str, str, str], float] = {}

    def record(self, argument: str, mode: str, oracle: str, actual: np.ndarray, expected: np.ndarray,
               error_bar: np.ndarray | None = None) -> None:
        key = (argument, mode, oracle)
        self.shown[key] = max(self.shown.get(key, 0.0), _error(actual, expected))
        self.judged[key] = max(self.judged.get(key, 0.0), _error(actual, expected, error_bar))

    def row(self, function: str, argument: str, mode: str, dtype: DType) -> CheckRow:
        """The row: passed when every error is within its tolerance; skipped when there is none."""
        keys = [(argument, mode, oracle) for oracle in ("sympy", "fd", "other")]
        if not any(key in self.shown for key in keys):
            return CheckRow(function, argument, mode, None, None, None, None)
        tolerances = (SYMPY_TOLERANCE[dtype], FD_TOLERANCE[dtype], SYMPY_TOLERANCE[dtype])
        passed = all(_within(self.judged.get(key), tolerance) for key, tolerance in zip(keys, tolerances))
        return CheckRow(function, argument, mode, *(self.shown.get(key) for key in keys), passed)

    def widened(self, dtype: DType) -> list[str]:
        """The arguments whose finite differences were too inaccurate to pass without their error bar."""
        return list(dict.fromkeys(argument for (argument, _, oracle), error in self.shown.items()
                                  if oracle == "fd" and error > FD_TOLERANCE[dtype]
                                  and self.judged[argument, _, oracle] <= FD_TOLERANCE[dtype]))


@dataclass
class _Base:
    """A source function, ready to be checked: its SymPy translation (None if it
    has none) and its random points."""

    symbolic: SymbolicFunction | None
    points: list[list[Any]]


class _Checker:
    def __init__(self, program: _Program, seed: int, points: int, max_operations: int, time_budget: float):
        self.program = program
        self.seed = seed
        self.count = points
        self.max_operations = max_operations
        self.time_budget = time_budget
        self.notes: list[str] = []
        self.bases: dict[str, _Base] = {}

    def run(self) -> list[CheckRow]:
        rows: list[CheckRow] = []
        for name in self.program.order:
            if name in self.program.derived:
                rows.extend(self.derived(name))
            else:
                rows.extend(self.function(name))
        return rows

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.program.order.index(name)])

    # -- SymPy, with its limits --

    def sympy(self, name: str, work: Callable[[], Any]) -> Any:
        """`work()`, or None when SymPy cannot do it (noted once per function)."""
        try:
            return work()
        except TooLargeForSympy as err:
            self.note(f"{name}: too large for SymPy ({err}); checked against finite differences only")
        except UnsupportedError as err:
            self.note(f"{name}: not checked against SymPy: {err.message}")
        return None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def restart_clock(self, sf: SymbolicFunction | None) -> None:
        if sf is not None:
            sf.graph.deadline = time.monotonic() + self.time_budget

    # -- source functions --

    def base(self, name: str) -> _Base:
        if name not in self.bases:
            c = self.program.compiled[name]
            rng = self.rng(name)
            # the i64 and bool leaves of the arguments: drawn once, the SymPy function is made for them
            fixed = {k: _draw(rng, t) for k, (_, t) in enumerate(c.params)
                     if not all(leaf.dtype.is_float for leaf in _array_leaves(t))}
            symbolic = self.sympy(name, lambda: to_sympy(
                c.target, c.sizes, {c.target.params[k][0]: v for k, v in fixed.items()},
                max_operations=self.max_operations, time_budget=self.time_budget))
            self.bases[name] = _Base(symbolic, [self.point(name, c, rng, fixed) for _ in range(self.count)])
        return self.bases[name]

    def point(self, name: str, c: _Compiled, rng: np.random.Generator, fixed: dict[int, Any]) -> list[Any]:
        """Random arguments where the function's value is finite, if there are any
        (normal, then in [0.5, 1.5] for functions such as log); their i64 and bool
        leaves are `fixed`."""
        for attempt in range(_ATTEMPTS):
            spread = "normal" if attempt < _ATTEMPTS // 2 else "positive"
            args = [_unflat(_flat(_draw(rng, t, spread), t), t, fixed.get(k)) for k, (_, t) in enumerate(c.params)]
            try:
                value = c.call(*args)
            except ValueError as err:  # the generated entry checks: sizes that do not fit
                raise InputError(f"at the chosen sizes, {name} cannot be called: {err}") from None
            if np.all(np.isfinite(_flat(value, c.result))):
                return args
        self.note(f"{name}: no random point found where its value is finite")
        return args

    def function(self, name: str) -> list[CheckRow]:
        """The value, forward mode and reverse mode of a function; when its
        derivatives follow a user's rule, forward against reverse mode only."""
        c = self.program.compiled[name]
        base = self.base(name)
        sf = base.symbolic
        self.restart_clock(sf)
        rule = self.program.rule_of.get(name)
        if name in self.program.refused:
            self.note(f"{name}: catad refuses its derivatives: {self.program.refused[name]}")
        if rule is not None and name in self.program.modes:
            self.note(f"{name}: its derivatives follow the rule {rule}, not SymPy's: forward and reverse "
                      "mode are checked against each other")
        reals = [k for k, (_, t) in enumerate(c.params) if _real(t)]
        errors = _Errors()
        tangents = self.sympy(name, lambda: _jvp(sf, tuple(reals), f"{name}_jvp")) \
            if sf is not None and rule is None and name in self.program.modes else None
        for args in base.points:
            value = c.call(*args)
            if sf is not None:
                errors.record(VALUE, "value", "sympy", _flat(value, c.result, False),
                              _flat(evaluate(sf, args), c.result, False))
            if name not in self.program.modes:
                continue
            jvp, vjp = (self.program.compiled[m] for m in self.program.modes[name])
            reverse = _reverse_jacobians(vjp, c, args, reals)
            for k in reals:
                p, forward = c.params[k][0], _forward_jacobian(jvp, c, args, reals, k)
                if rule is not None:  # the rule is the only oracle: both modes must follow it alike
                    errors.record(p, "forward", "other", forward, reverse[k])
                    errors.record(p, "reverse", "other", reverse[k], forward)
                    continue
                fd, error_bar = _fd_jacobian(c, args, k)
                symbolic = None if tangents is None else _symbolic_jacobian(tangents, c, args, reals, k)
                error_bar = _with_exact(error_bar, fd, symbolic)
                for mode, actual in (("forward", forward), ("reverse", reverse[k])):
                    errors.record(p, mode, "fd", actual, fd, error_bar)
                    if symbolic is not None:
                        errors.record(p, mode, "sympy", actual, symbolic)
        rows = [errors.row(name, VALUE, "value", c.dtype)]
        if name in self.program.modes:
            rows += [errors.row(name, c.params[k][0], mode, c.dtype) for k in reals for mode in ("forward", "reverse")]
        self.note_widened(name, errors, c.dtype)
        return rows

    def note_widened(self, name: str, errors: _Errors, dtype: DType) -> None:
        widened = errors.widened(dtype)
        if widened:
            self.note(f"{name}: finite differences are inaccurate for {', '.join(widened)} (far from linear "
                      "at this point, they miss SymPy's exact derivative or change between steps h and 2h): "
                      "they are judged within their own error")

    # -- declared derivatives --

    def derived(self, name: str) -> list[CheckRow]:
        program = self.program
        node = program.derived[name]
        g = program.compiled[name]
        labels = self.labels(node)
        leaf = _leaf(node)
        skip = None
        if self.over_z2(node):
            skip = f"{name}: a derivative over Z2 (bool parameters) has no SymPy or finite-difference oracle"
        elif leaf in program.rule_of:
            skip = f"{name}: follows the rule {program.rule_of[leaf]}, which SymPy and finite differences do not know"
        if skip is not None:
            self.note(skip + "; not checked")
            return [CheckRow(name, label, "generated", None, None, None, None) for label in _label_list(labels)]
        base = self.base(leaf)
        self.restart_clock(base.symbolic)
        symbolic = self.sympy(name, lambda: self.symbolic(node)) if base.symbolic else None
        rng = self.rng(name)
        width = len(program.compiled[leaf].params)
        errors = _Errors()
        for point in base.points:
            args = point + [_draw(rng, t) for _, t in g.params[width:]]
            actual = _grouped(g.call(*args), g.result, labels)
            fd, error_bar = (_grouped(v, g.result, labels) for v in self.finite_differences(node, args))
            expected = None if symbolic is None else _grouped(evaluate(symbolic, args), g.result, labels)
            for label, values in actual.items():
                bar = _with_exact(error_bar[label], fd[label], None if expected is None else expected[label])
                errors.record(label, "generated", "fd", values, fd[label], bar)
                if expected is not None:
                    errors.record(label, "generated", "sympy", values, expected[label])
        self.note_widened(name, errors, g.dtype)
        return [errors.row(name, label, "generated", g.dtype) for label in _label_list(labels)]

    def over_z2(self, node: _Transform | str) -> bool:
        if isinstance(node, str):
            return False
        params = self.program.compiled[_inner_name(node)].params
        return not any(_real(params[k][1]) for k in self.program.wrt(node)) or self.over_z2(node.inner)

    def labels(self, node: _Transform) -> Any:
        """The parts of the result of `node`, as a structure like the result's:
        a label stands for the whole value under it."""
        params = self.program.compiled[_inner_name(node)].params
        names = [params[k][0] for k in self.program.wrt(node)]
        cotangents = names[0] if len(names) == 1 else tuple(names)
        if node.kind == "grad":
            return cotangents
        if node.kind in ("value_and_grad", "vjp"):
            return (VALUE, cotangents)
        if node.kind == "jvp":
            return (VALUE, ", ".join(names))
        return names[0]  # jacobian

    def symbolic(self, node: _Transform | str) -> SymbolicFunction:
        """The SymPy function computing `node`."""
        if isinstance(node, str):
            return self.bases[node].symbolic
        inner = self.symbolic(node.inner)
        wrt = self.program.wrt(node)
        match node.kind:
            case "jvp":
                return _jvp(inner, wrt, node.name)
            case "vjp":
                return _vjp(inner, wrt, node.name, cotangent=True)
            case "value_and_grad":
                return _vjp(inner, wrt, node.name, cotangent=False)
            case "grad":
                full = _vjp(inner, wrt, node.name, cotangent=False)
                return SymbolicFunction(node.name, full.params, full.inputs, full.result[1], full.graph)
            case "jacobian":
                return _jacobian(inner, wrt[0], node.name)
        raise AssertionError(f"unknown transformation {node.kind}")

    def finite_differences(self, node: _Transform, args: list[Any]) -> tuple[Any, Any]:
        """What `node` computes at `args`, by central differences of the compiled
        function it transforms, and the error bar of each entry."""
        inner = self.program.compiled[_inner_name(node)]
        width = len(inner.params)
        value = inner.call(*args[:width])
        estimates = {k: _fd_jacobian(inner, args[:width], k) for k in self.program.wrt(node)}
        expected = self.linear(node, value, {k: j for k, (j, _) in estimates.items()}, args, np.asarray)
        error_bar = self.linear(node, _unflat(np.zeros(_size(inner.result)), inner.result),
                                {k: bar for k, (_, bar) in estimates.items()}, args, np.abs)
        return expected, error_bar

    def linear(self, node: _Transform, value: Any, jacobians: dict[int, np.ndarray], args: list[Any],
               sign: Callable[[np.ndarray], np.ndarray]) -> Any:
        """What `node` computes, given the inner function's `value` and `jacobians`
        (of each parameter differentiated); the directions in `args` (tangents,
        cotangent) pass through `sign` (the identity, or abs for error bars)."""
        inner = self.program.compiled[_inner_name(node)]
        wrt, width = self.program.wrt(node), len(inner.params)
        if node.kind == "jvp":
            tangent_vector = sum(jacobians[k] @ sign(_flat(t, inner.params[k][1])) for k, t in zip(wrt, args[width:]))
            return value, _unflat(tangent_vector, inner.result)
        if node.kind == "jacobian" and not (isinstance(inner.result, ArrayType) and inner.result.shape == ()):
            return jacobians[wrt[0]]
        seed = sign(_flat(args[width], self.program.compiled[node.name].params[width][1])) \
            if node.kind == "vjp" else np.ones(1)
        cotangents = tuple(_unflat(jacobians[k].T @ seed, inner.params[k][1]) for k in wrt)
        grads = cotangents[0] if len(cotangents) == 1 else cotangents
        return grads if node.kind in ("grad", "jacobian") else (value, grads)


def _label_list(labels: Any) -> list[str]:
    if isinstance(labels, tuple):
        return [label for item in labels for label in _label_list(item)]
    return [labels]


def _grouped(value: Any, t: Type, labels: Any) -> dict[str, np.ndarray]:
    """The real entries of `value` (of type `t`) under each label."""
    out: dict[str, list[np.ndarray]] = {}

    def walk(v: Any, u: Type, label: Any) -> None:
        if isinstance(label, str):
            out.setdefault(label, []).append(_flat(v, u))
        else:
            for k, item in enumerate(label):
                walk(v[k], u.items[k], item)
    walk(value, t, labels)
    return {label: np.concatenate(parts) for label, parts in out.items()}


# ---- Jacobians: compiled, finite differences, SymPy ---------------------------------------


def _forward_jacobian(jvp: _Compiled, c: _Compiled, args: list[Any], reals: list[int], k: int) -> np.ndarray:
    """[result entries, entries of parameter k]: catad's forward mode, column by column."""
    columns = []
    for e in range(_size(c.params[k][1])):
        tangents = [_unflat(np.eye(1, _size(c.params[j][1]), e).ravel() * (j == k), c.params[j][1])
                    for j in reals]
        columns.append(_flat(jvp.call(*args, *tangents)[1], c.result))
    return np.stack(columns, axis=1) if columns else np.zeros((_size(c.result), 0))


def _reverse_jacobians(vjp: _Compiled, c: _Compiled, args: list[Any], reals: list[int]) -> dict[int, np.ndarray]:
    """For each real parameter k, [result entries, entries of k]: catad's reverse
    mode, row by row."""
    bar_type = vjp.params[-1][1]
    rows: dict[int, list[np.ndarray]] = {k: [] for k in reals}
    for e in range(_size(c.result)):
        cotangents = vjp.call(*args, _unflat(np.eye(1, _size(bar_type), e).ravel(), bar_type))[1]
        cotangents = cotangents if len(reals) > 1 else (cotangents,)
        for k, cot in zip(reals, cotangents):
            rows[k].append(_flat(cot, c.params[k][1]))
    return {k: np.stack(r) if r else np.zeros((0, _size(c.params[k][1]))) for k, r in rows.items()}


def _fd_jacobian(c: _Compiled, args: list[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
    """[result entries, entries of parameter k] by central differences, the step h
    scaled to each entry (cube root of the float type's epsilon), and its error
    bar: how far the differences with step 2h are from it."""
    t = c.params[k][1]
    x = _flat(args[k], t)
    dtype = DType.F32 if any(leaf.dtype is DType.F32 for leaf in _array_leaves(t)) else DType.F64
    step = np.finfo(numpy_dtype(dtype)).eps ** (1 / 3)
    columns, bars = [], []
    for e in range(len(x)):
        h = step * max(1.0, abs(x[e]))
        near, far = (_central_difference(c, args, k, x, e, scale * h) for scale in (1.0, 2.0))
        columns.append(near)
        bars.append(np.abs(near - far))
    empty = np.zeros((_size(c.result), 0))
    return (np.stack(columns, axis=1), np.stack(bars, axis=1)) if columns else (empty, empty)


def _with_exact(error_bar: np.ndarray, fd: np.ndarray, exact: np.ndarray | None) -> np.ndarray:
    """The error bar of finite differences: how far they move between steps h and
    2h, or, where SymPy's exact derivative is known, how far they are from it."""
    if exact is None or exact.shape != fd.shape:
        return error_bar
    return np.maximum(error_bar, np.nan_to_num(np.abs(exact - fd), nan=0.0))


def _central_difference(c: _Compiled, args: list[Any], k: int, x: np.ndarray, e: int, h: float) -> np.ndarray:
    """(f(x + h e_e) - f(x - h e_e)) / 2h for entry e of parameter k, h as rounded in its type."""
    t = c.params[k][1]
    moved = []
    for sign in (1.0, -1.0):
        y = x.copy()
        y[e] += sign * h
        shifted = list(args)
        shifted[k] = _unflat(y, t, args[k])
        moved.append((_flat(c.call(*shifted), c.result), _flat(shifted[k], t)[e]))
    (plus, at_plus), (minus, at_minus) = moved
    return (plus - minus) / (at_plus - at_minus)


def _symbolic_jacobian(tangents: SymbolicFunction, c: _Compiled, args: list[Any], reals: list[int],
                       k: int) -> np.ndarray:
    """[result entries, entries of parameter k] from SymPy's forward derivative
    (`tangents` takes one tangent per real parameter), every column in one batch."""
    size = _size(c.params[k][1])
    dots = [_batch([_unflat(row * (j == k), c.params[j][1]) for row in np.eye(size, _size(c.params[j][1]))])
            for j in reals]
    primals = [_batch([a]) for a in args]
    columns = evaluate(tangents, [*primals, *dots], batch=size)[1]
    return np.stack([_flat(_row(columns, e), c.result) for e in range(size)], axis=1) if size \
        else np.zeros((_size(c.result), 0))


def _batch(values: list[Any]) -> Any:
    """Values of one type stacked on a new leading axis (tuples item by item)."""
    if isinstance(values[0], tuple):
        return tuple(_batch([v[k] for v in values]) for k in range(len(values[0])))
    return np.stack([np.asarray(v) for v in values])


def _row(value: Any, e: int) -> Any:
    """Item e along the leading (batch) axis (tuples item by item)."""
    if isinstance(value, tuple):
        return tuple(_row(v, e) for v in value)
    return value[e]


# ---- the transformations on SymPy functions -------------------------------------------------


def _input_leaves(value: Any) -> list[Slots]:
    """The Slots of the float leaves of a parameter's value (its input symbols)."""
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in _input_leaves(item)]
    return [value] if isinstance(value, Slots) and value.dtype.is_float else []


def _real_ids(value: Any) -> np.ndarray:
    """The slots of the float leaves of a (tangent) value, raveled and concatenated."""
    leaves = [leaf.ids.ravel() for leaf in _input_leaves(value)]
    return np.concatenate(leaves) if leaves else np.zeros(0, np.int64)


def _slots_like(ids: np.ndarray, t: Type) -> Any:
    """Slots for the float leaves of type `t`, taken in order from `ids`; zeros elsewhere."""
    entries = iter(ids)

    def build(u: Type) -> Any:
        if isinstance(u, TupleType):
            return tuple(build(item) for item in u.items)
        shape = _shape(u)
        if not u.dtype.is_float:
            return np.zeros(shape)
        return Slots(np.array([next(entries) for _ in range(int(np.prod(shape)))], np.int64).reshape(shape),
                     u.dtype)
    return build(t)


def _jvp(sf: SymbolicFunction, wrt: tuple[int, ...], name: str) -> SymbolicFunction:
    """`name(params..., tangents...) -> (value, tangent)`, as `jvp(f, wrt)`."""
    dots, seeds = [], {}
    for k in wrt:
        p, t = sf.params[k]
        dot = input_value(sf.graph, f"{p}_dot", t)
        dots.append(dot)
        for primal, tangent_leaf in zip(_input_leaves(sf.inputs[k]), _input_leaves(dot)):
            seeds.update(zip(primal.ids.ravel().tolist(), tangent_leaf.ids.ravel().tolist()))
    params = sf.params + tuple((sf.params[k][0] + "_dot", sf.params[k][1]) for k in wrt)
    return SymbolicFunction(name, params, sf.inputs + tuple(dots),
                            (sf.result, tangent(sf.graph, sf.result, seeds)), sf.graph)


def _basis_tangents(sf: SymbolicFunction, k: int) -> np.ndarray:
    """[entries of parameter k, real result entries]: the tangent slots of the
    result in the direction of each entry of parameter k."""
    one = sf.graph.constant(1.0, Kind.REAL)
    rows = [_real_ids(tangent(sf.graph, sf.result, {int(slot): one})) for slot in _real_ids(sf.inputs[k])]
    return np.stack(rows) if rows else np.zeros((0, _size(value_type(sf.result))), np.int64)


def _vjp(sf: SymbolicFunction, wrt: tuple[int, ...], name: str, *, cotangent: bool) -> SymbolicFunction:
    """`name(params...[, out_bar]) -> (value, cotangents)`, as `vjp(f, wrt)` (or,
    without `cotangent`, `value_and_grad(f, wrt)` of a scalar function)."""
    params, inputs = sf.params, sf.inputs
    if cotangent:
        bar_type = _tangent_type(value_type(sf.result))
        bar = input_value(sf.graph, f"{sf.name}_bar", bar_type)
        params, inputs = params + ((f"{sf.name}_bar", bar_type),), inputs + (bar,)
    cotangents = []
    for k in wrt:
        rows = _basis_tangents(sf, k)  # the Jacobian's transpose
        if cotangent:
            seed = np.broadcast_to(_real_ids(bar), rows.shape)
            ids = inner_products(sf.graph, seed, rows)
        else:
            ids = rows[:, 0]
        cotangents.append(_slots_like(ids, sf.params[k][1]))
    result = (sf.result, cotangents[0] if len(cotangents) == 1 else tuple(cotangents))
    return SymbolicFunction(name, params, inputs, result, sf.graph)


def _tangent_type(t: Type) -> Type:
    if isinstance(t, TupleType):
        return TupleType(tuple(_tangent_type(item) for item in t.items))
    return t if t.dtype.is_float else ArrayType(DType.F64, t.shape)


def _jacobian(sf: SymbolicFunction, k: int, name: str) -> SymbolicFunction:
    """`jacobian(f, wrt = x)`: the gradient for a scalar f, else [result, x]."""
    rows = _basis_tangents(sf, k)
    result_type = value_type(sf.result)
    if isinstance(result_type, ArrayType) and result_type.shape == ():
        result: Any = _slots_like(rows[:, 0], sf.params[k][1])
    else:
        result = Slots(np.ascontiguousarray(rows.T), DType.F64)
    return SymbolicFunction(name, sf.params, sf.inputs, result, sf.graph)


# ---- the SymPy listing ---------------------------------------------------------------------


def format_sympy(stages: Stages, sizes: Mapping[str, int] | str | None = None, *, latex: bool = False) -> str:
    """Every function written in the source as SymPy expressions at `sizes` (the
    others default to small values), with its partial derivatives; LaTeX with
    `latex`. Common subexpressions are named once (`c0`, `c1`, ...). Parameters
    of type i64 or bool take the value 1."""
    try:
        return _format_sympy(stages, choose_sizes(stages, sizes), latex)
    except CatadError as err:
        raise err.with_source(stages.source)


def _format_sympy(stages: Stages, chosen: dict[str, int], latex: bool) -> str:
    dims = {name: Dim(value) for name, value in chosen.items()}
    blocks = []
    for item, fn, target in zip(stages.ast.functions, stages.vectorised.functions, stages.target.functions):
        if not isinstance(item, ast.Function):
            continue
        params = tuple((p, substitute_type(t, dims)) for p, t in fn.params)
        fixed = {tp: _ones(t) for (tp, _), (_, t) in zip(target.params, params) if not _real(t)}
        header = (f"fn {fn.name}(" + ", ".join(f"{p}: {t}" for p, t in params)
                  + f") -> {substitute_type(fn.result, dims)}")
        at = [f"{s.name} = {chosen[s.name]}" for s in fn.sizes]
        at += [f"{p} = 1" for (p, t) in fn.params if not _real(t)]
        header += f"    at {', '.join(at)}" if at else ""
        try:
            sf = to_sympy(target, {t.name: chosen[u.name] for u, t in zip(fn.sizes, target.sizes)}, fixed)
            lines = _listing(fn.name, sf, latex)
        except TooLargeForSympy as err:
            lines = [f"too large for SymPy ({err}); try smaller --sizes"]
            latex = False
        except UnsupportedError as err:
            lines = [f"not expressible in SymPy: {err.message}"]
            latex = False
        if latex:  # one align* environment per function, the header a comment
            blocks.append("\n".join([f"% {header}", r"\begin{align*}",
                                     *(line + r" \\" for line in lines[:-1]), lines[-1], r"\end{align*}"]))
        else:
            blocks.append("\n".join([header, *("  " + line for line in lines)]))
    return "\n\n".join(blocks) + "\n"


def _ones(t: Type) -> Any:
    if isinstance(t, TupleType):
        return tuple(_ones(item) for item in t.items)
    return np.ones(_shape(t), numpy_dtype(t.dtype))


def _listing(name: str, sf: SymbolicFunction, latex: bool) -> list[str]:
    """`name = ...` for each result entry, then `d name / d x = ...` for each
    input symbol x it depends on, with common subexpressions named first."""
    symbols = [sf.graph.inputs[int(s)] for s in _real_ids(tuple(sf.inputs))]
    entries: list[tuple[str, str, sympy.Basic]] = []  # (text label, LaTeX label, expression)
    for labels, value in _entries(name, expressions(sf, LISTING_TERMS)):
        entries.append((*labels, value))
    for text, tex, value in list(entries):
        for x in symbols:
            if time.monotonic() > sf.graph.deadline:
                raise TooLargeForSympy("took longer than its time budget")
            d = sympy.diff(value, x) if isinstance(value, sympy.Expr) else sympy.S.Zero
            if d != 0:
                entries.append((f"d {text} / d {x}", rf"\frac{{\partial {tex}}}{{\partial {sympy.latex(x)}}}", d))
    names = sympy.numbered_symbols("c", exclude=set(symbols))
    shared, reduced = sympy.cse([value for _, _, value in entries], symbols=names)
    show = sympy.latex if latex else (lambda e: sympy.sstr(e, full_prec=False))
    equals = " &= " if latex else " = "
    lines = [f"{show(s)}{equals}{show(e)}" for s, e in shared]
    lines += [f"{tex if latex else text}{equals}{show(e)}" for (text, tex, _), e in zip(entries, reduced)]
    return lines


def _entries(name: str, value: Any, index: tuple[int, ...] = ()) -> list[tuple[tuple[str, str], sympy.Basic]]:
    """((text label, LaTeX label), expression) for each entry of a result (tuples item by item)."""
    if isinstance(value, tuple):
        return [entry for k, item in enumerate(value) for entry in _entries(name, item, (*index, k))]
    out = []
    escaped = name.replace("_", r"\_")
    for position in np.ndindex(value.shape):
        full = (*index, *position)
        text = name + (f"[{', '.join(map(str, full))}]" if full else "")
        tex = rf"\mathrm{{{escaped}}}" + (f"_{{{','.join(map(str, full))}}}" if full else "")
        out.append(((text, tex), value[position]))
    return out
