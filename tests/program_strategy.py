"""Random well-typed catad programs, for differential and law-based testing.

    programs(max_depth=3, features=FEATURES, signature=None, names=("f",),
             functions=ELEMENTWISE, weak_literals=False)
        -> SearchStrategy[GeneratedProgram]    (.source, .with_lines(...), .inputs(sizes, rng))
    random_inputs(params, sizes, rng) -> tuple of arrays in [-1, 1]
    size_values() -> SearchStrategy[dict[str, int]]       n and m in 2..MAX_SIZE
    grammar_strings() -> SearchStrategy[str]              from grammar/catad.lark
    compile_source(text) -> (Stages, module)
    scaled(fraction) -> settings                          a share of the profile's examples

The generator is type-directed: it is asked for an expression of a type
(`f64` scalars and arrays whose dims are the size variables n, m, the literal
3, or n - 1 after a slice; bool conditions; i64 indices) in an environment of
typed names, and picks one production among those that can make that type.
It builds the AST (compiler/ast.py) and prints it with compiler/source_print,
so every program is one the parser could have produced.

Values stay finite and away from the edges of domains by construction: the
generator tracks a bound on |value| for every expression (inputs lie in
[-1, 1], sizes are at most MAX_SIZE), squashes an expression whose bound
passes LIMIT with a bounded function (tanh, sin, ...), and only feeds
arguments of a known range to functions with a restricted domain: `log` and
`sqrt` get `e * e + 1.0`, `softplus(e) + 0.5` or `sigmoid(e) + 0.5`, `exp` an
argument bounded by 3, `tan` one inside (-1, 1), a division a denominator of
at least 0.5. Non-smooth points (max, abs, relu, `if` on a real comparison)
are measure-zero for random inputs; the tests skip the rare input that lands
within a finite-difference step of one.

Each program has entry functions (`names`, default one `f`) sharing one
`Signature`, and helper functions `<entry>_h<k>` that the entries call. By
default an entry is scalar-valued with f64 parameters, the first always
`x: f64[n]` (so a Hessian can be taken with respect to it). `features`
restricts the productions used (leaves — names, literals, `full`, indexing a
name with a comprehension index — are always available); the program records
the features it used and its loop nesting depth.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from hypothesis import HealthCheck, note, reject, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

import catad
from catad.compiler import ast
from catad.compiler.errors import DerivativeError
from catad.compiler.lower import load_module
from catad.compiler.parse import lark_parser
from catad.compiler.pipeline import Stages
from catad.compiler.source_print import format_program
from catad.compiler.types import ArrayType, Dim, DType

FEATURES = (
    "elementwise",  # every one-argument library function, pow, `**`, abs, sign, minimum, maximum
    "arithmetic",   # + - * / and unary minus on operands of one shape
    "broadcast",    # a scalar with an array, a vector with the rows of a matrix, full(shape, e)
    "reduction",    # sum mean prod max min logsumexp, over all axes or one
    "softmax",
    "cumsum",       # cumsum and cumprod along one axis (a vector's left out or not)
    "cumprod",
    "linalg",       # @, dot, transpose, outer
    "let",          # let bindings and block expressions
    "tuple",        # tuples and destructuring (of pairs, if-tuples, helper results, folds)
    "if",           # if on scalar conditions, including guarded indexing
    "where",        # where(c, a, b) and f64(condition)
    "for",          # comprehensions for i in lo..hi { ... }, nested to depth 2
    "index",        # indexing with computed indices, rows, columns, constants
    "slice",        # x[1:], x[:-1], x[:n - 1], x[1:n]
    "map",          # map and map2 with lambdas
    "reduce",       # reduce with +, maximum and * (monoids, compiled to sum, max, prod)
    "associative",  # reduce with associative bodies that are not monoids (gradients by scans)
    "fold",
    "scan",
    "call",         # calls of helper functions
    "construct",    # zeros, ones, stack, concat, arange
    "size",         # size variables and comprehension indices as values: f64(n), x / n
)

# What the "elementwise" production applies: the library's elementwise functions,
# `power` for `**` and `neg` for unary minus.
ELEMENTWISE = ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid",
               "softplus", "relu", "gelu", "silu", "elu", "erf", "abs", "sign", "pow", "power",
               "minimum", "maximum", "neg")

SIZE_VARIABLES = ("n", "m")
MAX_SIZE = 4    # the largest size variable the inputs use; bounds are computed for it
LIMIT = 50.0    # an expression whose bound passes this is squashed
MAX_LOOPS = 2   # the deepest nesting of comprehensions, maps and loops
MAX_HELPERS = 3


def f64(*dims: int | str | Dim) -> ArrayType:
    """The f64 array type with these dims (none: a scalar)."""
    return ArrayType(DType.F64, tuple(Dim.of(d) for d in dims))


N = Dim.of("n")


@dataclass(frozen=True)
class Signature:
    """The parameters and result of the entry functions."""

    params: tuple[tuple[str, ArrayType], ...]
    result: ArrayType


SCALAR_PARAM_POOL = (("y", f64("m")), ("A", f64("n", "m")), ("s", f64()), ("v", f64(3)))


@dataclass(frozen=True)
class GeneratedProgram:
    functions: tuple[ast.Function, ...]  # helpers first, then the entries
    names: tuple[str, ...]               # the entry functions
    signature: Signature
    loop_depth: int                      # deepest nesting of for/map/reduce/fold/scan
    features: frozenset[str]             # the productions the program used

    @property
    def program(self) -> ast.Program:
        return ast.Program(self.functions)

    @property
    def source(self) -> str:
        return format_program(self.program)

    def with_lines(self, *lines: str) -> str:
        """The source with extra items (derived functions, wrappers) after it."""
        return self.source + "".join(f"\n{line}\n" for line in lines)

    def inputs(self, sizes: dict[str, int], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return random_inputs(self.signature.params, sizes, rng)

    def __repr__(self) -> str:
        return f"GeneratedProgram(features={sorted(self.features)}, source=\n{self.source})"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # how hypothesis shows an example
        printer.text(repr(self))


def random_inputs(params: Iterable[tuple[str, ArrayType]], sizes: dict[str, int],
                  rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Uniform values in [-1, 1] for each parameter, at the given sizes."""
    return tuple(rng.uniform(-1.0, 1.0, shape_at(t, sizes)) for _, t in params)


def shape_at(t: ArrayType, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(d.evaluate(sizes) for d in t.shape)


def scaled(fraction: float) -> settings:
    """Settings for a property: `fraction` of the loaded profile's max_examples (at
    least 1), so the `ci` profile stays fast and `deep` runs many more."""
    return settings(max_examples=max(1, round(settings.default.max_examples * fraction)),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def compile_source(text: str) -> tuple[Stages, types.ModuleType]:
    """Every stage of `text` and its compiled module; the text is noted for hypothesis.
    A derivative the program does not have (its result depends on the parameters
    only through a comparison: a step function) is refused by design, and the
    example is rejected (as is a Hessian of a piecewise linear program): test_fuzz checks that such refusals are clean errors."""
    note(text)
    try:
        stages = catad.stages(text)
    except DerivativeError as err:
        reject_if_step_function(err)
        raise
    return stages, load_module(stages.python, "generated")


def reject_if_step_function(err: DerivativeError) -> None:
    if "only through" in str(err):  # a comparison, `sign`, a floor division or a cast
        reject()


def size_values(low: int = 2, high: int = MAX_SIZE) -> st.SearchStrategy[dict[str, int]]:
    return st.fixed_dictionaries({name: st.integers(low, high) for name in SIZE_VARIABLES})


# ---- the strategies ---------------------------------------------------------------------------

def scalar_signatures() -> st.SearchStrategy[Signature]:
    """`x: f64[n]` and a subset of y: f64[m], A: f64[n, m], s: f64, v: f64[3]; result f64."""
    def build(extra: list[tuple[str, ArrayType]]) -> Signature:
        params = (("x", f64("n")), *sorted(extra, key=SCALAR_PARAM_POOL.index))
        return Signature(params, f64())
    return st.lists(st.sampled_from(SCALAR_PARAM_POOL), unique=True, max_size=3).map(build)


def vector_signature(constants: tuple[tuple[str, ArrayType], ...] = (("A", f64("n", "m")),),
                     result: ArrayType = f64("m")) -> Signature:
    """f(x: f64[n], constants...) -> result: for derivatives with respect to x only."""
    return Signature((("x", f64("n")), *constants), result)


@st.composite
def programs(draw, max_depth: int = 3, features: Iterable[str] = FEATURES,
             signature: Signature | None = None, names: tuple[str, ...] = ("f",),
             functions: Iterable[str] = ELEMENTWISE, weak_literals: bool = False
             ) -> GeneratedProgram:
    """Well-typed programs whose entries `names` have `signature` (default: a
    scalar signature drawn at random); the "elementwise" feature applies
    `functions` (default all of ELEMENTWISE). Scalar literal leaves are written
    `f64(0.5)` unless `weak_literals`: then they are weak (`0.5`, `-0.5`,
    `2 * 1.0`), and so are constant expressions made of them, which the checker
    must re-type or cast where a strong f64 is needed (once a bug; covered by
    tests/test_fuzz.py and tests/test_weak_types.py)."""
    allowed = frozenset(features)
    unknown = (allowed - set(FEATURES)) | (set(functions) - set(ELEMENTWISE))
    assert not unknown, f"unknown features or functions {sorted(unknown)}"
    if signature is None:
        signature = draw(scalar_signatures())
    gen = _Generator(draw, allowed, tuple(functions), weak_literals)
    entries = tuple(gen.entry(name, signature, max_depth) for name in names)
    return GeneratedProgram(tuple(gen.helpers) + entries, names, signature, gen.deepest,
                            frozenset(gen.used))


def _spaced(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return strategy.map(lambda token: f" {token} ")


_GRAMMAR_NAMES = ("x", "y", "n", "m", "f", "g", "f64", "i64", "bool", "sum", "exp", "map",
                  "fold", "where", "grad", "jvp", "wrt", "axis", "zeros")


def grammar_strings() -> st.SearchStrategy[str]:
    """Strings drawn from grammar/catad.lark (from_lark ignores the lexer): names that
    mean something to the checker, and tokens spaced so that most strings re-lex as
    drawn. Explicit whitespace keeps the drawing fast; most strings do not check."""
    return from_lark(lark_parser(), start="start", explicit={
        "NAME": _spaced(st.sampled_from(_GRAMMAR_NAMES)),
        "INT": _spaced(st.sampled_from(["0", "1", "2", "3"])),
        "FLOAT": _spaced(st.sampled_from(["0.5", "1.0", "2e3"])),
        "COMMENT": st.just("# note\n"),
        "WHITESPACE": st.just(" "),
        **{t.name: st.just(f" {t.pattern.value} ") for t in lark_parser().terminals
           if t.pattern.type == "str" and t.pattern.value.isalpha()},
    })


# ---- environments -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Value:
    name: str
    type: ArrayType
    bound: float


@dataclass(frozen=True)
class _Index:
    """A comprehension index: `name` runs over lo..hi."""

    name: str
    lo: int
    hi: Dim


@dataclass(frozen=True)
class _Env:
    values: tuple[_Value, ...] = ()
    indices: tuple[_Index, ...] = ()
    sizes: tuple[str, ...] = ()
    loops: int = 0

    def bind(self, name: str, t: ArrayType, bound: float) -> "_Env":
        return replace(self, values=self.values + (_Value(name, t, bound),))

    def of_type(self, t: ArrayType) -> list[_Value]:
        return [v for v in self.values if v.type == t]


Made = tuple[ast.Expr, float]  # an expression and a bound on |its value|


def _extent(d: Dim) -> int:
    return d.evaluate({name: MAX_SIZE for name in SIZE_VARIABLES})


def _elements(shape: tuple[Dim, ...]) -> int:
    return math.prod(_extent(d) for d in shape)


def _dim_expr(d: Dim) -> ast.Expr:
    """A size as source: `n`, `3`, `n - 1`, `2 * n + 1`."""
    expr: ast.Expr | None = None
    for var, coeff in d.terms:
        term: ast.Expr = ast.Name(var)
        if abs(coeff) != 1:
            term = ast.BinOp("*", ast.IntLit(abs(coeff)), term)
        if expr is None:
            expr = term if coeff > 0 else ast.UnaryOp("-", term)
        else:
            expr = ast.BinOp("+" if coeff > 0 else "-", expr, term)
    if expr is None:
        return _int(d.const)
    if d.const:
        expr = ast.BinOp("+" if d.const > 0 else "-", expr, ast.IntLit(abs(d.const)))
    return expr


def _shape_expr(shape: tuple[Dim, ...]) -> ast.Expr:
    if len(shape) == 1:
        return _dim_expr(shape[0])
    return ast.TupleExpr(tuple(_dim_expr(d) for d in shape))


def _type_expr(t: ArrayType) -> ast.TypeExpr:
    if not t.shape:
        return ast.ScalarTypeExpr(t.dtype.value)
    return ast.ArrayTypeExpr(t.dtype.value, tuple(_dim_expr(d) for d in t.shape))


def _int(value: int) -> ast.Expr:
    return ast.IntLit(value) if value >= 0 else ast.UnaryOp("-", ast.IntLit(-value))


def _float(value: float) -> ast.Expr:
    return ast.FloatLit(value) if value >= 0 else ast.UnaryOp("-", ast.FloatLit(-value))


def _call(func: str, *args: ast.Expr, **kwargs: ast.Expr) -> ast.Call:
    return ast.Call(func, args, tuple(ast.Keyword(k, v) for k, v in kwargs.items()))


def _is_plain(d: Dim) -> bool:
    """A dim a parameter type can carry: a size variable or a constant."""
    return d.is_constant or (d.const == 0 and len(d.terms) == 1 and d.terms[0][1] == 1)


_BOUNDED = ("tanh", "sin", "cos", "sigmoid", "erf")
_FLOATS = (0.5, 1.0, 2.0, 1.5, 0.25, 3.0, 0.1)
_POSITIVE_FORMS = ("square", "softplus", "sigmoid")


# ---- the generator ----------------------------------------------------------------------------

@dataclass
class _Generator:
    draw: Callable
    features: frozenset[str]
    functions: tuple[str, ...]
    weak_literals: bool
    used: set[str] = field(default_factory=set)
    helpers: list[ast.Function] = field(default_factory=list)
    deepest: int = 0
    counter: int = 0
    entry_name: str = "f"

    # -- drawing --

    def choice(self, items):
        return self.draw(st.sampled_from(list(items)))

    def coin(self, p_true: int = 1, p_false: int = 1) -> bool:
        return self.choice([False] * p_false + [True] * p_true)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def allows(self, feature: str) -> bool:
        return feature in self.features

    def mark(self, *features: str) -> None:
        self.used.update(features)

    # -- functions --

    def entry(self, name: str, sig: Signature, depth: int) -> ast.Function:
        self.entry_name = name
        env = _Env(sizes=_sizes_of(t for _, t in sig.params))
        for pname, t in sig.params:
            env = env.bind(pname, t, 1.0)
        body, _ = self.block(sig.result, env, depth, lets=2)
        return ast.Function(name, tuple(ast.Param(p, _type_expr(t)) for p, t in sig.params),
                            _type_expr(sig.result), body)

    def helper(self, arg_types: list[ArrayType], result: ArrayType | tuple[ArrayType, ...],
               env: _Env, depth: int) -> Made:
        """A new helper function of these parameter and result types, called here."""
        self.mark("call")
        args = [self.expr(t, env, depth - 1) for t in arg_types]
        names = [f"a{k}" for k in range(len(arg_types))]
        inner = _Env(sizes=_sizes_of(arg_types), loops=env.loops)
        for pname, t, (_, bound) in zip(names, arg_types, args):
            inner = inner.bind(pname, t, bound)
        if isinstance(result, tuple):
            items = [self.expr(t, inner, depth - 1) for t in result]
            body = ast.Block((), ast.TupleExpr(tuple(e for e, _ in items)))
            bound = max(b for _, b in items)
            result_type: ast.TypeExpr = ast.TupleTypeExpr(tuple(_type_expr(t) for t in result))
        else:
            body, bound = self.block(result, inner, depth - 1, lets=1)
            result_type = _type_expr(result)
        name = f"{self.entry_name}_h{len(self.helpers) + 1}"
        self.helpers.append(ast.Function(
            name, tuple(ast.Param(p, _type_expr(t)) for p, t in zip(names, arg_types)),
            result_type, body))
        return _call(name, *(e for e, _ in args)), bound

    # -- blocks --

    def block(self, t: ArrayType, env: _Env, depth: int, lets: int = 1) -> tuple[ast.Block, float]:
        bindings: list[ast.Let] = []
        if self.allows("let") and depth > 0:
            for _ in range(self.choice(range(lets + 1))):
                let, env = self.let(env, depth - 1)
                bindings.append(let)
        result, bound = self.expr(t, env, depth)
        return ast.Block(tuple(bindings), result), bound

    def let(self, env: _Env, depth: int) -> tuple[ast.Let, _Env]:
        self.mark("let")
        if self.allows("tuple") and self.coin(1, 3):
            return self.tuple_let(env, depth)
        t = self.choice(self.shapes(env))
        value, bound = self.expr(t, env, depth)
        name = self.fresh("v")
        return ast.Let(ast.NamePattern(name), value), env.bind(name, t, bound)

    def tuple_let(self, env: _Env, depth: int) -> tuple[ast.Let, _Env]:
        """`let (a, b) = ...;` from a tuple, an if of tuples, a helper or a fold."""
        self.mark("tuple")
        types = [self.choice(self.shapes(env)) for _ in range(self.choice([2, 3]))]
        forms = ["tuple", "nested"]
        if self.allows("if"):
            forms.append("if")
        if self.allows("call") and len(self.helpers) < MAX_HELPERS and all(
                _is_plain(d) for t in types for d in t.shape):
            forms.append("call")
        if self.allows("fold") and env.loops < MAX_LOOPS:
            forms.append("fold")
        form = self.choice(forms)
        if form == "fold":
            return self.tuple_fold(env, depth)
        if form == "call":
            arg_types = self.covering_types(env, types)
            value, bound = self.helper(arg_types, tuple(types), env, depth)
            bounds = [bound] * len(types)
        else:
            items = [self.expr(t, env, depth) for t in types]
            value = ast.TupleExpr(tuple(e for e, _ in items))
            bounds = [b for _, b in items]
            if form == "if":
                self.mark("if")
                others = [self.expr(t, env, depth) for t in types]
                value = ast.If(self.condition(env, depth - 1), ast.Block((), value),
                               ast.Block((), ast.TupleExpr(tuple(e for e, _ in others))))
                bounds = [max(a, b) for a, (_, b) in zip(bounds, others)]
        names = [self.fresh("v") for _ in types]
        if form == "nested":  # let (a, (b, c)) = (e1, (e2, e3));
            assert isinstance(value, ast.TupleExpr)
            head, rest = value.items[0], value.items[1:]
            inner = rest[0] if len(rest) == 1 else ast.TupleExpr(rest)
            value = ast.TupleExpr((head, inner))
            inner_pattern = (ast.NamePattern(names[1]) if len(rest) == 1 else
                             ast.TuplePattern(tuple(ast.NamePattern(n) for n in names[1:])))
            pattern = ast.TuplePattern((ast.NamePattern(names[0]), inner_pattern))
        else:
            pattern = ast.TuplePattern(tuple(ast.NamePattern(n) for n in names))
        for name, t, bound in zip(names, types, bounds):
            env = env.bind(name, t, bound)
        return ast.Let(pattern, value), env

    def tuple_fold(self, env: _Env, depth: int) -> tuple[ast.Let, _Env]:
        """`let (a, b) = fold((i1, i2), xs, |s, x| { let (p, q) = s; (e1, e2) });`"""
        self.mark("fold", "tuple")
        inits = [self.expr(f64(), env, depth - 1) for _ in range(2)]
        bounds = [max(b, 1.0) for _, b in inits]
        xs_type = self.choice(self.loop_arrays(env))
        xs, xs_bound = self.expr(xs_type, env, depth - 1)
        state, item = self.fresh("s"), self.fresh("p")
        parts = [self.fresh("q"), self.fresh("q")]
        inner = replace(env, loops=env.loops + 1)
        self.deepest = max(self.deepest, inner.loops)
        inner = inner.bind(item, ArrayType(DType.F64, xs_type.shape[1:]), xs_bound)
        for part, bound in zip(parts, bounds):
            inner = inner.bind(part, f64(), bound)
        steps = [self.capped(self.expr(f64(), inner, depth - 1), bound) for bound in bounds]
        body = ast.BlockExpr(ast.Block(
            (ast.Let(ast.TuplePattern(tuple(ast.NamePattern(p) for p in parts)), ast.Name(state)),),
            ast.TupleExpr(tuple(steps))))
        value = _call("fold", ast.TupleExpr(tuple(e for e, _ in inits)), xs,
                      ast.Lambda((state, item), body))
        names = [self.fresh("v") for _ in parts]
        for name, bound in zip(names, bounds):
            env = env.bind(name, f64(), bound)
        return ast.Let(ast.TuplePattern(tuple(ast.NamePattern(n) for n in names)), value), env

    # -- types --

    def shapes(self, env: _Env, plain: bool = False) -> list[ArrayType]:
        """Types to draw for a let, an argument, an item: scalars and vectors most often."""
        dims = [Dim.of(s) for s in env.sizes]
        out = [f64(), f64()] + [f64(d) for d in dims for _ in range(2)]
        out += [f64(a, b) for a in dims for b in dims]
        if self.allows("slice") and not plain and "n" in env.sizes:
            out += [f64(N - 1)] * 2
        out.append(f64(3))
        return out

    def loop_arrays(self, env: _Env) -> list[ArrayType]:
        """Arrays a map or loop can run over (rank 1 or more)."""
        return [t for t in self.shapes(env) if t.rank >= 1]

    def items(self, env: _Env) -> list[ArrayType]:
        """Item types of the arrays a map or scan runs over: scalars and vectors."""
        return [t for t in self.shapes(env, plain=True) if t.rank <= 1]

    def covering_types(self, env: _Env, results: Iterable[ArrayType]) -> list[ArrayType]:
        """Parameter types for a helper: every size variable of `results` is a plain dim of one."""
        needed = _sizes_of(results)
        types = [f64(s) for s in needed]
        if len(types) < 2 and self.coin():
            types.append(self.choice(self.shapes(env, plain=True)))
        return types or [self.choice(self.shapes(env, plain=True))]

    # -- expressions --

    def expr(self, t: ArrayType, env: _Env, depth: int) -> Made:
        """An f64 expression of type `t`."""
        options: list[tuple[int, Callable[[], Made]]] = [(6, lambda: self.leaf(t, env))]
        if depth > 0:
            options += [(w, p) for w, p in self.productions(t, env, depth)]
        weighted = [make for weight, make in options for _ in range(weight)]
        made = self.choice(range(len(weighted)))
        return self.squashed(weighted[made]())

    def squashed(self, made: Made) -> Made:
        e, bound = made
        return made if bound <= LIMIT else (self.squash(e), 1.0)

    def capped(self, made: Made, cap: float) -> ast.Expr:
        """`made`, squashed into [-1, 1] if its bound passes `cap` (at least 1)."""
        e, bound = made
        return e if bound <= cap else self.squash(e)

    def squash(self, e: ast.Expr) -> ast.Expr:
        """`e` mapped into [-1, 1]: tanh(e), sin(e), ..., or e / (e * e + 1.0) when the
        elementwise functions are not among the features."""
        if self.allows("elementwise"):
            return _call(self.choice(_BOUNDED), e)
        return ast.BinOp("/", e, ast.BinOp("+", ast.BinOp("*", e, e), ast.FloatLit(1.0)))

    def productions(self, t: ArrayType, env: _Env, depth: int):
        d = depth - 1
        rank = t.rank
        yield from self.gated("elementwise", 5, lambda: self.elementwise(t, env, d))
        yield from self.gated("arithmetic", 5, lambda: self.arithmetic(t, env, d))
        if rank:
            yield from self.gated("broadcast", 3, lambda: self.broadcast(t, env, d))
        if self.reduction_sources(t, env):
            yield from self.gated("reduction", 3, lambda: self.reduction(t, env, d))
        if rank:
            yield from self.gated("softmax", 2, lambda: self.softmax(t, env, d))
            yield from self.gated("cumsum", 2, lambda: self.cumulative("cumsum", t, env, d))
            yield from self.gated("cumprod", 2, lambda: self.cumulative("cumprod", t, env, d))
        if rank <= 2 and self.linalg_sources(t, env):
            yield from self.gated("linalg", 3, lambda: self.linalg(t, env, d))
        yield from self.gated("let", 1, lambda: self.block_expr(t, env, depth))
        yield from self.gated("if", 2, lambda: self.if_(t, env, d))
        yield from self.gated("where", 2, lambda: self.where(t, env, d))
        if not rank and env.loops < MAX_LOOPS:
            yield from self.gated("for", 3, lambda: self.reduced_comprehension(env, d))
        if rank and env.loops < MAX_LOOPS:
            yield from self.gated("for", 3, lambda: self.comprehension(t, env, d))
            yield from self.gated("map", 2, lambda: self.map_(t, env, d))
            yield from self.gated("scan", 2, lambda: self.scan(t, env, d))
        if rank <= 1 and env.loops < MAX_LOOPS:
            yield from self.gated("reduce", 2, lambda: self.reduce(t, env, d))
            yield from self.gated("associative", 1, lambda: self.reduce(t, env, d, associative=True))
        if env.loops < MAX_LOOPS:
            yield from self.gated("fold", 1, lambda: self.fold(t, env, d))
        if rank <= 1:
            yield from self.gated("index", 3, lambda: self.index(t, env, d))
        if self.guarded_indices(t, env):
            yield from self.gated("if", 3, lambda: self.guarded_index(t, env, d))
        if rank == 1 and t.shape[0] == N - 1 and "n" in env.sizes:
            yield from self.gated("slice", 8, lambda: self.slice_(t, env, d))
        if len(self.helpers) < MAX_HELPERS and all(_is_plain(x) for x in t.shape):
            yield from self.gated("call", 1, lambda: self.helper(
                self.covering_types(env, [t]), t, env, depth))
        if rank == 1 or (rank and t.shape[0] == Dim(3)):
            yield from self.gated("construct", 2, lambda: self.construct(t, env, d))
        if env.sizes or env.indices:
            yield from self.gated("size", 2, lambda: self.size_value(t, env, d))

    def gated(self, feature: str, weight: int, make: Callable[[], Made]):
        if self.allows(feature):
            def marked() -> Made:
                self.mark(feature)
                return make()
            yield weight, marked

    # -- leaves --

    def leaf(self, t: ArrayType, env: _Env) -> Made:
        options: list[Callable[[], Made]] = []
        for v in env.of_type(t):
            options += [lambda v=v: (ast.Name(v.name), v.bound)] * 4
        for v, item in self.indexed_names(t, env):
            options += [lambda v=v, item=item: (ast.Index(ast.Name(v.name), item), v.bound)] * 3
        if not t.shape:
            options.append(self.literal)
        else:
            options.append(lambda: self.filled(t))
        return self.choice(options)()

    def literal(self) -> Made:
        """0.5, -1.5, 2 (an int, promoted); as f64(...) unless weak literals are wanted."""
        value = self.choice(_FLOATS)
        if self.coin(1, 4):
            e, bound = _float(-value), value
        elif self.coin(1, 6):
            # a weak bare `2` is an i64 where nothing promotes it (`map(xs, |p| 2)` is i64[n],
            # as NumPy's np.array([2, 2]) is): the int is promoted inside the literal instead
            two = ast.IntLit(2)
            e, bound = (ast.BinOp("*", two, ast.FloatLit(1.0)) if self.weak_literals else two), 2.0
        else:
            e, bound = ast.FloatLit(value), value
        return (e if self.weak_literals else _call("f64", e)), bound

    def filled(self, t: ArrayType) -> Made:
        value = self.choice(_FLOATS)
        kind = self.choice(["full", "zeros", "ones"])
        if kind == "full":
            return _call("full", _shape_expr(t.shape), _float(value)), value
        return _call(kind, _shape_expr(t.shape)), 1.0

    def indexed_names(self, t: ArrayType, env: _Env
                      ) -> list[tuple[_Value, tuple[ast.IndexItem, ...]]]:
        """`x[i]`, `A[i, j]`: names indexed with comprehension indices that fit their axes."""
        out = []
        for v in env.values:
            extra = v.type.rank - t.rank
            if extra not in (1, 2) or v.type.shape[extra:] != t.shape:
                continue
            choices = [[ix for ix in env.indices if _fits(ix, d)] for d in v.type.shape[:extra]]
            if all(choices):
                out.append((v, tuple(ast.At(ast.Name(self.choice(c).name)) for c in choices)))
        return out

    # -- elementwise --

    def elementwise(self, t: ArrayType, env: _Env, d: int) -> Made:
        fn = self.choice(self.functions)
        if fn in ("minimum", "maximum"):
            (a, ba), (b, bb) = self.expr(t, env, d), self.operand(t, env, d)
            return _call(fn, a, b), max(ba, bb)
        e, bound = self.expr(t, env, d)
        match fn:
            case "exp" | "expm1":
                e, bound = self.within(e, bound, 3.0)
                return _call(fn, e), math.exp(bound)
            case "log":
                arg, lo, hi = self.positive(e, bound)
                return _call("log", arg), max(abs(math.log(lo)), abs(math.log(hi)))
            case "log1p":
                arg, _, hi = self.positive(e, bound)
                return _call("log1p", arg), math.log1p(hi)
            case "sqrt":
                arg, _, hi = self.positive(e, bound)
                return _call("sqrt", arg), math.sqrt(hi)
            case "tan":
                return _call("tan", _call("tanh", e)), math.tan(1.0)
            case "pow":  # pow(b, c) with b >= 0.5
                base, lo, hi = self.positive(e, bound)
                exponent = self.choice([0.5, 2.0, 1.5, -1.0, 3.0])
                return _call("pow", base, _float(exponent)), max(lo ** exponent, hi ** exponent)
            case "power":  # e ** 2, e ** 3 for any e; b ** 0.5, b ** -1 with b >= 0.5
                exponent = self.choice([2, 3, 0.5, -1])
                if exponent in (2, 3):
                    e, bound = self.within(e, bound, 6.0)
                    return ast.BinOp("**", e, ast.IntLit(exponent)), bound ** exponent
                base, lo, hi = self.positive(e, bound)
                power = ast.UnaryOp("-", ast.IntLit(1)) if exponent == -1 else ast.FloatLit(0.5)
                return ast.BinOp("**", base, power), max(lo ** exponent, hi ** exponent)
            case "neg":
                return ast.UnaryOp("-", e), bound
            case "softplus":
                return _call(fn, e), bound + 1.0
            case "elu":
                return _call(fn, e), max(bound, 1.0)
            case "relu" | "gelu" | "silu" | "abs":
                return _call(fn, e), bound
            case "sign":  # times e: a real never depends on the inputs only through sign
                return ast.BinOp("*", _call(fn, e), e), bound
            case _:  # sin cos tanh sigmoid erf
                return _call(fn, e), 1.0

    def within(self, e: ast.Expr, bound: float, limit: float) -> Made:
        return (e, bound) if bound <= limit else (self.squash(e), 1.0)

    def positive(self, e: ast.Expr, bound: float) -> tuple[ast.Expr, float, float]:
        """An expression with values in [lo, hi], lo >= 0.5, made from `e`."""
        forms = _POSITIVE_FORMS if self.allows("elementwise") else _POSITIVE_FORMS[:1]
        match self.choice(forms):
            case "square":
                return (ast.BinOp("+", ast.BinOp("*", e, e), ast.FloatLit(1.0)),
                        1.0, bound * bound + 1.0)
            case "softplus":
                return (ast.BinOp("+", _call("softplus", e), ast.FloatLit(0.5)),
                        0.5, bound + 1.5)
            case _:
                return (ast.BinOp("+", _call("sigmoid", e), ast.FloatLit(0.5)), 0.5, 1.5)

    # -- arithmetic and broadcasting --

    def operand(self, t: ArrayType, env: _Env, d: int) -> Made:
        """An operand for an elementwise operation giving `t`: of type t, or one that
        broadcasts to it (a scalar, a row) when broadcasting is allowed."""
        if t.rank and self.allows("broadcast") and self.coin(1, 3):
            self.mark("broadcast")
            return self.expr(ArrayType(DType.F64, t.shape[self.choice(range(1, t.rank + 1)):]),
                             env, d)
        return self.expr(t, env, d)

    def arithmetic(self, t: ArrayType, env: _Env, d: int) -> Made:
        op = self.choice(["+", "-", "*", "/", "neg"])
        a, ba = self.expr(t, env, d)  # one operand has the whole shape; the other may broadcast
        if op == "neg":
            return ast.UnaryOp("-", a), ba
        if op == "/":
            return self.divide(a, ba, t, env, d)
        b, bb = self.operand(t, env, d)
        if self.coin():
            a, b = b, a
        return ast.BinOp(op, a, b), (ba * bb if op == "*" else ba + bb)

    def divide(self, a: ast.Expr, ba: float, t: ArrayType, env: _Env, d: int) -> Made:
        form = self.choice(["literal", "positive"])
        if form == "literal":
            c = self.choice([2.0, 0.5, 3.0, 4])
            return ast.BinOp("/", a, _float(c) if isinstance(c, float) else ast.IntLit(c)), ba / 0.5
        e, bound = self.operand(t, env, d)
        den, lo, _ = self.positive(e, bound)
        return ast.BinOp("/", a, den), ba / lo

    def broadcast(self, t: ArrayType, env: _Env, d: int) -> Made:
        """full(shape, scalar e), or a row vector added to every row of a matrix."""
        if t.rank == 2 and self.coin():
            m, bm = self.expr(t, env, d)
            row, br = self.expr(ArrayType(DType.F64, t.shape[1:]), env, d)
            return ast.BinOp(self.choice(["+", "*"]), m, row), bm + br + bm * br
        e, bound = self.expr(f64(), env, d)
        return _call("full", _shape_expr(t.shape), e), bound

    # -- reductions --

    def reduction_sources(self, t: ArrayType, env: _Env) -> list[tuple[ArrayType, int | None]]:
        """(array type, axis) pairs whose reduction has type t (axis None: over all)."""
        if not t.shape:
            return [(u, None) for u in self.shapes(env) if u.rank in (1, 2)]
        return [(u, axis) for u in self.shapes(env) if u.rank == t.rank + 1
                for axis in range(u.rank) if u.shape[:axis] + u.shape[axis + 1:] == t.shape]

    def reduction(self, t: ArrayType, env: _Env, d: int) -> Made:
        fn = self.choice(["sum", "mean", "prod", "max", "min", "logsumexp"])
        u, axis = self.choice(self.reduction_sources(t, env))
        e, bound = self.expr(u, env, d)
        count = _elements(u.shape) if axis is None else _extent(u.shape[axis])
        if fn == "prod":
            e, bound = self.squash(e), 1.0
        kwargs = {}
        if axis is not None:
            kwargs["axis"] = _int(axis - u.rank if self.coin(1, 3) else axis)
        total = {"sum": bound * count, "prod": 1.0,
                 "logsumexp": bound + math.log(count)}.get(fn, bound)
        return _call(fn, e, **kwargs), total

    def softmax(self, t: ArrayType, env: _Env, d: int) -> Made:
        e, _ = self.expr(t, env, d)
        if t.rank == 2 and self.coin():
            return _call("softmax", e, axis=_int(0)), 1.0
        return _call("softmax", e), 1.0

    def cumulative(self, fn: str, t: ArrayType, env: _Env, d: int) -> Made:
        """cumsum or cumprod along one axis of t (of factors squashed into [-1, 1])."""
        e, bound = self.expr(t, env, d)
        axis = self.choice(range(t.rank))
        kwargs = {} if t.rank == 1 and self.coin() else {
            "axis": _int(axis - t.rank if self.coin(1, 3) else axis)}
        if fn == "cumprod":
            return _call(fn, self.capped((e, bound), 1.0), **kwargs), 1.0
        return _call(fn, e, **kwargs), bound * _extent(t.shape[axis])

    # -- linear algebra --

    def linalg_sources(self, t: ArrayType, env: _Env) -> list[tuple[str, ArrayType, ArrayType]]:
        """(form, left type, right type) of the products and transposes that give `t`."""
        dims = [Dim.of(s) for s in env.sizes] + [Dim(3)]
        match t.shape:
            case ():
                return [(form, f64(k), f64(k)) for k in dims for form in ("@", "dot")]
            case (a,):
                return ([("@", f64(a, k), f64(k)) for k in dims]
                        + [("@", f64(k), f64(k, a)) for k in dims]
                        + [("dot", f64(a, k), f64(k)) for k in dims])
            case (a, b):
                return ([("outer", f64(a), f64(b)), ("transpose", f64(b, a), f64(b, a))]
                        + [("@", f64(a, k), f64(k, b)) for k in dims])
        return []

    def linalg(self, t: ArrayType, env: _Env, d: int) -> Made:
        form, lt, rt = self.choice(self.linalg_sources(t, env))
        a, ba = self.expr(lt, env, d)
        if form == "transpose":
            return _call("transpose", a), ba
        b, bb = self.expr(rt, env, d)
        inner = _extent(lt.shape[-1]) if form in ("@", "dot") else 1
        if form == "@":
            return ast.BinOp("@", a, b), ba * bb * inner
        return _call(form, a, b), ba * bb * inner

    # -- control --

    def block_expr(self, t: ArrayType, env: _Env, depth: int) -> Made:
        block, bound = self.block(t, env, depth - 1)
        if not block.lets:
            return block.result, bound
        return ast.BlockExpr(block), bound

    def if_(self, t: ArrayType, env: _Env, d: int) -> Made:
        cond = self.condition(env, d)
        then, b1 = self.block(t, env, d)
        orelse, b2 = self.block(t, env, d)
        return ast.If(cond, then, orelse), max(b1, b2)

    def where(self, t: ArrayType, env: _Env, d: int) -> Made:
        """where(c, a, b) and f64(c) * a, with c comparing a (so a value never depends on
        the inputs only through a comparison, which catad refuses to differentiate)."""
        a, ba = self.expr(t, env, d)
        if not t.shape and self.coin():
            test = ast.BinOp(self.choice([">", "<"]), a, _float(self.choice([0.0, 0.5, -0.25])))
            return ast.BinOp("*", _call("f64", test), a), ba
        b, bb = self.operand(t, env, d)
        other = b if self.coin() else _float(self.choice([0.0, 0.5, -0.25]))
        cond: ast.Expr = ast.BinOp(self.choice(["<", "<=", ">", ">="]), a, other)
        if self.coin(1, 3):
            cond = ast.UnaryOp("not", cond)
        return _call("where", cond, a, b), max(ba, bb)

    def condition(self, env: _Env, d: int) -> ast.Expr:
        """A bool scalar for `if`. Inside a loop body it tests indices and sizes only:
        vectorised, that `if` becomes a `where`, which catad refuses to differentiate when
        both branches are constant and the test compares reals (test_fuzz.py, known bugs)."""
        forms = ["compare", "compare"] if not env.loops else []
        forms += ["index", "index"] if env.indices else []
        forms += ["size"] if env.sizes else []
        forms += ["not", "logic"] if d > 0 else []
        match self.choice(forms or ["literal"]):
            case "compare":  # of expressions with a production or two, not bare literals
                a, _ = self.expr(f64(), env, max(d - 1, 1))
                if self.coin():
                    b, _ = self.expr(f64(), env, max(d - 1, 1))
                else:
                    b = _float(self.choice([0.0, 0.5, -0.25]))
                return ast.BinOp(self.choice(["<", "<=", ">", ">="]), a, b)
            case "index":
                return self.index_condition(env)
            case "size":
                return ast.BinOp(self.choice(["<", ">", "=="]), ast.Name(self.choice(env.sizes)),
                                 ast.IntLit(self.choice([2, 3])))
            case "not":
                return ast.UnaryOp("not", self.condition(env, d - 1))
            case "logic":
                return ast.BinOp(self.choice(["and", "or", "xor"]), self.condition(env, d - 1),
                                 self.condition(env, d - 1))
            case _:
                return ast.BoolLit(self.coin())

    def index_condition(self, env: _Env) -> ast.Expr:
        ix = self.choice(env.indices)
        i = ast.Name(ix.name)
        forms = ["positive", "last", "even"]
        if len(env.indices) > 1:
            forms.append("pair")
        match self.choice(forms):
            case "positive":
                return ast.BinOp(">", i, _int(ix.lo))
            case "last":
                return ast.BinOp("<", i, ast.BinOp("-", _dim_expr(ix.hi), ast.IntLit(1)))
            case "even":
                return ast.BinOp("==", ast.BinOp("%", i, ast.IntLit(2)), ast.IntLit(0))
            case _:
                other = self.choice([j for j in env.indices if j != ix])
                return ast.BinOp(self.choice(["<", "<=", "==", "!="]), i, ast.Name(other.name))

    # -- comprehensions and indexing --

    def comprehension(self, t: ArrayType, env: _Env, d: int) -> Made:
        first = t.shape[0]
        lo, hi = (1, first + 1) if first == N - 1 and self.coin() else (0, first)
        index = self.fresh("i")
        inner = replace(env, indices=env.indices + (_Index(index, lo, hi),), loops=env.loops + 1)
        self.deepest = max(self.deepest, inner.loops)
        item = ArrayType(DType.F64, t.shape[1:])
        if item.rank and inner.loops < MAX_LOOPS and self.coin():  # for i { for j { ... } }
            inner_for, bound = self.comprehension(item, inner, d)
            return ast.For(index, _int(lo), _dim_expr(hi), ast.Block((), inner_for)), bound
        body, bound = self.block(item, inner, d)
        return ast.For(index, _int(lo), _dim_expr(hi), body), bound

    def reduced_comprehension(self, env: _Env, d: int) -> Made:
        """sum(for i in 0..k { e }) and its kin: a scalar from a comprehension."""
        fn = self.choice(["sum", "mean", "max", "logsumexp"])
        t = self.choice([u for u in self.shapes(env) if u.rank in (1, 2)])
        e, bound = self.comprehension(t, env, d)
        count = _elements(t.shape)
        return _call(fn, e), {"sum": bound * count, "logsumexp": bound + math.log(count)}.get(
            fn, bound)

    def index(self, t: ArrayType, env: _Env, d: int) -> Made:
        """base[k], A[k1, k2], A[:, k]: a computed, constant or plain index per axis."""
        dims = [Dim.of(s) for s in env.sizes] + [Dim(3)]
        forms = [("rows", a) for a in dims] if t.rank <= 1 else []
        if not t.shape:
            forms += [("entry", a) for a in dims]
        if t.rank == 1:
            forms.append(("column", t.shape[0]))
        form, a = self.choice(forms)
        if form == "rows":
            base_type = ArrayType(DType.F64, (a, *t.shape))
            items: tuple[ast.IndexItem, ...] = (ast.At(self.index_into(a, env)),)
        elif form == "entry":
            b = self.choice(dims)
            base_type = f64(a, b)
            items = (ast.At(self.index_into(a, env)), ast.At(self.index_into(b, env)))
        else:
            b = self.choice(dims)
            base_type = f64(a, b)
            items = (ast.Slice(None, None), ast.At(self.index_into(b, env)))
        named = env.of_type(base_type)
        if named and self.coin(3, 1):
            v = self.choice(named)
            return ast.Index(ast.Name(v.name), items), v.bound
        base, bound = self.expr(base_type, env, d)
        return ast.Index(base, items), bound

    def index_into(self, extent: Dim, env: _Env) -> ast.Expr:
        """An i64 expression always in 0..extent."""
        forms: list[Callable[[], ast.Expr]] = [lambda: ast.IntLit(0), lambda: _int(-1)]
        for ix in env.indices:
            i = ast.Name(ix.name)
            if _fits(ix, extent):
                forms += [lambda i=i: i] * 3
                forms.append(lambda i=i: ast.BinOp(
                    "-", ast.BinOp("-", _dim_expr(extent), ast.IntLit(1)), i))
                forms.append(lambda i=i: ast.BinOp("//", i, ast.IntLit(2)))
            if ix.lo >= 1 and _fits(_Index(ix.name, ix.lo - 1, ix.hi - 1), extent):
                forms.append(lambda i=i: ast.BinOp("-", i, ast.IntLit(1)))
            if ix.lo >= 0:
                forms.append(lambda i=i: ast.BinOp(
                    "%", ast.BinOp("+", i, ast.IntLit(self.choice([1, 2]))), _dim_expr(extent)))
        return self.choice(forms)()

    def guarded_indices(self, t: ArrayType, env: _Env) -> list[tuple[_Value, _Index]]:
        return [(v, ix) for v in env.values for ix in env.indices
                if v.type.rank == t.rank + 1 and v.type.shape[1:] == t.shape
                and ix.lo == 0 and _fits(ix, v.type.shape[0])]

    def guarded_index(self, t: ArrayType, env: _Env, d: int) -> Made:
        """`if i > 0 { x[i - 1] } else { e }`: out of range only where not taken."""
        self.mark("index")
        v, ix = self.choice(self.guarded_indices(t, env))
        i = ast.Name(ix.name)
        if self.coin():
            cond, at = ast.BinOp(">", i, ast.IntLit(0)), ast.BinOp("-", i, ast.IntLit(1))
        else:
            last = ast.BinOp("-", _dim_expr(v.type.shape[0]), ast.IntLit(1))
            cond, at = ast.BinOp("<", i, last), ast.BinOp("+", i, ast.IntLit(1))
        other, bound = ((ast.FloatLit(0.0), 0.0) if not t.shape and self.coin()
                        else self.expr(t, env, d))
        picked = ast.Index(ast.Name(v.name), (ast.At(at),))
        return ast.If(cond, ast.Block((), picked), ast.Block((), other)), max(bound, v.bound)

    def slice_(self, t: ArrayType, env: _Env, d: int) -> Made:
        """A vector of n - 1 items from one of n."""
        base_type = f64(N)
        named = env.of_type(base_type)
        if named and self.coin(3, 1):
            v = self.choice(named)
            base, bound = ast.Name(v.name), v.bound
        else:
            base, bound = self.expr(base_type, env, d)
        one, last = ast.IntLit(1), ast.BinOp("-", ast.Name("n"), ast.IntLit(1))
        lo, hi = self.choice([(one, None), (None, _int(-1)), (None, last), (one, ast.Name("n"))])
        return ast.Index(base, (ast.Slice(lo, hi),)), bound

    # -- higher-order functions --

    def map_(self, t: ArrayType, env: _Env, d: int) -> Made:
        length = t.shape[0]
        arrays = [ArrayType(DType.F64, (length, *self.choice(self.items(env)).shape))]
        if self.coin(1, 2):
            arrays.append(ArrayType(DType.F64, (length, *self.choice(self.items(env)).shape)))
        made = [self.expr(u, env, d) for u in arrays]
        names = [self.fresh("p") for _ in arrays]
        inner = replace(env, loops=env.loops + 1)
        self.deepest = max(self.deepest, inner.loops)
        for name, u, (_, bound) in zip(names, arrays, made):
            inner = inner.bind(name, ArrayType(DType.F64, u.shape[1:]), bound)
        body, bound = self.block(ArrayType(DType.F64, t.shape[1:]), inner, d)
        func = "map2" if len(arrays) == 2 and self.coin() else "map"
        return _call(func, *(e for e, _ in made), ast.Lambda(tuple(names), _body_expr(body))), bound

    def reduce(self, t: ArrayType, env: _Env, d: int, associative: bool = False) -> Made:
        """reduce(xs, unit, |a, b| body): a monoid body, or (`associative`) an
        associative one that is not (the language requires associativity, and
        reverse mode brackets the items as scans)."""
        length = self.choice([Dim.of(s) for s in env.sizes] + [Dim(3)])
        xs, bound = self.expr(ArrayType(DType.F64, (length, *t.shape)), env, d)
        count = _extent(length)
        a, b = ast.Name(self.fresh("a")), ast.Name(self.fresh("b"))
        if associative:
            kinds = ["scaled product", "or"] + (["logaddexp"] if self.allows("elementwise") else [])
        else:
            kinds = ["add", "max", "mul"]
        kind = self.choice(kinds)
        self.deepest = max(self.deepest, env.loops + 1)
        if kind not in ("add", "max"):
            xs, bound = self.squash(xs), 1.0
        unit_value = {"mul": 1.0, "max": -1e30, "logaddexp": -1e30}.get(kind, 0.0)
        product = ast.BinOp("*", a, b)
        body, total = {
            "add": (ast.BinOp("+", a, b), bound * count),
            "max": (_call("maximum", a, b), bound),
            "mul": (product, 1.0),
            # 1 + r/2 = prod(1 + x/2), and 1 - r = prod(1 - x)
            "scaled product": (ast.BinOp("+", ast.BinOp("+", a, b), ast.BinOp("*", ast.FloatLit(0.5), product)),
                               2 * (1.5 ** count - 1)),
            "or": (ast.BinOp("-", ast.BinOp("+", a, b), product), 2.0 ** count + 1),
            "logaddexp": (_call("log", ast.BinOp("+", _call("exp", a), _call("exp", b))),
                          1.0 + math.log(max(count, 1))),
        }[kind]
        unit: ast.Expr = (_float(unit_value) if not t.shape
                          else _call("full", _shape_expr(t.shape), _float(unit_value)))
        return _call("reduce", xs, unit, ast.Lambda((a.id, b.id), body)), total

    def loop(self, func: str, state: ArrayType, xs_type: ArrayType, env: _Env, d: int) -> Made:
        """fold or scan(init, xs, |acc, p| body) with state type `state`; a body whose
        bound passes the init's (or 1) is squashed, so the state stays bounded."""
        init, init_bound = self.expr(state, env, d)
        cap = max(init_bound, 1.0)
        xs, xs_bound = self.expr(xs_type, env, d)
        acc, item = self.fresh("acc"), self.fresh("p")
        inner = replace(env, loops=env.loops + 1)
        self.deepest = max(self.deepest, inner.loops)
        inner = inner.bind(acc, state, cap).bind(item, ArrayType(DType.F64, xs_type.shape[1:]),
                                                 xs_bound)
        body, bound = self.block(state, inner, d)
        step = _body_expr(body) if bound <= cap else self.squash(_body_expr(body))
        return _call(func, init, xs, ast.Lambda((acc, item), step)), cap

    def fold(self, t: ArrayType, env: _Env, d: int) -> Made:
        return self.loop("fold", t, self.choice(self.loop_arrays(env)), env, d)

    def scan(self, t: ArrayType, env: _Env, d: int) -> Made:
        """scan over an array of length t.shape[0]: the stacked states."""
        item = self.choice(self.items(env))
        xs_type = ArrayType(DType.F64, (t.shape[0], *item.shape))
        return self.loop("scan", ArrayType(DType.F64, t.shape[1:]), xs_type, env, d)

    # -- constructions and sizes --

    def construct(self, t: ArrayType, env: _Env, d: int) -> Made:
        first = t.shape[0]
        forms = ["arange"] if t.rank == 1 else []
        if first == Dim(3):
            forms.append("stack")
        if t.rank == 1 and not first.is_constant and _is_plain(first):
            forms.append("concat")
        if not forms:
            return self.expr(t, env, d)
        match self.choice(forms):
            case "arange":
                return _call("f64", _call("arange", _dim_expr(first))), float(_extent(first))
            case "stack":
                item = ArrayType(DType.F64, t.shape[1:])
                items = [self.expr(item, env, d) for _ in range(3)]
                return (_call("stack", ast.TupleExpr(tuple(e for e, _ in items))),
                        max(b for _, b in items))
            case _:  # concat((head: f64[1], tail: f64[first - 1]))
                head, bh = self.expr(f64(1), env, d)
                tail, bt = self.expr(f64(first - 1), env, d)
                return _call("concat", ast.TupleExpr((head, tail))), max(bh, bt)

    def size_value(self, t: ArrayType, env: _Env, d: int) -> Made:
        """f64(n), f64(i), or e / n: sizes and indices are i64 values."""
        names = list(env.sizes) + [ix.name for ix in env.indices]
        name = self.choice(names)
        if not t.shape and self.coin():
            return _call("f64", ast.Name(name)), float(MAX_SIZE)
        e, bound = self.expr(t, env, d)
        if name in env.sizes:
            return ast.BinOp("/", e, ast.Name(name)), bound
        return ast.BinOp("*", e, ast.Name(name)), bound * MAX_SIZE


def _fits(ix: _Index, extent: Dim) -> bool:
    """Every value of the index is in 0..extent."""
    room = extent - ix.hi
    return ix.lo >= 0 and room.is_constant and room.const >= 0


def _sizes_of(types: Iterable[ArrayType]) -> tuple[str, ...]:
    """The size variables that are plain dims of these types, in order of first use."""
    out: list[str] = []
    for t in types:
        for d in t.shape:
            if not d.is_constant and _is_plain(d) and d.terms[0][0] not in out:
                out.append(d.terms[0][0])
    return tuple(out)


def _body_expr(block: ast.Block) -> ast.Expr:
    return ast.BlockExpr(block) if block.lets else block.result
