"""The array API backend: `xp.exp(x)`, where `xp` is the namespace of the inputs.

`catad compile --backend array-api` prints a module whose functions take
their array namespace from their arguments, through `array_api_compat`
(the module's one dependency besides the array library itself):

    def loss(w, b, X, y):
        xp, _device = _namespace("loss", w=w, b=b, X=X, y=y)
        w = xp.asarray(w, dtype=xp.float64, device=_device)
        ...

so the same function, and its gradient, runs on NumPy, PyTorch (CPU or
CUDA), JAX, CuPy and Dask arrays. The code keeps to the array API standard
(2023.12 and later, as `array_api_strict` checks it; `cumsum` and `cumprod`
print `cumulative_sum`, 2023.12, and `cumulative_prod`, 2024.12):

- arrays are made on the inputs' device with explicit dtypes (a library's
  default float may be f32): `xp.zeros((n,), dtype=xp.float64, device=_device)`;
- no NumPy-only spelling: `xp.concat`, `xp.permute_dims`, `xp.astype(x, t)`,
  bool counts through an int cast, indexing with fewer indices than axes ends
  with `...`;
- what the standard lacks has small portable definitions here: erf and erfc
  (Cody's approximations, shared with the NumPy backend), logsumexp, a gather
  through `take` on the flattened leading axes (Dask indexes one axis at a
  time), and scatter-adds with a fast path per library (NumPy and CuPy
  `add.at`, PyTorch `index_put_`, JAX `.at[].add`) and a one-hot product for
  the rest;
- no array is written into or iterated over (JAX arrays are immutable,
  `array_api_strict` arrays are not iterable): see `Backend.portable`;
- traceable by `jax.jit`: no Python `if` or `int()` on an array. Sizes, and
  what they alone decide, are Python ints and bools (`size_only.py`: static
  under `jax.jit`), so an `if` on them is a Python `if`; another `if` is
  `_cond(c, then, orelse)` (a Python if; `jax.lax.cond` where `c` is traced, or
  `where` for two branches that only read), an index beside slices `_int(i)`
  (a Python int; a traced JAX index is kept), and the entry's checks read
  shapes only;
- compiled by `jax.jit` as loops, not unrolled: a `fold` or `scan` is a local
  step function run by `_fold(xp, step, init, xs)` or `_scan(...)`, a Python
  loop over the rows of `xs`, and `jax.lax.scan` on JAX (jax is imported only
  there).

`_namespace` refuses, with a `TypeError` naming both arguments, inputs from
two array libraries or on two devices, and a dtype the library cannot make
there (JAX without `jax_enable_x64` has no float64).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import replace

from . import primitives as P
from .backend import (ADDITIVE, ATOM, UNARY, Application, Arg, Backend, Form, Helper, axes_text,
                      call_form, dim_text, index_items, literal_arg, reduction, shape_text, tuple_text)
from .numpy_backend import NUMPY_FORMS, NUMPY_HELPERS, gather_key, scan_form
from .prim_types import result_type
from .primitives import Primitive, params
from .types import ArrayType, Dim, DType, Type, promote

DEVICE = "_device"  # the name of the inputs' device in the printed functions


def dtype_text(app: Application, dtype: DType) -> str:
    """`xp.float64`, `xp.bool`."""
    return f"{app.ns}.{'bool' if dtype is DType.BOOL else dtype.numpy_name}"


def _made(app: Application, name: str, *args: object, dtype: DType | None = None) -> str:
    """`xp.name(args..., dtype=..., device=_device)`: an array made on the inputs' device."""
    extra = () if dtype is None else (f"dtype={dtype_text(app, dtype)}",)
    return app.call(name, *args, *extra, f"device={DEVICE}")


def _const(app: Application) -> str:
    dtype: DType = app.params["dtype"]
    python = {DType.BOOL: bool, DType.I64: int, DType.F32: float, DType.F64: float}[dtype]
    literal = literal_arg(python(app.params["value"]), app.ns).text
    return literal if app.params.get("weak", True) else _made(app, "asarray", literal, dtype=dtype)


def _filled(name: str) -> Form:
    """`xp.zeros(shape, dtype=..., device=_device)`"""
    return call_form(lambda app: _made(app, name, shape_text(app.params["shape"]), dtype=app.params["dtype"]))


def _is_literal(arg: Arg) -> bool:
    """Whether a printed argument is a Python literal (`0.5`, `-2`, `True`, `xp.inf`)."""
    text = arg.text.removeprefix("-")
    if text.endswith((".inf", ".nan")):
        return True
    try:
        return isinstance(ast.literal_eval(text), (bool, int, float))
    except (ValueError, SyntaxError):
        return False


def _full(app: Application) -> str:
    """A literal fills through `xp.full`; an array value is added to zeros (the
    standard's `full` takes Python scalars only)."""
    t = app.arg_types[0]
    dtype = t.dtype if isinstance(t, ArrayType) else DType.F64
    shape = shape_text(app.params["shape"])
    if _is_literal(app.args[0]):
        return _made(app, "full", shape, app.args[0], dtype=dtype)
    return f"{_made(app, 'zeros', shape, dtype=dtype)} + {app.args[0].at(ATOM)}"


def _arange(app: Application) -> str:
    lo, hi = app.params["lo"], app.params["hi"]
    bounds = (dim_text(hi),) if lo == Dim(0) else (dim_text(lo), dim_text(hi))
    return _made(app, "arange", *bounds, dtype=DType.I64)


def _python(app: Application, k: int) -> bool:
    """Whether argument k is a Python number: a literal, or a value of the sizes alone
    (weak: `size_only.py`)."""
    t = app.arg_types[k] if k < len(app.arg_types) else None
    return _is_literal(app.args[k]) or isinstance(t, ArrayType) and t.weak


def _astype(app: Application) -> str:
    """`xp.astype(x, xp.float64)`; a Python number becomes an array on the device."""
    dtype: DType = app.params["dtype"]
    if _python(app, 0):
        return _made(app, "asarray", app.args[0], dtype=dtype)
    return app.call("astype", app.args[0], dtype_text(app, dtype))


def _transpose(app: Application) -> str:
    perm = app.params["perm"]
    if perm == (1, 0):
        return f"{app.args[0].operand}.T"
    return app.call("permute_dims", app.args[0], repr(tuple(perm)))


def _counted(app: Application, x: object, axis: str) -> str:
    """The number of trues along `axis` (the standard sums numbers, not bools)."""
    return app.call("sum", app.call("astype", x, dtype_text(app, DType.I64)), f"axis={axis}")


def _parity(app: Application) -> str:
    return f"{_counted(app, app.args[0], axes_text(app.params['axes']))} % 2 == 1"


def _running(app: Application, x: str, axis: int) -> Arg:
    """`xp.cumulative_sum(x, axis=k)`, `xp.cumulative_prod(x, axis=k)`."""
    name = "cumulative_sum" if app.prim is P.CUMSUM else "cumulative_prod"
    return Arg(app.call(name, x, f"axis={axis}"))


def _popcount_le(app: Application) -> str:
    a, b = (_counted(app, x, "-1") for x in app.args)
    scale = app.params["scale"]
    return f"{a if scale == 1 else f'{scale} * {a}'} <= {b}"


def _scalar_indices(app: Application, first: int) -> tuple[Arg, ...]:
    """The index arguments from `first` on, through `_int(i)` where the key also has
    slices or `...`: the standard takes 0-d integer arrays only in keys of arrays
    alone, so `_int` makes them Python ints, but for a JAX array traced by
    `jax.jit` (it has no value yet; JAX takes it in any key). An index that is a
    Python int already (a literal, a value of the sizes alone) is printed as it is."""
    indices, spec, t = app.args[first:], app.params["spec"], app.arg_types[0]
    if all(item[0] == "at" for item in spec) and isinstance(t, ArrayType) and len(spec) == t.rank:
        return indices  # no slices, and no `...`
    return tuple(i if _python(app, first + k) else Arg(f"_int({i.text})") for k, i in enumerate(indices))


def _index(app: Application) -> str:
    """`x[i, lo:hi, ...]`: the standard wants `...` where trailing axes are left out."""
    x, t = app.args[0], app.arg_types[0]
    items = index_items(app.params["spec"], t, _scalar_indices(app, 1), lambda lo, hi: f"{lo}:{hi}")
    if not isinstance(t, ArrayType) or len(items) < t.rank:
        items.append("...")
    return f"{x.operand}[{', '.join(items)}]"


def _index_helper(app: Application) -> str | None:
    """`int` where the printed key converts an index (`_int(i)`)."""
    return "int" if any(i.text.startswith("_int(") for i in _scalar_indices(app, 1)) else None


def _index_add(app: Application) -> str:
    """`_index_add(xp, target, value, (i, slice(lo, hi)))`: the helper makes the
    indices Python ints where the library needs them."""
    items = index_items(app.params["spec"], app.arg_types[0], app.args[2:],
                        lambda lo, hi: f"slice({lo or None}, {hi or None})")
    return f"_index_add({app.helper_args}{app.args[0]}, {app.args[1]}, {tuple_text(items)})"


# ---- dtypes: the standard promotes only within a kind ------------------------------


def _cast(app: Application, arg: Arg, t: Type | None, dtype: DType | None) -> Arg:
    """`arg` cast to `dtype` where it is an array (not a Python literal) of another."""
    if dtype is None or not isinstance(t, ArrayType) or t.weak or t.dtype is dtype:
        return arg
    return Arg(app.call("astype", arg, dtype_text(app, dtype)))


def _result_dtype(app: Application) -> DType | None:
    types = app.arg_types
    if any(not isinstance(t, ArrayType) for t in types):
        return None
    t = result_type(app.prim, params(**app.params), types)
    return t.dtype if isinstance(t, ArrayType) else None


def _common_dtype(app: Application, first: int = 0) -> DType | None:
    """NumPy's dtype of the arguments from `first` on, weak literals yielding."""
    types = app.arg_types[first:]
    if any(not isinstance(t, ArrayType) for t in types):
        return None
    common = types[0]
    for t in types[1:]:
        dtype, weak = promote(common, t)
        common = ArrayType(dtype, (), weak)
    return common.dtype


def _cast_to(form: Form, operating: Callable[[Application], DType | None], first: int = 0) -> Form:
    """`form` with its arguments from `first` on cast to the dtype it operates in,
    as NumPy would promote them: the standard refuses `int_array + 0.5`, an
    int array in `exp`, `float32 + int64` and sums of bools."""
    def text(app: Application) -> str:
        dtype = operating(app)
        args = app.args[:first] + tuple(_cast(app, a, t, dtype) for a, t in
                                        zip(app.args[first:], app.arg_types[first:]))
        return form.text(replace(app, args=args))
    return Form(text, form.helper, form.precedence)


def _gather_add(app: Application) -> str:
    """`_gather_add(xp, target, value, (i, j))`: always a copy (the fast paths are the libraries')."""
    key = gather_key(app, app.arg_types[0], app.args[2:])
    return f"_gather_add({app.helper_args}{app.args[0]}, {app.args[1]}, {tuple_text(key)})"


def _gather(app: Application) -> str:
    """`_gather(xp, x, (i, j))`"""
    key = gather_key(app, app.arg_types[0], app.args[1:])
    return f"_gather({app.helper_args}{app.args[0]}, {tuple_text(key)})"


ARRAY_API_FORMS: dict[Primitive, Form] = {
    **NUMPY_FORMS,
    P.CONST: Form(_const, precedence=lambda app: UNARY if _const(app).startswith("-") else ATOM),
    P.SIZE: call_form(lambda app: _made(app, "asarray", dim_text(app.params["dim"]), dtype=DType.I64)),
    P.ZEROS: _filled("zeros"),
    P.ONES: _filled("ones"),
    P.FULL: Form(_full, precedence=lambda app: ATOM if _is_literal(app.args[0]) else ADDITIVE),
    P.ARANGE: call_form(_arange),
    P.ASTYPE: call_form(_astype),
    P.CUMSUM: scan_form(_running),
    P.CUMPROD: scan_form(_running),
    P.PARITY: Form(_parity),
    P.POPCOUNT_LE: Form(_popcount_le),
    P.SUM: reduction("sum"),  # the standard has no einsum: the product, then its sum
    P.TRANSPOSE: call_form(_transpose),
    P.EXPAND_DIMS: call_form(lambda app: app.call("expand_dims", app.args[0], f"axis={app.params['axis']}")),
    P.STACK: call_form(lambda app: app.call("stack", f"[{', '.join(map(str, app.args))}]",
                                            f"axis={app.params['axis']}")),
    P.CONCAT: call_form(lambda app: app.call("concat", f"[{', '.join(map(str, app.args))}]",
                                             f"axis={app.params['axis']}")),
    P.INDEX: Form(_index, _index_helper, ATOM),
    P.INDEX_ADD: call_form(_index_add, helper="index_add"),
    P.GATHER: call_form(_gather, helper="gather"),
    P.GATHER_ADD: call_form(_gather_add, helper="gather_add"),
}
ARRAY_API_FORMS.update({prim: _cast_to(ARRAY_API_FORMS[prim], _result_dtype) for prim in (
    *P.UNARY_FLOAT, P.NEG, P.ABS, P.SIGN, *P.ARITHMETIC, *P.REDUCTIONS, P.SOFTMAX, P.MATMUL,
    P.STACK, P.CONCAT)})
ARRAY_API_FORMS.update({prim: _cast_to(ARRAY_API_FORMS[prim], _common_dtype) for prim in P.COMPARISON})


def _where(app: Application) -> str:
    """`xp.where(c, a, b)`; of two Python literals, the first becomes an array
    (the standard takes one scalar at most)."""
    c, a, b = app.args
    if _is_literal(a) and _is_literal(b):
        a = Arg(_made(app, "asarray", a, dtype=_common_dtype(app, 1)))
    return app.call("where", c, a, b)




def _bool_extreme(form: Form, name: str) -> Form:
    """max and min of bools are any and all (the standard orders numbers only)."""
    def text(app: Application) -> str:
        t = app.arg_types[0]
        if isinstance(t, ArrayType) and t.dtype is DType.BOOL:
            return app.call(name, app.args[0], f"axis={axes_text(app.params['axes'])}")
        return form.text(app)
    return Form(text, form.helper, form.precedence)


ARRAY_API_FORMS[P.MAX] = _bool_extreme(ARRAY_API_FORMS[P.MAX], "any")
ARRAY_API_FORMS[P.MIN] = _bool_extreme(ARRAY_API_FORMS[P.MIN], "all")
ARRAY_API_FORMS[P.WHERE] = _cast_to(call_form(_where), lambda app: _common_dtype(app, 1), first=1)


_NAMESPACE = '''\
def _namespace(function, dtypes, /, **arguments):
    """The array namespace and device of the arguments (NumPy's for Python numbers
    alone), checked to make the dtypes named. Arrays of two libraries or on two
    devices, or a dtype the library cannot make there, are a TypeError."""
    arrays = {}
    pending = list(arguments.items())
    while pending:
        name, value = pending.pop(0)
        if isinstance(value, (tuple, list)) and any(_is_array(v) for v in value):
            pending.extend((f"{name}[{k}]", v) for k, v in enumerate(value))
        elif _is_array(value):
            arrays[name] = value
    if not arrays:
        import numpy
        arrays["(numbers)"] = numpy.asarray(0.0)
    namespaces, devices = {}, {}
    for name, value in arrays.items():
        xp = namespaces.setdefault(array_api_compat.array_namespace(value), name)
        if len(namespaces) > 1:
            first = next(iter(namespaces.values()))
            raise TypeError(f"{function}: arguments {first} ({_library(arrays[first])}) and {name} "
                            f"({_library(value)}) come from different array libraries; "
                            "convert them to one")
        devices.setdefault(str(array_api_compat.device(value)), name)
        if len(devices) > 1:
            (a, first), (b, _) = devices.items()
            raise TypeError(f"{function}: arguments {first} (on {a}) and {name} (on {b}) are on "
                            "different devices; move them to one")
    (xp,) = namespaces
    device = array_api_compat.device(next(iter(arrays.values())))
    for dtype in dtypes:
        _check_dtype(function, xp, device, dtype)
    return xp, device


def _is_array(value):
    return array_api_compat.is_array_api_obj(value) and not isinstance(value, (bool, int, float, complex))


def _library(value):
    return f"{type(value).__module__}.{type(value).__qualname__}"


_DTYPES_CHECKED = set()


def _check_dtype(function, xp, device, name):
    """A TypeError unless xp makes arrays of the dtype called name on device (JAX
    makes float32 when asked for float64, unless jax_enable_x64 is set)."""
    key = (xp.__name__, str(device), name)
    if key in _DTYPES_CHECKED:
        return
    dtype = getattr(xp, name, None)
    with warnings.catch_warnings():  # JAX warns that it truncates: the TypeError says so
        warnings.simplefilter("ignore")
        made = None if dtype is None else xp.asarray(0, dtype=dtype, device=device).dtype
    if made is None or made != dtype:
        hint = "; enable jax_enable_x64" if "jax" in xp.__name__ else ""
        raise TypeError(f"{function}: {xp.__name__} cannot make {name} arrays on {device}{hint}")
    _DTYPES_CHECKED.add(key)'''


ARRAY_API_ONLY: tuple[Helper, ...] = (
    Helper("embedded", '''\
def _embedded(xp, value, key, target):
    """An array like target, zero but for value at key (ints and slices on the
    leading axes), made by concatenating zeros around it: nothing is written into."""
    region, inner = [], []
    for axis, index in enumerate(key):
        size = target.shape[axis]
        if not isinstance(index, slice):  # an int, or a 0-d array (Dask computes it here)
            index = int(index)
            region.append((index % size, index % size + 1))
        else:
            lo, hi, _ = index.indices(size)
            region.append((lo, hi))
            inner.append(hi - lo)
    value = xp.broadcast_to(xp.astype(xp.asarray(value), target.dtype), (*inner, *target.shape[len(key):]))
    for axis, index in enumerate(key):
        if not isinstance(index, slice):
            value = xp.expand_dims(value, axis=axis)
    for axis, (lo, hi) in enumerate(region):
        parts = [value]
        for where, size in ((0, lo), (1, target.shape[axis] - hi)):
            if size:
                shape = (*value.shape[:axis], size, *value.shape[axis + 1:])
                zeros = xp.zeros(shape, dtype=target.dtype, device=array_api_compat.device(target))
                parts.insert(where * len(parts), zeros)
        value = xp.concat(parts, axis=axis) if len(parts) > 1 else value
    return value'''),
    Helper("namespace", _NAMESPACE),
    Helper("int", '''\
def _int(i):
    """An index i (a 0-d integer array) as a Python int, for a key that also has
    slices (the standard takes arrays only in keys of arrays); a JAX array traced
    by jax.jit has no value yet and is kept (JAX takes it in any key)."""
    if array_api_compat.is_jax_array(i):
        import jax
        try:
            return int(i)
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
            return i
    return int(i)'''),
    Helper("cond", '''\
def _cond(cond, then, orelse, where=None):
    """then() if cond else orelse(), one branch run, as a Python if; under
    jax.jit, where cond is traced and has no value yet, jax.lax.cond (both
    branches traced, one run), or, given where (xp.where, for two branches that
    only read arrays), both run and where picks: cheaper than a cond, and as safe
    (jax.lax.cond traces both branches too)."""
    if array_api_compat.is_jax_array(cond):
        import jax
        try:
            cond = bool(cond)
        except jax.errors.ConcretizationTypeError:
            if where is not None:
                return _picked(where, cond, then(), orelse())
            return jax.lax.cond(cond, then, orelse)
    return then() if cond else orelse()


def _picked(where, cond, a, b):
    """where(cond, a, b), item by item for tuples."""
    if isinstance(a, tuple):
        return tuple(_picked(where, cond, x, y) for x, y in zip(a, b))
    return where(cond, a, b)'''),
    Helper("fold", '''\
def _fold(xp, step, state, xs):
    """The state after state = step(state, x) for each row x of xs in turn (xs: an
    array, or a tuple of arrays with as many rows): a Python loop; on JAX,
    jax.lax.scan, which jax.jit compiles as one loop, the step traced once (not
    over no rows, where it could index an empty array)."""
    if array_api_compat.is_jax_namespace(xp) and _length(xs) > 0:
        import jax
        return jax.lax.scan(lambda state, x: (step(state, x), None), state, xs)[0]
    for x in _rows(xs):
        state = step(state, x)
    return state''', ("rows",)),
    Helper("scan", '''\
def _scan(xp, step, state, xs, no_rows):
    """The last state, and the rows stacked on a new leading axis, of
    state, rows = step(state, x) for each row x of xs in turn (rows: a tuple of
    arrays; no_rows, returned where xs has none: arrays of 0 rows): a Python
    loop; on JAX, jax.lax.scan, which jax.jit compiles as one loop, the step
    traced once (not over no rows, where it could index an empty array)."""
    if array_api_compat.is_jax_namespace(xp) and _length(xs) > 0:
        import jax
        return jax.lax.scan(step, state, xs)
    rows = []
    for x in _rows(xs):
        state, row = step(state, x)
        rows.append(row)
    if not rows:
        return state, no_rows
    return state, tuple(xp.stack(column, axis=0) for column in zip(*rows))''', ("rows",)),
    Helper("rows", '''\
def _rows(xs):
    """The rows of xs one by one: xs[i, ...] of an array (the standard iterates
    no arrays), a tuple of their rows of a tuple of arrays with as many rows."""
    if isinstance(xs, tuple):
        yield from zip(*map(_rows, xs))
        return
    for i in range(xs.shape[0]):
        yield xs[i, ...]


def _length(xs):
    """The number of rows of xs, an array or a tuple of arrays with as many rows."""
    return _length(xs[0]) if isinstance(xs, tuple) else xs.shape[0]'''),
    Helper("gather", '''\
def _gather(xp, x, key):
    """x[key] for integer arrays key on the leading axes of x (NumPy's fancy
    indexing, negative indices counted from the end), as one take along the
    flattened leading axes."""
    flat, lead = _flat_key(xp, key, x.shape)
    rows = xp.reshape(x, (lead, *x.shape[len(key):]))
    taken = xp.take(rows, xp.reshape(flat, (-1,)), axis=0)
    return xp.reshape(taken, (*flat.shape, *x.shape[len(key):]))''', ("flat_key",)),
    Helper("flat_key", '''\
def _flat_key(xp, key, shape):
    """Integer arrays key on the leading axes of shape (broadcast together,
    negative indices counted from the end) as one index into those axes
    flattened, and the flattened length."""
    key = xp.broadcast_arrays(*key) if len(key) > 1 else key
    flat, lead = None, 1
    for axis, i in enumerate(key):
        i = xp.where(i < 0, i + shape[axis], i)
        flat = i if flat is None else flat * shape[axis] + i
        lead *= shape[axis]
    return flat, lead'''),
)


ARRAY_API_REPLACED: dict[str, Helper] = {h.name: h for h in (
    Helper("shifted", '''\
def _shifted(xp, x, axis, identity):
    """x moved one item along axis, the identity first and the last item dropped:
    an exclusive scan is the inclusive scan of this."""
    first = x[(slice(None),) * axis + (slice(0, 1), ...)]
    rest = x[(slice(None),) * axis + (slice(0, -1), ...)]
    return xp.concat([xp.full_like(first, identity), rest], axis=axis)'''),
    Helper("erf", '''\
def _erf(xp, x):
    """The error function, to double precision (W. J. Cody's approximations)."""
    x64 = xp.astype(x, xp.float64)
    y = xp.abs(x64)
    near_zero = y <= 0.46875
    inner = _erf_near_zero(xp.where(near_zero, x64, 0.0))
    outer = xp.copysign((0.5 - _erfc_away_from_zero(xp, xp.maximum(y, 0.46875))) + 0.5, x64)
    return xp.astype(xp.where(near_zero, inner, outer), x.dtype)''', ("cody",)),
    Helper("erfc", '''\
def _erfc(xp, x):
    """1 - erf(x), to double precision also where it is tiny (W. J. Cody's approximations)."""
    x64 = xp.astype(x, xp.float64)
    y = xp.abs(x64)
    near_zero = y <= 0.46875
    inner = 1.0 - _erf_near_zero(xp.where(near_zero, x64, 0.0))
    tail = _erfc_away_from_zero(xp, xp.maximum(y, 0.46875))
    outer = xp.where(x64 < 0.0, 2.0 - tail, tail)
    return xp.astype(xp.where(near_zero, inner, outer), x.dtype)''', ("cody",)),
    Helper("logsumexp", '''\
def _logsumexp(xp, x, axis):
    """log(sum(exp(x))) over axis, shifted by the maximum; all -inf gives -inf."""
    shift = xp.max(x, axis=axis, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0.0)
    total = xp.log(xp.sum(xp.exp(x - shift), axis=axis, keepdims=True))
    return xp.squeeze(total + shift, axis=axis)'''),
    Helper("index_add", '''\
def _index_add(xp, target, value, key):
    """A copy of target with value added into target[key] (key: ints and slices)."""
    key = (*key, ...)
    if array_api_compat.is_jax_array(target):  # takes 0-d arrays, traced ones too, beside slices
        return target.at[key].add(value)
    if array_api_compat.is_dask_array(target):  # Dask assigns to slices only: embed value in zeros
        return target + _embedded(xp, value, key[:-1], target)
    # the standard takes 0-d arrays only in keys of arrays alone (no slices, no ...)
    key = tuple(index if isinstance(index, slice) or index is ... else int(index) for index in key)
    out = xp.asarray(target, copy=True)
    out[key] = out[key] + value
    return out''', ("embedded",)),
    Helper("gather_add", '''\
def _gather_add(xp, target, value, key):
    """A copy of target with value added at the integer arrays key on its leading
    axes; repeated indices accumulate. NumPy and CuPy use add.at, PyTorch
    index_put_, JAX .at[].add; other libraries a one-hot product."""
    key = tuple(xp.where(i < 0, i + target.shape[axis], i) for axis, i in enumerate(key))
    if array_api_compat.is_jax_array(target):
        return target.at[key].add(value)
    if array_api_compat.is_torch_array(target):
        value = xp.broadcast_to(xp.asarray(value, dtype=target.dtype), (*xp.broadcast_arrays(*key)[0].shape,
                                                                         *target.shape[len(key):]))
        return xp.asarray(target, copy=True).index_put_(key, value, accumulate=True)
    if array_api_compat.is_numpy_array(target):
        import numpy
        out = numpy.array(target)
        numpy.add.at(out, key, value)
        return out
    if array_api_compat.is_cupy_array(target):
        import cupyx
        out = target.copy()
        cupyx.scatter_add(out, key, value)
        return out
    flat, lead = _flat_key(xp, key, target.shape)
    rest = target.shape[len(key):]
    rows = xp.broadcast_to(value, (*flat.shape, *rest))
    flat = xp.reshape(flat, (-1,))
    rows = xp.reshape(rows, (flat.shape[0], -1))
    one_hot = xp.astype(xp.arange(lead, device=array_api_compat.device(target))[:, None] == flat[None, :],
                        target.dtype)
    return target + xp.reshape(one_hot @ rows, target.shape)''', ("flat_key",)),
)}


ARRAY_API_HELPERS: tuple[Helper, ...] = ARRAY_API_ONLY + tuple(
    ARRAY_API_REPLACED.get(h.name, h) for h in NUMPY_HELPERS
    if h.name not in ("float_dtype", "add_at", "index_add_into", "gather_add_into"))

REVERSAL = call_form(lambda app: app.call("flip", app.args[0], "axis=0"))
"""`xp.flip(x, axis=0)`: PyTorch has no slices of negative step (`x[::-1]`); a view on
NumPy and a copy on PyTorch, as those libraries flip."""

ARRAY_API = Backend("array-api", "xp", ("import warnings", "", "import array_api_compat"), ARRAY_API_FORMS,
                    ARRAY_API_HELPERS, REVERSAL, helper_args="xp, ", portable=True)
