"""Whether a string the user gives names a file or folder (data) or Python code (imported).

A `--model`, a `--data`, a study's `model` or `data`, a `--study` and what a study's record
holds are strings; the loaders that read or import them and the check that refuses to run
the code a stored record names (`optimizer.store.record_trust`) must read every string the
same way, or a record could name code that the check takes for a file. So the decision is
made here, once (`classify`), and every one of them asks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: `target:attr`: anything, a colon, and a Python identifier to the end (the last colon).
TARGET = re.compile(r"^(?P<target>.+):(?P<attr>[A-Za-z_]\w*)$")

SourceKind = Literal["file", "code"]


@dataclass(frozen=True)
class Source:
    """What a string names (see `classify` for the rule).

    Attributes:
        kind: "file" (a file or folder, read as data, existing or not) or "code" (an
            attribute imported from a module or a `.py` file).
        path: the string as a path, `~` expanded (what a file is read from).
        target: for code, the module name or `.py` file the attribute is in; else None.
        attr: for code, the name imported from `target`; else None.
    """

    kind: SourceKind
    path: Path
    target: str | None = None
    attr: str | None = None

    @property
    def python_file(self) -> bool:
        """A file whose name ends in `.py`: a study file, imported whole by `--study`,
        and refused as data (data come from a `file.py:function` loader)."""
        return self.kind == "file" and str(self.path).endswith(".py")


def classify(text: str | Path) -> Source:
    """What `text` names, by one rule:

    - a `Path` object is a file (it was meant as one);
    - a string is **code** when it reads `target:NAME` (`TARGET`: anything, a colon, then
      a Python identifier up to the end, e.g. `pkg.mod:load`, `path/loader.py:load`,
      `C:\\loaders\\load.py:load`) *and* no file or folder exists at the string itself
      (`~` expanded); `target` is then the module or `.py` file and `NAME` the attribute;
    - every other string is a **file**: an existing file or folder whatever its name (a
      file called `a:b`), a path whose last colon is not followed by an identifier only
      (`C:\\data\\x.npz`), a `.py` path without `:NAME` (`path/study.py`, see
      `Source.python_file`), and a path that does not exist (its loader says so).
    """
    if isinstance(text, Path):
        return Source(kind="file", path=text.expanduser())
    path = Path(text).expanduser()
    match = TARGET.match(text)
    if match is None or path.exists():
        return Source(kind="file", path=path)
    return Source(kind="code", path=path, target=match["target"], attr=match["attr"])


def names_code(value: object) -> bool:
    """Whether `value` is a string `classify` reads as code (a recorded model or data
    may be anything: only a string can name code)."""
    return isinstance(value, str) and classify(value).kind == "code"


def target_is_file(target: str) -> bool:
    """Whether the `target` of `target:NAME` is a Python file (ends in `.py` or holds a
    `/` or `\\`), imported on its own, rather than a dotted module name."""
    return target.endswith(".py") or "/" in target or "\\" in target
