"""The code is typed: mypy (settings in pyproject.toml: every function annotated) finds
nothing in `definitions`, `search_spaces` and `studies`, and in every package every public
function (methods and nested functions included) has each parameter and its return
annotated."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

CHECKED = ("definitions", "search_spaces", "studies")
#: The packages whose public functions must be annotated (pyproject's `packages`).
PACKAGES = ("definitions", "search_spaces", "studies", "objectives", "optimizer")


def test_the_lower_layers_type_check(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *CHECKED, "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert "no issues found" in done.stdout


def unannotated(source: str, *, filename: str) -> list[str]:
    """`filename:line name(...)` of each public function in `source` (name not starting
    with `_`, or `__init__`) with a parameter or its return not annotated: `self` and
    `cls` need none, nor `__init__`'s return."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.name.startswith("_") and node.name != "__init__":
            continue
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs,
                  *(p for p in (args.vararg, args.kwarg) if p is not None)]
        missing = [p.arg for p in params
                   if p.annotation is None and p.arg not in ("self", "cls")]
        if node.returns is None and node.name != "__init__":
            missing.append("return")
        if missing:
            found.append(f"{filename}:{node.lineno} {node.name}: {', '.join(missing)}")
    return found


def test_every_public_function_is_annotated():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found += unannotated(path.read_text(encoding="utf-8"),
                                 filename=str(path.relative_to(ROOT)))
    assert not found, "not annotated:\n" + "\n".join(found)


def test_an_unannotated_function_is_reported():
    source = '''
class Shape:
    def __init__(self, width: int) -> None: ...
    def area(self) -> int: ...
    @classmethod
    def unit(cls) -> "Shape": ...
    def scaled(self, factor) -> "Shape": ...

def _private(x): ...

def typed(*args: int, key: str = "", **kwargs: float) -> None:
    def inner(y): ...
'''
    assert unannotated(source, filename="shape.py") == [
        "shape.py:7 scaled: factor", "shape.py:12 inner: y, return"]
