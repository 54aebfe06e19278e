"""to_target: UNF run symbolically on a stack of atoms gives named target IR."""

from __future__ import annotations

import keyword

import pytest

from catad.compiler import primitives as P
from catad.compiler.check import check_source
from catad.compiler.errors import Span
from catad.compiler.names import Namer, escape, is_identifier
from catad.compiler.primitives import params
from catad.compiler.target import (Bind, Block, Call, IfElse, LoopE, MakeTuple, Name, Project,
                                   TargetFunction)
from catad.compiler.to_target import to_target, to_target_program
from catad.compiler.to_unary import to_unary
from catad.compiler.typed import SizeBinding
from catad.compiler.types import BOOL, F64, ArrayType, Dim, DType
from catad.compiler.unary import (Build, Drop, Get, If, Loop, Prim, Tuple, UFunction, UProgram, Var,
                                  seq)
from catad.compiler.vectorise import vectorise_program

VEC = ArrayType(DType.F64, (Dim.of("n"),))
N = (SizeBinding("n", 0, 0),)


def binding(fn: TargetFunction, name: str) -> Bind:
    (bind,) = [b for b in fn.body.bindings if b.name == name]
    return bind


# ---- names ------------------------------------------------------------------------


@pytest.mark.parametrize("hint, name", [
    ("x", "x"), ("lambda", "lambda_"), ("match", "match_"), ("_", "__"), ("sum", "sum_"),
    ("np", "np_"), ("_x", "_x_"), ("__import__", "__import___"), ("ValueError", "ValueError_"),
])
def test_escape(hint, name):
    assert escape(hint) == name


def test_namer_numbers_clashes_and_skips_taken_temporaries():
    namer = Namer(["t1"])
    assert [namer.fresh("x"), namer.fresh("x"), namer.fresh("x_1")] == ["x", "x_1", "x_1_1"]
    assert [namer.temporary(), namer.fresh(None)] == ["t2", "t3"]
    assert namer.fresh("t3") == "t3_1"


def test_namer_makes_a_temporary_for_a_hint_that_is_no_ascii_identifier():
    namer = Namer()
    assert [namer.fresh("α"), namer.fresh("x-y"), namer.fresh("")] == ["t1", "t2", "t3"]


def test_fresh_all_serves_names_that_need_no_change_first():
    assert Namer().fresh_all(["print", "print_", "x", "x"]) == ["print__1", "print_", "x", "x_1"]


@pytest.mark.parametrize("hint", ["class", "None", "print", "np", "_", "__dict__", "t1", "a" * 50])
def test_every_name_is_a_safe_identifier(hint):
    name = Namer().fresh(hint)
    assert is_identifier(name) and not keyword.iskeyword(name) and not keyword.issoftkeyword(name)


# ---- the translation ---------------------------------------------------------------


def test_names_come_from_hints_and_a_var_makes_no_binding():
    # let z = x + y; z * x
    body = seq(Var(0), Var(1), Prim(P.ADD, (), 2, hint="z", span=Span(2, 5)), Drop(1, 2),
               Var(2), Var(0), Prim(P.MUL, (), 2, span=Span(3, 1)), Drop(1, 2), Drop(1, 1))
    fn = to_target(UFunction("f", (("x", VEC), ("y", VEC)), VEC, body, N))
    assert fn.body == Block((Bind("z", Call(P.ADD, (), (Name("x"), Name("y")))),
                             Bind("t1", Call(P.MUL, (), (Name("z"), Name("x"))))), Name("t1"))
    assert [b.span for b in fn.body.bindings] == [Span(2, 5), Span(3, 1)]
    assert fn.sizes == N and fn.source_params == ("x", "y")


def test_a_copy_is_no_binding_and_an_identity_returns_the_parameter():
    fn = to_target(UFunction("id", (("x", F64),), F64, seq(Var(0), Var(1), Drop(1, 1)), ()))
    assert fn.body == Block((), Name("x"))


def test_keyword_and_builtin_names_are_escaped_and_clashes_numbered():
    body = seq(Var(0), Prim(P.NEG, (), 1, hint="sum"), Prim(P.NEG, (), 1, hint="lambda"),
               Prim(P.BY_NAME["exp"], (), 1, hint="lambda"), Drop(1, 3))
    fn = to_target(UFunction("class", (("lambda", F64),), F64, body, ()))
    assert fn.name == "class_"
    assert fn.params == (("lambda_", F64),) and fn.source_params == ("lambda",)
    assert [b.name for b in fn.body.bindings] == ["sum_", "lambda__1", "lambda__2"]


def test_size_variables_get_python_names_everywhere():
    t = ArrayType(DType.F64, (Dim.of("len"),))
    body = seq(Prim(P.SIZE, params(dim=Dim.of("len") + 1), 0, hint="k"),
               Prim(P.ZEROS, params(dtype=DType.F64, shape=(Dim.of("len"),)), 0), Drop(1, 1))
    fn = to_target(UFunction("f", (("x", t),), t, body, (SizeBinding("len", 0, 0),)))
    assert fn.sizes == (SizeBinding("len_", 0, 0),)
    assert fn.params[0][1] == ArrayType(DType.F64, (Dim.of("len_"),))
    assert fn.result == ArrayType(DType.F64, (Dim.of("len_"),))
    assert binding(fn, "k").expr == Call(P.SIZE, params(dim=Dim.of("len_") + 1), ())
    assert fn.body.result == Name("t1")
    assert binding(fn, "t1").expr.params == params(dtype=DType.F64, shape=(Dim.of("len_"),))


def test_a_size_variable_never_shares_a_parameters_name():
    t = ArrayType(DType.F64, (Dim.of("n"),))
    fn = to_target(UFunction("f", (("n", t),), t, Var(0), (SizeBinding("n", 0, 0),)))
    assert fn.params[0][0] == "n" and fn.sizes == (SizeBinding("n_1", 0, 0),)


def test_tuple_and_get():
    # let p = (x, y); p.1
    body = seq(Var(0), Var(1), Tuple(2, hint="p"), Get(1, hint="second"), Drop(1, 1))
    fn = to_target(UFunction("f", (("x", F64), ("y", F64)), F64, body, ()))
    assert fn.body == Block((Bind("p", MakeTuple((Name("x"), Name("y")))),
                             Bind("second", Project(Name("p"), 1))), Name("second"))


def test_drop_forgets_the_middle_of_the_stack():
    # x, y ⊢ x, y, -x, -y  then forget -x: the result is -y
    body = seq(Var(0), Prim(P.NEG, (), 1, hint="a"), Drop(1, 1), Var(1), Prim(P.NEG, (), 1, hint="b"),
               Drop(1, 1), Drop(1, 1))
    fn = to_target(UFunction("f", (("x", F64), ("y", F64)), F64, body, ()))
    assert fn.body.result == Name("b")
    assert binding(fn, "b").expr == Call(P.NEG, (), (Name("y"),))


def test_if_makes_blocks_from_copies_of_the_stack():
    # if c { x } else { -x }
    body = seq(Var(1), If(Var(0), seq(Var(0), Prim(P.NEG, (), 1, hint="m"), Drop(1, 1)), hint="r"),
               Drop(1, 1))
    fn = to_target(UFunction("f", (("x", F64), ("c", BOOL)), F64, body, ()))
    assert fn.body == Block((Bind("r", IfElse(
        Name("c"), Block((), Name("x")),
        Block((Bind("m", Call(P.NEG, (), (Name("x"),))),), Name("m")))),), Name("r"))


@pytest.mark.parametrize("stacked", [False, True])
def test_loop_body_sees_fresh_acc_and_x(stacked):
    xs = ArrayType(DType.F64, (Dim.of("t"),))
    # fold/scan(0.0, xs, |acc, x| acc + x): context x... , init, xs, acc, x
    init = Prim(P.CONST, params(value=0.0, dtype=DType.F64), 0)
    loop_body = seq(Var(3), Var(4), Prim(P.ADD, (), 2, hint="s"), Drop(1, 2))
    body = seq(init, Var(0), Loop(loop_body, stacked, hint="total"), Drop(1, 2))
    result = ArrayType(DType.F64, (Dim.of("t"),)) if stacked else F64
    fn = to_target(UFunction("f", (("x", xs),), result, body, (SizeBinding("t", 0, 0),)))
    loop = binding(fn, "total").expr
    assert loop == LoopE(Name("t1"), Name("x"), "acc", "x_1",
                         Block((Bind("s", Call(P.ADD, (), (Name("acc"), Name("x_1")))),), Name("s")),
                         stacked)


def test_program_names_are_unique_and_safe():
    fns = tuple(UFunction(name, (("x", F64),), F64, Var(0), ()) for name in ("print", "print_", "f"))
    assert [f.name for f in to_target_program(UProgram(fns)).functions] == ["print__1", "print_", "f"]


def test_build_must_have_been_vectorised_away():
    body = Build(Dim(0), Dim(3), Var(1))
    with pytest.raises(AssertionError, match="Build left after vectorisation"):
        to_target(UFunction("f", (("x", F64),), VEC, body, ()))


def test_from_source_let_names_become_binding_names():
    program = vectorise_program(to_unary(check_source(
        "fn loss(w: f64[d], X: f64[n, d]) -> f64 {\n"
        "    let z = X @ w;\n"
        "    let p = sigmoid(z);\n"
        "    sum(p)\n"
        "}\n")))
    fn = to_target_program(program).functions[0]
    assert [b.name for b in fn.body.bindings][:2] == ["z", "p"]
    assert binding(fn, "z").expr == Call(P.MATMUL, (), (Name("X"), Name("w")))
    assert binding(fn, "p").span.line == 3
