"""unary_eval: every UNF instruction on hand-built terms, evaluated and type-checked.

Each term is run by the interpreter and checked by `unary_check` on the
same stack; `run_and_check` asserts that every output entry's value has the
type the checker gives it (at the concrete sizes).
"""

from __future__ import annotations

import numpy as np
import pytest

from catad.compiler.primitives import (ADD, CONST, INDEX, LT, MUL, SIZE, SUB, SUM, ZEROS, Params,
                                       Primitive, params)
from catad.compiler.typed import SizeBinding
from catad.compiler.types import (BOOL, F64, I64, ArrayType, Dim, DType, TupleType, Type, scalar)
from catad.compiler.unary import (Build, Drop, Get, If, Loop, Map, Prim, Reduce, Seq, Term, Tuple,
                                  UFunction, Var, seq)
from catad.compiler.unary_check import UnaryTypeError, check_function, check_term
from catad.compiler.unary_eval import evaluate, run, type_of_value

n, m = Dim.of("n"), Dim.of("m")
F32 = scalar(DType.F32)
LIT = scalar(DType.F64, weak=True)


def vec(*shape: Dim | int, dtype: DType = DType.F64) -> ArrayType:
    return ArrayType(dtype, tuple(Dim.of(d) for d in shape))


def op(prim: Primitive, arity: int, ps: Params = ()) -> Term:
    """Apply `prim` to the top `arity` entries and keep only its result."""
    return seq(Prim(prim, ps, arity), Drop(1, arity)) if arity else Prim(prim, ps, 0)


def const(value: float | int | bool, dtype: DType = DType.F64) -> Term:
    return Prim(CONST, params(value=value, dtype=dtype), 0)


def at(array: int, index: int) -> Term:
    """`stack[array][stack[index]]`, the copies dropped."""
    return seq(Var(array), Var(index), op(INDEX, 2, params(spec=(("at",),))))


def binary(prim: Primitive, a: int, b: int) -> Term:
    return seq(Var(a), Var(b), op(prim, 2))


def assert_has_type(value, t: Type, sizes: dict[str, int]) -> None:
    if isinstance(t, TupleType):
        assert isinstance(value, tuple) and len(value) == len(t.items)
        for v, x in zip(value, t.items):
            assert_has_type(v, x, sizes)
        return
    got = type_of_value(value)
    assert got.dtype == t.dtype, (value, t)
    assert got.shape == tuple(Dim(d.evaluate(sizes)) for d in t.shape), (value, t)
    assert got.weak == t.weak, (value, t)


def run_and_check(term: Term, types: tuple[Type, ...], values: list, sizes=None) -> object:
    """Run `term` on `values` (of `types`); check it; return the value on top."""
    sizes = sizes or {}
    out_types = check_term(term, types, sizes_known=set(sizes))
    out = run(term, values, sizes)
    assert len(out) == len(out_types)
    for value, t in zip(out, out_types):
        assert_has_type(value, t, sizes)
    return out[-1]


# ---- straight-line instructions ------------------------------------------------

def test_add_is_var_var_prim_drop():
    x, y = np.array([1.0, 2.0]), np.array([10.0, 20.0])
    term = seq(Var(0), Var(1), Prim(ADD, (), 2), Drop(1, 2))
    out = run(term, [x, y], {})
    assert len(out) == 3 and out[0] is x and out[1] is y
    np.testing.assert_array_equal(out[2], [11.0, 22.0])
    assert check_term(term, (vec(n), vec(n))) == (vec(n), vec(n), vec(n))


def test_run_does_not_change_its_stack():
    stack = [1.0]
    run(seq(Var(0), Var(0)), stack, {})
    assert stack == [1.0]


def test_var_copies_any_entry():
    out = run_and_check(seq(Var(2), Var(0)), (F64, I64, BOOL), [np.float64(1.5), np.int64(2), np.True_])
    assert out == 1.5


def test_drop_forgets_the_middle():
    term = seq(Var(0), Var(1), Var(2), Drop(1, 2))  # a, b, c, a, b, c -> a, b, c, c
    out = run(term, ["a", "b", "c"], {})
    assert out == ["a", "b", "c", "c"]
    assert run(Drop(2, 1), ["a", "b", "c"], {}) == ["b", "c"]
    assert run(Drop(0, 3), ["a", "b", "c"], {}) == []
    assert check_term(Drop(1, 1), (F64, I64, BOOL)) == (F64, BOOL)


def test_tuple_and_get():
    term = seq(Var(0), Var(1), Tuple(2), Get(1))
    value = run_and_check(term, (F64, vec(3)), [np.float64(1.0), np.arange(3.0)])
    np.testing.assert_array_equal(value, [0.0, 1.0, 2.0])
    out = run(seq(Var(0), Var(1), Tuple(2)), [np.float64(1.0), np.int64(2)], {})
    assert out[-1] == (1.0, 2) and isinstance(out[-1], tuple)
    assert check_term(Tuple(0), (F64,)) == (F64, TupleType(()))
    assert run(Tuple(0), [1.0], {}) == [1.0, ()]


def test_literals_stay_weak_through_arithmetic():
    term = seq(const(2.0), const(3), op(MUL, 2))
    value = run_and_check(term, (), [])
    assert value == 6.0 and type(value) is float
    assert check_term(term, ()) == (LIT,)


def test_a_literal_yields_to_f32():
    term = seq(Var(0), const(2.0), op(MUL, 2))
    value = run_and_check(term, (vec(2, dtype=DType.F32),), [np.ones(2, np.float32)])
    assert value.dtype == np.float32


def test_size_and_zeros_use_the_sizes():
    term = seq(Prim(SIZE, params(dim=n + 1), 0),
               Prim(ZEROS, params(shape=(n, Dim(2)), dtype=DType.F64), 0))
    out = run(term, [], {"n": 3})
    assert out[0] == 4 and out[1].shape == (3, 2)
    assert check_term(term, (), {"n"}) == (I64, vec(n, 2))


# ---- If ------------------------------------------------------------------------

def test_if_runs_only_the_taken_branch():
    then = at(0, 1)                                      # x[i]: fails when i >= n
    orelse = seq(Var(0), op(SUM, 1, params(axes=(0,))))  # sum(x)
    term = seq(Var(1), Prim(SIZE, params(dim=n), 0), op(LT, 2), If(then, orelse), Drop(1, 1))
    x = np.array([1.0, 2.0, 4.0])
    types = (vec(n), I64)
    assert run_and_check(term, types, [x, np.int64(1)], {"n": 3}) == 2.0
    assert run_and_check(term, types, [x, np.int64(3)], {"n": 3}) == 7.0  # x[3] never runs
    with pytest.raises(IndexError):
        run(then, [x, np.int64(3)], {"n": 3})


def test_if_joins_a_weak_branch_with_a_strong_one():
    term = If(const(1.0), Var(0))
    assert check_term(term, (F64, BOOL)) == (F64, BOOL, F64)
    assert check_term(If(const(1.0), Var(0)), (F32, BOOL)) == (F32, BOOL, F32)
    assert run(term, [np.float64(5.0), np.False_], {})[-1] == 5.0
    assert run(term, [np.float64(5.0), True], {})[-1] == 1.0


# ---- Build ---------------------------------------------------------------------

def test_build_squares_of_the_index():
    body = seq(Var(0), Var(0), op(MUL, 2))  # i * i
    value = run_and_check(Build(Dim(1), n, body), (), [], {"n": 4})
    assert value.dtype == np.int64 and value.tolist() == [1, 4, 9]


def test_build_reads_the_context():
    """x: f64[n], y: f64[m] ⊢ for i in 0..n { x[i] * y } : f64[n, m]"""
    body = seq(at(0, 2), Var(1), op(MUL, 2))
    term = Build(Dim(0), n, body)
    x, y = np.array([1.0, 2.0]), np.array([1.0, 10.0, 100.0])
    value = run_and_check(term, (vec(n), vec(m)), [x, y], {"n": 2, "m": 3})
    np.testing.assert_array_equal(value, np.outer(x, y))
    assert check_term(term, (vec(n), vec(m)))[-1] == vec(n, m)


def test_an_empty_build_has_the_item_shape():
    body = seq(at(0, 2), Var(1), op(MUL, 2))
    term = Build(Dim(0), n, body)
    value = run_and_check(term, (vec(n), vec(m)), [np.zeros(0), np.ones(3)], {"n": 0, "m": 3})
    assert value.shape == (0, 3) and value.dtype == np.float64
    empty_ints = run(Build(n, n, Var(0)), [], {"n": 5})[-1]
    assert empty_ints.shape == (0,) and empty_ints.dtype == np.int64


def test_build_of_tuples_is_a_tuple_of_arrays():
    body = seq(Var(0), Var(0), const(0.5), op(MUL, 2), Tuple(2))  # (i, i * 0.5)
    value = run_and_check(Build(Dim(0), Dim(3), body), (), [])
    assert value[0].tolist() == [0, 1, 2] and value[1].tolist() == [0.0, 0.5, 1.0]
    empty = run_and_check(Build(Dim(0), Dim(0), body), (), [])
    assert [a.shape for a in empty] == [(0,), (0,)]
    assert [a.dtype for a in empty] == [np.int64, np.float64]


def test_a_backwards_build_is_refused():
    with pytest.raises(ValueError, match="backwards"):
        run(Build(Dim(2), Dim(1), Var(0)), [], {})
    with pytest.raises(UnaryTypeError, match="backwards"):
        check_term(Build(Dim(2), Dim(1), Var(0)), ())


# ---- Map -----------------------------------------------------------------------

def test_map2():
    """x, y ⊢ map(|a, b| a * b + 1.0, x, y)"""
    body = seq(binary(MUL, 2, 3), const(1.0), op(ADD, 2))
    term = Map(2, body)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    value = run_and_check(term, (vec(n), vec(n)), [x, y], {"n": 3})
    np.testing.assert_array_equal(value, x * y + 1.0)


def test_map_over_rows():
    term = Map(1, seq(Var(1), op(SUM, 1, params(axes=(0,)))))
    A = np.arange(6.0).reshape(2, 3)
    value = run_and_check(term, (vec(n, m),), [A], {"n": 2, "m": 3})
    np.testing.assert_array_equal(value, A.sum(axis=1))
    empty = run_and_check(term, (vec(n, m),), [np.zeros((0, 3))], {"n": 0, "m": 3})
    assert empty.shape == (0,) and empty.dtype == np.float64


def test_an_empty_map_has_the_item_shape():
    term = Map(1, seq(Var(2), Var(0), op(ADD, 2)))  # rows of A + x
    value = run_and_check(term, (vec(3), vec(n, 3)), [np.ones(3), np.zeros((0, 3))], {"n": 0})
    assert value.shape == (0, 3)


def test_map_over_arrays_of_different_lengths_is_refused():
    term = Map(2, binary(ADD, 2, 3))
    with pytest.raises(ValueError, match="different lengths"):
        run(term, [np.ones(2), np.ones(3)], {})
    with pytest.raises(UnaryTypeError, match="different lengths"):
        check_term(term, (vec(n), vec(m)))


# ---- Reduce --------------------------------------------------------------------

def test_reduce_sums():
    term = Reduce(binary(ADD, 2, 3))
    x = np.array([1.0, 2.0, 4.0])
    assert run_and_check(term, (vec(n), F64), [x, np.float64(0.0)], {"n": 3}) == 7.0


def test_reduce_folds_left_from_the_unit():
    """reduce(|acc, x| acc * 10 + x, 0, [1, 2, 3]) = 123"""
    body = seq(Var(2), const(10, DType.I64), op(MUL, 2), Var(3), op(ADD, 2))
    term = Reduce(body)
    xs = np.array([1, 2, 3])
    types = (vec(n, dtype=DType.I64), I64)
    assert run_and_check(term, types, [xs, np.int64(0)], {"n": 3}) == 123
    assert run_and_check(term, types, [np.zeros(0, np.int64), np.int64(7)], {"n": 0}) == 7


def test_reduce_over_rows():
    term = Reduce(binary(ADD, 2, 3))
    A = np.arange(6.0).reshape(3, 2)
    value = run_and_check(term, (vec(n, 2), vec(2)), [A, np.zeros(2)], {"n": 3})
    np.testing.assert_array_equal(value, A.sum(axis=0))


def test_a_weak_unit_yields_to_the_items():
    term = Reduce(binary(ADD, 2, 3))
    assert check_term(term, (vec(n, dtype=DType.F32), LIT))[-1] == F32
    value = run(term, [np.ones(2, np.float32), 0.0], {})[-1]
    assert value.dtype == np.float32 and value == 2.0


# ---- Loop ----------------------------------------------------------------------

def test_fold_and_scan():
    body = binary(ADD, 2, 3)  # acc + x
    xs = np.array([1.0, 2.0, 3.0])
    types = (F64, vec(n))
    assert run_and_check(Loop(body, False), types, [np.float64(0.5), xs], {"n": 3}) == 6.5
    scanned = run_and_check(Loop(body, True), types, [np.float64(0.5), xs], {"n": 3})
    np.testing.assert_array_equal(scanned, [1.5, 3.5, 6.5])


def test_a_loop_is_sequential():
    """scan(|h, x| h * 2 - x): each state depends on the previous one."""
    body = seq(Var(2), const(2.0), op(MUL, 2), Var(3), op(SUB, 2))
    value = run_and_check(Loop(body, True), (F64, vec(3)), [np.float64(1.0), np.array([1.0, 0.0, 3.0])])
    np.testing.assert_array_equal(value, [1.0, 2.0, 1.0])


def test_scan_of_a_tuple_state_is_a_tuple_of_arrays():
    """scan((0.0, 0), |(s, k), x| (s + x, k + 1)): stacked item by item"""
    step = seq(Var(3), Get(0), Drop(1, 1), Var(4), op(ADD, 2),       # s + x
               Var(3), Get(1), Drop(1, 1), const(1, DType.I64), op(ADD, 2),  # k + 1
               Tuple(2))
    init = seq(const(0.0), Prim(SIZE, params(dim=Dim(0)), 0), Tuple(2))
    term = seq(init, Var(0), Loop(step, True), Drop(1, 2))
    xs = np.array([1.0, 2.0, 3.0])
    s, k = run_and_check(term, (vec(n),), [xs], {"n": 3})
    np.testing.assert_array_equal(s, [1.0, 3.0, 6.0])
    assert k.tolist() == [1, 2, 3] and k.dtype == np.int64
    s0, k0 = run_and_check(term, (vec(n),), [np.zeros(0)], {"n": 0})
    assert s0.shape == k0.shape == (0,) and k0.dtype == np.int64


def test_an_empty_scan_has_the_state_shape():
    body = seq(Var(2), Var(3), op(ADD, 2))
    value = run_and_check(Loop(body, True), (vec(2), vec(n, 2)), [np.ones(2), np.zeros((0, 2))], {"n": 0})
    assert value.shape == (0, 2)


def test_a_weak_initial_state_yields_to_the_steps():
    body = binary(ADD, 2, 3)
    assert check_term(Loop(body, True), (LIT, vec(n, dtype=DType.F32)))[-1] == vec(n, dtype=DType.F32)
    value = run(Loop(body, True), [0.0, np.ones(2, np.float32)], {})[-1]
    assert value.dtype == np.float32 and value.tolist() == [1.0, 2.0]


def test_nested_bodies():
    """A: f64[n, m] ⊢ for i in 0..n { scan(0.0, A[i], |s, a| s + a * i) }"""
    inner = seq(Var(4), Var(5), Var(1), op(MUL, 2), op(ADD, 2))  # s + a * i
    body = seq(const(0.0), at(0, 1), Loop(inner, True), Drop(1, 2))
    term = Build(Dim(0), n, body)
    A = np.arange(6.0).reshape(2, 3)
    value = run_and_check(term, (vec(n, m),), [A], {"n": 2, "m": 3})
    np.testing.assert_array_equal(value, np.cumsum(A * np.arange(2)[:, None], axis=1))


# ---- functions -----------------------------------------------------------------

def axpy() -> UFunction:
    """fn axpy(a: f64, x: f64[n], y: f64[n]) -> f64[n] { a * x + y }"""
    body = seq(binary(MUL, 0, 1), Var(2), op(ADD, 2))
    return UFunction("axpy", (("a", F64), ("x", vec(n)), ("y", vec(n))), vec(n), body,
                     (SizeBinding("n", 1, 0),))


def test_evaluate_a_function():
    fn = axpy()
    check_function(fn)
    value = evaluate(fn, [2.0, [1.0, 2.0], np.array([10.0, 20.0])])
    assert value.dtype == np.float64
    np.testing.assert_array_equal(value, [12.0, 24.0])


def test_evaluate_converts_arguments_to_the_parameter_dtype():
    fn = axpy()
    assert evaluate(fn, [2, [1, 2], [True, False]]).tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="parameter y"):
        evaluate(UFunction("f", (("y", vec(1, dtype=DType.I64)),), vec(1, dtype=DType.I64), Var(0), ()),
                 [np.array([1.5])])


def test_evaluate_names_the_parameter_of_a_wrong_shape():
    fn = axpy()
    with pytest.raises(ValueError, match=r"parameter y: expected shape \[n\] = \(2,\), got \(3,\)"):
        evaluate(fn, [2.0, np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match="parameter a"):
        evaluate(fn, [np.ones(2), np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match="parameter x: axis 0 has 2 items, but the size n is 5"):
        evaluate(fn, [1.0, np.ones(2), np.ones(2)], sizes={"n": 5})
    with pytest.raises(ValueError, match="takes 3 arguments"):
        evaluate(fn, [1.0])


def test_evaluate_a_function_of_tuples():
    t = TupleType((F64, vec(n)))
    fn = UFunction("second", (("p", t),), vec(n), seq(Var(0), Get(1), Drop(1, 1)), ())
    assert evaluate(fn, [(1.0, [2.0, 3.0])], sizes={"n": 2}).tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match=r"parameter p\[1\]"):
        evaluate(fn, [(1.0, [2.0, 3.0])], sizes={"n": 3})


# ---- ill-formed terms at run time ----------------------------------------------

@pytest.mark.parametrize("term", [Var(1), Var(-1), Drop(1, 1), Drop(0, -1), Tuple(2), Get(1),
                                  Prim(ADD, (), 2), Seq((Var(0), Get(3)))])
def test_ill_formed_terms_are_refused_when_run(term):
    with pytest.raises(UnaryTypeError):
        run(term, [(1.0,)], {})
    with pytest.raises(UnaryTypeError):
        check_term(term, (TupleType((F64,)),))


def test_a_body_that_pushes_two_values_is_refused():
    with pytest.raises(UnaryTypeError):
        run(Build(Dim(0), Dim(2), seq(Var(0), Var(0))), [], {})
