"""The type and shape checker: surface AST -> typed core (compiler/typed.py).

    check(program, source) -> TProgram

First every function's signature: its parameter and result types and its
*size variables*, the identifiers in the dims of its parameter types. Each
is read at entry from the first (parameter, axis) where it is the whole dim
(`SizeBinding`); one that only occurs inside compound dims (`f64[n + 1]`) or
tuple types cannot be read and is refused. The result type may only use them.
Then every body, in a scope where size variables are i64 values (`TSize`)
and the dims of size expressions (`for` bounds, slices, shapes), which are
affine in the size variables (`n - 1`, `2 * n`, not `n * m`).

* Values: literals are weak scalars (NEP 50); operators and library calls are
  primitives typed by `prim_types`; `if` needs a bool scalar and branches of
  one shape (dtypes promote); `for i in lo..hi { e }` is `dtype[hi - lo, ...]`
  with i an i64; indexing takes i64 scalars and slices with size bounds.
* Calls of user functions unify the callee's parameter types with the
  argument types: size variables take the arguments' dims, everything else
  must then be equal. Recursion, direct or mutual, is refused, also through
  a derived function (which depends on the functions it is made from).
* A call of a derived function (`loss_grad(w, x)` with `fn loss_grad =
  grad(loss, wrt = w);`) is checked the same way against the signature of the
  function derive made (`ProgramChecker.add_derived`): the bodies that call
  one, directly or not, are checked after it is made, in the dependency order
  of `ProgramChecker.order` (compiler/pipeline.py runs it); the others first,
  as one program.
* Where a value must have a given type (a result, an argument, a loop state,
  a branch), its shape must be that type's and its dtype the same or a safe
  promotion (bool -> i64 -> f64, f32 -> f64; a weak literal takes any dtype of
  its kind or above), made explicit with `astype`; a literal is re-typed, and a
  weak constant expression (`exp(0.25)`) cast, so the value has exactly that type.
* `let (a, (b, c)) = e;` binds a hidden `%tN` for the inner tuple and
  destructures it in a second `TLet`.
* A derivative rule `fn r = custom_vjp(f, |x.., y_bar| e);` (or `custom_jvp(f,
  |x.., x_dot..| e)`) is checked as the function `fn r(x: .., y_bar: ..) -> .. { e }`,
  its types taken from f's signature (compiler/custom_rules.py), and recorded
  in `TProgram.rules`; other derived functions are made by derive.

Every mistake is a `CatadError` with the span of the offending node.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import assert_never

from . import ast
from .errors import (NO_SPAN, CatadError, DerivativeError, ShapeError, Source, Span,
                     TypeMismatchError, UnknownNameError, UnsupportedError)
from .library import LIBRARY
from .prim_types import PrimTypeError, result_type
from .primitives import (ADD, AND, ASTYPE, DIV, EQ, FLOORDIV, GE, GT, INDEX, LE, LT, MATMUL,
                         MOD, MUL, NE, NEG, NOT, OR, POW, SUB, XOR, Params, Primitive, params)
from .typed import (SizeBinding, TCall, TConst, TExpr, TFor, TFunction, TGet, TIf, TLambda,
                    TLet, TPrim, TProgram, TSize, TTuple, TVar)
from .types import (I64, ArrayType, Dim, DType, TupleType, Type, promote, scalar,
                    substitute_type)

_BINARY: dict[str, Primitive] = {
    "+": ADD, "-": SUB, "*": MUL, "/": DIV, "//": FLOORDIV, "%": MOD, "**": POW, "@": MATMUL,
    "<": LT, "<=": LE, ">": GT, ">=": GE, "==": EQ, "!=": NE, "and": AND, "or": OR, "xor": XOR,
}
_UNARY: dict[str, Primitive] = {"-": NEG, "not": NOT}
_DTYPES = {d.value: d for d in DType}
_SIZE_HINT = "a size expression combines int literals and size variables with + - *"
_I64_RANGE = range(-2 ** 63, 2 ** 63)


# ---- scopes ------------------------------------------------------------------

@dataclass(frozen=True)
class _Value:
    """A let-bound name, a parameter, a lambda parameter or a comprehension index."""

    type: Type
    span: Span


@dataclass(frozen=True)
class _Size:
    """A size variable of the function: an i64 value and a dim."""

    span: Span


Scope = dict[str, _Value | _Size]


@dataclass(frozen=True)
class _Signature:
    node: ast.Function
    params: tuple[tuple[str, Type], ...]
    result: Type
    sizes: tuple[SizeBinding, ...]
    size_spans: tuple[tuple[str, Span], ...]  # each size variable and where it first appears
    result_role: "_Role | None" = None  # for a derivative rule: what its result is


# ---- entry points ------------------------------------------------------------

def check(program: ast.Program, source: Source | None = None) -> TProgram:
    """The typed program; a mistake raises a CatadError carrying `source`."""
    try:
        return _check_program(program)
    except CatadError as err:
        if source is not None:
            err.with_source(source)
        raise


def check_source(text: str, path: str = "<string>") -> TProgram:
    """Parse and check the program `text`, reported under `path`."""
    from .parse import parse

    source = Source(text, path)
    try:
        return check(parse(source), source)
    except CatadError as err:
        raise err.with_source(source)


def _check_program(program: ast.Program) -> TProgram:
    checker = ProgramChecker(program)
    if checker.later:  # bodies that call derived functions: made by the whole front end
        from .pipeline import front_end  # the pipeline imports this module

        return front_end(program).typed
    return TProgram(tuple(checker.function(name) for name in checker.first), checker.rules)


class ProgramChecker:
    """The declarations of a program, and its function bodies checked one by one.

    The declarations are read at once: names, derivative rules, the signatures
    of the functions written with a body, and which functions call which
    (`calls`; a derived function "calls" the functions it is made from, and the
    rules of the functions those call). `first`: the functions that call no
    derived function, directly or not, in source order: their bodies can be
    checked at once. `later`: the others, whose bodies need the signatures of
    derived functions, known only once derive has made them (`add_derived`);
    `order` gives them, and the derived functions (`transforms`), callees first."""

    def __init__(self, program: ast.Program):
        self.program = program
        functions: dict[str, ast.Function] = {}
        derived: dict[str, ast.DerivedFunction] = {}
        for item in program.functions:
            if item.name in LIBRARY:
                raise UnknownNameError(f"`{item.name}` is a library function; give your function "
                                       "another name", _name_span(item))
            first = functions.get(item.name) or derived.get(item.name)
            if first is not None:
                raise UnknownNameError(f"the function `{item.name}` is defined twice",
                                       _name_span(item),
                                       notes=(("first defined here", _name_span(first)),))
            if isinstance(item, ast.DerivedFunction):
                derived[item.name] = item  # made from the unary form by compiler/derive.py
            else:
                functions[item.name] = item
        rules: dict[str, tuple[str, str, ast.Function]] = {}  # f -> (kind, rule name, rule)
        roles: dict[str, _Role] = {}
        for decl in derived.values():
            if decl.call.func in RULE_DECLARATIONS:
                f, kind, rule, roles[decl.name] = _rule_function(decl, functions, derived)
                if f in rules:
                    raise UnsupportedError(f"`{f}` has two derivative rules; a function may have "
                                           "one", _name_span(decl),
                                           notes=(("the first rule",
                                                   _name_span(derived[rules[f][1]])),))
                rules[f] = (kind, decl.name, rule)
        made = {name: rule for _, name, rule in rules.values()}
        self.functions = {item.name: made.get(item.name, item) for item in program.functions
                          if item.name in functions or item.name in made}
        self.derived = derived
        self.transforms = {name: decl for name, decl in derived.items() if name not in made}
        self.rules = tuple((f, kind, name) for f, (kind, name, _) in rules.items())
        self.signatures = {name: dataclasses.replace(_signature(fn), result_role=roles.get(name))
                           for name, fn in self.functions.items()}
        callable_ = {**self.functions, **self.transforms}
        self.calls: dict[str, frozenset[str]] = {
            name: _callees(fn, callable_) for name, fn in self.functions.items()}
        ruled = {f: rule for f, _, rule in self.rules}
        for name, decl in self.transforms.items():
            self.calls[name] = _made_from(decl.call, callable_, self.calls, ruled)
        needs = _reaching(self.calls, set(self.transforms))
        self.first = tuple(name for name in self.functions if name not in needs)
        self.later = tuple(name for name in self.functions if name in needs)

    def function(self, name: str) -> TFunction:
        """The typed function `name`; the signatures of the derived functions it calls
        must have been added."""
        return _FunctionChecker(self.signatures, self.calls, self.signatures[name],
                                self.derived).function()

    def add_derived(self, name: str, params: tuple[tuple[str, Type], ...], result: Type,
                    sizes: tuple[SizeBinding, ...]) -> None:
        """The signature of the derived function `name`, as derive made it."""
        self.signatures[name] = _Signature(self.transforms[name], params, result, sizes,
                                           tuple((b.name, NO_SPAN) for b in sizes))

    def order(self) -> list[str]:
        """The `later` functions and the derived functions, each after what it calls or
        is made from: the later functions first, in source order, with what they need,
        then the other derived functions in source order. A call that closes a cycle
        (through a derived function: the others are found while checking `first`) is
        refused, and so is a derived function made from itself through others."""
        for name in self.later:
            for call in sorted((node for node in _nodes(self.functions[name].body)
                                if isinstance(node, ast.Call) and node.func in self.calls),
                               key=lambda node: (node.span.line, node.span.column)):
                _refuse_recursion(self.calls, name, call, self.derived)
        position = {item.name: k for k, item in enumerate(self.program.functions)}
        done = set(self.first)
        out: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:  # only derived functions: a call closing a cycle is refused above
                chain = visiting[visiting.index(name):] + [name]
                decl = self.transforms[visiting[-1]]
                raise UnsupportedError(
                    "recursive derived function: the chain " + " -> ".join(chain) + " is a cycle",
                    _reference(decl.call, name) or _name_span(decl),
                    notes=tuple((f"`{d}` is made from `{_base_name(self.transforms[d].call)}` here",
                                 _name_span(self.transforms[d])) for d in chain[:-2]),
                    hint="a derived function is made from a function written with a body, or "
                         "from another derived function")
            visiting.append(name)
            for callee in sorted(self.calls[name], key=position.__getitem__):
                visit(callee)
            visiting.pop()
            done.add(name)
            out.append(name)

        for name in (*self.later, *self.transforms):
            visit(name)
        return out


def _made_from(call: ast.Call, names: Mapping[str, object], calls: Mapping[str, frozenset[str]],
               ruled: Mapping[str, str]) -> frozenset[str]:
    """What a derived function needs made first: the functions and derived functions
    named in its transformation (nested ones too), and the derivative rules of the
    functions those call, directly or not (derive uses them)."""
    bases: set[str] = set()
    stack: list[ast.Expr] = list(call.args)
    while stack:
        arg = stack.pop()
        if isinstance(arg, ast.Name) and arg.id in names:
            bases.add(arg.id)
        elif isinstance(arg, ast.Call):
            stack.extend(arg.args)
    needed = set(bases)
    seen: set[str] = set()
    todo = list(bases)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in ruled:
            needed.add(ruled[name])
            todo.append(ruled[name])
        todo.extend(calls.get(name, ()))
    return frozenset(needed)


def _reaching(calls: Mapping[str, frozenset[str]], targets: set[str]) -> set[str]:
    """The names from which a chain of calls reaches one of `targets`."""
    reach: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, callees in calls.items():
            if name not in reach and callees & (targets | reach):
                reach.add(name)
                changed = True
    return reach


def _name_span(fn: ast.Function | ast.DerivedFunction) -> Span:
    return fn.span if fn.name_span == NO_SPAN else fn.name_span


# ---- derivative rules ----------------------------------------------------------

RULE_DECLARATIONS = {"custom_jvp": "jvp", "custom_vjp": "vjp"}
_RULE_USAGE = {"custom_vjp": "fn f_vjp = custom_vjp(f, |x, y_bar| ...);  (f's parameters, then "
                             "the result's cotangent; returns the cotangents of f's real "
                             "parameters)",
               "custom_jvp": "fn f_jvp = custom_jvp(f, |x, x_dot| ...);  (f's parameters, then "
                             "a tangent for each real one; returns the result's tangent)"}


@dataclass(frozen=True)
class _Role:
    """What the result of a derivative rule is, for messages: a phrase and notes."""

    what: str
    notes: tuple[tuple[str, Span], ...]


def _rule_function(decl: ast.DerivedFunction, functions: Mapping[str, ast.Function],
                   derived: Mapping[str, ast.DerivedFunction]
                   ) -> tuple[str, str, ast.Function, _Role]:
    """`fn r = custom_vjp(f, |...| body);` as (f, kind, the function r, its result's
    role): its lambda's parameters typed from f's signature, returning the
    cotangents of f's real parameters (vjp: a tuple when there are several) or the
    result's tangent (jvp)."""
    call, usage = decl.call, _RULE_USAGE[decl.call.func]
    kind = RULE_DECLARATIONS[call.func]
    if call.kwargs:
        raise TypeMismatchError(f"`{call.func}` takes no keyword arguments", call.kwargs[0].span,
                                hint=f"usage: {usage}")
    if len(call.args) != 2 or not isinstance(call.args[0], ast.Name):
        raise TypeMismatchError(f"`{call.func}` takes the name of a function and a lambda",
                                call.span, hint=f"usage: {usage}")
    target, lam = call.args
    if target.id not in functions:
        if target.id in derived:
            raise UnsupportedError(f"`{target.id}` is a derived function; a derivative rule is "
                                   "declared for a function written as `fn name(...) { ... }`",
                                   target.span)
        raise UnknownNameError(f"unknown function `{target.id}`", target.span,
                               hint=_suggest(target.id, functions))
    f = functions[target.id]
    defined = ((f"`{f.name}` is defined here", _name_span(f)),)
    if not isinstance(lam, ast.Lambda):
        raise TypeMismatchError(f"the rule of `{call.func}` must be a lambda", lam.span,
                                hint=f"usage: {usage}")
    if _realness(f.result) is not True:
        raise DerivativeError(f"`{f.name}` does not return real numbers (f64 or f32), so it "
                              "has no derivative to declare", target.span, notes=defined)
    real = []
    for p in f.params:
        realness = _realness(p.type)
        if realness is None:
            raise UnsupportedError(f"the parameter `{p.name}` of `{f.name}` mixes real and "
                                   "other values in one tuple; a derivative rule cannot give it "
                                   "a tangent", p.span, notes=defined)
        if realness:
            real.append(p)
    if not real:
        raise DerivativeError(f"`{f.name}` has no real (f64 or f32) parameter, so it has no "
                              "derivative to declare", target.span, notes=defined)
    names = ", ".join(p.name for p in f.params)
    if kind == "vjp":
        extra: list[ast.TypeExpr] = [f.result]
        wanted = f"{f.name}'s parameters ({names}), then the cotangent of its result"
        result = real[0].type if len(real) == 1 else ast.TupleTypeExpr(
            tuple(p.type for p in real), span=f.span)
        role = _Role(f"the result of the rule `{decl.name}` (the cotangent"
                     f"{'s' if len(real) > 1 else ''} of {', '.join(f'`{p.name}`' for p in real)})",
                     tuple((f"`{p.name}` is declared here", p.span) for p in real))
    else:
        extra = [p.type for p in real]
        wanted = (f"{f.name}'s parameters ({names}), then a tangent for each real one "
                  f"({', '.join(p.name for p in real)})")
        result = f.result
        role = _Role(f"the result of the rule `{decl.name}` (the tangent of `{f.name}`'s result)",
                     ((f"`{f.name}` declares its result type here", f.result.span),))
    types = [p.type for p in f.params] + extra
    if len(lam.params) != len(types):
        raise TypeMismatchError(f"the rule of `{call.func}({f.name}, ...)` takes "
                                f"{_plural(len(types), 'parameter')}: {wanted}; this lambda "
                                f"has {len(lam.params)}", lam.span, notes=defined)
    params = tuple(ast.Param(name, t, span=lam.span) for name, t in zip(lam.params, types))
    body = ast.Block((), lam.body, span=lam.body.span)
    return f.name, kind, ast.Function(decl.name, params, result, body, span=decl.span,
                                      name_span=decl.name_span), role


def _realness(t: ast.TypeExpr) -> bool | None:
    """True when every element type in `t` is f64 or f32, False when none is, None
    when a tuple mixes them."""
    match t:
        case ast.ScalarTypeExpr(dtype=dtype) | ast.ArrayTypeExpr(dtype=dtype):
            return dtype in ("f64", "f32")
        case ast.TupleTypeExpr(items=items):
            kinds = {_realness(item) for item in items}
            if len(kinds) > 1:
                return None
            return kinds.pop() if kinds else False
        case _:
            assert_never(t)


# ---- signatures --------------------------------------------------------------

def _signature(fn: ast.Function) -> _Signature:
    first_seen: dict[str, Span] = {}

    def free_size(node: ast.Name) -> Dim:
        first_seen.setdefault(node.id, node.span)
        return Dim.of(node.id)

    names: dict[str, ast.Param] = {}
    for p in fn.params:
        if p.name in names:
            raise UnknownNameError(f"the parameter `{p.name}` of `{fn.name}` is declared twice",
                                   p.span, notes=(("first declared here", names[p.name].span),))
        names[p.name] = p
    types = tuple(_type(p.type, free_size) for p in fn.params)
    for p in fn.params:
        if p.name in first_seen:
            raise UnknownNameError(f"`{p.name}` is a size variable of `{fn.name}`, so it cannot "
                                   "also be a parameter", p.span,
                                   hint=f"`{p.name}` is in scope as an i64 value already")
    sizes: dict[str, SizeBinding] = {}
    for k, t in enumerate(types):
        if isinstance(t, ArrayType):
            for axis, dim in enumerate(t.shape):
                if dim.const == 0 and len(dim.terms) == 1 and dim.terms[0][1] == 1:
                    sizes.setdefault(dim.terms[0][0], SizeBinding(dim.terms[0][0], k, axis))
    for name, span in first_seen.items():
        if name not in sizes:
            raise UnsupportedError(f"cannot infer the size {name} from the arguments", span,
                                   hint=f"give some array parameter the plain dim {name}, "
                                        f"e.g. `x: f64[{name}]`")

    def bound_size(node: ast.Name) -> Dim:
        if node.id not in sizes:
            raise UnknownNameError(f"the result type uses the size {node.id}, which no parameter "
                                   "has", node.span,
                                   hint=_suggest(node.id, sizes) or (
                                       "a result's sizes come from the parameters' types"
                                       + (f": here {', '.join(sizes)}" if sizes else "")))
        return Dim.of(node.id)

    result = _type(fn.result, bound_size)
    params_ = tuple((p.name, t) for p, t in zip(fn.params, types))
    return _Signature(fn, params_, result, tuple(sizes.values()), tuple(first_seen.items()))


def _type(texpr: ast.TypeExpr, name_dim: Callable[[ast.Name], Dim]) -> Type:
    match texpr:
        case ast.ScalarTypeExpr(dtype=dtype):
            return ArrayType(_dtype(dtype, texpr.span))
        case ast.ArrayTypeExpr(dtype=dtype, dims=dims):
            shape = tuple(_size_expr(d, name_dim, "a dim of a type") for d in dims)
            for dim, node in zip(shape, dims):
                if dim.is_constant and dim.const < 0:
                    raise ShapeError(f"the dim {dim} is negative", node.span)
            return ArrayType(_dtype(dtype, texpr.span), shape)
        case ast.TupleTypeExpr(items=items):
            return TupleType(tuple(_type(item, name_dim) for item in items))
        case _:
            assert_never(texpr)


def _dtype(name: str, span: Span) -> DType:
    if name not in _DTYPES:
        raise TypeMismatchError(f"unknown element type `{name}`; use f64, f32, i64 or bool", span)
    return _DTYPES[name]


def _size_expr(expr: ast.Expr, name_dim: Callable[[ast.Name], Dim], what: str) -> Dim:
    """`expr` as an affine `Dim`; `name_dim` resolves the names in it."""
    match expr:
        case ast.IntLit(value=value):
            return Dim(value)
        case ast.Name():
            return name_dim(expr)
        case ast.UnaryOp(op="-", operand=operand):
            return -_size_expr(operand, name_dim, what)
        case ast.BinOp(op="+" | "-" | "*" as op, left=left, right=right):
            a, b = _size_expr(left, name_dim, what), _size_expr(right, name_dim, what)
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if a.is_constant or b.is_constant:
                return b.scale(a.const) if a.is_constant else a.scale(b.const)
            raise UnsupportedError(f"{what} multiplies two sizes, ({a}) * ({b}); sizes must be "
                                   "constant multiples of size variables", expr.span)
        case ast.BinOp(op=op):
            raise UnsupportedError(f"`{op}` is not allowed in {what}", expr.span, hint=_SIZE_HINT)
    raise UnsupportedError(f"{what} must be a size expression", expr.span, hint=_SIZE_HINT)


# ---- calls between functions ---------------------------------------------------

def _callees(fn: ast.Function, functions: Mapping[str, object]) -> frozenset[str]:
    """The user functions (and derived functions) that `fn` calls."""
    return frozenset(node.func for node in _nodes(fn.body)
                     if isinstance(node, ast.Call) and node.func in functions)


def _nodes(root: ast.Node) -> Iterator[ast.Node]:
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, tuple):
            stack.extend(item)


def _refuse_recursion(calls: Mapping[str, frozenset[str]], caller: str, call: ast.Call,
                      derived: Mapping[str, ast.DerivedFunction]) -> None:
    """Raise the error for `call` in the body of `caller` when it closes a cycle."""
    chain = _cycle(calls, caller, call.func)
    if chain is None:
        return
    cycle = (f"`{caller}` calls itself" if chain == [caller]
             else "the chain " + " -> ".join([caller, *chain]) + " is a cycle")

    def is_rule(name: str) -> bool:
        return name in derived and derived[name].call.func in RULE_DECLARATIONS

    notes = []
    for name, after in zip(chain, chain[1:] + [caller]):
        if name in derived and not is_rule(name):
            base = _base_name(derived[name].call)
            uses = (f", and uses `{after}`, the derivative rule of "
                    f"`{_base_name(derived[after].call)}`" if is_rule(after) else "")
            notes.append((f"`{name}` is made from `{base}` here{uses}", _name_span(derived[name])))
    through = " (a derived function calls what it is made from)" if notes else ""
    raise UnsupportedError(f"recursive call: {cycle}", call.span, notes=tuple(notes),
                           hint="catad functions cannot call themselves, directly or "
                                f"through others{through}; write loops with fold or scan")


def _reference(call: ast.Call, name: str) -> Span | None:
    """Where a transformation names the function `name`, if it does."""
    for arg in call.args:
        if isinstance(arg, ast.Name) and arg.id == name:
            return arg.span
        if isinstance(arg, ast.Call) and (span := _reference(arg, name)) is not None:
            return span
    return None


def _base_name(call: ast.Call) -> str:
    """The function a transformation is applied to, through nested ones."""
    arg = call.args[0] if call.args else None
    while isinstance(arg, ast.Call) and arg.args:
        arg = arg.args[0]
    return arg.id if isinstance(arg, ast.Name) else call.func


def _cycle(calls: Mapping[str, frozenset[str]], caller: str, callee: str) -> list[str] | None:
    """The shortest chain of calls from `callee` back to `caller`, if any."""
    paths = {callee: [callee]}
    frontier = [callee]
    while frontier:
        step = []
        for f in frontier:
            if f == caller:
                return paths[f]
            for g in sorted(calls[f]):
                if g not in paths:
                    paths[g] = paths[f] + [g]
                    step.append(g)
        frontier = step
    return None


# ---- type relations ----------------------------------------------------------

def _assignable(src: ArrayType, dtype: DType) -> bool:
    """A value of `src` may stand where `dtype` is needed (equal or a safe promotion)."""
    return src.dtype is dtype or promote(src, ArrayType(dtype)) == (dtype, False)


def _mismatch(src: Type, dst: Type) -> str | None:
    """None when `src` may stand for `dst`; else "shape" or "type", what differs."""
    match src, dst:
        case ArrayType(), ArrayType():
            if src.shape != dst.shape:
                return "shape"
            return None if _assignable(src, dst.dtype) else "type"
        case TupleType(), TupleType() if len(src.items) == len(dst.items):
            return next((m for a, b in zip(src.items, dst.items) if (m := _mismatch(a, b))), None)
    return "type"


def _join_branches(a: Type, b: Type) -> Type | str:
    """The type of `if` with branches of types a and b, or "shape"/"type" when none."""
    match a, b:
        case ArrayType(), ArrayType():
            if a.shape != b.shape:
                return "shape"
            dtype, weak = promote(a, b)
            return ArrayType(dtype, a.shape, weak and a.dtype is b.dtype)
        case TupleType(), TupleType() if len(a.items) == len(b.items):
            items = [_join_branches(x, y) for x, y in zip(a.items, b.items)]
            problem = next((t for t in items if isinstance(t, str)), None)
            return problem or TupleType(tuple(items))
    return "type"


def _python_value(value: bool | int | float, dtype: DType) -> bool | int | float:
    return {DType.BOOL: bool, DType.I64: int, DType.F32: float, DType.F64: float}[dtype](value)


def _listing(types: list[Type]) -> str:
    texts = [str(t) for t in types]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def _suggest(name: str, candidates: object) -> str | None:
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1)
    return f"did you mean `{matches[0]}`?" if matches else None


def _sizes_of(sig: _Signature) -> str:
    """Which sizes a function has, for a hint."""
    names = [name for name, _ in sig.size_spans]
    if not names:
        return (f"`{sig.node.name}` has no size variables; they come from the dims of its "
                "parameters' types, e.g. `x: f64[n]`")
    return f"the sizes of `{sig.node.name}` are {', '.join(names)}, from its parameters' types"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _literal_int(expr: ast.Expr) -> int | None:
    match expr:
        case ast.IntLit(value=value):
            return value
        case ast.UnaryOp(op="-", operand=ast.IntLit(value=value)):
            return -value
    return None


# ---- bodies ------------------------------------------------------------------

class _FunctionChecker:
    """Checks the body of one function against the signatures of all."""

    def __init__(self, signatures: Mapping[str, _Signature],
                 calls: Mapping[str, frozenset[str]], sig: _Signature,
                 derived: Mapping[str, ast.DerivedFunction] | None = None):
        self.signatures = signatures
        self.derived = derived or {}  # declared by a transformation (for messages)
        self.calls = calls
        self.sig = sig
        self.size_names = frozenset(name for name, _ in sig.size_spans)
        self.hidden = 0

    def function(self) -> TFunction:
        sig, fn = self.sig, self.sig.node
        scope: Scope = {name: _Size(span) for name, span in sig.size_spans}
        for p, (name, t) in zip(fn.params, sig.params):
            scope[name] = _Value(t, p.span)
        body = self.block(fn.body, scope)
        role = sig.result_role or _Role(
            f"the result of `{fn.name}`",
            ((f"`{fn.name}` declares the result type {sig.result} here", fn.result.span),))
        body = self.coerce(body, sig.result, role.what, fn.body.result, notes=role.notes)
        return TFunction(fn.name, sig.params, sig.result, body, sig.sizes, span=fn.span)

    # -- expressions --

    def expr(self, e: ast.Expr, scope: Scope) -> TExpr:
        match e:
            case ast.Name():
                return self.name(e, scope)
            case ast.IntLit(value=value):
                return self.int_literal(value, e)
            case ast.FloatLit(value=value):
                return TConst(scalar(DType.F64, weak=True), value, span=e.span)
            # a negative literal is one constant, re-typed like any literal where a type is
            # needed (not cast: `-1.0e30` stays a plain Python number in the printed code)
            case ast.UnaryOp(op="-", operand=ast.IntLit(value=value)):
                return self.int_literal(-value, e)
            case ast.UnaryOp(op="-", operand=ast.FloatLit(value=value)):
                return TConst(scalar(DType.F64, weak=True), -value, span=e.span)
            case ast.BoolLit(value=value):
                return TConst(scalar(DType.BOOL, weak=True), value, span=e.span)
            case ast.BinOp(op=op, left=left, right=right):
                assert op in _BINARY, f"unknown operator {op!r} from the parser"
                args = (self.expr(left, scope), self.expr(right, scope))
                return self.apply(_BINARY[op], (), args, e, f"`{op}`", (left, right), scope)
            case ast.UnaryOp(op=op, operand=operand):
                assert op in _UNARY, f"unknown operator {op!r} from the parser"
                arg = self.expr(operand, scope)
                return self.apply(_UNARY[op], (), (arg,), e, f"`{op}`", (operand,), scope)
            case ast.Call():
                return self.call(e, scope)
            case ast.TupleExpr(items=items):
                values = tuple(self.expr(item, scope) for item in items)
                return TTuple(TupleType(tuple(v.type for v in values)), values, span=e.span)
            case ast.Index():
                return self.index(e, scope)
            case ast.If():
                return self.if_(e, scope)
            case ast.For():
                return self.for_(e, scope)
            case ast.Lambda():
                raise TypeMismatchError("a lambda can only be the last argument of map, map2, "
                                        "reduce, fold or scan", e.span)
            case ast.BlockExpr(block=block):
                return self.block(block, scope)
            case _:
                assert_never(e)

    def int_literal(self, value: int, e: ast.Expr) -> TExpr:
        if value not in _I64_RANGE:
            raise TypeMismatchError(f"the integer {value} does not fit in i64", e.span)
        return TConst(scalar(DType.I64, weak=True), value, span=e.span)

    def name(self, e: ast.Name, scope: Scope) -> TExpr:
        match scope.get(e.id):
            case _Value(type=t):
                return TVar(t, e.id, span=e.span)
            case _Size():
                return TSize(I64, Dim.of(e.id), span=e.span)
        if e.id in self.signatures or e.id in self.derived or e.id in LIBRARY:
            raise TypeMismatchError(f"`{e.id}` is a function, not a value", e.span,
                                    hint=f"call it: {e.id}(...)")
        raise UnknownNameError(f"unknown name `{e.id}`", e.span, hint=_suggest(e.id, scope))

    def apply(self, prim: Primitive, ps: Params, args: tuple[TExpr, ...], node: ast.Node,
              what: str, operands: tuple[ast.Expr, ...] = (), scope: Scope | None = None,
              head: str | None = None) -> TExpr:
        """`prim` applied to `args`; a rule's refusal becomes an error at `node`."""
        try:
            t = result_type(prim, ps, tuple(a.type for a in args))
        except PrimTypeError as err:
            applied = f" to {_listing([a.type for a in args])}" if args else ""
            head = head or f"cannot apply {what}{applied}"
            notes = self.declared(operands, args, scope or {}) if err.kind == "shape" else ()
            error = ShapeError if err.kind == "shape" else TypeMismatchError
            raise error(f"{head}: {err.message}", node.span, hint=err.hint, notes=notes) from None
        return TPrim(t, prim, ps, args, span=node.span)

    def declared(self, operands: tuple[ast.Expr, ...], args: tuple[TExpr, ...], scope: Scope
                 ) -> tuple[tuple[str, Span], ...]:
        """Notes with the shape of each operand: where a named one was declared, where
        another was computed."""
        notes: dict[object, tuple[str, Span]] = {}
        for node, arg in zip(operands, args):
            if isinstance(node, ast.Name) and isinstance(b := scope.get(node.id), _Value):
                if b.span != NO_SPAN:
                    notes[node.id] = (f"`{node.id}` is {b.type}, declared here", b.span)
            elif node.span != NO_SPAN and isinstance(arg.type, ArrayType) and arg.type.rank:
                notes[node.span] = (f"this operand is {arg.type}", node.span)
        return tuple(notes.values())

    def size(self, e: ast.Expr, scope: Scope, what: str) -> Dim:
        def name_dim(node: ast.Name) -> Dim:
            match scope.get(node.id):
                case _Size():
                    return Dim.of(node.id)
                case _Value():
                    raise UnsupportedError(f"{what} must be a size expression, but `{node.id}` "
                                           "is a value", node.span, hint=_SIZE_HINT)
            raise UnknownNameError(f"unknown size `{node.id}`", node.span,
                                   hint=_suggest(node.id, self.size_names) or _sizes_of(self.sig))
        return _size_expr(e, name_dim, what)

    def coerce(self, e: TExpr, target: Type, what: str, node: ast.Node,
               notes: tuple[tuple[str, Span], ...] = ()) -> TExpr:
        """`e` where a `target` is needed: equal, or converted by a safe promotion."""
        problem = _mismatch(e.type, target)
        if problem == "shape":
            raise ShapeError(f"{what} must have type {target}, but it has type {e.type}",
                             node.span, notes=notes)
        if problem == "type":
            hint = (f"convert it explicitly, e.g. {target.dtype}(...)"
                    if isinstance(target, ArrayType) and isinstance(e.type, ArrayType) else None)
            raise TypeMismatchError(f"{what} must have type {target}, but it has type {e.type}",
                                    node.span, hint=hint, notes=notes)
        return self.convert(e, target)

    def convert(self, e: TExpr, target: Type) -> TExpr:
        """`e` as a `target` (assumed assignable), of exactly the type `target`: literals
        re-typed, other arrays cast. A weak constant expression (`exp(0.25)`) is cast
        too where a strong value is needed: left weak, it would make a loop's state, an
        `if`'s branches or a function's result differ from their declared type by
        weakness, which the UNF checker and the derivative passes do not forgive. A
        block converts the value it ends with, and a weak `if` (both branches weak)
        each branch, so that a literal there is re-typed rather than cast."""
        if isinstance(e, TConst) and isinstance(target, ArrayType):
            if e.type == target:
                return e
            return TConst(target, _python_value(e.value, target.dtype), span=e.span)
        if e.type == target:
            return e
        if isinstance(e, TLet):
            body = self.convert(e.body, target)
            return TLet(body.type, e.names, e.value, body, span=e.span)
        if isinstance(e, TIf) and isinstance(e.type, ArrayType) and e.type.weak:
            return TIf(target, e.cond, self.convert(e.then, target),
                       self.convert(e.orelse, target), span=e.span)
        if isinstance(target, ArrayType):
            return TPrim(target, ASTYPE, params(dtype=target.dtype), (e,), span=e.span)
        if isinstance(e, TTuple):
            items = tuple(self.convert(item, t) for item, t in zip(e.items, target.items))
            return TTuple(TupleType(tuple(i.type for i in items)), items, span=e.span)
        whole = self.fresh()
        var = TVar(e.type, whole, span=e.span)
        items = tuple(self.convert(TGet(t, var, k, span=e.span), target.items[k])
                      for k, t in enumerate(e.type.items))
        rebuilt = TTuple(TupleType(tuple(i.type for i in items)), items, span=e.span)
        return TLet(rebuilt.type, (whole,), e, rebuilt, span=e.span)

    def fresh(self) -> str:
        self.hidden += 1
        return f"%t{self.hidden}"

    # -- calls --

    def call(self, e: ast.Call, scope: Scope) -> TExpr:
        if e.func in self.signatures:
            return self.user_call(e, scope)
        if e.func in LIBRARY:
            return self.library_call(e, scope)
        span = e.span if e.func_span == NO_SPAN else e.func_span
        if isinstance(b := scope.get(e.func), _Value):
            raise TypeMismatchError(f"`{e.func}` is a value of type {b.type}, not a function", span)
        assert e.func not in self.derived, f"no signature for the derived function {e.func!r}"
        raise UnknownNameError(f"unknown function `{e.func}`", span,
                               hint=_suggest(e.func, [*self.signatures, *LIBRARY]))

    def library_call(self, e: ast.Call, scope: Scope) -> TExpr:
        spec = LIBRARY[e.func]
        least, most = spec.args
        if not least <= len(e.args) <= (most if most is not None else len(e.args)):
            count = (_plural(least, "argument") if least == most else
                     f"{least} or {'more' if most is None else most} arguments")
            raise TypeMismatchError(f"`{e.func}` takes {count}, got {len(e.args)}", e.span,
                                    hint=f"usage: {spec.usage}")
        keywords: dict[str, ast.Expr] = {}
        for kw in e.kwargs:
            if kw.name not in spec.keywords:
                hint = (_suggest(kw.name, spec.keywords) if spec.keywords
                        else f"`{e.func}` takes no keyword arguments")
                raise TypeMismatchError(f"`{e.func}` has no keyword argument `{kw.name}`",
                                        kw.span, hint=hint or f"usage: {spec.usage}")
            if kw.name in keywords:
                raise TypeMismatchError(f"the keyword argument `{kw.name}` is given twice", kw.span)
            keywords[kw.name] = kw.value
        return spec.check(_CallSite(self, scope, e), e, keywords)

    def user_call(self, e: ast.Call, scope: Scope) -> TExpr:
        callee = self.signatures[e.func]
        _refuse_recursion(self.calls, self.sig.node.name, e, self.derived)
        decl = callee.node
        if isinstance(decl, ast.DerivedFunction):  # no parameters written: the declaration
            listing = ", ".join(f"{name}: {t}" for name, t in callee.params)
            defined = ((f"`{e.func}` is declared here, as `{decl.call.func}` of "
                        f"`{_base_name(decl.call)}`: it takes ({listing}) and returns "
                        f"{callee.result}", _name_span(decl)),)

            def declares(k: int, what: str) -> tuple[str, Span]:
                return (f"`{e.func}` (declared here) takes {what} as argument {k + 1}",
                        _name_span(decl))
        else:
            defined = ((f"`{e.func}` is defined here", _name_span(decl)),)

            def declares(k: int, what: str) -> tuple[str, Span]:
                return f"`{e.func}` declares {what} here", decl.params[k].span
        if e.kwargs:
            raise TypeMismatchError(f"`{e.func}` takes positional arguments only",
                                    e.kwargs[0].span, notes=defined)
        if len(e.args) != len(callee.params):
            raise TypeMismatchError(f"`{e.func}` takes {_plural(len(callee.params), 'argument')}, "
                                    f"got {len(e.args)}", e.span, notes=defined)
        args = tuple(self.expr(a, scope) for a in e.args)
        for k, ((name, t), arg, node) in enumerate(zip(callee.params, args, e.args)):
            if not _same_structure(t, arg.type):
                error = ShapeError if _mismatch(arg.type, t) == "shape" else TypeMismatchError
                raise error(f"argument {k + 1} (`{name}`) of `{e.func}` must have type {t}, but "
                            f"it has type {arg.type}", node.span,
                            notes=(declares(k, f"`{name}`"),))
        subst = {b.name: args[b.param].type.shape[b.axis] for b in callee.sizes}
        sizes = ", ".join(f"{b.name} = {subst[b.name]} (from `{callee.params[b.param][0]}`)"
                          for b in callee.sizes)
        coerced = tuple(
            self.coerce(arg, substitute_type(t, subst),
                        f"argument {k + 1} (`{name}`) of `{e.func}`", node,
                        notes=(_also(declares(k, f"`{name}: {t}`"),
                                     f"; at this call {sizes}" if sizes else ""),))
            for k, ((name, t), arg, node) in enumerate(zip(callee.params, args, e.args)))
        return TCall(substitute_type(callee.result, subst), e.func, coerced,
                     tuple(subst.items()), span=e.span)

    def function_arg(self, e: ast.Expr, param_types: tuple[Type, ...], what: str,
                     scope: Scope) -> TLambda:
        if not isinstance(e, ast.Lambda):
            raise TypeMismatchError(f"{what} must be a lambda such as |x| x * 2.0", e.span)
        if len(e.params) != len(param_types):
            raise TypeMismatchError(f"{what} takes {_plural(len(param_types), 'parameter')}, "
                                    f"but this lambda has {len(e.params)}", e.span)
        inner = dict(scope)
        for name, t in zip(e.params, param_types):
            self.bindable(name, e.span, "a lambda parameter")
            if name in e.params[:e.params.index(name)]:
                raise UnknownNameError(f"the lambda parameter `{name}` is declared twice", e.span)
            inner[name] = _Value(t, e.span)
        body = self.expr(e.body, inner)
        return TLambda(tuple(zip(e.params, param_types)), body, span=e.span)

    # -- blocks and bindings --

    def block(self, b: ast.Block, scope: Scope) -> TExpr:
        scope = dict(scope)
        bindings: list[tuple[tuple[str, ...], TExpr, Span]] = []
        for let in b.lets:
            value = self.expr(let.value, scope)
            self.pattern_names(let.target)
            bindings += [(names, v, let.span) for names, v in self.destructure(let.target, value,
                                                                               scope)]
        body = self.expr(b.result, scope)
        for names, value, span in reversed(bindings):
            body = TLet(body.type, names, value, body, span=span)
        return body

    def pattern_names(self, pattern: ast.Pattern) -> None:
        """Refuse a pattern that binds a size variable or one name twice."""
        seen: set[str] = set()
        for node in _name_patterns(pattern):
            self.bindable(node.name, node.span, "a let")
            if node.name in seen:
                raise UnknownNameError(f"`{node.name}` is bound twice in one pattern", node.span)
            seen.add(node.name)

    def bindable(self, name: str, span: Span, what: str) -> None:
        if name in self.size_names:
            raise UnknownNameError(f"`{name}` is a size variable of `{self.sig.node.name}`; "
                                   f"{what} cannot rebind it", span,
                                   hint="choose another name")

    def destructure(self, pattern: ast.Pattern, value: TExpr, scope: Scope
                    ) -> list[tuple[tuple[str, ...], TExpr]]:
        """The bindings of `let pattern = value`, added to `scope`; an inner tuple is bound to
        a hidden name and destructured by a further binding."""
        if isinstance(pattern, ast.NamePattern):
            scope[pattern.name] = _Value(value.type, pattern.span)
            return [((pattern.name,), value)]
        t = value.type
        if not isinstance(t, TupleType):
            raise TypeMismatchError(f"cannot destructure {t} into {len(pattern.items)} names: it "
                                    "is not a tuple", pattern.span)
        if len(t.items) != len(pattern.items):
            raise TypeMismatchError(f"cannot destructure the {len(t.items)}-tuple {t} into "
                                    f"{len(pattern.items)} names", pattern.span)
        names: list[str] = []
        inner: list[tuple[ast.Pattern, TExpr]] = []
        for item, item_type in zip(pattern.items, t.items):
            if isinstance(item, ast.NamePattern):
                names.append(item.name)
                scope[item.name] = _Value(item_type, item.span)
            else:
                names.append(self.fresh())
                inner.append((item, TVar(item_type, names[-1], span=item.span)))
        bindings = [(tuple(names), value)]
        for item, var in inner:
            bindings += self.destructure(item, var, scope)
        return bindings

    # -- control --

    def if_(self, e: ast.If, scope: Scope) -> TExpr:
        cond = self.expr(e.cond, scope)
        t = cond.type
        if not (isinstance(t, ArrayType) and t.dtype is DType.BOOL and t.rank == 0):
            hint = ("to choose elementwise between arrays, use where(c, a, b)"
                    if isinstance(t, ArrayType) and t.rank
                    else "compare to get a bool, e.g. x > 0.0")
            raise TypeMismatchError(f"the condition of `if` must be a bool scalar, but it is {t}",
                                    e.cond.span, hint=hint)
        then, orelse = self.block(e.then, scope), self.block(e.orelse, scope)
        joined = _join_branches(then.type, orelse.type)
        if isinstance(joined, str):
            error = ShapeError if joined == "shape" else TypeMismatchError
            noun = "shapes" if joined == "shape" else "types"
            raise error(f"the branches of `if` have different {noun}: {then.type} and "
                        f"{orelse.type}", e.span,
                        notes=((f"this branch is {then.type}", e.then.result.span),
                               (f"this branch is {orelse.type}", e.orelse.result.span)))
        return TIf(joined, cond, self.convert(then, joined), self.convert(orelse, joined),
                   span=e.span)

    def for_(self, e: ast.For, scope: Scope) -> TExpr:
        lo = self.size(e.lo, scope, "the start of a `for` range")
        hi = self.size(e.hi, scope, "the end of a `for` range")
        if (hi - lo).is_constant and (hi - lo).const < 0:
            raise ShapeError(f"the range {lo}..{hi} runs backwards", e.span)
        self.bindable(e.index, e.span, "a `for` index")
        inner = dict(scope)
        inner[e.index] = _Value(I64, e.span)
        body = self.block(e.body, inner)
        if isinstance(body.type, TupleType):
            raise TypeMismatchError(f"the body of `for` must be an array, but it is the tuple "
                                    f"{body.type}", e.body.result.span,
                                    hint="write one comprehension per item of the tuple")
        t = ArrayType(body.type.dtype, (hi - lo, *body.type.shape))
        return TFor(t, e.index, lo, hi, body, span=e.span)

    def index(self, e: ast.Index, scope: Scope) -> TExpr:
        base = self.expr(e.base, scope)
        t = base.type
        if isinstance(t, TupleType):
            raise TypeMismatchError(f"cannot index the tuple {t}", e.base.span,
                                    hint="destructure it: let (a, b) = t;")
        if len(e.items) > t.rank:
            raise ShapeError(f"too many indices: {t} has rank {t.rank}, but it is indexed with "
                             f"{len(e.items)}", e.span)
        spec: list[tuple] = []
        at: list[TExpr] = []
        for axis, (item, dim) in enumerate(zip(e.items, t.shape)):
            if isinstance(item, ast.At):
                spec.append(("at",))
                at.append(self.at(item, dim, scope))
            else:
                lo = self.bound(item.lo, dim, Dim(0), scope)
                hi = self.bound(item.hi, dim, dim, scope)
                spec.append(("slice", lo, hi))
        return self.apply(INDEX, params(spec=tuple(spec)), (base, *at), e, "indexing",
                          head=f"cannot index {t}")

    def at(self, item: ast.At, dim: Dim, scope: Scope) -> TExpr:
        """The index of `x[i]`; a negative literal counts from the end of `dim`."""
        literal = _literal_int(item.index)
        if literal is not None:
            position = Dim(literal) if literal >= 0 else dim + literal
            room = dim - position  # at least 1 when the index is in range
            if (position.is_constant and position.const < 0) or (room.is_constant
                                                                  and room.const <= 0):
                raise ShapeError(f"the index {literal} is out of range for an axis of size {dim}",
                                 item.span, hint="indices count from 0, and -1 is the last item")
            if position.is_constant:
                return TConst(scalar(DType.I64, weak=True), position.const, span=item.span)
            return TSize(I64, position, span=item.span)
        value = self.expr(item.index, scope)
        t = value.type
        if not (isinstance(t, ArrayType) and t.dtype is DType.I64 and t.rank == 0):
            hint = ("to pick many items use a comprehension, e.g. for j in 0..k { a[idx[j]] }"
                    if isinstance(t, ArrayType) and t.rank
                    else "indices are i64; convert with i64(...)")
            raise TypeMismatchError(f"an index must be an i64 scalar, but it is {t}",
                                    item.span, hint=hint)
        return value

    def bound(self, expr: ast.Expr | None, dim: Dim, default: Dim, scope: Scope) -> Dim:
        """A slice bound: a size expression; a negative constant counts from the end."""
        if expr is None:
            return default
        bound = self.size(expr, scope, "a slice bound")
        return dim + bound if bound.is_constant and bound.const < 0 else bound


def _also(note: tuple[str, Span], more: str) -> tuple[str, Span]:
    return note[0] + more, note[1]


def _name_patterns(pattern: ast.Pattern) -> Iterator[ast.NamePattern]:
    """The names of a pattern, left to right."""
    if isinstance(pattern, ast.NamePattern):
        yield pattern
    else:
        for item in pattern.items:
            yield from _name_patterns(item)


def _same_structure(param: Type, arg: Type) -> bool:
    """Arrays of one rank, or tuples of one length whose items have the same structure."""
    match param, arg:
        case ArrayType(), ArrayType():
            return param.rank == arg.rank
        case TupleType(), TupleType() if len(param.items) == len(arg.items):
            return all(_same_structure(a, b) for a, b in zip(param.items, arg.items))
    return False


class _CallSite:
    """The checker in the scope of one library call: the `library.CallChecker` it gets."""

    def __init__(self, checker: _FunctionChecker, scope: Scope, call: ast.Call):
        self.checker = checker
        self.scope = scope
        self.call = call

    def value(self, expr: ast.Expr) -> TExpr:
        return self.checker.expr(expr, self.scope)

    def size(self, expr: ast.Expr, what: str) -> Dim:
        return self.checker.size(expr, self.scope, what)

    def function(self, expr: ast.Expr, param_types: tuple[Type, ...], what: str) -> TLambda:
        return self.checker.function_arg(expr, param_types, what, self.scope)

    def apply(self, prim: Primitive, ps: Params, args: tuple[TExpr, ...],
              nodes: tuple[ast.Expr, ...] = ()) -> TExpr:
        return self.checker.apply(prim, ps, args, self.call, f"`{self.call.func}`", nodes,
                                  self.scope)

    def coerce(self, expr: TExpr, target: Type, what: str, node: ast.Node) -> TExpr:
        return self.checker.coerce(expr, target, what, node)
