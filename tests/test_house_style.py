"""The house limits (developers' guide): no file over about 500 lines, no function over about 60.

"About" is given a margin here (files 520, function bodies 60 lines after the docstring) so the
test stops growth without forcing a split over a few lines; a file or function past these
numbers is split by its jobs, not by a cut at the limit.
"""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 520
MAX_FUNCTION_LINES = 60


def _python_files(*folders: str) -> list[Path]:
    """The project's own files: git's list where there is one, else a walk that skips hidden
    folders (peer virtual environments live in bench/.venv-*)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", *folders],
                            capture_output=True, text=True)
    if listed.returncode == 0:
        return [ROOT / f for f in listed.stdout.split() if f.endswith(".py") and (ROOT / f).exists()]
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")
            if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    body = node.body
    has_doc = (len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
               and isinstance(body[0].value.value, str))
    first = body[1] if has_doc else body[0]
    return node.end_lineno - first.lineno + 1


def test_no_file_over_the_limit():
    files = _python_files("src", "tests", "bench")
    assert len(files) > 50, "git ls-files found too few files: the test would check nothing"
    long = {str(p.relative_to(ROOT)): p.read_text().count("\n") for p in files}
    assert {f: n for f, n in long.items() if n > MAX_FILE_LINES} == {}


def test_no_function_over_the_limit():
    too_long = {}
    for path in _python_files("src"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_FUNCTION_LINES:
                too_long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = _body_lines(node)
    assert too_long == {}


def test_body_lines_skips_the_docstring():
    tree = ast.parse('def f():\n    """doc\n    more"""\n    a = 1\n    return a\n')
    assert _body_lines(tree.body[0]) == 2
