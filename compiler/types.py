"""Types of catad values: element types, symbolic array shapes, tuples.

    dtype  ::= f64 | f32 | i64 | bool
    dim    ::= c0 + c1*n1 + ... + ck*nk        affine in size variables n1..nk
    type   ::= dtype[dim, ...]                 ArrayType (a scalar has shape ())
             | (type, ...)                     TupleType

Sizes are `Dim`s: integer affine expressions over size variables, kept in a
normal form so that equal sizes compare equal (`n - 1 + 1 == n`).
Literal scalars are *weak* (NEP 50): `2.0 * x` keeps x's f32.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DType(enum.Enum):
    BOOL = "bool"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"

    def __str__(self) -> str:
        return self.value

    @property
    def is_float(self) -> bool:
        return self in (DType.F32, DType.F64)

    @property
    def numpy_name(self) -> str:
        return {"bool": "bool_", "i64": "int64", "f32": "float32", "f64": "float64"}[self.value]


_RANK = {DType.BOOL: 0, DType.I64: 1, DType.F32: 2, DType.F64: 3}


@dataclass(frozen=True, order=True)
class Dim:
    """An affine size: `const + sum(coeff * var)`; terms sorted, no zero coefficients."""

    const: int = 0
    terms: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def of(value: "int | str | Dim") -> "Dim":
        if isinstance(value, Dim):
            return value
        if isinstance(value, int):
            return Dim(value)
        return Dim(0, ((value, 1),))

    def __add__(self, other: "Dim | int") -> "Dim":
        other = Dim.of(other)
        coeffs = dict(self.terms)
        for var, c in other.terms:
            coeffs[var] = coeffs.get(var, 0) + c
        return Dim(self.const + other.const, tuple(sorted((v, c) for v, c in coeffs.items() if c)))

    def __neg__(self) -> "Dim":
        return Dim(-self.const, tuple((v, -c) for v, c in self.terms))

    def __sub__(self, other: "Dim | int") -> "Dim":
        return self + (-Dim.of(other))

    def scale(self, k: int) -> "Dim":
        if k == 0:
            return Dim(0)
        return Dim(self.const * k, tuple((v, c * k) for v, c in self.terms))

    @property
    def is_constant(self) -> bool:
        return not self.terms

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.terms)

    def substitute(self, subst: "dict[str, Dim]") -> "Dim":
        out = Dim(self.const)
        for var, c in self.terms:
            out = out + (subst[var] if var in subst else Dim.of(var)).scale(c)
        return out

    def evaluate(self, sizes: "dict[str, int]") -> int:
        return self.const + sum(c * sizes[v] for v, c in self.terms)

    def __str__(self) -> str:
        parts: list[str] = []
        for var, c in self.terms:
            sign = "-" if c < 0 else "+"
            mag = abs(c)
            text = var if mag == 1 else f"{mag} * {var}"
            parts.append(f"{sign} {text}")
        if self.const or not parts:
            parts.append(f"{'-' if self.const < 0 else '+'} {abs(self.const)}")
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]


Shape = tuple[Dim, ...]


def shape_str(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class ArrayType:
    """An array (or scalar when `shape == ()`) of one element type."""

    dtype: DType
    shape: Shape = ()
    weak: bool = False  # a literal scalar: its dtype yields to the other operand's

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return str(self.dtype) + (shape_str(self.shape) if self.shape else "")


@dataclass(frozen=True)
class TupleType:
    items: tuple["Type", ...]

    def __str__(self) -> str:
        return "(" + ", ".join(str(t) for t in self.items) + ")"


Type = ArrayType | TupleType


def scalar(dtype: DType, weak: bool = False) -> ArrayType:
    return ArrayType(dtype, (), weak)


F64 = scalar(DType.F64)
I64 = scalar(DType.I64)
BOOL = scalar(DType.BOOL)


def strip_weak(t: Type) -> Type:
    if isinstance(t, ArrayType):
        return ArrayType(t.dtype, t.shape) if t.weak else t
    return TupleType(tuple(strip_weak(x) for x in t.items))


_KIND = {DType.BOOL: 0, DType.I64: 1, DType.F32: 2, DType.F64: 2}


def promote(a: ArrayType, b: ArrayType) -> tuple[DType, bool]:
    """NumPy's result dtype of `a op b` (NEP 50: literals are weak), and its weakness."""
    if a.weak != b.weak:
        weak, strong = (a, b) if a.weak else (b, a)
        # a Python scalar yields to an array of the same or a higher kind
        return (strong.dtype if _KIND[strong.dtype] >= _KIND[weak.dtype] else weak.dtype), False
    if {a.dtype, b.dtype} == {DType.I64, DType.F32}:
        return DType.F64, a.weak
    return (a.dtype if _RANK[a.dtype] >= _RANK[b.dtype] else b.dtype), a.weak


def substitute_type(t: Type, subst: "dict[str, Dim]") -> Type:
    if isinstance(t, ArrayType):
        return ArrayType(t.dtype, tuple(d.substitute(subst) for d in t.shape), t.weak)
    return TupleType(tuple(substitute_type(x, subst) for x in t.items))


def stacked_type(t: Type, length: Dim) -> Type:
    """`t[length]`: `length` values of type `t` stacked on a new leading axis
    (tuples: item by item)."""
    if isinstance(t, TupleType):
        return TupleType(tuple(stacked_type(x, length) for x in t.items))
    return ArrayType(t.dtype, (length, *t.shape))


# What a loop returns: every state stacked (True, a scan), the last state (False,
# a fold), or, for a tuple state, item by item: item k stacked over the steps
# where stacking[k], else item k of the last state (of init when there are no
# steps). A reverse loop stacks its items' cotangents and carries the rest.
Stacking = bool | tuple[bool, ...]


def stacking(flags: tuple[bool, ...]) -> Stacking:
    """Per-item flags, as True or False when they all agree."""
    return flags[0] if flags and len(set(flags)) == 1 else flags


def item_stacked(stacked: Stacking, k: int) -> bool:
    """Whether item k of a loop's tuple state is stacked."""
    return stacked if isinstance(stacked, bool) else stacked[k]


def loop_result_type(state: Type, length: Dim, stacked: Stacking) -> Type:
    """The type of a loop's result over `length` steps of a `state`."""
    if isinstance(stacked, bool):
        return stacked_type(state, length) if stacked else state
    assert isinstance(state, TupleType) and len(state.items) == len(stacked), (state, stacked)
    return TupleType(tuple(stacked_type(t, length) if s else t for t, s in zip(state.items, stacked)))


def loop_name(stacked: Stacking) -> str:
    """`scan`, `fold`, or the stacked items of a loop stacking some: `scan[0, 2]`."""
    if isinstance(stacked, bool):
        return "scan" if stacked else "fold"
    return "scan[" + ", ".join(str(k) for k, s in enumerate(stacked) if s) + "]"
