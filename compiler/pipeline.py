"""The whole compilation, pass after pass, keeping every stage for inspection.

    source --parse--> AST --check--> typed core --to_unary--> UNF
           --vectorise--> UNF (whole-array) --derive--> UNF (+ derivatives)
           --to_target--> target IR --simplify--> target IR --lower--> Python source

Derived functions (`fn g = grad(f, wrt = x);`) are made by forward and
reverse mode from the vectorised unary form of the function they transform;
Hessians and Jacobians, which are comprehensions over basis vectors, are
vectorised again.

`compile_stages` runs them all; `catad show --stage ...` prints one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .check import RULE_DECLARATIONS, check
from .custom_rules import CustomRules
from .derive import derive
from .errors import CatadError, Source
from .lower import BACKENDS, lower
from .parse import parse
from .simplify import simplify
from .target import TargetProgram
from .to_target import to_target_program
from .to_unary import to_unary
from .typed import TProgram
from .unary import UProgram
from .unary_check import check_function
from .vectorise import vectorise, vectorise_program


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
        typed = check(tree, source)
        unary = to_unary(typed)
        vectorised = _with_derivatives(tree, vectorise_program(unary))
    except CatadError as err:
        raise err.with_source(source)
    if verify:
        for program in (unary, vectorised):
            for fn in program.functions:
                check_function(fn)
    target = to_target_program(vectorised)
    optimised = TargetProgram(tuple(simplify(fn) for fn in target.functions))
    python = lower(optimised, source_path=source.path, source=source, backend=BACKENDS[backend])
    return Stages(source, tree, typed, unary, vectorised, target, optimised, python)


def _with_derivatives(tree: ast.Program, program: UProgram) -> UProgram:
    """`program` with the derived functions of `tree` added, all in source order.
    Derivative rules (`custom_vjp`, `custom_jvp`) are functions of `program` already."""
    functions = {fn.name: fn for fn in program.functions}
    custom = CustomRules(program.rules, functions)
    for item in tree.functions:
        if isinstance(item, ast.DerivedFunction) and item.call.func not in RULE_DECLARATIONS:
            functions[item.name] = vectorise(derive(item, functions, custom))
    return UProgram(tuple(functions[item.name] for item in tree.functions), program.rules)
