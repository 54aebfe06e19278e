"""The whole compilation, pass after pass, keeping every stage for inspection.

    source --parse--> AST --check--> typed core --to_unary--> UNF
           --vectorise--> UNF (whole-array) --to_target--> target IR
           --simplify--> target IR --lower--> Python source

`compile_stages` runs them all; `catad show --stage ...` prints one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .check import check
from .errors import CatadError, Source
from .lower import lower
from .parse import parse
from .simplify import simplify
from .target import TargetProgram
from .to_target import to_target_program
from .to_unary import to_unary
from .typed import TProgram
from .unary import UProgram
from .unary_check import check_function
from .vectorise import vectorise_program


@dataclass(frozen=True)
class Stages:
    source: Source
    ast: ast.Program
    typed: TProgram
    unary: UProgram
    vectorised: UProgram
    target: TargetProgram
    optimised: TargetProgram
    python: str


def compile_stages(source: Source, *, verify: bool = True) -> Stages:
    """Run every pass on `source`. Mistakes in the program raise `CatadError`
    with the source attached; `verify` type-checks the UNF after each UNF pass."""
    try:
        tree = parse(source)
        typed = check(tree, source)
    except CatadError as err:
        raise err.with_source(source)
    unary = to_unary(typed)
    vectorised = vectorise_program(unary)
    if verify:
        for program in (unary, vectorised):
            for fn in program.functions:
                check_function(fn)
    target = to_target_program(vectorised)
    optimised = TargetProgram(tuple(simplify(fn) for fn in target.functions))
    python = lower(optimised, source_path=source.path, source=source)
    return Stages(source, tree, typed, unary, vectorised, target, optimised, python)
