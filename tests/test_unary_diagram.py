"""The string diagram of UNF (compiler/unary_diagram.py) and the pictures
`catad show` makes: diagrams through Graphviz, highlighted Python."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import catad
from catad.cli import main
from catad.compiler.primitives import CONST, SIZE
from catad.compiler.unary import (Build, Custom, Drop, Get, If, Loop, Map, Prim, Reduce, Seq,
                                  Term, Tuple, Var)
from catad.compiler.unary_diagram import function_diagram, program_diagram

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOT = shutil.which("dot")

SMALL = """
fn f(x: f64[n], c: bool) -> f64 {
    let y = map(x, |a| exp(a));
    let s = reduce(y, 0.0, |p, q| p + q);
    let z = if c { s } else { fold(0.0, x, |acc, v| acc * 0.5 + v) };
    z + sum(scan(0.0, x, |acc, v| acc + v)) + sum(for i in 0..n { x[i] * 2.0 }) - f64(n)
}
"""

_NODE = re.compile(r'^\s*(\w+) \[label=.*, class="(\w+)"', re.M)
_EDGE = re.compile(r"^\s*(\w+) -> (\w+)", re.M)


def nodes(dot: str) -> dict[str, str]:
    """node name -> kind."""
    return dict(_NODE.findall(dot))


def edges(dot: str) -> list[tuple[str, str]]:
    return _EDGE.findall(dot)


def walk(term: Term):
    """Every instruction of `term`, bodies included."""
    match term:
        case Seq(terms=terms):
            for t in terms:
                yield from walk(t)
        case If(then=then, orelse=orelse):
            yield term
            yield from walk(then)
            yield from walk(orelse)
        case Build(body=body) | Map(body=body) | Reduce(body=body) | Loop(body=body) | Custom(body=body):
            yield term
            yield from walk(body)
        case _:
            yield term


def programs():
    """Every example, before and after vectorisation (derived functions included)."""
    for path in sorted(EXAMPLES.glob("*.catad")):
        stages = catad.stages(path.read_text(), str(path))
        yield f"{path.stem}-unf", stages.unary
        yield f"{path.stem}-vectorised", stages.vectorised
    yield "small", catad.stages(SMALL).unary


PROGRAMS = dict(programs())


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_instruction_is_drawn_and_wired(name):
    """One copy dot per Var, one discard per dropped entry, one box per primitive
    reading as many wires as its arity; every edge joins declared nodes."""
    program = PROGRAMS[name]
    dot = program_diagram(program)
    kinds = nodes(dot)
    counts = Counter(kinds.values())
    instructions = [i for fn in program.functions for i in walk(fn.body)]
    assert counts["copy"] == sum(isinstance(i, Var) for i in instructions)
    assert counts["discard"] == sum(i.count for i in instructions if isinstance(i, Drop))
    assert counts["prim"] + counts["const"] == sum(isinstance(i, Prim) for i in instructions)
    assert counts["tuple"] == sum(isinstance(i, (Tuple, Get)) for i in instructions)
    assert counts["if"] == sum(isinstance(i, If) for i in instructions)
    assert counts["param"] == sum(len(fn.params) for fn in program.functions)
    assert counts["result"] == len(program.functions)
    into = Counter(head for _, head in edges(dot))
    for tail, head in edges(dot):
        assert tail in kinds and head in kinds
    for node, kind in kinds.items():
        if kind in ("copy", "discard", "result"):
            assert into[node] == 1, (node, kind)
        if kind == "param":
            assert into[node] == 0, node
    arities = [i.arity for i in instructions if isinstance(i, Prim) and i.prim not in (CONST, SIZE)]
    assert sorted(into[n] for n, k in kinds.items() if k == "prim") == sorted(arities)


def test_wires_out_of_the_stack_are_numbered():
    dot = function_diagram(catad.stages("fn f(a: f64, b: f64) -> f64 { a - b }").unary.functions[0])
    assert dot.count('headlabel="1"') == dot.count('headlabel="2"') == 1
    assert "−" in dot  # sub drawn as its symbol


def test_labels_name_values_and_types():
    dot = program_diagram(catad.stages(SMALL).unary)
    assert "fn f(x: f64[n], c: bool) -&gt; f64" not in dot  # frame titles are DOT strings, not HTML
    assert 'label="fn f(x: f64[n], c: bool) -> f64"' in dot
    assert "y · f64[n]" in dot and "s · f64" in dot  # source names with their types
    for frame in ("map over 1 array", "reduce", "fold", "scan", "build 0..n", "then", "else"):
        assert f'label="{frame}"' in dot, frame
    assert "=<acc<br/>" in dot and "=<item<br/>" in dot and "=<i<br/>" in dot


def test_html_special_characters_are_escaped():
    dot = program_diagram(catad.stages("fn f(a: f64, b: f64) -> bool { a < b }").unary)
    assert "&lt;<br/>" in dot
    assert "<<br/>" not in dot


def test_custom_derivative_is_framed():
    program = catad.stages((EXAMPLES / "binarized.catad").read_text()).unary
    dot = program_diagram(program)
    assert 'label="binarize: derivative by the user\'s rule"' in dot


def test_output_is_deterministic():
    text = (EXAMPLES / "gmm.catad").read_text()
    first = program_diagram(catad.stages(text).vectorised)
    assert program_diagram(catad.stages(text).vectorised) == first


@pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("name", sorted(set(PROGRAMS) - {"transformer-vectorised"}))  # 1250 nodes: slow
def test_dot_renders_every_example(name):
    done = subprocess.run([DOT, "-Tsvg"], input=program_diagram(PROGRAMS[name]),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout and 'class="node copy"' in done.stdout
    assert "Warning" not in done.stderr, done.stderr


# ---- catad show --diagram -----------------------------------------------------------

def test_show_writes_dot_text_with_derived_functions(tmp_path):
    out = tmp_path / "mlp.dot"
    assert main(["show", str(EXAMPLES / "mlp.catad"), "--stage", "unf", "--grad", "loss",
                 "--diagram", str(out)]) == 0
    text = out.read_text()
    assert 'label="fn mlp(' in text and 'label="fn loss(' in text and 'label="fn loss_grad(' in text
    stages = catad.stages((EXAMPLES / "mlp.catad").read_text())
    plain = program_diagram(stages.unary)
    assert plain.count("subgraph") < text.count("subgraph")


def test_show_draws_declared_derivatives_of_unf(tmp_path):
    out = tmp_path / "logistic.dot"
    assert main(["show", str(EXAMPLES / "logistic.catad"), "--stage", "unf", "--diagram", str(out)]) == 0
    assert 'label="fn loss_grad(' in out.read_text()


@pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_show_renders_through_dot(tmp_path, suffix):
    out = tmp_path / f"rnn.{suffix}"
    assert main(["show", str(EXAMPLES / "rnn.catad"), "--stage", "unf", "--diagram", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data


def test_show_without_dot_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "rnn.svg"
    assert main(["show", str(EXAMPLES / "rnn.catad"), "--stage", "unf", "--diagram", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Graphviz" in err and "apt-get install graphviz" in err and "rnn.dot" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--stage", "python", "--diagram", "x.svg"], "--stage unf or vectorised"),
    (["--stage", "unf", "--diagram", "x.txt"], ".svg, .png, .pdf or .dot"),
])
def test_show_diagram_usage_mistakes(args, message, capsys):
    assert main(["show", str(EXAMPLES / "rnn.catad"), *args]) == 1
    assert message in capsys.readouterr().err


# ---- catad show --stage python: highlighted on a terminal ----------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _show_python(monkeypatch, stdout: io.StringIO) -> str:
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["show", str(EXAMPLES / "logistic.catad"), "--stage", "python"]) == 0
    return stdout.getvalue()


def test_python_is_highlighted_on_a_terminal(monkeypatch):
    pytest.importorskip("rich", reason="highlighting needs rich (the examples extra)")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    shown = _show_python(monkeypatch, _Terminal())
    plain = catad.stages((EXAMPLES / "logistic.catad").read_text(), str(EXAMPLES / "logistic.catad")).python
    assert "\x1b[" in shown
    assert [line.rstrip() for line in _ANSI.sub("", shown).splitlines()] == \
           [line.rstrip() for line in plain.splitlines()]


def test_python_is_plain_when_piped(monkeypatch):
    shown = _show_python(monkeypatch, io.StringIO())
    assert shown == catad.stages((EXAMPLES / "logistic.catad").read_text(),
                                 str(EXAMPLES / "logistic.catad")).python


def test_python_is_plain_without_rich(monkeypatch):
    for module in ("rich", "rich.console", "rich.syntax"):
        monkeypatch.setitem(sys.modules, module, None)
    shown = _show_python(monkeypatch, _Terminal())
    assert "\x1b[" not in shown and shown.startswith("# Generated by catad")
