"""The scalar algebra derivatives are taken over.

Forward and reverse mode never assume the scalars are reals: wherever the
structural rules need to add cotangents (fan-out), make a zero (a discarded
value) or multiply (a chain rule), they ask an `Algebra`. Reals use + and *;
Z2 (booleans) uses XOR as addition and AND as multiplication, which is the
reverse derivative category in which circuits are learnt by reverse
derivative ascent (Wilson & Zanasi).

A derivative that is symbolically zero is `ZERO` and costs nothing: adding it
is the identity, and only when a zero must exist as an array is it made.
"""

from __future__ import annotations

from dataclasses import dataclass

from .primitives import ADD, AND, MUL, XOR, ZEROS, ONES, Primitive, params
from .types import ArrayType, DType, TupleType, Type
from .unary_builder import Builder, Value


class _Zero:
    """The symbolic zero derivative."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ZERO"


ZERO = _Zero()

# A derivative of a value: ZERO, a Value, or (for tuples) a tuple of derivatives.
Deriv = object


@dataclass(frozen=True)
class Algebra:
    name: str
    add_prim: Primitive
    mul_prim: Primitive
    dtypes: frozenset[DType]  # element types that carry derivatives

    def carries(self, t: Type) -> bool:
        """Whether values of type `t` have (nonzero) derivatives in this algebra."""
        if isinstance(t, TupleType):
            return any(self.carries(x) for x in t.items)
        return t.dtype in self.dtypes

    def add(self, b: Builder, x: Deriv, y: Deriv) -> Deriv:
        """x + y, with ZERO as the unit and tuples added item by item."""
        if x is ZERO:
            return y
        if y is ZERO:
            return x
        if _is_tuple(x) or _is_tuple(y):
            xs, ys = self.split(b, x), self.split(b, y)
            return tuple(self.add(b, p, q) for p, q in zip(xs, ys))
        return b.prim(self.add_prim, (), x, y)

    def mul(self, b: Builder, x: Value, y: Value) -> Value:
        return b.prim(self.mul_prim, (), x, y)

    def split(self, b: Builder, d: Deriv) -> tuple:
        """The items of a tuple-typed derivative."""
        if isinstance(d, tuple):
            return d
        assert isinstance(d, Value) and isinstance(d.type, TupleType)
        return tuple(b.get(d, k) for k in range(len(d.type.items)))

    def zeros(self, b: Builder, t: Type) -> Value:
        """A concrete zero of type `t`."""
        if isinstance(t, TupleType):
            return b.tuple(*(self.zeros(b, x) for x in t.items))
        return b.prim(ZEROS, params(shape=t.shape, dtype=self.derivative_dtype(t)))

    def ones(self, b: Builder, t: ArrayType) -> Value:
        return b.prim(ONES, params(shape=t.shape, dtype=self.derivative_dtype(t)))

    def derivative_dtype(self, t: ArrayType) -> DType:
        return t.dtype if t.dtype in self.dtypes else next(iter(sorted(self.dtypes, key=str)))

    def materialise(self, b: Builder, d: Deriv, t: Type) -> Value:
        """A derivative as one concrete value of type `t` (zeros made, tuples packed)."""
        if d is ZERO:
            return self.zeros(b, t)
        if isinstance(d, tuple):
            assert isinstance(t, TupleType)
            return b.tuple(*(self.materialise(b, x, s) for x, s in zip(d, t.items)))
        return d


def _is_tuple(d: Deriv) -> bool:
    """A derivative of a tuple: a Python tuple of derivatives, or one tuple value."""
    return isinstance(d, tuple) or (isinstance(d, Value) and isinstance(d.type, TupleType))


REALS = Algebra("reals", ADD, MUL, frozenset({DType.F64, DType.F32}))
Z2 = Algebra("Z2", XOR, AND, frozenset({DType.BOOL}))
