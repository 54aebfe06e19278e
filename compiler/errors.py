"""Errors in user input, reported at the user's line.

Every mistake in a catad program is a `CatadError` carrying a `Span`. Its
string form is what the CLI prints:

    model.catad:3:13: error: cannot add f64[n] and f64[m]
      let z = x + y;
              ^
    hint: ...

No Python traceback ever reaches a user for a mistake in their input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A program text and the name it is reported under."""

    text: str
    path: str = "<string>"

    def line(self, number: int) -> str:
        """The 1-based source line `number`, without its newline."""
        lines = self.text.splitlines()
        if 1 <= number <= len(lines):
            return lines[number - 1]
        return ""


@dataclass(frozen=True)
class Span:
    """A region of a source: 1-based line and column of its start and end."""

    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


NO_SPAN = Span(0, 0)


class CatadError(Exception):
    """A mistake in a catad program. Subclasses name the kind of mistake."""

    kind = "error"

    def __init__(self, message: str, span: Span = NO_SPAN, hint: str | None = None,
                 source: Source | None = None, notes: tuple[tuple[str, Span], ...] = ()):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.source = source
        self.notes = notes  # further places worth showing: (sentence, span)

    def with_source(self, source: Source) -> "CatadError":
        """Attach the source text, if none is attached yet; return self."""
        if self.source is None:
            self.source = source
        return self

    def render(self) -> str:
        """The full report: `file:line:col`, the line, a caret, the sentence, a hint."""
        path = self.source.path if self.source else "<string>"
        where = f"{path}:{self.span}" if self.span.line > 0 else path
        out = [f"{where}: {self.kind}: {self.message}"]
        out.extend(_excerpt(self.source, self.span))
        for sentence, span in self.notes:
            out.append(f"{path}:{span}: note: {sentence}")
            out.extend(_excerpt(self.source, span))
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


def _excerpt(source: Source | None, span: Span) -> list[str]:
    if source is None or span.line <= 0:
        return []
    text = source.line(span.line)
    if len(text) > 200:  # keep huge lines readable: show a window around the caret
        start = max(0, span.column - 100)
        text, column = text[start:start + 200], span.column - start
    else:
        column = span.column
    width = 1
    if span.end_line == span.line and span.end_column > span.column:
        width = span.end_column - span.column
    caret = " " * max(column - 1, 0) + "^" + "~" * (min(width, max(len(text) - column + 1, 1)) - 1)
    return ["  " + text.expandtabs(1), "  " + caret]


class ParseError(CatadError):
    """The text does not follow the grammar."""

    kind = "syntax error"


class UnknownNameError(CatadError):
    """A name that is not defined (variable, function, primitive, size)."""

    kind = "name error"


class TypeMismatchError(CatadError):
    """Element types that do not fit (f64 where bool is needed, wrong arity...)."""

    kind = "type error"


class ShapeError(CatadError):
    """Array shapes that do not fit (broadcasting, matmul, declared shapes)."""

    kind = "shape error"


class UnsupportedError(CatadError):
    """A construct catad does not support (recursion, sizes it cannot infer...)."""

    kind = "unsupported"


class InputError(CatadError):
    """The input file itself is unusable (not UTF-8, empty, too large, too deep)."""

    kind = "input error"


class DerivativeError(CatadError):
    """A derivative that cannot be taken (integer argument, non-differentiable op)."""

    kind = "derivative error"
