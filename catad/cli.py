"""The `catad` command line.

    catad compile model.catad [-o model.py] [--grad FN] [--jvp FN] [--vjp FN] [--hessian FN] [--wrt A,B]
    catad show model.catad --stage ast|typed|unf|vectorised|target|opt|python

Exit status: 0 on success, 1 for a mistake in the input (reported as
`file:line:col`, the line, a caret and a sentence — never a traceback),
2 for a usage error, 3 for an internal error of catad itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from catad.compiler import ast
from catad.compiler.errors import CatadError, Source
from catad.compiler.parse import decode_source
from catad.compiler.pipeline import Stages, compile_stages
from catad.compiler.target_print import format_target_program
from catad.compiler.tree_print import format_tree
from catad.compiler.unary_print import format_program

# flag -> (suffix of the new function, what it is, the transformation)
DERIVED_FLAGS = {
    "grad": ("grad", "its value and gradient", "value_and_grad"),
    "jvp": ("jvp", "its value and Jacobian-vector product", "jvp"),
    "vjp": ("vjp", "its value and vector-Jacobian product", "vjp"),
    "hessian": ("hessian", "its Hessian", "hessian"),
}

STAGES = {
    "ast": lambda s: format_tree(s.ast),
    "typed": lambda s: format_tree(s.typed),
    "unf": lambda s: format_program(s.unary),
    "vectorised": lambda s: format_program(s.vectorised),
    "target": lambda s: format_target_program(s.target),
    "opt": lambda s: format_target_program(s.optimised),
    "python": lambda s: s.python,
}


def _parser() -> argparse.ArgumentParser:
    from catad import __version__

    parser = argparse.ArgumentParser(
        prog="catad",
        description="Compile differentiable array programs to readable NumPy Python.")
    parser.add_argument("--version", action="version", version=f"catad {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    comp = commands.add_parser("compile", help="compile a .catad file to a Python module",
                               description="Compile a .catad file to a self-contained NumPy module.")
    comp.add_argument("file", help="the .catad source file")
    comp.add_argument("-o", "--output", help="where to write the module (default: standard output)")
    for kind, made in DERIVED_FLAGS.items():
        comp.add_argument(f"--{kind}", metavar="FN", action="append", default=[],
                          help=f"also emit FN_{made[0]}: {made[1]} (repeatable)")
    comp.add_argument("--wrt", metavar="A,B", default=None,
                      help="the parameters the derivatives are taken with respect to "
                           "(default: every real parameter)")

    show = commands.add_parser("show", help="print one stage of the compilation",
                               description="Print one intermediate form of the program.")
    show.add_argument("file", help="the .catad source file")
    show.add_argument("--stage", choices=list(STAGES), default="python",
                      help="which form to print (default: python)")
    return parser


def _read(path: str) -> Source:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise _UsageProblem(f"cannot read {path}: {err.strerror or err}") from None
    return decode_source(data, path)


class _UsageProblem(Exception):
    pass


def _derived_requests(args: argparse.Namespace) -> tuple[ast.DerivedFunction, ...]:
    """The derived functions asked for with --grad/--jvp/--vjp/--hessian."""
    wrt = None
    if args.wrt:
        names = [w.strip() for w in args.wrt.split(",") if w.strip()]
        wrt = ast.Keyword("wrt", ast.TupleExpr(tuple(ast.Name(n) for n in names)))
    out = []
    for kind, (suffix, _, transform) in DERIVED_FLAGS.items():
        for fn in getattr(args, kind, []):
            call = ast.Call(transform, (ast.Name(fn),), (wrt,) if wrt else ())
            out.append(ast.DerivedFunction(f"{fn}_{suffix}", call))
    return tuple(out)


def _run(args: argparse.Namespace) -> int:
    extra = _derived_requests(args) if args.command == "compile" else ()
    stages: Stages = compile_stages(_read(args.file), extra=extra)
    if args.command == "compile":
        if args.output:
            try:
                Path(args.output).write_text(stages.python, encoding="utf-8")
            except OSError as err:
                raise _UsageProblem(f"cannot write {args.output}: {err.strerror or err}") from None
        else:
            sys.stdout.write(stages.python)
    elif args.command == "show":
        sys.stdout.write(STAGES[args.stage](stages))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except CatadError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except _UsageProblem as err:
        print(f"catad: error: {err}", file=sys.stderr)
        return 1
    except RecursionError:
        print("catad: error: the program is nested too deeply to compile", file=sys.stderr)
        return 1
    except Exception:  # a bug in catad, not in the user's program
        if os.environ.get("CATAD_DEBUG"):
            traceback.print_exc()
        else:
            print("catad: internal error (set CATAD_DEBUG=1 for the traceback); "
                  "please report it with the input file", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
