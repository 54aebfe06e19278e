"""The whole compilation, pass after pass, keeping every stage for inspection.

    source --parse--> AST --check--> typed core --to_unary--> UNF
           --vectorise--> UNF (whole-array) --derive--> UNF (+ derivatives)
           --to_target--> target IR --simplify--> target IR --lower--> Python source

Derived functions (`fn g = grad(f, wrt = x);`) are made by forward and
reverse mode from the vectorised unary form of the function they transform;
Hessians and Jacobians, which are comprehensions over basis vectors, are
vectorised again.

The front end (`front_end`) runs check, to_unary, vectorise and derive
declaration by declaration, in dependency order: first every function that
calls no derived function (directly or not), in source order, as one
program; then the others and the derived functions, each after what it calls
or is made from. A body that calls a derived function is checked against the
signature of the function derive made, and to_unary inlines that function's
(vectorised) unary form at the call; so a derived function of it
differentiates through the derivative (second order). Every stage lists its
functions in source order.

`compile_stages` runs them all; `catad show --stage ...` prints one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .check import ProgramChecker
from .custom_rules import CustomRules
from .derive import derive
from .errors import CatadError, Source
from .lower import BACKENDS, lower
from .parse import parse
from .grouped_applications import group_applications
from .simplify import simplify
from .stacked_arithmetic import stack_arithmetic
from .target import TargetProgram
from .to_target import to_target_program
from .to_unary import to_unary, to_unary_function
from .typed import TProgram
from .unary import UProgram
from .unary_check import check_function
from .vectorise import vectorise


@dataclass(frozen=True)
class Stages:
    source: Source
    ast: ast.Program
    typed: TProgram
    unary: UProgram
    vectorised: UProgram  # and the derived functions, in source order
    target: TargetProgram
    optimised: TargetProgram
    python: str


def compile_stages(source: Source, *, extra: tuple[ast.DerivedFunction, ...] = (),
                   verify: bool = True, backend: str = "numpy") -> Stages:
    """Run every pass on `source`, with `extra` derived functions declared after
    its own, printing Python for `backend` (a key of `lower.BACKENDS`).
    Mistakes in the program raise `CatadError` with the source attached;
    `verify` type-checks the UNF after each UNF pass."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; the backends are {', '.join(BACKENDS)}")
    try:
        tree = parse(source)
        if extra:
            tree = ast.Program(tree.functions + extra, span=tree.span)
        front = front_end(tree)
        typed, unary, vectorised = front.typed, front.unary, front.vectorised
    except CatadError as err:
        raise err.with_source(source)
    if verify:
        for program in (unary, vectorised):
            for fn in program.functions:
                check_function(fn)
    target = to_target_program(vectorised)
    optimised = TargetProgram(tuple(stack_arithmetic(group_applications(simplify(fn))) for fn in target.functions))
    python = lower(optimised, source_path=source.path, source=source, backend=BACKENDS[backend])
    return Stages(source, tree, typed, unary, vectorised, target, optimised, python)


@dataclass(frozen=True)
class FrontEnd:
    typed: TProgram       # the functions written with a body (and rules), in source order
    unary: UProgram       # the same, in unary form
    vectorised: UProgram  # the same vectorised, and the derived functions: in source order


def front_end(tree: ast.Program) -> FrontEnd:
    """Check `tree` and make the unary form of every function, vectorised, and every
    derived function, in dependency order (see the module's docstring). Mistakes
    raise `CatadError`; derivative rules (`custom_vjp`, `custom_jvp`) are functions
    of the program."""
    checker = ProgramChecker(tree)
    typed = {name: checker.function(name) for name in checker.first}
    unary = dict(zip(typed, to_unary(TProgram(tuple(typed.values()), checker.rules)).functions))
    made = {name: vectorise(fn) for name, fn in unary.items()}
    custom = CustomRules(checker.rules, made)
    for name in checker.order():
        if name in checker.transforms:
            made[name] = vectorise(derive(checker.transforms[name], made, custom))
            checker.add_derived(name, made[name].params, made[name].result, made[name].sizes)
        else:
            typed[name] = checker.function(name)
            program = TProgram(tuple(typed.values()), checker.rules)
            derived = {n: fn for n, fn in made.items() if n in checker.transforms}
            unary[name] = to_unary_function(program, typed[name], derived)
            made[name] = vectorise(unary[name])
    order = [item.name for item in tree.functions]
    return FrontEnd(TProgram(tuple(typed[n] for n in order if n in typed), checker.rules),
                    UProgram(tuple(unary[n] for n in order if n in unary), checker.rules),
                    UProgram(tuple(made[n] for n in order), checker.rules))
