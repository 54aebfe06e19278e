"""Parsing: catad source text -> the AST of compiler/ast.py.

The grammar is grammar/catad.lark, run by Lark's LALR parser. `parse`

1. rejects inputs over MAX_BYTES (InputError),
2. parses, turning Lark's errors into a ParseError that says what was found,
   what was expected and in which construct,
3. rejects parse trees deeper than MAX_DEPTH (InputError), measured without
   recursion, so that `1 + 1 + ... + 1` with 10 000 terms is a clear error and
   never a RecursionError; the AST is never deeper than the parse tree, so
   every later pass may recurse over it,
4. builds the frozen AST, with a `Span` on every node, without recursion.

Every failure is a CatadError with the source attached.
"""

from __future__ import annotations

import codecs
import difflib
import math
from functools import cache
from itertools import takewhile

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.tree import Meta
from lark.visitors import Transformer_NonRecursive, v_args

from catad.grammar import grammar_text

from . import ast
from .errors import CatadError, InputError, ParseError, Source, Span

MAX_DEPTH = 200  # deepest nesting of the parse tree (expressions, blocks, types)
MAX_BYTES = 1_000_000  # largest source accepted, in UTF-8 bytes

# The element types (the values of types.DType), in the order error messages list them.
ELEMENT_TYPES = ("f64", "f32", "i64", "bool")

_MAX_INT = 2**63 - 1


# ---- entry points --------------------------------------------------------------

def decode_source(data: bytes, path: str) -> Source:
    """The UTF-8 text of a file's bytes (a leading BOM dropped), named `path`."""
    if len(data) > MAX_BYTES:
        raise _too_large(len(data)).with_source(Source("", path))
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return Source(data.decode("utf-8"), path)
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        column = len(data[line_start:err.start].decode("utf-8", errors="replace")) + 1
        shown = Source(data.decode("utf-8", errors="replace"), path)
        raise InputError(
            f"the file is not UTF-8 text: byte 0x{data[err.start]:02x} cannot be decoded",
            Span(line, column, line, column + 1),
            hint="save the file as UTF-8",
            source=shown,
        ) from None


def parse(source: Source) -> ast.Program:
    """The AST of the program `source`; raises a CatadError on any mistake."""
    try:
        return _parse(source)
    except CatadError as err:
        raise err.with_source(source) from None


def _parse(source: Source) -> ast.Program:
    size = len(source.text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise _too_large(size)
    text = source.text
    if text.startswith("\ufeff"):  # a BOM: blank it out, keeping every column in place
        text = " " + text[1:]
    try:
        tree = lark_parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text) from None
    _check_depth(tree)
    try:
        program = _ToAst().transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, CatadError):
            raise err.orig_exc from None
        raise
    if not program.functions:
        raise InputError("the file has no functions", Span(1, 1, 1, 1),
                         hint="a program is a list of functions: fn f(x: f64) -> f64 { x }")
    return program


@cache
def lark_parser() -> Lark:
    """The LALR parser of grammar/catad.lark, built once; it returns Lark parse trees."""
    return Lark(grammar_text(), parser="lalr", lexer="basic", propagate_positions=True)


def _too_large(size: int) -> InputError:
    return InputError(f"the file is too large: {size} bytes, the limit is {MAX_BYTES}",
                      Span(1, 1, 1, 1))


def _check_depth(tree: Tree) -> None:
    """Raise InputError if `tree` nests more than MAX_DEPTH subtrees (iteratively).

    The error points at the node on the last level allowed that still has subtrees.
    """
    pending = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        subtrees = [child for child in node.children if isinstance(child, Tree)]
        if subtrees and depth == MAX_DEPTH:
            raise InputError(
                f"the program is nested too deeply: more than {MAX_DEPTH} levels",
                _span(node.meta),
                hint="split the expression into smaller parts with `let` bindings",
            )
        pending.extend((subtree, depth + 1) for subtree in subtrees)


# ---- parse tree -> AST ------------------------------------------------------------

def _span(where: Meta | Token) -> Span:
    return Span(where.line, where.column, where.end_line, where.end_column)


@v_args(inline=True, meta=True)
class _ToAst(Transformer_NonRecursive):
    """Build AST nodes bottom-up; one method per tree node of the grammar."""

    def start(self, meta, *items):
        span = Span(1, 1, 1, 1) if meta.empty else _span(meta)
        return ast.Program(tuple(items), span=span)

    # functions

    def function(self, meta, name, params, result, body):
        return ast.Function(name.value, params or (), result, body,
                            span=_span(meta), name_span=_span(name))

    def params(self, meta, *params):
        return params

    def param(self, meta, name, type_):
        return ast.Param(name.value, type_, span=_span(meta))

    def derived(self, meta, name, call):
        return ast.DerivedFunction(name.value, call, span=_span(meta), name_span=_span(name))

    # types

    def scalar_type(self, meta, dtype):
        return ast.ScalarTypeExpr(_element_type(dtype), span=_span(meta))

    def array_type(self, meta, dtype, *dims):
        return ast.ArrayTypeExpr(_element_type(dtype), dims, span=_span(meta))

    def tuple_type(self, meta, *items):
        return ast.TupleTypeExpr(items, span=_span(meta))

    # blocks and bindings

    def block(self, meta, *items):
        *lets, result = items
        return ast.Block(tuple(lets), result, span=_span(meta))

    def let(self, meta, target, value):
        return ast.Let(target, value, span=_span(meta))

    def name_pattern(self, meta, name):
        return ast.NamePattern(name.value, span=_span(meta))

    def tuple_pattern(self, meta, *items):
        return ast.TuplePattern(items, span=_span(meta))

    # expressions

    def name(self, meta, name):
        return ast.Name(name.value, span=_span(meta))

    def int_lit(self, meta, literal):
        digits = literal.value.lstrip("0") or "0"
        if len(digits) > len(str(_MAX_INT)) or int(digits) > _MAX_INT:
            raise ParseError(f"the integer {_shorten(literal.value)} is too large for i64",
                             _span(literal), hint=f"the largest i64 is {_MAX_INT}")
        return ast.IntLit(int(digits), span=_span(meta))

    def float_lit(self, meta, literal):
        value = float(literal.value)
        if math.isinf(value):
            raise ParseError(f"the number {_shorten(literal.value)} is too large for f64",
                             _span(literal))
        return ast.FloatLit(value, span=_span(meta))

    def true(self, meta, _keyword):
        return ast.BoolLit(True, span=_span(meta))

    def false(self, meta, _keyword):
        return ast.BoolLit(False, span=_span(meta))

    def binop(self, meta, left, op, right):
        return ast.BinOp(op.value, left, right, span=_span(meta))

    def unary(self, meta, op, operand):
        return ast.UnaryOp(op.value, operand, span=_span(meta))

    def group(self, meta, inner):
        return inner

    def tuple_expr(self, meta, *items):
        return ast.TupleExpr(items, span=_span(meta))

    def block_expr(self, meta, block):
        return ast.BlockExpr(block, span=_span(meta))

    def lambda_expr(self, meta, params, body):
        return ast.Lambda(params or (), body, span=_span(meta))

    def lambda_params(self, meta, *names):
        return tuple(name.value for name in names)

    def index(self, meta, base, *items):
        return ast.Index(base, items, span=_span(meta))

    def at(self, meta, index):
        return ast.At(index, span=_span(meta))

    def slice(self, meta, lo, hi):
        return ast.Slice(lo, hi, span=_span(meta))

    def call(self, meta, name, arguments):
        args, kwargs = arguments or ((), ())
        return ast.Call(name.value, args, kwargs, span=_span(meta), func_span=_span(name))

    def arguments(self, meta, *arguments):
        """Split into (positional, keyword) arguments; positional ones come first."""
        positional = tuple(takewhile(lambda arg: not isinstance(arg, ast.Keyword), arguments))
        keywords = arguments[len(positional):]
        for arg in keywords:
            if not isinstance(arg, ast.Keyword):
                raise ParseError("a positional argument cannot follow a keyword argument",
                                 arg.span,
                                 hint="write positional arguments first: f(x, y, axis = 1)")
        return positional, keywords

    def keyword(self, meta, name, value):
        return ast.Keyword(name.value, value, span=_span(meta))

    def if_expr(self, meta, cond, then, orelse):
        return ast.If(cond, then, orelse, span=_span(meta))

    def else_if(self, meta, if_expr):
        """`else if ...`: the else branch is a block holding only that `if`."""
        return ast.Block((), if_expr, span=_span(meta))

    def for_expr(self, meta, index, lo, hi, body):
        return ast.For(index.value, lo, hi, body, span=_span(meta))


def _element_type(name: Token) -> str:
    if name.value not in ELEMENT_TYPES:
        raise ParseError(f"unknown element type '{_shorten(name.value)}': "
                         f"expected {', '.join(ELEMENT_TYPES[:-1])} or {ELEMENT_TYPES[-1]}",
                         _span(name), hint=_TYPE_HINTS.get(name.value) or _close_type(name.value))
    return name.value


_TYPE_HINTS = {
    "float": "write f64 (or f32)", "float64": "write f64", "double": "write f64",
    "float32": "write f32", "int": "write i64", "int64": "write i64", "bool_": "write bool",
}


def _close_type(name: str) -> str | None:
    """`did you mean f64?` for a misspelt element type such as `f46` or `boll`."""
    close = difflib.get_close_matches(name, ELEMENT_TYPES, n=1, cutoff=0.5)
    return f"did you mean {close[0]}?" if close else None


def _shorten(text: str) -> str:
    return text if len(text) <= 24 else text[:20] + "..."


# ---- syntax errors -----------------------------------------------------------------

# How terminals are named in messages; string terminals are shown quoted.
_TERMINAL_WORDS = {"NAME": "a name", "INT": "an integer", "FLOAT": "a number"}

# Tokens that can start an expression: when all are possible, say "an expression".
_EXPRESSION_START = frozenset({
    "NAME", "INT", "FLOAT", "TRUE", "FALSE", "_LPAR", "MINUS", "NOT", "_IF", "_FOR",
    "_LBRACE", "_BAR",
})
_COMPARISONS = frozenset({"LT", "LE", "GT", "GE", "EQEQ", "NE"})
# Tokens that may continue a complete expression; listing them all is only noise.
_CONTINUATIONS = _COMPARISONS | {
    "OR", "XOR", "AND", "PLUS", "MINUS", "STAR", "SLASH", "DSLASH", "PERCENT", "AT", "POW",
    "_LSQB", "_LPAR",
}
_KEYWORDS = frozenset({"_FN", "_LET", "_IF", "_ELSE", "_FOR", "_IN", "AND", "OR", "NOT",
                       "XOR", "TRUE", "FALSE"})

_CHARACTER_HINTS = {
    "!": "write 'not' for negation ('!=' means 'not equal')",
    "&": "write 'and'",
    "^": "write 'xor', or '**' for a power",
    ".": "a number needs a digit after its dot (1.0), and a range is written lo..hi",
    '"': "catad has no strings",
    "'": "catad has no strings",
}


def _syntax_error(err: UnexpectedInput, text: str) -> ParseError:
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream]
        return ParseError(f"unexpected character {char!r}",
                          Span(err.line, err.column, err.line, err.column + 1),
                          hint=_CHARACTER_HINTS.get(char))
    assert isinstance(err, UnexpectedToken), err
    parser = err.interactive_parser
    return _unexpected_token(err.token, parser.accepts(), parser.parser_state.value_stack,
                             parser.lexer_thread.state.last_token)


def _unexpected_token(token: Token, accepted: set[str], stack: list,
                      last_token: Token | None) -> ParseError:
    """A ParseError for `token`, given the acceptable terminals and the parser's stack."""
    at_end = token.type == "$END"
    if at_end:
        line, column = (last_token.end_line, last_token.end_column) if last_token else (1, 1)
        span = Span(line, column, line, column + 1)
        found = ""
    else:
        span = _span(token)
        found = f", found '{_shorten(token.value)}'"
    opener = _open_construct(stack)
    kind = stack[opener].type if opener is not None else ""
    hint = None

    if "_FN" in accepted or opener is None:  # between functions
        message = f"expected 'fn' to start a function{found}"
        hint = "a program is a list of functions: fn f(x: f64) -> f64 { x }"
    elif token.type in _COMPARISONS and "PLUS" in accepted and not accepted & _COMPARISONS:
        message = f"comparisons cannot be chained{found}"
        hint = "write `a < b and b < c`"
    elif kind == "_LBRACE" and "_LET" in accepted and token.type in {"_RBRACE", "$END"}:
        message = "a block must end with an expression" + ("" if at_end else ", found '}'")
        hint = "the last item of a block is its value, written without 'let' and ';'"
    elif kind == "_IF" and "_ELSE" in accepted:
        message = f"expected 'else' after the first branch of the 'if'{found}"
        hint = "'if' is an expression, so it needs both branches: if c { a } else { b }"
    else:
        message = f"expected {_expected_words(accepted)} {_where(stack, opener, accepted)}{found}"
        if "_ARROW" in accepted:
            hint = "write the result type after the parameters: fn f(x: f64) -> f64 { ... }"
        elif token.type == "_SEMI" and kind == "_LBRACE":
            hint = "only `let` bindings end with ';': the last expression of a block has none"
        elif token.type == "_EQ" and "PLUS" in accepted:
            hint = "write '==' to compare"
        elif token.type in _EXPRESSION_START and "PLUS" in accepted:
            separator = next((f" or a '{word}'" for name, word in
                              (("_COMMA", ","), ("_SEMI", ";")) if name in accepted), "")
            hint = f"two expressions in a row: is an operator{separator} missing?"
        elif token.type in _KEYWORDS and "NAME" in accepted:
            hint = f"'{token.value}' is a reserved word and cannot be a name"
    if at_end:
        message = f"unexpected end of file: {message}"
    return ParseError(message, span, hint=hint)


_OPENERS = frozenset({"_FN", "_LET", "_IF", "_FOR", "_LPAR", "_LSQB", "_LBRACE", "_BAR"})
# A closing token on top of the stack finishes a construct that is not reduced yet.
_CLOSES = {"_RPAR": {"_LPAR"}, "_RSQB": {"_LSQB"}, "_RBRACE": {"_LBRACE"},
           "_SEMI": {"_LET", "_FN"}}


def _open_construct(stack: list) -> int | None:
    """The position in the parser's stack of the token opening the innermost unfinished construct.

    The stack holds the tokens of every construct not yet reduced. Skipped:
    the construct that the token on top of the stack has just closed, with the
    `if` or `for` that it completes, and lambdas whose parameters are complete
    (a lambda's body ends where its expression ends, so the construct around
    the lambda is the one to name).
    """
    top = stack[-1] if stack else None
    finished = _CLOSES.get(top.type, set()) if isinstance(top, Token) else set()
    skip_bar = False
    for position in range(len(stack) - 1, -1, -1):
        item = stack[position]
        if not isinstance(item, Token) or item.type not in _OPENERS:
            continue
        if item.type in finished:
            finished = _completed_by_last_part(stack, position)
        elif item.type == "_BAR" and (skip_bar or _closes_lambda_parameters(stack, position)):
            skip_bar = not skip_bar
        else:
            return position
    return None


def _completed_by_last_part(stack: list, position: int) -> set[str]:
    """The construct (as its opening terminals) that the finished part at `position` completes."""
    before = [item.type if isinstance(item, Token) else "tree"
              for item in stack[max(position - 2, 0):position]]
    if before[-1:] == ["_ELSE"]:  # `else { ... }` or `else if ...` ends its `if`
        return {"_IF"}
    if stack[position].type == "_LBRACE" and before == ["_DOTDOT", "tree"]:  # a for's body
        return {"_FOR"}
    return set()


def _closes_lambda_parameters(stack: list, position: int) -> bool:
    before = stack[position - 1]
    return (isinstance(before, Token) and before.type == "_BAR"
            or isinstance(before, Tree) and before.data == "lambda_params")


def _where(stack: list, opener: int, accepted: set[str]) -> str:
    """Where the parser is, in words: "in the call to 'f'", "after the let binding"..."""
    token = stack[opener]
    before = [item for item in stack[max(opener - 2, 0):opener] if isinstance(item, Token)]
    after = stack[opener + 1] if opener + 1 < len(stack) else None
    ends_here = accepted - _CONTINUATIONS == {"_SEMI"}
    place = f"{token.line}:{token.column}"
    match token.type:
        case "_FN" if isinstance(after, Token) and after.type == "NAME":
            return f"{'after' if ends_here else 'in'} the definition of '{after.value}'"
        case "_FN":
            return "after 'fn'"
        case "_LET":
            return "after the let binding" if ends_here else "in the let binding"
        case "_IF":
            return "in the 'if' expression"
        case "_FOR":
            return "in the 'for' expression"
        case "_BAR":
            return "in the parameters of the lambda"
        case "_LBRACE":
            return f"in the block opened at {place}"
        case "_LSQB":
            return f"in the brackets opened at {place}"
        case "_LPAR" if [item.type for item in before] == ["_FN", "NAME"]:
            return f"in the parameters of '{before[1].value}'"
        case "_LPAR" if before and before[-1].type == "NAME":
            return f"in the call to '{before[-1].value}'"
        case _:
            return f"in the parentheses opened at {place}"


def _expected_words(accepted: set[str]) -> str:
    """`accepted` in words: "';' or '}'", "an expression", "a name, ',' or ')'"."""
    names = set(accepted)
    words = []
    if _EXPRESSION_START <= names:
        names -= _EXPRESSION_START
        words.append("an expression")
    if "PLUS" in names:  # after a complete expression
        names -= _CONTINUATIONS
    for terminal in lark_parser().terminals:
        if terminal.name in names:
            words.append(_TERMINAL_WORDS.get(terminal.name) or f"'{terminal.pattern.value}'")
    if not words:
        return "an operator"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]
