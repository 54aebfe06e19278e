"""Tangent rules: the forward-mode derivative of every primitive, as IR.

    JVP_RULES[prim](b, alg, ps, primals, tangents, term) -> (value, tangent)

A rule emits the primal application (with the term's hint and span) and its
tangent `D[prim](x) · ẋ`, built with `b` in the algebra `alg`. A tangent in
`tangents` may be `ZERO` (nothing is made for it), and a result whose type
the algebra does not carry (integers and bools over the reals, numbers over
Z2) has the tangent `ZERO`. A tangent is returned with exactly the type of
the result's tangent: cast to its derivative dtype and broadcast to its shape.

The calculus that both modes share lives here, in tables that
`vjp_rules` transposes:

* `ELEMENTWISE_SCALES`: the Jacobian of an elementwise primitive is
  diagonal, so it is given by one *scale* per argument, `g ↦ g · ∂f/∂x_k`,
  written in `Sym` arithmetic (`lambda g, y, x: g * y` for exp). Forward mode
  sums `scale_k(ẋ_k)`; reverse mode un-broadcasts `scale_k(ȳ)`.
* `REDUCTION_WEIGHTS`: a reduction's output depends on its group through
  `∂y/∂x_i = W_i`; forward mode is `sum(W · ẋ)`, reverse mode `ȳ · W`.
  A real max or min selects the tied items instead (`extremum_ties`):
  `W = hit / count` costs a division per item, selecting one per group.
* Scans: cumsum is linear (its transpose the running sum the other way);
  cumprod's derivatives divide in O(n) where that is exact, ∂y_i/∂x_j = y_i / x_j
  where x_j ≠ 0 and the running product with x_j replaced by 1 where x_j = 0;
  else (two zeros in a line, products out of [tiny, max], items beyond 2^±256)
  the tangent solves the linear recurrence ẏ_i = x_i ẏ_{i-1} + y_{i-1} ẋ_i by a
  scan, which `vjp_rules` transposes (`cumprod_by_division`, `cumprod_recurrence`).
* Booleans over Z2: every bool function of bools is a multilinear
  polynomial over Z2 (XOR is +, AND is ·), so its derivative is read off its
  truth table (`z2_times`): `R[AND](x1, x2, d) = (x2·d, x1·d)`,
  `R[XOR](x1, x2, d) = (d, d)`, `R[NOT](x, d) = d`, `R[OR](x1, x2, d) =
  ((1+x2)·d, (1+x1)·d)`. Over the reals booleans carry no derivative.

Choices at points where the derivative does not exist (the one-sided
derivatives differ): `relu'(0) = 0`, `abs'(0) = 0` (`sign(0)`), `sign' = 0`,
`floordiv' = 0`; `maximum`/`minimum` and the `max`/`min` reductions split
the derivative equally among tied arguments (so `max(x, x)` has derivative 1);
`x ** y` has `∂x = 0` where `y = 0` and `∂y = 0` where `x = 0`; `x % y` has
`∂x = 1`, `∂y = -(x // y)` (its derivative away from the jumps).

`prod` and `cumprod` are exact where x holds zeros, to every order: prod's
weights are exclusive cumprods, with no division and no selection; cumprod's
derivatives divide only by items that are not 0 (`safe`), in a form that stays
an identity near the point while a line has at most one zero, and take the
scan of a linear recurrence, with no division, elsewhere.

Over Z2, `matmul` and `gather_add` of bools raise `DerivativeError`: NumPy
adds bools by OR, and ORs repeated indices together; `index_add` of bools,
which ORs into each position once, has the derivative of that OR
(`index_or_region`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import primitives as P
from .algebra import ZERO, Algebra, Deriv
from .errors import DerivativeError
from .prim_eval import apply as evaluate_primitive
from .primitives import Params, Primitive, param, params
from .scans import linear_recurrence, shifted
from .types import ArrayType, DType
from .unary import Prim
from .unary_builder import Builder, Value

# ---- IR arithmetic --------------------------------------------------------------

def literal(b: Builder, value: bool | int | float) -> Value:
    """A weak (NEP 50) literal: it takes the dtype of the array it meets."""
    dtype = DType.BOOL if isinstance(value, bool) else DType.I64 if isinstance(value, int) else DType.F64
    return b.prim(P.CONST, params(value=value, dtype=dtype))


@dataclass(frozen=True, eq=False)
class Sym:
    """A value being built whose arithmetic emits primitives, so that a rule
    reads as calculus: `g * (1.0 - y * y)` emits `mul`, `sub`, `mul`.
    Python numbers become weak literals."""

    b: Builder
    value: Value

    def _lift(self, other: Any) -> Value:
        if isinstance(other, Sym):
            return other.value
        if isinstance(other, Value):
            return other
        return literal(self.b, other)

    def apply(self, prim: Primitive, *others: Any, **ps: Any) -> "Sym":
        """`prim(self, *others)` with params `ps`."""
        return Sym(self.b, self.b.prim(prim, params(**ps), self.value, *map(self._lift, others)))

    def _flip(self, prim: Primitive, other: Any) -> "Sym":
        return Sym(self.b, self._lift(other)).apply(prim, self)

    def __add__(self, o: Any) -> "Sym": return self.apply(P.ADD, o)
    def __radd__(self, o: Any) -> "Sym": return self._flip(P.ADD, o)
    def __sub__(self, o: Any) -> "Sym": return self.apply(P.SUB, o)
    def __rsub__(self, o: Any) -> "Sym": return self._flip(P.SUB, o)
    def __mul__(self, o: Any) -> "Sym": return self.apply(P.MUL, o)
    def __rmul__(self, o: Any) -> "Sym": return self._flip(P.MUL, o)
    def __truediv__(self, o: Any) -> "Sym": return self.apply(P.DIV, o)
    def __rtruediv__(self, o: Any) -> "Sym": return self._flip(P.DIV, o)
    def __floordiv__(self, o: Any) -> "Sym": return self.apply(P.FLOORDIV, o)
    def __pow__(self, o: Any) -> "Sym": return self.apply(P.POW, o)
    def __neg__(self) -> "Sym": return self.apply(P.NEG)
    def __gt__(self, o: Any) -> "Sym": return self.apply(P.GT, o)
    def __lt__(self, o: Any) -> "Sym": return self.apply(P.LT, o)
    def __ge__(self, o: Any) -> "Sym": return self.apply(P.GE, o)
    def __le__(self, o: Any) -> "Sym": return self.apply(P.LE, o)
    def __and__(self, o: Any) -> "Sym": return self.apply(P.AND, o)

    def eq(self, o: Any) -> "Sym":
        return self.apply(P.EQ, o)

    def where(self, then: Any, orelse: Any) -> "Sym":
        """`where(self, then, orelse)`: self is the condition."""
        return self.apply(P.WHERE, then, orelse)


# ---- what a rule sees -------------------------------------------------------------

@dataclass(frozen=True)
class Application:
    """One application of a primitive being differentiated: the builder and
    algebra to emit in, its params, arguments and result."""

    b: Builder
    alg: Algebra
    ps: Params
    args: tuple[Value, ...]
    out: Value
    term: Prim

    @property
    def prim(self) -> Primitive:
        return self.term.prim

    def sym(self, v: Value) -> Sym:
        return Sym(self.b, v)

    @property
    def xs(self) -> tuple[Sym, ...]:
        return tuple(Sym(self.b, a) for a in self.args)

    @property
    def y(self) -> Sym:
        return Sym(self.b, self.out)

    def param(self, name: str) -> Any:
        return param(self.ps, name)

    def unsupported(self, why: str) -> DerivativeError:
        return DerivativeError(f"{self.prim.name} has no {self.alg.name} derivative: {why}",
                               self.term.span)


def derivative_type(alg: Algebra, t: ArrayType) -> ArrayType:
    """The type of a derivative of a value of type `t`."""
    return ArrayType(alg.derivative_dtype(t), t.shape)


def cast(b: Builder, v: Value, dtype: DType) -> Value:
    """`v` as `dtype` (nothing emitted when it already is)."""
    assert isinstance(v.type, ArrayType)
    return v if v.type.dtype is dtype else b.prim(P.ASTYPE, params(dtype=dtype), v)


def adds_by_parity(alg: Algebra) -> bool:
    """Whether the algebra's sum is XOR (Z2): a sum of bools is then the parity
    of their count, not NumPy's OR."""
    return alg.add_prim is P.XOR


def algebra_sum(b: Builder, alg: Algebra, x: Value, axes: tuple[int, ...]) -> Value:
    """The algebra's sum of `x` over `axes`: over Z2 the parity of the count of trues."""
    if not axes:
        return x
    if adds_by_parity(alg):
        return b.prim(P.PARITY, params(axes=axes), cast(b, x, DType.BOOL))
    return b.prim(P.SUM, params(axes=axes), x)


def keep_axes(b: Builder, y: Value, axes: tuple[int, ...]) -> Value:
    """A reduction's result with its reduced `axes` put back with length 1."""
    for axis in axes:  # ascending, so each lands where it was
        y = b.prim(P.EXPAND_DIMS, params(axis=axis), y)
    return y


def regrouped(b: Builder, y: Value, axes: tuple[int, ...]) -> Value:
    """A value shaped as a reduction's result, with its reduced `axes` put back
    (length 1) where NumPy's broadcasting needs them: it then broadcasts over
    each group. Leading reduced axes are left out, as broadcasting adds them."""
    leading = next(k for k in range(len(axes) + 1) if k == len(axes) or axes[k] != k)
    return keep_axes(b, y, tuple(a - leading for a in axes[leading:]))


# ---- elementwise: the scales of the diagonal Jacobians ------------------------------

Scale = Callable[..., Sym]  # (g, y, *xs) -> g · ∂y/∂x_k, all Syms

_U = P.BY_NAME
_SQRT1_2 = math.sqrt(0.5)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_LOG_TWO_OVER_SQRT_PI = math.log(_TWO_OVER_SQRT_PI)


def _gelu_scale(g: Sym, y: Sym, x: Sym) -> Sym:
    # gelu(x) = x Φ(x):  Φ(x) + x φ(x) = (1 + erf(u) + u · 2/√π · e^(-u²)) / 2, u = x/√2,
    # with the constant folded into the exponent: nine operations, not ten
    u = x * _SQRT1_2
    gauss = u * (_LOG_TWO_OVER_SQRT_PI - u * u).apply(_U["exp"])
    return g * (0.5 * (1.0 + u.apply(_U["erf"]) + gauss))


def _silu_scale(g: Sym, y: Sym, x: Sym) -> Sym:
    # silu(x) = x σ(x):  σ + x σ (1 - σ) = σ + y (1 - σ)
    s = x.apply(_U["sigmoid"])
    return g * (s + y * (1.0 - s))


def _tie_split(wins: Callable[[Sym, Sym], Sym]) -> Scale:
    """The scale of the argument of maximum/minimum that `wins` picks: all of g
    where it wins, half where the two tie, none where it loses."""
    return lambda g, z, x, y: wins(x, y).where(g, x.eq(y).where(0.5 * g, 0.0))


ELEMENTWISE_SCALES: dict[Primitive, tuple[Scale, ...] | None] = {
    _U["exp"]: (lambda g, y, x: g * y,),
    _U["log"]: (lambda g, y, x: g / x,),
    _U["log1p"]: (lambda g, y, x: g / (1.0 + x),),
    _U["expm1"]: (lambda g, y, x: g * (y + 1.0),),
    _U["sqrt"]: (lambda g, y, x: g / (2.0 * y),),
    _U["sin"]: (lambda g, y, x: g * x.apply(_U["cos"]),),
    _U["cos"]: (lambda g, y, x: -(g * x.apply(_U["sin"])),),
    _U["tan"]: (lambda g, y, x: g * (1.0 + y * y),),
    _U["tanh"]: (lambda g, y, x: g * (1.0 - y * y),),
    _U["sigmoid"]: (lambda g, y, x: g * (y * (1.0 - y)),),
    _U["softplus"]: (lambda g, y, x: g * x.apply(_U["sigmoid"]),),
    _U["relu"]: (lambda g, y, x: (x > 0.0).where(g, 0.0),),                 # relu'(0) = 0
    _U["gelu"]: (_gelu_scale,),
    _U["silu"]: (_silu_scale,),
    _U["elu"]: (lambda g, y, x: (x > 0.0).where(g, g * (y + 1.0)),),        # e^x = y + 1
    _U["erf"]: (lambda g, y, x: g * _TWO_OVER_SQRT_PI * (-(x * x)).apply(_U["exp"]),),
    P.NEG: (lambda g, y, x: -g,),
    P.ABS: (lambda g, y, x: g * x.apply(P.SIGN),),                          # abs'(0) = 0
    P.SIGN: None,
    P.NOT: None,                                                            # bools only
    P.ADD: (lambda g, z, x, y: g, lambda g, z, x, y: g),
    P.SUB: (lambda g, z, x, y: g, lambda g, z, x, y: -g),
    P.MUL: (lambda g, z, x, y: g * y, lambda g, z, x, y: x * g),
    P.DIV: (lambda g, z, x, y: g / y, lambda g, z, x, y: -(g / y) * z),
    P.POW: (lambda g, z, x, y: g * y.eq(0).where(0.0, y * x ** (y - 1)),
            lambda g, z, x, y: g * z * x.eq(0).where(1.0, x).apply(_U["log"])),
    P.FLOORDIV: None,
    P.MOD: (lambda g, z, x, y: g, lambda g, z, x, y: -(g * (x // y))),
    P.MAXIMUM: (_tie_split(lambda x, y: x > y), _tie_split(lambda x, y: y > x)),
    P.MINIMUM: (_tie_split(lambda x, y: x < y), _tie_split(lambda x, y: y < x)),
    **{prim: None for prim in P.COMPARISON},
    **{prim: None for prim in P.LOGICAL},
}


# ---- booleans over Z2 -------------------------------------------------------------

def _z2_coefficients(prim: Primitive, arity: int) -> tuple[tuple[bool, bool], ...]:
    """For each argument k, `(a, c)` with `∂f/∂x_k = a + c · x_other` over Z2, read
    off the truth table of the bool function `f` (multilinear: f(x, y) =
    f00 + (f00+f10) x + (f00+f01) y + (f00+f01+f10+f11) x y)."""
    def f(*bits: bool) -> bool:
        return bool(evaluate_primitive(prim, (), bits))
    if arity == 1:
        return ((f(False) != f(True), False),)
    f00, f01, f10, f11 = f(False, False), f(False, True), f(True, False), f(True, True)
    c = f00 ^ f01 ^ f10 ^ f11
    return (f00 ^ f10, c), (f00 ^ f01, c)


_BOOLEAN_FUNCTIONS = (P.NOT, P.ABS, P.ADD, P.MUL, P.MINIMUM, P.MAXIMUM, *P.COMPARISON, *P.LOGICAL)
Z2_COEFFICIENTS: dict[Primitive, tuple[tuple[bool, bool], ...]] = {
    prim: _z2_coefficients(prim, prim.arity) for prim in _BOOLEAN_FUNCTIONS}


def is_z2_logic(s: Application) -> bool:
    """Whether `s` is a bool function of bools in an algebra where bools carry derivatives."""
    return (s.alg.carries(s.out.type) and s.out.type.dtype is DType.BOOL
            and all(isinstance(a.type, ArrayType) and a.type.dtype is DType.BOOL for a in s.args))


def z2_times(s: Application, k: int, d: Deriv) -> Deriv:
    """`∂f/∂x_k · d` for a bool function `f` of bools, over Z2."""
    constant, linear = Z2_COEFFICIENTS[s.prim][k]
    if d is ZERO or not (constant or linear):
        return ZERO
    if not linear:
        return d
    other = s.args[1 - k]
    factor = s.b.prim(P.NOT, (), other) if constant else other
    return s.alg.mul(s.b, factor, d)


def popcount_le_partials(s: Application) -> tuple[Value, Value]:
    """`∂y/∂a` and `∂y/∂b` of the threshold gate `y = [k·|a| <= |b|]` (|·| the count
    along the last axis), each with its argument's last axis and the result's
    other axes. A Boolean function is a multilinear polynomial over Z2, so
    `∂y/∂a_i = y + y(a + e_i)`: flipping a_i moves |a| by 1 - 2a_i, so
    `y(a + e_i) = [k(|a| + 1 - 2a_i) <= |b|]` (likewise for b) — the brute-force
    derivative of Wilson & Zanasi's `rdiffB`, in closed form."""
    k = s.param("scale")

    def count(v: Value) -> Sym:  # |v| with the counted axis kept, length 1
        last = v.type.rank - 1
        return s.sym(v).apply(P.SUM, axes=(last,)).apply(P.EXPAND_DIMS, axis=last)

    def step(v: Value) -> Sym:   # how |v| moves when v_i flips
        return 1 - 2 * s.sym(cast(s.b, v, DType.I64))

    a, b = s.args
    y = s.y.apply(P.EXPAND_DIMS, axis=s.out.type.rank)
    ca, cb = count(a), count(b)
    da = (k * (ca + step(a))).apply(P.LE, cb).apply(P.XOR, y)
    db = (k * ca).apply(P.LE, cb + step(b)).apply(P.XOR, y)
    return da.value, db.value


# ---- reductions: the weights of each group -------------------------------------------

def _prod_weights(s: Application) -> Value:
    """∂prod/∂x_i: the product of the others in the group, exact with zeros and with
    no division. Along one axis it is (the product of the items before i) (the
    product of those after i), two exclusive cumprods. Over the axes a_1 < .. < a_m,
    the others are those that first differ from i on axis a_t, for some t:
    W = Π_t others_{a_t}(v_t), v_t = x multiplied along a_{t+1}, .., a_m (kept, length 1)."""
    axes = s.param("axes")
    weights: Sym | None = None
    for t, axis in enumerate(axes):
        rest = axes[t + 1:]
        v = s.sym(keep_axes(s.b, s.xs[0].apply(P.PROD, axes=rest).value, rest)) if rest else s.xs[0]
        before = v.apply(P.CUMPROD, axis=axis, reverse=False, exclusive=True)
        after = v.apply(P.CUMPROD, axis=axis, reverse=True, exclusive=True)
        weights = before * after if weights is None else weights * (before * after)
    assert weights is not None
    return weights.value


def any_all_weights(s: Application) -> Value:
    """∂max/∂x_i (or min) of bools over Z2 (max = any, min = all): 1 where the
    others do not decide."""
    axes = s.param("axes")
    x = s.xs[0]
    # any = 1 + ∏(1 + x_j): ∂_i = ∏_{j≠i}(1 + x_j), "no other is true";
    # all = ∏ x_j:          ∂_i = ∏_{j≠i} x_j,      "no other is false"
    deciding = x if s.prim is P.MAX else x.apply(P.NOT)
    count = deciding.apply(P.ASTYPE, dtype=DType.I64)
    in_group = s.sym(keep_axes(s.b, count.apply(P.SUM, axes=axes).value, axes))
    return in_group.eq(count).value


def extremum_ties(s: Application) -> tuple[Sym, Value]:
    """Where each group of a real max (min) attains it, and how many times (i64, one
    per group): the derivative splits equally among the tied items. Both modes
    select with this mask instead of multiplying by weights, and divide only
    once per group: `where(hit, ȳ / count, 0)` and `sum(where(hit, ẋ, 0)) / count`."""
    hit = s.xs[0].eq(s.sym(regrouped(s.b, s.out, s.param("axes"))))
    return hit, hit.apply(P.SUM, axes=s.param("axes")).value


def per_tie(s: Application, d: Value, count: Value) -> Value:
    """`d / count` in d's dtype (f32 / i64 would be f64)."""
    dtype = s.alg.derivative_dtype(s.out.type)
    return s.b.prim(P.DIV, (), cast(s.b, d, dtype),
                    count if dtype is DType.F64 else cast(s.b, count, dtype))


def _logsumexp_weights(s: Application) -> Value:
    """∂logsumexp/∂x_i = exp(x_i - logsumexp(x)): the softmax of the group."""
    out = s.sym(keep_axes(s.b, s.out, s.param("axes")))
    return (s.xs[0] - out).apply(_U["exp"]).value


REDUCTION_WEIGHTS: dict[Primitive, Callable[[Application], Value]] = {
    P.PROD: _prod_weights,
    P.LOGSUMEXP: _logsumexp_weights,
}


def softmax_times(s: Application, g: Value) -> Value:
    """`J · g` for `y = softmax(x, axis)`: `y (g - sum(g y, axis))`. J is symmetric,
    so this is the transposed Jacobian as well."""
    axis = s.param("axis")
    y, gs = s.y, s.sym(g)
    inner = s.sym(keep_axes(s.b, (gs * y).apply(P.SUM, axes=(axis,)).value, (axis,)))
    return (y * (gs - inner)).value


def cumprod_operand(s: Application) -> Value:
    """The operand a of a cumprod `s` read as an inclusive one, y_i = Π_{k<=i} a_k
    (reverse: over the items from i to the end), y being `s`'s result: a = x, or
    for an exclusive cumprod x shifted one item, 1 first."""
    if not s.param("exclusive"):
        return s.args[0]
    return shifted(s.b, s.args[0], s.param("axis"), True, s.param("reverse"))


def cumprod_recurrence(b: Builder, s: Application, a: Value, d: Value, *, transposed: bool) -> Value:
    """A derivative of y = cumprod(a) by a scan, with no division. ∂y_i/∂a_j =
    e_j Π_{j<k<=i} a_k for j <= i, e_j = Π_{k<j} a_k, so the tangent (d = ȧ) solves the
    linear recurrence ẏ_i = a_i ẏ_{i-1} + e_i ȧ_i, and the cotangent (`transposed`,
    d = ȳ) is ā = e u with u_j = a_{j+1} u_{j+1} + ȳ_j, the recurrence the other way
    (a shifted towards the start, its last item unused). Exact where a holds zeros,
    and O(n log n) work (`scans.linear_recurrence`)."""
    axis, reverse = s.param("axis"), s.param("reverse")
    e = b.prim(P.CUMPROD, params(axis=axis, reverse=reverse, exclusive=True), a)
    if not transposed:
        return linear_recurrence(b, s.alg, a, s.alg.mul(b, e, d), axis, reverse)
    u = linear_recurrence(b, s.alg, shifted(b, a, axis, True, not reverse), d, axis, not reverse)
    return s.alg.mul(b, e, u)


@dataclass(frozen=True)
class RunningProduct:
    """y = cumprod(a) along `axis` (`reverse`: from the end), with what its derivatives
    by division read, as Syms of the builder that emits them."""

    y: Sym
    nonzero: Sym   # a != 0
    safe: Sym      # a with its zeros replaced by 1: a divisor that is never 0
    skipping: Sym  # cumprod(safe): y_i with the line's zero, if any, left out
    axis: int
    reverse: bool

    def sym(self, v: Value) -> Sym:
        return Sym(self.y.b, v)

    def running_sum(self, v: Sym, *, backwards: bool = False) -> Sym:
        """cumsum along the axis, the way y runs (`backwards`: the other way)."""
        return v.apply(P.CUMSUM, axis=self.axis, reverse=self.reverse != backwards, exclusive=False)

    def on(self, b: Builder) -> "RunningProduct":
        return replace(self, **{k: Sym(b, getattr(self, k).value)
                                for k in ("y", "nonzero", "safe", "skipping")})


def _everywhere(v: Sym) -> Sym:
    """Whether every item of the bools `v` is true (so, of no items): a count of no false one."""
    rank = v.value.type.rank
    return v.apply(P.NOT).apply(P.SUM, axes=tuple(range(rank))).eq(0) if rank else v


def cumprod_by_division(s: Application, a: Value, division: Callable[[RunningProduct], Sym],
                        scan: Callable[[Builder], Value]) -> Value:
    """A derivative of y = cumprod(a), `s`'s result: in O(n) by `division` where that
    is exact, else by `scan` (`cumprod_recurrence`), as an `if` on the whole array.

    Along a line, ∂y_i/∂a_j = Π_{k<=i, k≠j} a_k (j <= i): y_i / a_j where a_j ≠ 0, and
    `skipping`_i, the running product with a_j replaced by 1, where a_j = 0. With at
    most one zero in each line, a derivative written so is an identity of
    polynomials near the point (the masks held), so its own derivatives are exact
    there too; a second zero would be replaced by 1 as well. The quotients are
    exact while the products neither underflow nor overflow: every |skipping_i| is
    finite and normal (y_i = skipping_i up to a line's zero). Their derivatives
    divide again, by a_j² at the second order (the Hessian's diagonal is
    y_i/a_j² - y_i/a_j², 0): so every item is kept within 2^±256 (f32: 2^±32) too,
    where 1/a_j³ is still normal with room to spare."""
    axis, reverse, t = s.param("axis"), s.param("reverse"), a.type
    assert isinstance(t, ArrayType) and t.dtype.is_float
    nonzero = s.sym(a).apply(P.NE, 0.0)
    safe = nonzero.where(s.sym(a), 1.0)
    skipping = safe.apply(P.CUMPROD, axis=axis, reverse=reverse, exclusive=False)
    finfo = np.finfo(t.dtype.numpy_name)
    reach = 2.0 ** (finfo.maxexp // 4)  # 2^256 for f64: 1/a^3 stays finite and normal
    size, item = skipping.apply(P.ABS), safe.apply(P.ABS)
    normal = ((size >= float(finfo.tiny)) & (size <= float(finfo.max))
              & (item >= 1.0 / reach) & (item <= reach))
    divides = _everywhere(normal) & _everywhere(s.sym(a).eq(0.0).apply(P.SUM, axes=(axis,)) <= 1)
    for hint, v in (("nonzero", nonzero), ("safe", safe), ("skipping", skipping), ("normal", normal),
                    ("divides", divides)):
        s.b.name(v.value, hint)
    p = RunningProduct(s.y, nonzero, safe, skipping, axis, reverse)
    return s.b.if_(divides.value, lambda b: division(p.on(b)).value, scan)


def ors_bools(s: Application) -> bool:
    """Whether `s` adds bools (NumPy: OR) in an algebra where bools carry derivatives."""
    return s.alg.carries(s.out.type) and s.out.type.dtype is DType.BOOL


def index_or_region(s: Application, value: Value) -> Value:
    """`value` put into the region of an index_add `s` (bools, zeros elsewhere).

    index_add of bools ORs v into the region r of t (each position once):
    out[r] = t[r] + v + t[r]·v over Z2, so ∂out[r]/∂t[r] = 1 + v and
    ∂out[r]/∂v = 1 + t[r]. Into zeros, OR is exact, so this places a derivative."""
    zeros = s.alg.zeros(s.b, derivative_type(s.alg, s.args[0].type))
    return s.b.prim(P.INDEX_ADD, s.ps, zeros, value, *s.args[2:])


def refuse_bool_in_z2(s: Application, why: str) -> None:
    """Raise for a primitive on bools that is not linear (or polynomial) over Z2."""
    if s.alg.carries(s.out.type) and s.out.type.dtype is DType.BOOL:
        raise s.unsupported(why)


# ---- rule shapes ---------------------------------------------------------------------

Tangent = Callable[[Application, tuple[Deriv, ...]], Deriv]
JvpRule = Callable[[Builder, Algebra, Params, tuple[Value, ...], tuple[Deriv, ...], Prim],
                   tuple[Value, Deriv]]


def _fit(b: Builder, alg: Algebra, d: Deriv, t: ArrayType) -> Deriv:
    """A tangent as the exact tangent type of a value of type `t`."""
    if d is ZERO:
        return ZERO
    d = cast(b, d, alg.derivative_dtype(t))
    if d.type.shape != t.shape:
        d = b.prim(P.BROADCAST_TO, params(shape=t.shape), d)
    return d


def deftangent(tangent: Tangent) -> JvpRule:
    """A rule from `tangent(s, tangents)`: emit the primal, then its tangent if the
    algebra carries the result."""
    def rule(b: Builder, alg: Algebra, ps: Params, primals: tuple[Value, ...],
             tangents: tuple[Deriv, ...], term: Prim) -> tuple[Value, Deriv]:
        out = b.prim(term.prim, ps, *primals, hint=term.hint, span=term.span)
        if not alg.carries(out.type):
            return out, ZERO
        s = Application(b, alg, ps, primals, out, term)
        return out, _fit(b, alg, tangent(s, tangents), out.type)
    return rule


def _elementwise(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    """Σ_k ∂f/∂x_k · ẋ_k, with the truth table for bools over Z2."""
    if is_z2_logic(s):
        terms = [z2_times(s, k, d) for k, d in enumerate(dots)]
    else:
        scales = ELEMENTWISE_SCALES[s.prim]
        if scales is None:
            return ZERO
        terms = [ZERO if d is ZERO else scale(s.sym(d), s.y, *s.xs).value
                 for scale, d in zip(scales, dots)]
    total: Deriv = ZERO
    for t in terms:
        total = s.alg.add(s.b, total, t)
    return total


def _materialised(s: Application, dots: tuple[Deriv, ...], linear: int | None) -> tuple[Value, ...]:
    """The arguments with the first `linear` (None: all) replaced by their tangents."""
    n = len(s.args) if linear is None else linear
    return tuple(s.alg.materialise(s.b, d, derivative_type(s.alg, a.type)) if k < n else a
                 for k, (a, d) in enumerate(zip(s.args, dots)))


def deflinear(linear: int | None = None) -> JvpRule:
    """A primitive linear in its first `linear` arguments (None: in all of them),
    the rest (indices) fixed: its tangent is itself applied to the tangents."""
    def tangent(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
        n = len(s.args) if linear is None else linear
        if all(d is ZERO for d in dots[:n]):
            return ZERO
        return s.b.prim(s.prim, s.ps, *_materialised(s, dots, linear))
    return deftangent(tangent)


def defbilinear(product: Callable[[Application, Value, Value], Value]) -> JvpRule:
    """`d(x ⋅ y) = ẋ ⋅ y + x ⋅ ẏ` for a bilinear `product`."""
    def tangent(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
        (x, y), (dx, dy) = s.args, dots
        left = ZERO if dx is ZERO else product(s, dx, y)
        right = ZERO if dy is ZERO else product(s, x, dy)
        return s.alg.add(s.b, left, right)
    return deftangent(tangent)


def constant(b: Builder, alg: Algebra, ps: Params, primals: tuple[Value, ...],
             tangents: tuple[Deriv, ...], term: Prim) -> tuple[Value, Deriv]:
    """A leaf (const, size, zeros, ones, arange): it has no arguments to vary with."""
    return b.prim(term.prim, ps, *primals, hint=term.hint, span=term.span), ZERO


# ---- the rules that are not made by a shape ---------------------------------------------

def _matmul_product(s: Application, x: Value, y: Value) -> Value:
    refuse_bool_in_z2(s, "NumPy's matmul of bools is OR of ANDs, not a sum over Z2")
    return s.b.prim(P.MATMUL, (), x, y)


def _reduction(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    """sum(W · ẋ) over the reduced axes, W the group's weights."""
    (dx,) = dots
    product = s.alg.mul(s.b, REDUCTION_WEIGHTS[s.prim](s), dx)
    return algebra_sum(s.b, s.alg, product, s.param("axes"))


def _extremum(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    """max (min): the tangents of the tied items, summed, over their count; of bools
    over Z2, sum(W · ẋ) with W the weights of any (all)."""
    if is_z2_logic(s):
        product = s.alg.mul(s.b, any_all_weights(s), dots[0])
        return algebra_sum(s.b, s.alg, product, s.param("axes"))
    hit, count = extremum_ties(s)
    picked = hit.where(dots[0], 0.0).apply(P.SUM, axes=s.param("axes"))
    return per_tie(s, picked.value, count)


def _softmax(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    return softmax_times(s, dots[0])


def _cumprod(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    """ẏ_i = Σ_{j<=i} ȧ_j ∂y_i/∂a_j for y = cumprod(a) (`cumprod_operand`): by division,
    y cumsum(ȧ / a) where a ≠ 0 and skipping · ȧ from a line's zero on, else by the
    recurrence ẏ_i = a_i ẏ_{i-1} + y_{i-1} ȧ_i (`cumprod_by_division`)."""
    if dots[0] is ZERO:
        return ZERO
    a = cumprod_operand(s)
    da = cast(s.b, dots[0], s.alg.derivative_dtype(s.out.type))
    if s.param("exclusive"):  # ȧ is ẋ shifted as a is x, 0 first
        da = shifted(s.b, da, s.param("axis"), False, s.param("reverse"))

    def by_division(p: RunningProduct) -> Sym:
        d = p.sym(da)
        return (p.y * p.running_sum(p.nonzero.where(d / p.safe, 0.0))
                + p.skipping * p.running_sum(p.nonzero.where(0.0, d)))

    return cumprod_by_division(s, a, by_division,
                               lambda b: cumprod_recurrence(b, s, a, da, transposed=False))


def _where(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    """where(c, ȧ, ḃ); over Z2, where(c, a, b) = b + c·a + c·b adds (a + b)·ċ."""
    (c, a, b), (dc, da, db) = s.args, dots
    zero = False if s.alg.derivative_dtype(s.out.type) is DType.BOOL else 0.0
    branches: Deriv = ZERO
    if da is not ZERO or db is not ZERO:
        pick = (literal(s.b, zero) if d is ZERO else d for d in (da, db))
        branches = s.b.prim(P.WHERE, (), c, *pick)
    if dc is ZERO or not is_z2_logic(s):
        return branches
    return s.alg.add(s.b, branches, s.alg.mul(s.b, s.b.prim(P.XOR, (), a, b), dc))


def _popcount_le(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    """Σ_i ∂y/∂a_i · ȧ_i + Σ_i ∂y/∂b_i · ḃ_i over Z2: parities along the last axis."""
    total: Deriv = ZERO
    for partial, d in zip(popcount_le_partials(s), dots):
        if d is not ZERO:
            product = s.alg.mul(s.b, partial, d)
            total = s.alg.add(s.b, total, algebra_sum(s.b, s.alg, product, (product.type.rank - 1,)))
    return total


def _scatter_add(s: Application, dots: tuple[Deriv, ...]) -> Deriv:
    """index_add / gather_add are linear in (target, value); a ZERO value tangent
    leaves the target's. Over Z2, index_add of bools is an OR (see `index_or_region`)."""
    if s.prim is P.INDEX_ADD and ors_bools(s):
        t, v = s.args[:2]
        dt, dv = dots[:2]
        region = lambda x: s.b.prim(P.INDEX, s.ps, x, *s.args[2:])  # noqa: E731
        change: Deriv = ZERO  # ȯut[r] - ṫ[r] = ṫ[r]·v + v̇·(1 + t[r])
        if dt is not ZERO:
            change = s.alg.mul(s.b, region(dt), v)
        if dv is not ZERO:
            change = s.alg.add(s.b, change, s.alg.mul(s.b, dv, s.b.prim(P.NOT, (), region(t))))
        return s.alg.add(s.b, dt, ZERO if change is ZERO else index_or_region(s, change))
    refuse_bool_in_z2(s, "np.add.at of bools ORs repeated indices together")
    if dots[1] is ZERO:
        return dots[0]
    return s.b.prim(s.prim, s.ps, *_materialised(s, dots, 2))


JVP_RULES: dict[Primitive, JvpRule] = {
    **{prim: deftangent(_elementwise) for prim in ELEMENTWISE_SCALES},
    P.WHERE: deftangent(_where),
    P.CONST: constant,
    P.SIZE: constant,
    P.ZEROS: constant,
    P.ONES: constant,
    P.ARANGE: constant,
    P.FULL: deflinear(),
    P.ASTYPE: deflinear(),
    P.SUM: deflinear(),
    P.MEAN: deflinear(),
    **{prim: deftangent(_reduction) for prim in REDUCTION_WEIGHTS},
    P.MAX: deftangent(_extremum),
    P.MIN: deftangent(_extremum),
    P.SOFTMAX: deftangent(_softmax),
    P.CUMSUM: deflinear(),
    P.CUMPROD: deftangent(_cumprod),
    P.PARITY: deflinear(),
    P.POPCOUNT_LE: deftangent(_popcount_le),
    P.MATMUL: defbilinear(_matmul_product),
    P.TRANSPOSE: deflinear(),
    P.EXPAND_DIMS: deflinear(),
    P.BROADCAST_TO: deflinear(),
    P.RESHAPE: deflinear(),
    P.STACK: deflinear(),
    P.CONCAT: deflinear(),
    P.INDEX: deflinear(1),
    P.GATHER: deflinear(1),
    P.INDEX_ADD: deftangent(_scatter_add),
    P.GATHER_ADD: deftangent(_scatter_add),
}
