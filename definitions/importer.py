"""References to Python the user names: `module.path:attr` and `path/to/file.py:attr`.

A study, a parent model's builder or a data loader may be named so on the command line;
this is the one place they are parsed and imported. A file is imported on its own (its
folder is not put on `sys.path`), under a name unique to its path, so two files of one
name do not collide; a failure of the user's module is one line of the given error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from definitions.errors import UsageError, one_line
from definitions.sources import TARGET, classify, target_is_file

MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class StudyReferenceError(UsageError):
    """A `--study`, `--model` or loader reference that cannot be imported or is not what
    it should be."""


def is_reference(text: str) -> bool:
    """Whether `--study text` names a study outside the registry: code (`a.b:NAME`) or a
    Python file (`x.py`), as `definitions.sources.classify` reads it."""
    source = classify(text)
    return source.kind == "code" or source.python_file


def import_module_target(target: str, *, error: type[UsageError], source: str) -> ModuleType:
    """The module named by `target`: a `.py` file (imported on its own, its folder not put
    on `sys.path`) or a dotted module name; `error` in one line when it cannot be."""
    if target_is_file(target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise error(f"{source}: no such file: {path}")
        name = f"_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise error(f"{source}: cannot import {path} as Python; expected a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's module may fail in any way
            del sys.modules[name]
            raise error(f"{source}: importing {path} raised {type(exc).__name__}: "
                        f"{one_line(exc)}") from exc
        return module
    if not MODULE.match(target):
        raise error(f"{source}: {target!r} is neither a .py file nor a module name")
    try:
        return importlib.import_module(target)
    except Exception as exc:  # ModuleNotFoundError, or the user's module failing
        raise error(f"{source}: cannot import module {target} ({type(exc).__name__}: "
                    f"{one_line(exc)})") from exc


def import_reference(reference: str, *, what: str) -> Any:
    """The object `module.path:attr` or `path/file.py:attr` names."""
    match = TARGET.match(reference)
    if match is None:
        raise StudyReferenceError(f"{what} {reference!r} is not 'module.path:name' or "
                              "'path/to/file.py:name'")
    module = import_module_target(match["target"], error=StudyReferenceError,
                                  source=f"{what} {reference}")
    try:
        return getattr(module, match["attr"])
    except AttributeError:
        raise StudyReferenceError(f"{what} {reference}: {match['target']} has no "
                              f"{match['attr']!r}") from None


def canonical(reference: str) -> str:
    """A reference as recorded: file paths made absolute, module names as they are."""
    match = TARGET.match(reference)
    if reference.endswith(".py") and match is None:
        return str(Path(reference).expanduser().resolve())
    if match and target_is_file(match["target"]):
        return f"{Path(match['target']).expanduser().resolve()}:{match['attr']}"
    return reference


def as_recorded(text: str) -> str:
    """A model or data string in the form a study's record holds it: an existing file or
    folder made absolute, anything else as `canonical` makes it. `run --model --data`
    records it so, and the record-trust check compares what is named again so."""
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else canonical(text)
