"""The reference semantics of every primitive, in plain NumPy.

    EVALUATE[prim](ps, *values) -> value

`ps` is the primitive's params as a dict, *resolved*: every `Dim` in them
(also inside tuples: shapes, index specs) is already evaluated to an `int`
at the current sizes, so the rules never see size variables. `apply` does
the resolving, runs the rule with NumPy's floating-point warnings off
(`log(0.0)` is `-inf`, not a warning) and normalises the result:

* a 0-d array becomes a NumPy scalar (`np.float64(1.0)`, not `array(1.0)`);
* an elementwise primitive (other than `astype`) whose arguments are all
  Python scalars returns a Python scalar: literals are weak (NEP 50) and
  stay weak through arithmetic on literals only, as in `types.promote`.

Values are NumPy arrays and scalars, Python `bool`/`int`/`float` for weak
literals (`const` returns its value so), and Python tuples for tuples.
This module is the reference that compiled code is tested against: every
rule is written out on its own, in the most obvious numerically stable way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import primitives as P
from .primitives import Params, Primitive
from .types import Dim, DType

Rule = Callable[..., Any]


def numpy_dtype(dtype: DType) -> np.dtype:
    return np.dtype(getattr(np, dtype.numpy_name))


_PYTHON_TYPE: dict[DType, type] = {DType.BOOL: bool, DType.I64: int, DType.F32: float, DType.F64: float}

_erf_double = np.vectorize(math.erf, otypes=[np.float64])


def _floating(x: Any) -> Any:
    """x with bool and integer values as f64 (a Python scalar stays a Python float)."""
    if is_weak(x):
        return float(x)
    a = np.asarray(x)
    return a.astype(np.float64) if a.dtype.kind in "bi" else x


def _on_floats(f: Callable[[Any], Any]) -> Rule:
    """The rule of a float function of one argument: `f(_floating(x))`."""
    return lambda ps, x: f(_floating(x))


def _on_ints_for_bools(f: Callable[[Any, Any], Any]) -> Rule:
    """The rule of `f(a, b)` that computes two bools as i64 (NumPy would give int8)."""
    def rule(ps: dict, a: Any, b: Any) -> Any:
        if np.result_type(a, b) == np.bool_:
            a, b = (int(v) if is_weak(v) else np.asarray(v).astype(np.int64) for v in (a, b))
        return f(a, b)
    return rule


def _erf(x: Any) -> Any:
    """math.erf per element (correctly rounded in double), in x's float type."""
    a = np.asarray(x)
    return _erf_double(a).astype(a.dtype)


def _sigmoid(x: Any) -> Any:
    return np.exp(-np.logaddexp(0, -x))  # 1 / (1 + e^-x) without overflow


def _logsumexp(ps: dict, x: Any) -> Any:
    """log(sum(exp(x))) over `axes`, shifted by the max; an all -inf row gives -inf."""
    axes = ps["axes"]
    x = _floating(x)
    m = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    total = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return np.squeeze(total, axis=axes)


def _scan(summing: bool) -> Rule:
    """Running sums (cumsum) or products (cumprod) along `axis`, from the end when
    `reverse`; `exclusive` shifts the items one place, the identity first."""
    def rule(ps: dict, x: Any) -> Any:
        axis, x = ps["axis"], np.asarray(x)
        if ps["reverse"]:
            x = np.flip(x, axis)
        if ps["exclusive"]:  # the first item (none of an empty axis) becomes the identity
            at = lambda lo, hi: x[(slice(None),) * axis + (slice(lo, hi),)]  # noqa: E731
            x = np.concatenate([np.full_like(at(0, 1), int(not summing)), at(0, -1)], axis=axis)
        y = np.cumsum(x, axis=axis) if summing else np.cumprod(x, axis=axis)
        return np.flip(y, axis) if ps["reverse"] else y
    return rule


def _softmax(ps: dict, x: Any) -> Any:
    axis = ps["axis"]
    x = _floating(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _index_key(spec: tuple, at: tuple[Any, ...]) -> tuple[Any, ...]:
    """The Python index of a spec: `("at",)` takes the next of `at`, `("slice", lo, hi)`
    is `lo:hi`."""
    indices = iter(at)
    key = tuple(next(indices) if item[0] == "at" else slice(item[1], item[2]) for item in spec)
    assert next(indices, None) is None, "index: more index arguments than ('at',) items"
    return key


def _index(ps: dict, x: Any, *at: Any) -> Any:
    return np.asarray(x)[_index_key(ps["spec"], at)]


def _index_add(ps: dict, target: Any, value: Any, *at: Any) -> Any:
    """A copy of target with value added into target[key] (no index repeats)."""
    out = np.array(target)
    out[_index_key(ps["spec"], at)] += value
    return out


def _gather_key(ps: dict, x: np.ndarray, indices: tuple[Any, ...]) -> tuple[Any, ...]:
    """The index arrays of a gather; with clip, each ij clipped into 0..x.shape[j]-1."""
    if ps["clip"]:
        return tuple(np.clip(i, 0, x.shape[j] - 1) for j, i in enumerate(indices))
    return indices


def _gather(ps: dict, x: Any, *indices: Any) -> Any:
    """x[i1, ..., ik] with NumPy advanced indexing."""
    x = np.asarray(x)
    return x[_gather_key(ps, x, indices)]


def _gather_add(ps: dict, target: Any, value: Any, *indices: Any) -> Any:
    """A copy of target with value added at [i1, ..., ik]; repeated indices accumulate."""
    out = np.array(target)
    np.add.at(out, _gather_key(ps, out, indices), value)
    return out


def _const(ps: dict) -> Any:
    """The literal as a Python scalar of its dtype's kind (weak, NEP 50), or as a
    NumPy scalar of its dtype when the param `weak` is False."""
    if ps.get("weak", True):
        return _PYTHON_TYPE[ps["dtype"]](ps["value"])
    return numpy_dtype(ps["dtype"]).type(ps["value"])


EVALUATE: dict[Primitive, Rule] = {
    # elementwise, one argument (computed in floating point: bool and i64 as f64)
    P.BY_NAME["exp"]: _on_floats(np.exp),
    P.BY_NAME["log"]: _on_floats(np.log),
    P.BY_NAME["log1p"]: _on_floats(np.log1p),
    P.BY_NAME["expm1"]: _on_floats(np.expm1),
    P.BY_NAME["sqrt"]: _on_floats(np.sqrt),
    P.BY_NAME["sin"]: _on_floats(np.sin),
    P.BY_NAME["cos"]: _on_floats(np.cos),
    P.BY_NAME["tan"]: _on_floats(np.tan),
    P.BY_NAME["tanh"]: _on_floats(np.tanh),
    P.BY_NAME["sigmoid"]: _on_floats(_sigmoid),
    P.BY_NAME["softplus"]: _on_floats(lambda x: np.logaddexp(0, x)),   # log(1 + e^x)
    P.BY_NAME["relu"]: _on_floats(lambda x: np.maximum(x, 0)),
    P.BY_NAME["gelu"]: _on_floats(lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    P.BY_NAME["silu"]: _on_floats(lambda x: x * _sigmoid(x)),
    P.BY_NAME["elu"]: _on_floats(lambda x: np.where(x > 0, x, np.expm1(x))),  # alpha = 1
    P.BY_NAME["erf"]: _on_floats(_erf),
    P.NEG: lambda ps, x: np.negative(x),
    P.ABS: lambda ps, x: np.abs(x),
    P.SIGN: lambda ps, x: np.sign(x),
    P.NOT: lambda ps, x: np.logical_not(x),
    # elementwise, two arguments (integer // and % floor, as in NumPy; bools as i64)
    P.ADD: lambda ps, a, b: np.add(a, b),
    P.SUB: lambda ps, a, b: np.subtract(a, b),
    P.MUL: lambda ps, a, b: np.multiply(a, b),
    P.DIV: lambda ps, a, b: np.true_divide(a, b),
    P.POW: _on_ints_for_bools(np.power),
    P.FLOORDIV: _on_ints_for_bools(np.floor_divide),
    P.MOD: _on_ints_for_bools(np.mod),
    P.MINIMUM: lambda ps, a, b: np.minimum(a, b),
    P.MAXIMUM: lambda ps, a, b: np.maximum(a, b),
    P.LT: lambda ps, a, b: np.less(a, b),
    P.LE: lambda ps, a, b: np.less_equal(a, b),
    P.GT: lambda ps, a, b: np.greater(a, b),
    P.GE: lambda ps, a, b: np.greater_equal(a, b),
    P.EQ: lambda ps, a, b: np.equal(a, b),
    P.NE: lambda ps, a, b: np.not_equal(a, b),
    P.AND: lambda ps, a, b: np.logical_and(a, b),
    P.OR: lambda ps, a, b: np.logical_or(a, b),
    P.XOR: lambda ps, a, b: np.logical_xor(a, b),
    P.WHERE: lambda ps, c, a, b: np.where(c, a, b),
    # leaves
    P.CONST: _const,
    P.SIZE: lambda ps: np.int64(ps["dim"]),
    P.ZEROS: lambda ps: np.zeros(ps["shape"], dtype=numpy_dtype(ps["dtype"])),
    P.ONES: lambda ps: np.ones(ps["shape"], dtype=numpy_dtype(ps["dtype"])),
    P.FULL: lambda ps, value: np.full(ps["shape"], value),
    P.ARANGE: lambda ps: np.arange(ps["lo"], ps["hi"], dtype=np.int64),
    P.ASTYPE: lambda ps, x: np.asarray(x).astype(numpy_dtype(ps["dtype"])),
    # reductions and normalisations
    P.SUM: lambda ps, x: np.sum(x, axis=ps["axes"]),
    P.MEAN: lambda ps, x: np.mean(x, axis=ps["axes"]),
    P.PROD: lambda ps, x: np.prod(x, axis=ps["axes"]),
    P.MAX: lambda ps, x: np.max(x, axis=ps["axes"]),
    P.MIN: lambda ps, x: np.min(x, axis=ps["axes"]),
    P.LOGSUMEXP: _logsumexp,
    P.SOFTMAX: _softmax,
    P.CUMSUM: _scan(summing=True),
    P.CUMPROD: _scan(summing=False),
    P.PARITY: lambda ps, x: np.sum(x, axis=ps["axes"]) % 2 == 1,
    P.POPCOUNT_LE: lambda ps, a, b: ps["scale"] * np.sum(a, axis=-1) <= np.sum(b, axis=-1),
    # linear algebra and shape
    P.MATMUL: lambda ps, a, b: np.matmul(a, b),
    P.TRANSPOSE: lambda ps, x: np.transpose(x, ps["perm"]),
    P.EXPAND_DIMS: lambda ps, x: np.expand_dims(x, ps["axis"]),
    P.BROADCAST_TO: lambda ps, x: np.broadcast_to(x, ps["shape"]).copy(),
    P.RESHAPE: lambda ps, x: np.reshape(x, ps["shape"]),
    P.STACK: lambda ps, *xs: np.stack(xs, axis=ps["axis"], dtype=np.result_type(*xs)),
    P.CONCAT: lambda ps, *xs: np.concatenate(xs, axis=ps["axis"], dtype=np.result_type(*xs)),
    # indexing
    P.INDEX: _index,
    P.GATHER: _gather,
    P.INDEX_ADD: _index_add,
    P.GATHER_ADD: _gather_add,
}

# elementwise primitives whose result on weak (Python scalar) arguments is weak
_KEEPS_WEAK = P.ELEMENTWISE - {P.ASTYPE}


def resolve_params(ps: Params, sizes: Mapping[str, int]) -> dict[str, Any]:
    """`ps` as a dict, with every `Dim` (nested in tuples too) evaluated at `sizes`."""
    return {name: _resolve(value, sizes) for name, value in ps}


def _resolve(value: Any, sizes: Mapping[str, int]) -> Any:
    if isinstance(value, Dim):
        return value.evaluate(dict(sizes))
    if isinstance(value, tuple):
        return tuple(_resolve(v, sizes) for v in value)
    return value


def is_weak(value: Any) -> bool:
    """A Python scalar (not a NumPy one): a literal, weak under NEP 50."""
    return type(value) in (bool, int, float)


def apply(prim: Primitive, ps: Params, args: tuple[Any, ...] | list[Any],
          sizes: Mapping[str, int] | None = None) -> Any:
    """`prim` with params `ps` applied to `args`, size variables valued by `sizes`."""
    with np.errstate(all="ignore"):
        value = EVALUATE[prim](resolve_params(ps, sizes or {}), *args)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if prim in _KEEPS_WEAK and args and all(is_weak(a) for a in args):
        value = value.item()
    return value
