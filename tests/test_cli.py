"""The `catad` command as a user runs it: help, compile, show, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catad.cli import STAGES, main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "catad", *args], capture_output=True, text=True)


def test_help_works_as_module_and_script():
    assert run("--help").returncode == 0
    assert "compile" in run("--help").stdout
    out = subprocess.run(["catad", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "show" in out.stdout


def test_compile_writes_a_runnable_module(tmp_path):
    out = tmp_path / "logistic.py"
    assert main(["compile", str(EXAMPLES / "logistic.catad"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "import numpy as np" in text
    namespace: dict = {}
    exec(compile(text, str(out), "exec"), namespace)
    w, X = np.array([1.0, -2.0]), np.array([[0.5, 0.25], [1.0, 1.0], [0.0, 2.0]])
    expected = 1 / (1 + np.exp(-(X @ w + 0.5)))
    np.testing.assert_allclose(namespace["predict"](w, 0.5, X), expected, rtol=1e-12)


def test_a_reader_that_stops_reading_is_no_internal_error():
    # `catad compile m.catad | head`: the pipe is closed before catad writes the module
    process = subprocess.Popen([sys.executable, "-m", "catad", "compile", str(EXAMPLES / "gmm.catad"),
                                "--grad", "gmm"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr


def test_compile_is_deterministic(tmp_path):
    for path in sorted(EXAMPLES.glob("*.catad")):
        a, b = tmp_path / "a.py", tmp_path / "b.py"
        assert main(["compile", str(path), "-o", str(a)]) == 0
        assert main(["compile", str(path), "-o", str(b)]) == 0
        assert a.read_bytes() == b.read_bytes(), path.name


def test_generated_module_imports_only_numpy(tmp_path):
    for path in sorted(EXAMPLES.glob("*.catad")):
        out = tmp_path / "m.py"
        main(["compile", str(path), "-o", str(out)])
        imports = {line.split()[1] for line in out.read_text().splitlines()
                   if line.startswith(("import ", "from "))}
        assert imports <= {"numpy", "math", "__future__"}, (path.name, imports)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_show_prints_every_stage(stage, capsys):
    assert main(["show", str(EXAMPLES / "mlp.catad"), "--stage", stage]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and len(out.splitlines()) > 3


def _error(tmp_path, data: bytes, capsys) -> str:
    path = tmp_path / "bad.catad"
    path.write_bytes(data)
    assert main(["compile", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_syntax_error_points_at_the_line(tmp_path, capsys):
    err = _error(tmp_path, b"fn f(x: f64) -> f64 {\n    x +\n}\n", capsys)
    assert err.startswith(f"{tmp_path / 'bad.catad'}:3:1:")
    assert "^" in err


def test_shape_error_points_at_the_line(tmp_path, capsys):
    src = b"fn f(x: f64[n], y: f64[m]) -> f64[n] {\n    x + y\n}\n"
    err = _error(tmp_path, src, capsys)
    assert ":2:" in err and "f64[n]" in err and "f64[m]" in err


def test_non_utf8_file_is_an_input_error(tmp_path, capsys):
    err = _error(tmp_path, b"fn f(x: f64) -> f64 { x }\n\xff\xfe", capsys)
    assert "UTF-8" in err or "utf-8" in err


def test_empty_file_is_an_input_error(tmp_path, capsys):
    assert "bad.catad:" in _error(tmp_path, b"   \n# nothing\n", capsys)


def test_deep_nesting_is_an_input_error(tmp_path, capsys):
    src = b"fn f(x: f64) -> f64 { " + b"(" * 10000 + b"x" + b")" * 10000 + b" }\n"
    assert "bad.catad:" in _error(tmp_path, src, capsys)


def test_missing_file(capsys):
    assert main(["compile", "/nonexistent/model.catad"]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_python_keywords_and_builtins_as_names_compile_safely(tmp_path):
    src = """
    fn lambda(np: f64[n], __import__: f64) -> f64 {
        let print = np * __import__;
        let exec = sum(print);
        exec
    }
    """
    import catad

    module = catad.compile(src)
    fn = getattr(module, "lambda_", None) or getattr(module, "lambda")
    assert fn(np.array([1.0, 2.0]), 3.0) == pytest.approx(9.0)
