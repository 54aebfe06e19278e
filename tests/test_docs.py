"""Every code sample in README.md and docs/*.md runs, and shows what it does.

The blocks of a page run in order, in a fresh temporary directory that holds a
copy of examples/. The info string of a fence says what a block is:

    ```catad [file=NAME]        a program that catad compiles (and loads); with
                                file=NAME it is also saved as NAME for later blocks
    ```catad-error [file=NAME]  a program that catad refuses with a CatadError; the
                                ```text block right after it is the report (the
                                program is reported under NAME, by default
                                model.catad); with file=NAME it is saved too
    ```python [file=NAME]       with file=NAME: saved as NAME (it must compile);
                                without: executed, the python blocks of a page
                                sharing one namespace; a ```text block right after
                                it is what it prints
    ```sh                       run when its first command starts with `catad `:
                                each line is `catad ARGS` (run by catad.cli.main),
                                `python SCRIPT ARGS` (the script run as __main__) or
                                `echo $?` (the last exit status); a command that
                                fails must be followed by `echo $?`; a ```text block
                                right after it is what the lines print (per
                                command: standard output, then standard error)
    ```text, ```LANG output     right after one of the above: the expected output,
                                compared line by line, trailing spaces ignored; a
                                line `...` stands for any lines, and `...` inside a
                                line for any text (```python output shows generated
                                code with Python's colours)

"Right after" means with only blank lines between. Other blocks (no info
string, toml, sh blocks of other commands) are not run.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import pkgutil
import re
import runpy
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import catad
import catad.compiler
from catad.cli import STAGES, main
from catad.compiler import primitives as P
from catad.compiler.library import LIBRARY

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT_PATH = "model.catad"
RUN = ("catad", "catad-error", "python", "sh")


# ---- reading the pages -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A fenced block: its language, its attributes (`key=value`, or a bare word
    with the value ""), its text, where its fence opens (page:line), and the
    output block right after it, if any."""

    lang: str
    attrs: tuple[tuple[str, str], ...]
    text: str
    where: str
    output: str | None = None

    def attr(self, name: str) -> str | None:
        return dict(self.attrs).get(name)


_FENCE = re.compile(r"^( *)(`{3,})\s*(\S*)(.*)$")


def samples(page: Path) -> list[Sample]:
    """The fenced blocks of `page`, each with the output block right after it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[tuple[Sample, int, int]] = []  # with the lines of its two fences
    k = 0
    while k < len(lines):
        match = _FENCE.match(lines[k])
        if not match:
            k += 1
            continue
        indent, fence, lang, rest = match.groups()
        end = k + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        assert end < len(lines), f"{page.name}:{k + 1}: the fence is never closed"
        attrs = tuple((*item.split("=", 1), "")[:2] for item in rest.split())
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip()
                for line in lines[k + 1:end]]  # a block in a list item is indented
        text = "\n".join(body) + "\n"
        found.append((Sample(lang, attrs, text, f"{page.name}:{k + 1}"), k, end))
        k = end + 1
    out: list[Sample] = []
    for i, (sample, opening, _) in enumerate(found):
        right_after = i > 0 and not any(line.strip() for line in lines[found[i - 1][2] + 1:opening])
        is_output = sample.lang == "text" or sample.attr("output") is not None
        if is_output and right_after and out and out[-1].output is None:
            out[-1] = Sample(out[-1].lang, out[-1].attrs, out[-1].text, out[-1].where,
                             sample.text)
        else:
            assert sample.attr("output") is None, \
                f"{sample.where}: an output block must follow the block it is the output of"
            out.append(sample)
    return out


def matches(expected: str, actual: str) -> bool:
    """`actual` as `expected` shows it: `...` lines stand for any lines, `...`
    within a line for any text; trailing spaces and blank last lines ignored."""
    pattern = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            pattern.append(".*?".join(re.escape(part) for part in line.rstrip().split("..."))
                           + r"\n")
    text = "".join(line.rstrip() + "\n" for line in actual.rstrip("\n").splitlines())
    return re.fullmatch("".join(pattern), text) is not None


# ---- running them ----------------------------------------------------------------


class PageRun:
    """Runs the samples of one page in `workdir`, sharing one Python namespace."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.namespace: dict = {"__name__": "__docs__"}
        self.status = 0

    def run(self, sample: Sample) -> None:
        match sample.lang:
            case "catad":
                self.save(sample)
                catad.compile(sample.text, sample.attr("file") or DEFAULT_PATH)
            case "catad-error":
                self.catad_error(sample)
            case "python":
                self.python(sample)
            case "sh":
                self.shell(sample)

    def save(self, sample: Sample) -> None:
        name = sample.attr("file")
        if name:
            path = self.workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sample.text, encoding="utf-8")

    def catad_error(self, sample: Sample) -> None:
        self.save(sample)
        assert sample.output is not None, f"{sample.where}: show the error in a ```text block"
        with pytest.raises(catad.CatadError) as info:
            catad.compile(sample.text, sample.attr("file") or DEFAULT_PATH)
        report = info.value.render()
        assert matches(sample.output, report), f"{sample.where}: catad reports\n{report}"

    def python(self, sample: Sample) -> None:
        if sample.attr("file"):
            compile(sample.text, sample.where, "exec")
            self.save(sample)
            return
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(sample.text, sample.where, "exec"), self.namespace)
        self.compare(sample, out.getvalue())

    def shell(self, sample: Sample) -> None:
        commands = [line.strip() for line in sample.text.splitlines()
                    if line.strip() and not line.strip().startswith("#")]
        if not commands or not commands[0].startswith("catad "):
            return
        printed = []
        for k, command in enumerate(commands):
            if command == "echo $?":
                printed.append(f"{self.status}\n")
                continue
            words = shlex.split(command)
            if words[0] == "catad":
                text = self.catad(words[1:])
            elif words[0] == "python":
                text = self.script(words[1:])
            else:
                raise AssertionError(f"{sample.where}: cannot run `{command}` here")
            printed.append(text)
            shown = k + 1 < len(commands) and commands[k + 1] == "echo $?"
            assert self.status == 0 or shown, \
                f"{sample.where}: `{command}` exits with {self.status}:\n{text}"
        self.compare(sample, "".join(printed))

    def catad(self, argv: list[str]) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                self.status = main(argv)
            except SystemExit as exit_:  # argparse: --help, --version, usage errors
                self.status = exit_.code if isinstance(exit_.code, int) else 1
        return out.getvalue() + err.getvalue()

    def script(self, argv: list[str]) -> str:
        out = io.StringIO()
        saved = sys.argv
        sys.argv = argv
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(argv[0], run_name="__main__")
            self.status = 0
        except SystemExit as exit_:
            self.status = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            sys.argv = saved
        return out.getvalue()

    def compare(self, sample: Sample, printed: str) -> None:
        if sample.output is not None:
            assert matches(sample.output, printed), f"{sample.where}: it prints\n{printed}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A directory with a copy of examples/, as the current directory and on sys.path."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps --help to the terminal
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # modules the page imported from tmp_path
        if str(tmp_path) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_sample_runs(page, workdir):
    run = PageRun(workdir)
    for sample in samples(page):
        if sample.lang in RUN:
            run.run(sample)


@pytest.mark.parametrize("page", PAGES[1:], ids=[p.name for p in PAGES[1:]])
def test_every_page_has_samples_that_run(page):
    assert any(s.lang in RUN for s in samples(page)), page.name


# ---- the references are complete ---------------------------------------------------


def _read(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def test_the_language_reference_lists_every_library_function():
    rows = [line for line in _read("language.md").splitlines() if line.startswith("|")]
    first_cells = [row.split("|")[1] for row in rows]
    missing = [name for name in LIBRARY
               if not any(f"`{name}(" in cell for cell in first_cells)]
    assert not missing, f"no table row of docs/language.md starts with these: {missing}"


def _help(argv: list[str], monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


def test_the_cli_reference_names_every_command_option_and_choice(monkeypatch):
    text = _read("cli.md")
    top = _help([], monkeypatch)
    commands = re.findall(r"^ {4}(\w+) ", top, flags=re.M)
    assert "compile" in commands and "show" in commands
    missing = []
    for command in commands:
        usage = _help([command], monkeypatch)
        names = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage)) - {"-h", "--help"}
        for group in re.findall(r"\{([\w,]+)\}", usage):
            names |= set(group.split(","))
        missing += [f"{command} {name}" for name in sorted(names) if f"`{name}" not in text]
        if f"catad {command}" not in text:
            missing.append(command)
    missing += [stage for stage in STAGES if f"`{stage}`" not in text]
    assert not missing, f"docs/cli.md does not mention: {missing}"


def _primitive_tables() -> list[str]:
    """`module.NAME` of every dict keyed by all the primitives that a module of
    catad.compiler defines (assigns at its top level, not imports)."""
    tables = []
    for info in pkgutil.iter_modules(catad.compiler.__path__):
        module = importlib.import_module(f"catad.compiler.{info.name}")
        source = inspect.getsource(module)
        for name, value in vars(module).items():
            if (isinstance(value, dict) and set(value) == set(P.ALL)
                    and re.search(rf"^{name}\b[^=\n]*=", source, flags=re.M)):
                tables.append(f"{info.name}.{name}")
    return tables


def test_the_primitive_guide_names_every_table_and_only_real_ones():
    text = _read("design.md")
    tables = _primitive_tables()
    assert len(tables) >= 6
    missing = [t for t in tables if f"`{t}`" not in text]
    assert not missing, f"docs/design.md does not name these tables of primitives: {missing}"
    for module, name in re.findall(r"`(\w+)\.([A-Z][A-Z_]+)`", text):
        assert hasattr(importlib.import_module(f"catad.compiler.{module}"), name), \
            f"docs/design.md names {module}.{name}, which does not exist"


_LINK = re.compile(r"\]\(((?:[\w./-]+\.(?:md|catad|lark|py|png|svg))?(?:#[\w-]+)?)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of the headings of `page`: lower case, punctuation dropped,
    spaces as hyphens."""
    headings = re.findall(r"^#+ (.*)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_between_pages_resolve(page):
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if not target:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {path}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name} links to {target}: no such heading"
