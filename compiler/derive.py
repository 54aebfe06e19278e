"""Derived functions: `fn g = grad(f, wrt = (a, b));` and its kin.

A declaration names a transformation, the function it transforms (a name, or
another transformation written inline) and the parameters it differentiates
with respect to (`wrt`, default: every real parameter). Each becomes a
`UFunction` built from the (vectorised) unary form of its argument:

    grad(f, wrt)            the gradient; a tuple of gradients for several wrt
    value_and_grad(f, wrt)  (value, gradient)
    vjp(f, wrt)             f's parameters + f_bar (the output cotangent)
                            -> (value, cotangents)
    jvp(f, wrt)             f's parameters + one tangent x_dot per wrt
                            -> (value, tangent)
    hessian(f, wrt = x)     x a vector: the matrix of second
                            derivatives, one Hessian-vector product per row;
                            x a matrix f64[p, q]: f64[p, q, p, q], one per
                            element; x a scalar: the second derivative, one jvp
    jacobian(f, wrt = x)    x a scalar, vector or matrix, the result a vector
                            (or scalar): forward mode (one jvp per input
                            element) when the input is the smaller, reverse
                            mode (one vjp per output) otherwise; the result's
                            axes first; a scalar dimension is left out

They nest: `jvp(grad(f, wrt = x), wrt = x)` is a Hessian-vector product.
Calls of functions with a user's derivative rule (`custom_vjp`, `custom_jvp`),
and such a function itself, take their derivatives from the rule
(compiler/custom_rules.py).
Hessians and Jacobians are comprehensions over basis vectors; the
vectorisation pass turns them into whole-array code.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable

from . import ast
from .algebra import REALS, Z2, Algebra
from .check import RULE_DECLARATIONS
from .custom_rules import CustomRules
from .differentiability import require_differentiable
from .errors import DerivativeError, Span, UnknownNameError
from .forward import jvp_function
from .polynomial import require_polynomial
from .primitives import AND, ARANGE, ASTYPE, CONST, EQ, EXPAND_DIMS, TRANSPOSE, params
from .reverse import vjp_function
from .types import ArrayType, DType, Dim, TupleType
from .unary import Build, Drop, Get, Prim, UFunction, Var, seq, shift
from .unary_cse import share_subexpressions

TRANSFORMS = ("grad", "value_and_grad", "vjp", "jvp", "hessian", "jacobian")
_VALUES = {REALS.name: "real (f64 or f32)", Z2.name: "bool"}  # what each algebra differentiates


@dataclass(frozen=True)
class _Request:
    kind: str
    base: UFunction
    wrt: tuple[int, ...]
    span: Span
    custom: CustomRules | None = None  # the user's derivative rules


def derive(decl: ast.DerivedFunction, functions: dict[str, UFunction],
           custom: CustomRules | None = None) -> UFunction:
    """The function declared by `decl`, given the functions defined so far. The
    scalars are the reals, or Z2 when the parameters differentiated are bool.
    Calls of functions with a user's derivative rule use the rule (`custom`)."""
    return _derive_call(decl.call, decl.name, functions, REALS, custom)


def _derive_call(call: ast.Call, name: str, functions: dict[str, UFunction], algebra: Algebra,
                 custom: CustomRules | None = None) -> UFunction:
    if call.func not in TRANSFORMS:
        raise DerivativeError(f"`{call.func}` is not a transformation", call.func_span or call.span,
                              hint=_suggest(call.func, (*TRANSFORMS, *RULE_DECLARATIONS),
                                            "the transformations are"))
    if len(call.args) != 1:
        raise DerivativeError(f"{call.func} takes one function, then `wrt = ...`", call.span)
    base = _base(call.args[0], name, functions, algebra, custom)
    algebra = _algebra(call, base)
    _same_algebra(call, functions, algebra)
    wrt = _wrt(call, base, algebra)
    names = ", ".join(base.params[i][0] for i in wrt)
    _require_meaningful(base, wrt, f"{call.func} of {base.name} with respect to {names}", algebra,
                        call.span, derived=isinstance(call.args[0], ast.Call))
    shared = share_subexpressions(base)  # one adjoint for a subexpression written twice
    return _BUILDERS[call.func](_Request(call.func, shared, wrt, call.span, custom), name, algebra)


def _require_meaningful(fn: UFunction, wrt: tuple[int, ...], what: str, algebra: Algebra,
                        declaration: Span, *, derived: bool, subject: str = "the result") -> None:
    """Refuse a derivative of `fn` that would be a silent zero: over the reals one
    only through comparisons, `sign`, floor division or casts; over Z2 one through
    a number. `derived`: `fn` is itself a derivative; `subject` names `fn`'s
    result in the message."""
    if algebra is REALS:
        require_differentiable(fn, wrt, what, subject=subject)
    else:
        require_polynomial(fn, wrt, what, declaration, derived=derived)


def _algebra(call: ast.Call, base: UFunction) -> Algebra:
    """Reals when the parameters differentiated are real; Z2 when they are bool
    (addition XOR, multiplication AND); mixing the two is an error. Without
    `wrt`: the real parameters, or the bool ones when there are none."""
    types = dict(base.params)
    given = [k.value for k in call.kwargs if k.name == "wrt"]
    if given:
        items = given[0].items if isinstance(given[0], ast.TupleExpr) else (given[0],)
        named = [(i.id, types[i.id]) for i in items if isinstance(i, ast.Name) and i.id in types]
    else:
        named = ([p for p in base.params if REALS.carries(p[1])]
                 or [p for p in base.params if Z2.carries(p[1])])
    real = [p for p, t in named if REALS.carries(t)]
    boolean = [p for p, t in named if Z2.carries(t)]
    if real and boolean:
        raise DerivativeError(
            f"{call.func} mixes real ({', '.join(real)}) and bool ({', '.join(boolean)}) "
            "parameters in `wrt`: a derivative is taken over the reals or over Z2 (booleans), "
            "not both at once", given[0].span if given else call.span,
            hint="declare one derivative for the real parameters and one for the bool ones")
    return Z2 if boolean else REALS


def _same_algebra(call: ast.Call, functions: dict[str, UFunction], algebra: Algebra) -> None:
    """A transformation of a transformation differentiates over the same scalars."""
    inner = call.args[0]
    if not (isinstance(inner, ast.Call) and inner.func in TRANSFORMS):
        return
    base = inner.args[0]
    while isinstance(base, ast.Call) and base.func in TRANSFORMS:
        base = base.args[0]
    if isinstance(base, ast.Name) and base.id in functions:
        inner_algebra = _algebra(inner, functions[base.id])
        if inner_algebra is not algebra:
            raise DerivativeError(
                f"{call.func} over {algebra.name} of {inner.func} over {inner_algebra.name}: "
                "one declaration mixes real derivatives and derivatives over Z2 (booleans)",
                call.span, hint="differentiate real parameters and bool parameters in "
                                "separate declarations")



def _base(arg: ast.Expr, name: str, functions: dict[str, UFunction], algebra: Algebra,
          custom: CustomRules | None = None) -> UFunction:
    match arg:
        case ast.Name(id):
            if id not in functions:
                raise UnknownNameError(f"unknown function `{id}`", arg.span,
                                       hint=_suggest(id, functions, "functions are"))
            return functions[id] if custom is None else custom.marked(functions[id])
        case ast.Call() if arg.func in TRANSFORMS:
            return _derive_call(arg, f"{name}_{arg.func}", functions, algebra, custom)
        case _:
            raise DerivativeError("expected the name of a function, or a transformation of one", arg.span)


def _wrt(call: ast.Call, base: UFunction, algebra: Algebra) -> tuple[int, ...]:
    names = [p for p, _ in base.params]
    given = [k for k in call.kwargs if k.name == "wrt"]
    for k in call.kwargs:
        if k.name != "wrt":
            raise DerivativeError(f"`{call.func}` takes the keyword `wrt`, not `{k.name}`", k.span,
                                  hint=_suggest(k.name, ("wrt",), "write"))
    if not given:
        wrt = tuple(i for i, (_, t) in enumerate(base.params) if algebra.carries(t))
        if not wrt:
            raise DerivativeError(f"`{base.name}` has no {_VALUES[algebra.name]} parameter to "
                                  "differentiate", call.span)
        return wrt
    value = given[0].value
    items = value.items if isinstance(value, ast.TupleExpr) else (value,)
    out: list[int] = []
    for item in items:
        if not isinstance(item, ast.Name):
            raise DerivativeError("`wrt` takes a parameter name or a tuple of them", item.span)
        if item.id not in names:
            raise UnknownNameError(f"`{base.name}` has no parameter `{item.id}`", item.span,
                                   hint=_suggest(item.id, names, "its parameters are"))
        i = names.index(item.id)
        if not algebra.carries(base.params[i][1]):
            raise DerivativeError(
                f"cannot differentiate with respect to `{item.id}`: it is {base.params[i][1]}, "
                f"not a {_VALUES[algebra.name]} value", item.span,
                hint="derivatives are taken with respect to f64 or f32 parameters, or over "
                     "Z2 with respect to bool ones")
        if i in out:
            raise DerivativeError(f"`{item.id}` appears twice in `wrt`", item.span)
        out.append(i)
    return tuple(out)


def _suggest(name: str, candidates, what: str) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"{what} " + ", ".join(sorted(candidates)) if candidates else ""


# ---- the transformations ------------------------------------------------------

def _value_and_grad(r: _Request, name: str, algebra: Algebra) -> UFunction:
    return vjp_function(r.base, r.wrt, name, algebra=algebra, span=r.span, rules=r.custom)


def _grad(r: _Request, name: str, algebra: Algebra) -> UFunction:
    full = vjp_function(r.base, r.wrt, name, algebra=algebra, span=r.span, rules=r.custom)
    return _project(full, 1)


def _vjp(r: _Request, name: str, algebra: Algebra) -> UFunction:
    return vjp_function(r.base, r.wrt, name, algebra=algebra, cotangent_param=True, span=r.span,
                        rules=r.custom)


def _jvp(r: _Request, name: str, algebra: Algebra) -> UFunction:
    return jvp_function(r.base, r.wrt, name, algebra=algebra, rules=r.custom)


def _hessian(r: _Request, name: str, algebra: Algebra) -> UFunction:
    """The jvp of the gradient, so judged like `jvp(grad(f))`: refused where the
    gradient depends on x only through comparisons (f piecewise linear)."""
    x = _scalar_or_vector(r, "hessian", most=2)
    gradient = _grad(_Request("grad", r.base, r.wrt, r.span, r.custom), f"{name}_grad", algebra)
    _require_meaningful(gradient, r.wrt, f"hessian of {r.base.name} with respect to "
                        f"{r.base.params[x][0]}", algebra, r.span, derived=True,
                        subject="its gradient")
    hvp = jvp_function(share_subexpressions(gradient), r.wrt, f"{name}_hvp", algebra=algebra,
                       rules=r.custom)
    if not r.base.params[x][1].shape:
        return _at_unit_tangent(hvp, r.base, name, r.span)
    return _over_basis(hvp, r.base, x, name, r.span, transpose=False)


def _jacobian(r: _Request, name: str, algebra: Algebra) -> UFunction:
    x = _scalar_or_vector(r, "jacobian", most=2)
    out = r.base.result
    if not (isinstance(out, ArrayType) and out.rank <= 1):
        raise DerivativeError(f"jacobian needs a function with a scalar or vector result; "
                              f"{r.base.name} returns {out}", r.span)
    shape_in = r.base.params[x][1].shape
    n_in = math.prod(d.const for d in shape_in) if all(d.is_constant for d in shape_in) else None
    n_out = out.shape[0] if out.shape else Dim(1)
    forward = n_in is not None and n_out.is_constant and n_in <= n_out.const
    if not out.shape:
        return _grad(r, name, algebra)
    if not shape_in:  # a scalar input: one jvp
        tangent = jvp_function(r.base, r.wrt, f"{name}_jvp", algebra=algebra, rules=r.custom)
        return _at_unit_tangent(tangent, r.base, name, r.span)
    if forward:
        tangent = jvp_function(r.base, r.wrt, f"{name}_jvp", algebra=algebra, rules=r.custom)
        return _over_basis(tangent, r.base, x, name, r.span, transpose=True)
    cotangent = vjp_function(r.base, r.wrt, f"{name}_vjp", algebra=algebra, cotangent_param=True,
                             span=r.span, rules=r.custom)
    return _over_basis(cotangent, r.base, None, name, r.span, transpose=False, out=out)


_BUILDERS: dict[str, Callable[[_Request, str, Algebra], UFunction]] = {
    "grad": _grad, "value_and_grad": _value_and_grad, "vjp": _vjp, "jvp": _jvp,
    "hessian": _hessian, "jacobian": _jacobian,
}


# ---- plumbing -----------------------------------------------------------------

def _project(fn: UFunction, k: int) -> UFunction:
    """`fn` returning only item k of its tuple result."""
    assert isinstance(fn.result, TupleType)
    return UFunction(fn.name, fn.params, fn.result.items[k], seq(fn.body, Get(k), Drop(1, 1)),
                     fn.sizes, span=fn.span)


def _scalar_or_vector(r: _Request, what: str, most: int = 1) -> int:
    """The one parameter of `wrt`, of rank at most `most` (2: a matrix too)."""
    if len(r.wrt) != 1:
        raise DerivativeError(f"`{what}` takes exactly one parameter in `wrt`", r.span)
    t = r.base.params[r.wrt[0]][1]
    kinds = "a scalar, vector or matrix" if most == 2 else "a scalar or vector"
    if not (isinstance(t, ArrayType) and t.rank <= most):
        raise DerivativeError(f"`{what}` needs {kinds} parameter, but "
                              f"`{r.base.params[r.wrt[0]][0]}` is {t}", r.span,
                              hint=f"take it with respect to {kinds} "
                                   "(f64, f64[n]" + (", f64[n, m]" if most == 2 else "") + "), "
                                   "or use jvp or vjp for directional derivatives")
    return r.wrt[0]


def _at_unit_tangent(fn: UFunction, base: UFunction, name: str, span: Span) -> UFunction:
    """`fn(params..., 1)[1]`: `fn` takes base's parameters and the tangent of one
    scalar parameter, so the Hessian or Jacobian with respect to it is one jvp."""
    n = len(base.params)
    tangent = fn.params[-1][1]
    assert isinstance(tangent, ArrayType) and not tangent.shape
    unit = True if tangent.dtype is DType.BOOL else 1.0
    one = Prim(CONST, params(value=unit, dtype=tangent.dtype, weak=False), 0)
    body = seq(*(Var(i) for i in range(n)), one, shift(fn.body, n), Get(1), Drop(1, 1),
               Drop(1, n + 1))
    assert isinstance(fn.result, TupleType)
    return UFunction(name, base.params, fn.result.items[1], body, base.sizes, span=span)


def _over_basis(fn: UFunction, base: UFunction, x: int | None, name: str, span: Span, *,
                transpose: bool, out: ArrayType | None = None) -> UFunction:
    """`for i in 0..d { fn(params..., e_i)[1] }`: `fn` takes base's parameters and one
    direction (a tangent of parameter x, or a cotangent of the output when x is None).
    A matrix direction (p x q) runs over the unit matrices E_ij, `for i in 0..p { for j
    in 0..q { .. } }`. The result has the direction's axes first, then fn's row's;
    `transpose`: the row's first (a Jacobian made in forward mode)."""
    n = len(base.params)
    direction = base.params[x][1] if x is not None else out
    assert isinstance(direction, ArrayType) and direction.rank in (1, 2)
    k = direction.rank
    dtype = fn.params[-1][1].dtype  # of the tangent or cotangent fn takes (bool over Z2)
    # the innermost body's context: params (0..n-1), one index per axis (n..n+k-1);
    # e = (arange(d_0) == i)[:, None] & (arange(d_1) == j)[None, :] (no new axis for a vector)
    hots = []
    for axis, extent in enumerate(direction.shape):
        hots.append(seq(Prim(ARANGE, params(lo=Dim(0), hi=extent), 0), Var(n + axis),
                        Prim(EQ, (), 2), Drop(1, 2)))
        if k == 2:
            hots.append(seq(Prim(EXPAND_DIMS, params(axis=1 - axis), 1), Drop(1, 1)))
    both = (Prim(AND, (), 2), Drop(1, 2)) if k == 2 else ()
    one_hot = seq(*hots, *both, Prim(ASTYPE, params(dtype=dtype), 1), Drop(1, 1))
    copies = seq(*(Var(i) for i in range(n)))
    # stack: params, indices, params', e  -> run fn's body above params, indices
    term = seq(copies, one_hot, shift(fn.body, n + k), Get(1), Drop(1, 1), Drop(1, n + 1))
    for extent in reversed(direction.shape):
        term = Build(Dim(0), extent, term, span=span)
    assert isinstance(fn.result, TupleType)
    row = fn.result.items[1]
    assert isinstance(row, ArrayType)
    result = ArrayType(row.dtype, (*direction.shape, *row.shape))
    if transpose:  # the row's axes first
        perm = (*range(k, k + row.rank), *range(k))
        term = seq(term, Prim(TRANSPOSE, params(perm=perm), 1), Drop(1, 1))
        result = ArrayType(row.dtype, tuple(result.shape[a] for a in perm))
    return UFunction(name, base.params, result, term, base.sizes, span=span)
