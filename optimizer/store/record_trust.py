"""A stored study is data: the Python code its record names runs only when named again.

A study database may come from someone else, and its record (`optimizer.store.record`) is
anyone's to edit. So the commands that read a stored study never import what the record
names as code — a data loader (`module:function`, `file.py:function`), a model function,
a study reference (`pkg.module:NAME`, `path/study.py`) — unless this same reference is
given on the command line again: `export --data REF`, `run --model REF --data REF --name
N` or `run --study path/study.py` instead of resuming by name. Otherwise they refuse in one
line naming the reference and how to allow it, before anything is imported or written.
Files (an `.npz`, a folder of images, a saved model) are data and stay allowed. `pareto`,
`report` and `dashboard` read trials only and import nothing a record names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from definitions.errors import UsageError
from definitions.importer import as_recorded
from definitions.sources import names_code


@dataclass(frozen=True)
class NamedCode:
    """A piece of Python a study's record names: what it is ("data loader", "model
    function", "study") and the reference as recorded."""

    what: str
    reference: str


def is_code(value: object) -> bool:
    """Whether a recorded model or data string names Python rather than a file: the one
    decision every loader makes too (`definitions.sources.classify`)."""
    return names_code(value)


def origin_code(record: dict[str, Any]) -> tuple[NamedCode, ...]:
    """What rebuilding the study from its record (`studies.references.study_from_record`,
    for `run --study NAME`) would import: its study reference, or the model function and
    data loader of a `run --model --data` study."""
    origin = record.get("origin")
    origin = origin if isinstance(origin, dict) else {}
    if origin.get("kind") == "reference":
        return (NamedCode("study", str(origin.get("reference"))),)
    if origin.get("kind") != "files":
        return ()
    named = (("model function", origin.get("model")), ("data loader", origin.get("data")))
    return tuple(NamedCode(what, str(value)) for what, value in named if is_code(value))


def refuse_named_code(code: tuple[NamedCode, ...], *, study_name: str, allow: str) -> None:
    """`UsageError` in one line when `code` names anything: the references, that nothing
    was imported, and `allow` (how to name them again on the command line)."""
    if not code:
        return
    names = " and the ".join(f"{item.what} {item.reference}" for item in code)
    raise UsageError(
        f"study {study_name!r}: its stored record names the {names} (Python code); a stored "
        f"study is data, so nothing it names was imported or run. If you trust that code, "
        f"{allow}"
    )


def check_resume_by_name(record: dict[str, Any], *, study_name: str, smoke: bool) -> None:
    """Refuses `run --study NAME` of a study whose record names code: the user names the
    study file, or the model and data, again (`NAME` is the study's name without the
    smoke suffix)."""
    code = origin_code(record)
    origin = record.get("origin") if isinstance(record.get("origin"), dict) else {}
    flags = " --smoke" if smoke else ""
    if origin.get("kind") == "reference":
        allow = f"name it again: run --study {origin.get('reference')}{flags}"
    else:
        allow = (f"name the model and data again: run --model {origin.get('model')} --data "
                 f"{origin.get('data')} --name {study_name}{flags}")
    refuse_named_code(code, study_name=study_name, allow=allow)


def check_recorded_data(recorded: object, *, given: str | None, study_name: str) -> None:
    """Refuses to load a study's recorded data (`export`,
    `optimizer.engine.data.load_recorded_data`) when they come from a loader not given again
    as `given` (`--data`), when `given` is not what the record names, or when the record's
    data reference is not a string."""
    if recorded is not None and not isinstance(recorded, str):
        raise UsageError(f"study {study_name!r}: its record's data_reference {recorded!r} is not "
                         "a file, folder or loader reference; the record was edited")
    if given is not None and as_recorded(given) != recorded:
        raise UsageError(
            f"study {study_name!r}: --data {given} is not the data its record names "
            f"({recorded or 'its built-in dataset'}); --data names the recorded loader again, "
            "to allow running it")
    if given is None and is_code(recorded):
        refuse_named_code((NamedCode("data loader", str(recorded)),), study_name=study_name,
                          allow=f"name it again: --data {recorded}")
