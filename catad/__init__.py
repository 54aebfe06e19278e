"""catad: differentiable array programs compiled to readable NumPy.

    import catad
    m = catad.compile(source_text)       # a module object, one function per `fn`
    m = catad.load("model.catad")
    print(catad.to_python(source_text))  # the generated, self-contained NumPy module
    print(catad.check(source_text, sizes="n=3").format())  # derivatives against SymPy and FD
"""

from __future__ import annotations

import types
from pathlib import Path

from catad.compiler.errors import CatadError, Source

__version__ = "0.1.0"
__all__ = ["CatadError", "check", "compile", "load", "to_python", "stages", "__version__"]


def stages(text: str, path: str = "<string>", backend: str = "numpy"):
    """Every intermediate form of the program `text` (AST, typed, UNF, ..., Python):
    a `catad.compiler.pipeline.Stages`."""
    from catad.compiler.pipeline import compile_stages

    return compile_stages(Source(text, path), backend=backend)


def to_python(text: str, path: str = "<string>", backend: str = "numpy") -> str:
    """The generated module for the program `text`, as source code. `backend`:
    "numpy" (needs only NumPy) or "array-api" (runs on the array library of its
    inputs: NumPy, PyTorch, JAX, CuPy, Dask; needs array_api_compat)."""
    return stages(text, path, backend).python


def compile(text: str, path: str = "<string>", module_name: str = "catad_model",
            backend: str = "numpy") -> types.ModuleType:
    """Compile catad source to a module object, one function per `fn` (see `to_python`)."""
    from catad.compiler.lower import load_module

    return load_module(to_python(text, path, backend), module_name)


def check(program: str | Path, sizes=None, **options):
    """Check every function and declared derivative of `program` (source text, or a
    `Path`) against SymPy and finite differences at `sizes` (`{"n": 3}` or "n=3"):
    a `catad.checking.CheckReport` with `.rows`, `.passed` and `.format()`.
    `options`: seed, points, path, max_operations, time_budget."""
    from catad.checking import check as check_program  # SymPy loads only when checking

    return check_program(program, sizes, **options)


def load(path: str | Path, backend: str = "numpy") -> types.ModuleType:
    """Compile the catad file at `path` to a module object (see `to_python`)."""
    from catad.compiler.lower import load_module
    from catad.compiler.parse import decode_source
    from catad.compiler.pipeline import compile_stages

    path = Path(path)
    source = decode_source(path.read_bytes(), str(path))
    return load_module(compile_stages(source, backend=backend).python, path.stem)
