"""The NumPy backend: whole-array NumPy, `np.exp(x)`, `X @ w`, `np.sum(x, axis=0)`.

The module needs nothing but NumPy. `NUMPY.forms` prints each primitive;
`NUMPY_HELPERS` are the definitions NumPy lacks (the sigmoid without
overflow, erf, logsumexp, scatter-adds), emitted only where used.
"""

from __future__ import annotations

from collections.abc import Callable

from . import primitives as P
from .backend import (ATOM, UNARY, Application, Arg, Backend, Form, Helper, axes_text, call_form,
                      dim_text, function, helper, helper_over_axes, index_items, infix, literal_arg,
                      prefix, reduction, shape_text, tuple_text)
from .primitives import Primitive
from .types import ArrayType, Dim, DType, Type


def _parity(app: Application) -> str:
    """Whether the count of trues is odd: XOR along the axes."""
    return f"{app.call('sum', app.args[0], 'axis=' + axes_text(app.params['axes']))} % 2 == 1"


def _popcount_le(app: Application) -> str:
    a, b = (app.call('sum', x, 'axis=-1') for x in app.args)
    scale = app.params["scale"]
    return f"{a if scale == 1 else f'{scale} * {a}'} <= {b}"


Running = Callable[[Application, str, int], Arg]
"""`running(app, x, axis)`: the inclusive scan of the printed array x along axis."""


def scan_form(running: Running) -> Form:
    """cumsum, cumprod: the backend's inclusive scan `running`; reverse: of the array
    flipped along the axis, flipped back; exclusive: of the array moved one item
    along it (`_shifted`, the identity first)."""
    def printed(app: Application) -> Arg:
        k, x = app.params["axis"], str(app.args[0])
        if app.params["reverse"]:
            x = app.call("flip", x, f"axis={k}")
        if app.params["exclusive"]:
            x = f"_shifted({app.helper_args}{x}, {k}, {int(app.prim is P.CUMPROD)})"
        y = running(app, x, k)
        return Arg(app.call("flip", y, f"axis={k}")) if app.params["reverse"] else y
    return Form(lambda app: printed(app).text, lambda app: "shifted" if app.params["exclusive"] else None,
                lambda app: printed(app).precedence)


def _running(app: Application, x: str, axis: int) -> Arg:
    """`np.cumsum(x, axis=k)`, `np.cumprod(x, axis=k)`."""
    return Arg(app.call("cumsum" if app.prim is P.CUMSUM else "cumprod", x, f"axis={axis}"))


def _einsum_factors(app: Application) -> tuple[ArrayType, ArrayType] | None:
    """Both arguments' types, where they are float arrays (not scalars) of one dtype
    whose shapes align as einsum reads them: one's shape is the other's or its last
    axes (`ij,j`; einsum does not broadcast an axis of size 1)."""
    a, b = app.arg_types
    if not (isinstance(a, ArrayType) and isinstance(b, ArrayType)) or a.weak or b.weak:
        return None
    if a.dtype != b.dtype or not a.dtype.is_float or min(a.rank, b.rank) < 1:
        return None
    longer, shorter = (a, b) if a.rank >= b.rank else (b, a)
    return (a, b) if longer.shape[longer.rank - shorter.rank:] == shorter.shape else None


_SUBSCRIPTS = "ijklmnopqrstuvwxyzabcdefgh"


def _sum(app: Application) -> str:
    """`np.sum(x, axis=k)`; of a product `a * b` printed in place (two float arrays of
    one shape, or one's shape the other's last axes), `np.einsum("ijk,ijk->ij", a, b)`:
    the sum of products in one pass, without the product's array (1.5-3x faster than
    the product then its sum, measured on 14 to 10^6 elements). A float array summed
    over some of its axes is `np.einsum("ij->i", x)` too: NumPy's reduction loops over
    the array's last axis (in memory order) innermost, and pays per row where that
    axis is short (a sum of a C-ordered (1000, 5) over either axis takes 22-25 us, its
    einsum 6.5-7.5; (100 000, 2) 1.8-1.9 ms against 0.4-0.5). Measured from (1000, 5)
    to (2, 10^6) in both memory orders, the einsum took 0.3-1.0x the sum's time but
    for (2, 10^6) over its short leading axis (1.2x) and a Fortran-ordered (1024, 256)
    over its last (1.4x). A sum over every axis stays `np.sum`: pairwise, as fast,
    and more accurate."""
    x, t, product = app.args[0], app.arg_types[0], app.args[0].application
    axes = app.params["axes"]
    factors = _einsum_factors(product) if product is not None and product.prim is P.MUL else None
    if factors is not None:
        assert isinstance(t, ArrayType), "a product of arrays is an array"
        letters = _subscripts(t.rank)
        a, b = (letters[t.rank - f.rank:] for f in factors)
        return app.call("einsum", f'"{a},{b}->{_kept(t.rank, axes)}"', *product.args)
    if isinstance(t, ArrayType) and t.dtype.is_float and not t.weak and 0 < len(axes) < t.rank:
        return app.call("einsum", f'"{_subscripts(t.rank)}->{_kept(t.rank, axes)}"', x)
    return app.call("sum", x, "axis=" + axes_text(axes))


def _subscripts(rank: int) -> str:
    return _SUBSCRIPTS[:rank]


def _kept(rank: int, axes: tuple[int, ...]) -> str:
    """The subscripts of the axes a sum over `axes` keeps."""
    return "".join(letter for axis, letter in enumerate(_subscripts(rank)) if axis not in axes)


def _const(app: Application) -> str:
    dtype: DType = app.params["dtype"]
    python = {DType.BOOL: bool, DType.I64: int, DType.F32: float, DType.F64: float}[dtype]
    literal = literal_arg(python(app.params["value"]), app.ns).text
    return literal if app.params.get("weak", True) else app.call(dtype.numpy_name, literal)


def _filled(name: str) -> Form:
    """`np.zeros(shape)`, with the dtype unless it is NumPy's default f64."""
    def text(app: Application) -> str:
        dtype: DType = app.params["dtype"]
        extra = "" if dtype is DType.F64 else f", dtype={app.ns}.{dtype.numpy_name}"
        return app.call(name, shape_text(app.params['shape']) + extra)
    return call_form(text)


def _arange(app: Application) -> str:
    lo, hi = app.params["lo"], app.params["hi"]
    return app.call('arange', dim_text(hi)) if lo == Dim(0) else app.call('arange', dim_text(lo), dim_text(hi))


def _astype(app: Application) -> str:
    """`np.float64(x)` for a scalar, `np.asarray(x, dtype=np.float64)` for an array."""
    t = app.arg_types[0]
    if isinstance(t, ArrayType) and t.shape == ():
        return app.call(app.params['dtype'].numpy_name, app.args[0])
    return app.call('asarray', app.args[0], f"dtype={app.ns}.{app.params['dtype'].numpy_name}")


def _transpose(app: Application) -> str:
    """`x.T`, `np.transpose(x, perm)`: a view."""
    perm = app.params["perm"]
    if perm == (1, 0):
        return f"{app.args[0].operand}.T"
    return app.call('transpose', app.args[0], repr(tuple(perm)))


def _expand_dims(app: Application) -> str:
    """`x[:, None]`: a new axis by indexing, a view like `np.expand_dims(x, 1)`
    without its call (about 1 µs less, felt in loops of small arrays)."""
    axis = app.params["axis"]
    t = app.arg_types[0]
    if not isinstance(t, ArrayType) or t.weak:  # a Python number: no indexing
        return app.call("expand_dims", app.args[0], axis)
    if axis < 0:
        assert isinstance(t, ArrayType), "a negative axis needs the array's rank"
        axis += t.rank + 1
    return f"{app.args[0].operand}[{', '.join([':'] * axis + ['None'])}]"


def _stack(app: Application) -> str:
    """`np.array([a, b])` for a stack on a new first axis (several times faster
    than `np.stack` on small arrays; the items have one dtype and shape by
    typing), `np.stack([...], axis=k)` otherwise."""
    items = ", ".join(map(str, app.args))
    if app.params["axis"] == 0:
        return app.call("array", f"[{items}]")
    return app.call("stack", f"[{items}]", f"axis={app.params['axis']}")


def _sequence(name: str) -> Form:
    """`np.name([a, b, ...], axis=k)`"""
    return call_form(lambda app: app.call(name, f"[{', '.join(map(str, app.args))}]", f"axis={app.params['axis']}"))


def _index(app: Application) -> str:
    """`x[i, lo:hi]`"""
    x = app.args[0]
    items = index_items(app.params["spec"], app.arg_types[0], app.args[1:],
                         lambda lo, hi: f"{lo}:{hi}")
    return f"{x.operand}[{', '.join(items) if items else '()'}]"


def fresh_target(app: Application) -> bool:
    """Whether the target of a scatter-add is zeros made for it alone: an inlined
    temporary is printed inside the one expression that reads it, so its
    `np.zeros(...)` text means no one else holds that array, and the helper
    may add into it in place instead of copying it."""
    return app.args[0].text.startswith(f"{app.ns}.zeros(")


def _scatter_helper(name: str) -> Callable[[Application], str]:
    """`name`, or `name_into` (adds in place) when the target is fresh zeros."""
    return lambda app: f"{name}_into" if fresh_target(app) else name


def _index_add(app: Application) -> str:
    """`_index_add(target, value, (i, slice(lo, hi)))`"""
    target, value = app.args[0], app.args[1]
    items = index_items(app.params["spec"], app.arg_types[0], app.args[2:],
                         lambda lo, hi: f"slice({lo or None}, {hi or None})")
    return f"_{_scatter_helper('index_add')(app)}({app.helper_args}{target}, {value}, {tuple_text(items)})"


def gather_key(app: Application, x_type: Type | None, indices: tuple[Arg, ...]) -> list[str]:
    """The index arrays of a gather; with clip, each is clipped into its axis (of
    the size its type gives: `np.clip(i, 0, n - 1)`)."""
    if app.params['clip']:
        assert isinstance(x_type, ArrayType), "a clipped gather needs its array's type"
        return [app.call('clip', i, 0, dim_text(x_type.shape[k] - 1)) for k, i in enumerate(indices)]
    return [str(i) for i in indices]


def _gather(app: Application) -> str:
    """`x[i, j]`"""
    x = app.args[0]
    return f"{x.operand}[{', '.join(gather_key(app, app.arg_types[0], app.args[1:]))}]"


def _gather_add(app: Application) -> str:
    """`_gather_add(target, value, (i, j))`"""
    target, value = app.args[0], app.args[1]
    key = gather_key(app, app.arg_types[0], app.args[2:])
    return f"_{_scatter_helper('gather_add')(app)}({app.helper_args}{target}, {value}, {tuple_text(key)})"


NUMPY_FORMS: dict[Primitive, Form] = {
    # elementwise, one argument
    P.BY_NAME["exp"]: function("exp"),
    P.BY_NAME["log"]: function("log"),
    P.BY_NAME["log1p"]: function("log1p"),
    P.BY_NAME["expm1"]: function("expm1"),
    P.BY_NAME["sqrt"]: function("sqrt"),
    P.BY_NAME["sin"]: function("sin"),
    P.BY_NAME["cos"]: function("cos"),
    P.BY_NAME["tan"]: function("tan"),
    P.BY_NAME["tanh"]: function("tanh"),
    P.BY_NAME["sigmoid"]: helper("sigmoid"),
    P.BY_NAME["softplus"]: helper("softplus"),
    P.BY_NAME["relu"]: helper("relu"),
    P.BY_NAME["gelu"]: helper("gelu"),
    P.BY_NAME["silu"]: helper("silu"),
    P.BY_NAME["elu"]: helper("elu"),
    P.BY_NAME["erf"]: helper("erf"),
    P.NEG: prefix("-"),
    P.ABS: function("abs"),
    P.SIGN: function("sign"),
    P.NOT: function("logical_not"),
    # elementwise, two arguments
    P.ADD: infix("+"),
    P.SUB: infix("-"),
    P.MUL: infix("*"),
    P.DIV: infix("/"),
    P.POW: infix("**"),
    P.FLOORDIV: infix("//"),
    P.MOD: infix("%"),
    P.MINIMUM: function("minimum"),
    P.MAXIMUM: function("maximum"),
    P.LT: infix("<"),
    P.LE: infix("<="),
    P.GT: infix(">"),
    P.GE: infix(">="),
    P.EQ: infix("=="),
    P.NE: infix("!="),
    P.AND: infix("&"),
    P.OR: infix("|"),
    P.XOR: infix("^"),
    P.WHERE: function("where"),
    # leaves
    P.CONST: Form(_const, precedence=lambda app: UNARY if _const(app).startswith("-") else ATOM),
    P.SIZE: call_form(lambda app: app.call('int64', dim_text(app.params['dim']))),
    P.ZEROS: _filled("zeros"),
    P.ONES: _filled("ones"),
    P.FULL: call_form(lambda app: app.call('full', shape_text(app.params['shape']), app.args[0])),
    P.ARANGE: call_form(_arange),
    P.ASTYPE: call_form(_astype),
    # reductions and normalisations
    P.SUM: call_form(_sum),
    P.MEAN: reduction("mean"),
    P.PROD: reduction("prod"),
    P.MAX: reduction("max"),
    P.MIN: reduction("min"),
    P.LOGSUMEXP: helper_over_axes("logsumexp", "axes"),
    P.SOFTMAX: helper_over_axes("softmax", "axis"),
    P.CUMSUM: scan_form(_running),
    P.CUMPROD: scan_form(_running),
    P.PARITY: Form(_parity),
    P.POPCOUNT_LE: Form(_popcount_le),
    # linear algebra and shape
    P.MATMUL: infix("@"),
    P.TRANSPOSE: call_form(_transpose),
    P.EXPAND_DIMS: call_form(_expand_dims),
    P.BROADCAST_TO: call_form(
        lambda app: app.call('broadcast_to', app.args[0], shape_text(app.params['shape']))),
    P.RESHAPE: call_form(lambda app: app.call('reshape', app.args[0], shape_text(app.params['shape']))),
    P.STACK: call_form(_stack),
    P.CONCAT: _sequence("concatenate"),
    # indexing
    P.INDEX: call_form(_index),
    P.GATHER: call_form(_gather),
    P.INDEX_ADD: call_form(_index_add, helper=_scatter_helper("index_add")),
    P.GATHER_ADD: call_form(_gather_add, helper=_scatter_helper("gather_add")),
}


_CODY = '''\
# W. J. Cody, "Rational Chebyshev approximations for the error function",
# Math. Comp. 23 (1969): coefficients of netlib's specfun CALERF.
_CODY_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
           3.20937758913846947e03, 1.85777706184603153e-1)
_CODY_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
           2.84423683343917062e03)
_CODY_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
           2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_CODY_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)
_CODY_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_CODY_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)


def _erf_near_zero(x):
    """erf(x) for |x| <= 0.46875, as x A(x^2) / B(x^2)."""
    z = x * x
    num, den = _CODY_A[4] * z, z
    for a, b in zip(_CODY_A[:3], _CODY_B[:3]):
        num, den = (num + a) * z, (den + b) * z
    return x * (num + _CODY_A[3]) / (den + _CODY_B[3])


def _erfc_away_from_zero({xp}y):
    """erfc(y) for y >= 0.46875."""
    y = {np}.minimum(y, 40.0)  # erfc underflows to 0 long before 40
    middle = y <= 4.0
    u = {np}.where(middle, y, 4.0)  # y <= 4: exp(-y^2) C(y) / D(y)
    num, den = _CODY_C[8] * u, u
    for c, d in zip(_CODY_C[:7], _CODY_D[:7]):
        num, den = (num + c) * u, (den + d) * u
    near = (num + _CODY_C[7]) / (den + _CODY_D[7])
    v = {np}.where(middle, 4.0, y)  # y > 4: exp(-y^2) / y (1/sqrt(pi) - z P(z) / Q(z)), z = 1/y^2
    z = 1.0 / (v * v)
    num, den = _CODY_P[5] * z, z
    for p, q in zip(_CODY_P[:4], _CODY_Q[:4]):
        num, den = (num + p) * z, (den + q) * z
    far = (0.56418958354775628695 - z * (num + _CODY_P[4]) / (den + _CODY_Q[4])) / v
    s = {np}.floor(y * 16.0) / 16.0  # exp(-y^2) = exp(-s^2) exp(-(y - s)(y + s)), s^2 exact
    return {np}.exp(-s * s) * {np}.exp(-(y - s) * (y + s)) * {np}.where(middle, near, far)'''

NUMPY_HELPERS: tuple[Helper, ...] = (
    Helper("cody", _CODY),
    Helper("float_dtype", '''\
def _float_dtype(x):
    """The dtype a float function of x has: x's own if x is float, else f64."""
    return x.dtype if x.dtype.kind == "f" else {np}.float64'''),
    Helper("erf", '''\
def _erf(x):
    """The error function, to double precision (W. J. Cody's approximations)."""
    x = {np}.asarray(x)
    x64 = x.astype({np}.float64)
    y = {np}.abs(x64)
    near_zero = y <= 0.46875
    inner = _erf_near_zero({np}.where(near_zero, x64, 0.0))
    outer = {np}.copysign((0.5 - _erfc_away_from_zero({xp}{np}.maximum(y, 0.46875))) + 0.5, x64)
    return {np}.where(near_zero, inner, outer).astype(_float_dtype(x))[()]''', ("cody", "float_dtype")),
    Helper("erfc", '''\
def _erfc(x):
    """1 - erf(x), to double precision also where it is tiny (W. J. Cody's approximations)."""
    x = {np}.asarray(x)
    x64 = x.astype({np}.float64)
    y = {np}.abs(x64)
    near_zero = y <= 0.46875
    inner = 1.0 - _erf_near_zero({np}.where(near_zero, x64, 0.0))
    tail = _erfc_away_from_zero({xp}{np}.maximum(y, 0.46875))
    outer = {np}.where(x64 < 0.0, 2.0 - tail, tail)
    return {np}.where(near_zero, inner, outer).astype(_float_dtype(x))[()]''', ("cody", "float_dtype")),
    Helper("sigmoid", '''\
def _sigmoid({xp}x):
    """1 / (1 + exp(-x)), without overflow."""
    return {np}.exp(-{np}.logaddexp(0.0, -x))'''),
    Helper("softplus", '''\
def _softplus({xp}x):
    """log(1 + exp(x)), without overflow."""
    return {np}.logaddexp(0.0, x)'''),
    Helper("relu", '''\
def _relu({xp}x):
    """max(x, 0)."""
    return {np}.maximum(x, 0.0)'''),
    Helper("gelu", '''\
def _gelu({xp}x):
    """x Phi(x) = x (1 + erf(x / sqrt(2))) / 2, through erfc: accurate for x << 0 too."""
    return 0.5 * x * _erfc({xp}-x / 1.4142135623730951)''', ("erfc",)),
    Helper("silu", '''\
def _silu({xp}x):
    """x sigmoid(x)."""
    return x * _sigmoid({xp}x)''', ("sigmoid",)),
    Helper("elu", '''\
def _elu({xp}x):
    """x for x > 0, exp(x) - 1 otherwise."""
    return {np}.where(x > 0, x, {np}.expm1({np}.minimum(x, 0)))'''),
    Helper("logsumexp", '''\
def _logsumexp(x, axis):
    """log(sum(exp(x))) over axis, shifted by the maximum; all -inf gives -inf."""
    x = {np}.asarray(x, dtype={np}.result_type(x, 1.0))
    shift = {np}.max(x, axis=axis, keepdims=True, initial=-{np}.inf)
    shift = {np}.where({np}.isfinite(shift), shift, 0.0)
    with {np}.errstate(divide="ignore"):
        total = {np}.log({np}.sum({np}.exp(x - shift), axis=axis, keepdims=True))
    return {np}.squeeze(total + shift, axis=axis)[()]'''),
    Helper("logsumexp_weights", '''\
def _logsumexp_weights(x, axis):
    """logsumexp(x) over axis and its weights exp(x - logsumexp(x)), as e / sum(e) of
    the shifted e = exp(x - max): one exp per item. A row all -inf gives -inf and nan."""
    x = {np}.asarray(x, dtype={np}.result_type(x, 1.0))
    top = {np}.max(x, axis=axis, keepdims=True, initial=-{np}.inf)
    shift = {np}.where({np}.isfinite(top), top, 0.0)
    e = {np}.exp(x - shift)
    total = {np}.sum(e, axis=axis, keepdims=True)
    with {np}.errstate(divide="ignore"):
        lse = {np}.log(total) + shift
    weights = e / total
    if {np}.isposinf(top).any():  # exp(x - inf): 0, nan at +inf; not an overflowed e / inf
        weights = {np}.where({np}.isposinf(top), {np}.exp(x - lse), weights)
    return {np}.squeeze(lse, axis=axis)[()], weights'''),
    Helper("shifted", '''\
def _shifted({xp}x, axis, identity):
    """x moved one item along axis, the identity first and the last item dropped:
    an exclusive scan is the inclusive scan of this."""
    first = x[(slice(None),) * axis + (slice(0, 1),)]
    rest = x[(slice(None),) * axis + (slice(0, -1),)]
    return {np}.concatenate([{np}.full_like(first, identity), rest], axis=axis)'''),
    Helper("softmax", '''\
def _softmax({xp}x, axis):
    """exp(x) / sum(exp(x)) along axis, shifted by the maximum."""
    shift = {np}.max(x, axis=axis, keepdims=True)
    e = {np}.exp(x - {np}.where({np}.isfinite(shift), shift, 0.0))
    return e / {np}.sum(e, axis=axis, keepdims=True)'''),
    Helper("index_add", '''\
def _index_add(target, value, key):
    """A copy of target with value added into target[key]."""
    out = {np}.array(target)
    out[key] += value
    return out'''),
    Helper("add_at", '''\
def _add_at(out, key, value):
    """np.add.at(out, key, value): value added at the index arrays key, repeats
    accumulating. Where key indexes every axis of a C-ordered out, in range, with
    4096 values or more, they are added at the flat positions: add.at's fast path
    (one index array into a 1-D array) takes about 3 ns a value, its general one
    13 (its fixed cost, about 20 us, is lower below a few thousand values)."""
    if (len(key) < out.ndim or {np}.size(value) < 4096 or not out.flags.c_contiguous
            or not all(0 <= {np}.min(i) and {np}.max(i) < n for i, n in zip(key, out.shape))):
        {np}.add.at(out, key, value)
        return
    flat = 0
    for i, n in zip(key, out.shape):
        flat = flat * n + i
    flat, value = {np}.broadcast_arrays(flat, value)
    {np}.add.at(out.reshape(-1), flat.ravel(), value.ravel())'''),
    Helper("gather_add", '''\
def _gather_add(target, value, key):
    """A copy of target with value added at the index arrays key; repeats accumulate."""
    out = {np}.array(target)
    _add_at(out, key, value)
    return out''', ("add_at",)),
    Helper("index_add_into", '''\
def _index_add_into(zeros, value, key):
    """zeros, a fresh array no one else holds, with value added into zeros[key]."""
    zeros[key] += value
    return zeros'''),
    Helper("gather_add_into", '''\
def _gather_add_into(zeros, value, key):
    """zeros, a fresh array no one else holds, with value added at the index arrays
    key; repeats accumulate."""
    _add_at(zeros, key, value)
    return zeros''', ("add_at",)),
)


REVERSAL = call_form(lambda app: f"{app.args[0].operand}[::-1]")
"""`x[::-1]`: a view, where the gather it prints would copy. Nothing the module
writes into is a view (a scan writes its rows into fresh zeros, a scatter-add
adds in place only into zeros printed where it reads them, `fresh_target`)."""

NUMPY = Backend("numpy", "np", ("import numpy as np",), NUMPY_FORMS, NUMPY_HELPERS, REVERSAL)
