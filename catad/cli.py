"""The `catad` command line.

    catad compile model.catad [-o model.py] [--grad FN] [--jvp FN] [--vjp FN] [--hessian FN] [--wrt A,B]
    catad show model.catad --stage ast|typed|unf|vectorised|target|opt|python [--grad FN ...]
    catad show model.catad --stage unf|vectorised --diagram out.svg [--grad FN ...]
    catad show model.catad --stage sympy [--sizes n=3,d=2] [--latex]
    catad check model.catad [--sizes n=3,d=2] [--seed 0]

Exit status: 0 on success, 1 for a mistake in the input (reported as
`file:line:col`, the line, a caret and a sentence — never a traceback),
2 for a usage error, 3 for an internal error of catad itself. `check` exits
with 1 when a derivative is wrong, and any command with 1, saying nothing, when
the reader of its output stops reading (`catad compile m.catad | head`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

from catad.compiler import ast
from catad.compiler.errors import CatadError, Source
from catad.compiler.parse import decode_source
from catad.compiler.pipeline import Stages, compile_stages
from catad.compiler.target_print import format_target_program
from catad.compiler.tree_print import format_tree
from catad.compiler.unary import UFunction, UProgram
from catad.compiler.unary_diagram import program_diagram
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
    "sympy": lambda s: _sympy_listing(s, None, latex=False),  # `show` passes --sizes and --latex
}

# the stages `show --diagram` draws; derived functions exist only in vectorised form
DIAGRAMS = {
    "unf": lambda s: UProgram(tuple(_unary_or(s.unary, fn) for fn in s.vectorised.functions)),
    "vectorised": lambda s: s.vectorised,
}
DIAGRAM_FORMATS = ("svg", "png", "pdf", "dot")  # dot's -T names


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
    _backend_argument(comp)
    _derived_arguments(comp)

    show = commands.add_parser("show", help="print one stage of the compilation",
                               description="Print one intermediate form of the program.")
    show.add_argument("file", help="the .catad source file")
    show.add_argument("--stage", choices=list(STAGES), default="python",
                      help="which form to print (default: python)")
    show.add_argument("--diagram", metavar="FILE",
                      help="draw the unary form (--stage unf or vectorised) as a string diagram "
                           "in FILE: .svg, .png or .pdf (needs Graphviz's dot), or .dot text")
    show.add_argument("--sizes", metavar="N=3,D=2", default=None,
                      help="sizes for --stage sympy (the others default to small values)")
    show.add_argument("--latex", action="store_true", help="print --stage sympy as LaTeX")
    _backend_argument(show)
    _derived_arguments(show)

    chk = commands.add_parser(
        "check", help="check every derivative against SymPy and finite differences",
        description="Check every function and declared derivative against SymPy's derivatives and "
                    "central finite differences at random points; exit status 1 if one is wrong.")
    chk.add_argument("file", help="the .catad source file")
    chk.add_argument("--sizes", metavar="N=3,D=2", default=None,
                     help="the sizes to check at (the others default to small values)")
    chk.add_argument("--seed", type=int, default=0, help="the seed of the random points (default: 0)")
    return parser


def _backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["numpy", "array-api"], default="numpy",
                        help="numpy (default): a module that needs only NumPy; array-api: one whose "
                             "functions run on the array library of their inputs (NumPy, PyTorch, "
                             "JAX, CuPy, Dask), through array_api_compat")


def _derived_arguments(parser: argparse.ArgumentParser) -> None:
    for kind, made in DERIVED_FLAGS.items():
        parser.add_argument(f"--{kind}", metavar="FN", action="append", default=[],
                            help=f"also emit FN_{made[0]}: {made[1]} (repeatable)")
    parser.add_argument("--wrt", metavar="A,B", default=None,
                        help="the parameters the derivatives are taken with respect to "
                             "(default: every real parameter)")


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
    if args.command == "check":
        from catad.checking import check  # SymPy is loaded only for the commands that use it

        report = check(_read(args.file), args.sizes, seed=args.seed)
        sys.stdout.write(report.format())
        return 0 if report.passed else 1
    if args.command == "show" and (args.sizes or args.latex) and args.stage != "sympy":
        raise _UsageProblem("--sizes and --latex apply to --stage sympy only")
    extra = _derived_requests(args) if hasattr(args, "wrt") else ()
    stages: Stages = compile_stages(_read(args.file), extra=extra, backend=args.backend)
    if args.command == "compile":
        if args.output:
            try:
                Path(args.output).write_text(stages.python, encoding="utf-8")
            except OSError as err:
                raise _UsageProblem(f"cannot write {args.output}: {err.strerror or err}") from None
        else:
            sys.stdout.write(stages.python)
    elif args.command == "show" and args.diagram:
        _draw(args.stage, stages, args.diagram)
    elif args.command == "show" and args.stage == "sympy":
        sys.stdout.write(_sympy_listing(stages, args.sizes, latex=args.latex))
    elif args.command == "show":
        _print_stage(STAGES[args.stage](stages), python=args.stage == "python")
    return 0


def _sympy_listing(stages: Stages, sizes: str | None, latex: bool) -> str:
    from catad.checking import format_sympy  # SymPy is loaded only for the commands that use it

    return format_sympy(stages, sizes, latex=latex)


def _unary_or(unary: UProgram, fn: UFunction) -> UFunction:
    """The function named like `fn` in `unary`, or `fn` (a derived one) when there is none."""
    return next((f for f in unary.functions if f.name == fn.name), fn)


def _draw(stage: str, stages: Stages, path: str) -> None:
    """Write the diagram of `stage` to `path`, through Graphviz's dot unless it ends in .dot."""
    if stage not in DIAGRAMS:
        raise _UsageProblem(f"--diagram draws the unary form: use --stage "
                            f"{' or '.join(DIAGRAMS)}, not {stage}")
    kind = Path(path).suffix.lstrip(".").lower()
    if kind not in DIAGRAM_FORMATS:
        raise _UsageProblem(f"--diagram writes .svg, .png, .pdf or .dot files, not {path}")
    text = program_diagram(DIAGRAMS[stage](stages))
    if kind == "dot":
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as err:
            raise _UsageProblem(f"cannot write {path}: {err.strerror or err}") from None
        return
    dot = shutil.which("dot")
    if dot is None:
        raise _UsageProblem(
            f"drawing {path} needs Graphviz's `dot` program, which is not installed; install "
            "Graphviz (Debian/Ubuntu: apt-get install graphviz, macOS: brew install graphviz, "
            f"conda: conda install graphviz), or write the DOT text with --diagram "
            f"{Path(path).with_suffix('.dot')}")
    done = subprocess.run([dot, f"-T{kind}", "-o", path], input=text, text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise _UsageProblem(f"Graphviz's dot could not draw {path}: {done.stderr.strip()}")


def _print_stage(text: str, python: bool) -> None:
    """`text` on standard output; Python syntax-highlighted when that is a terminal
    and `rich` is installed (plain when piped, so the output can be saved)."""
    if python and sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.syntax import Syntax
        except ImportError:
            pass
        else:
            Console(file=sys.stdout, force_terminal=True, soft_wrap=True).print(
                Syntax(text.rstrip("\n"), "python", theme="ansi_dark", background_color="default"))
            return
    sys.stdout.write(text)


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
    except BrokenPipeError:  # the reader stopped reading (`catad compile m.catad | head`): not a bug
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exiting flushes nothing
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
