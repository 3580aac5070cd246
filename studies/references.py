"""Finding studies, models and loaders that live outside this package.

`--study` takes a registered name (`studies.STUDIES`), `pkg.module:NAME` (a `Study` in an
importable module) or `path/to/study.py` (the module's `STUDY`, or its only `Study`).
`run --model my_model.keras --data my_data.npz [--name N]` makes a study from two files
with default ranges and budget (`files_study`). Either way the reference is recorded on the
Optuna study (`reference`), so `pareto`, `export`, `report`, `dashboard` and a resumed
`run` find the same definition again (`study_from_record`).

Relative paths inside a study file (its `model` or `data`) are taken from the file's own
folder, so a study file means the same wherever it is run from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from definitions.attributes import SMOKE_SUFFIX
from definitions.errors import UsageError
from definitions.importer import (
    StudyReferenceError,
    as_recorded,
    canonical,
    import_module_target,
    import_reference,
    is_reference,
)
from definitions.sources import classify
from definitions.vocabulary import PARENT_KINDS
from studies import get_study
from studies.base import Budget, Study

if TYPE_CHECKING:

    from studies.base import Study


#: The budget of a study made by `run --model --data`: a few epochs per trial on the whole
#: training split; `--smoke` is a tiny one to check that everything works.
FILES_BUDGET: dict[str, Any] = {"epochs": 3, "batch_size": 64, "n_trials": 20}
FILES_SMOKE: dict[str, Any] = {"epochs": 1, "batch_size": 32, "n_trials": 3,
                               "train_subset": 512}


def _anchored(value: Any, folder: Path) -> Any:
    """A model or data string of a study file, with a relative path taken from `folder`."""
    if not isinstance(value, str | Path):
        return value
    text = str(value)
    source = classify(text)
    if source.target is not None:  # code
        target = source.target
        if target.endswith(".py") and not Path(target).is_absolute():
            return f"{(folder / target).resolve()}:{source.attr}"
        return text
    path = source.path
    return str(path if path.is_absolute() else (folder / path).resolve())


def load_study(reference: str) -> Study:
    """The `Study` that `pkg.module:NAME` or `path/study.py` names, checked, its
    `reference` set to the canonical reference."""

    reference = canonical(reference)
    source = classify(reference)
    if source.target is not None:  # code: `pkg.module:NAME` or `path/study.py:NAME`
        obj = import_reference(reference, what="study")
        target = source.target
        folder = Path(target).parent if target.endswith(".py") else Path.cwd()
    else:
        module = import_module_target(reference, error=StudyReferenceError,
                                      source=f"study {reference}")
        folder = Path(reference).parent
        obj = getattr(module, "STUDY", None)
        if obj is None:
            found = [v for v in vars(module).values() if isinstance(v, Study)]
            if len(found) != 1:
                raise StudyReferenceError(
                    f"study {reference}: define STUDY = Study(...) in it (found "
                    f"{len(found)} Study objects)")
            obj = found[0]
    if not isinstance(obj, Study):
        raise StudyReferenceError(f"study {reference} is a {type(obj).__name__}, not a "
                              "studies.Study")
    study = replace(obj, model=_anchored(obj.model, folder), data=_anchored(obj.data, folder),
                    defined_in=reference)
    study.validate()
    return study


def resolve_study(text: str) -> Study:
    """`--study`: a registered name or a reference (`UnknownStudyError` otherwise)."""

    return load_study(text) if is_reference(text) else get_study(text)


def files_study(*, model: str, data: str, name: str | None = None, init: str | None = None
                ) -> Study:
    """The study `run --model M --data D [--name N]` makes: default ranges and budget,
    the model file's stem as its name."""

    source = classify(model)
    if source.kind == "code":
        model_ref = canonical(model)
        path = Path(model_ref.rsplit(":", 1)[1])
    elif source.path.exists():
        model_ref = as_recorded(model)
        path = source.path
    else:
        raise StudyReferenceError(f"--model {model}: no such file or folder (or "
                                  "module:function)")
    data_ref = as_recorded(data)
    study = Study(
        name=name or path.stem.replace(" ", "_"),
        model=model_ref,
        data=data_ref,
        budget=Budget(**FILES_BUDGET),
        smoke=Budget(**FILES_SMOKE),
        expected_runtime="depends on the model and data",
        init=init or "inherit",
    )
    study.validate()
    return study


@dataclass(frozen=True)
class ParentSource:
    """Where a study's parent is found, in strings a worker process can resolve again.

    Attributes:
        kind: one of `PARENT_KINDS`.
        target: the family name, the absolute model path, the function reference, or
            the study reference.
        trust_code: load Python code stored in a saved model (a `Lambda` layer's
            bytecode runs when the file is loaded): the run's `--trust-model-code`. It
            travels with the source, so each worker that loads the file honours it.
    """

    kind: str
    target: str
    trust_code: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PARENT_KINDS:
            raise ValueError(f"unknown parent kind {self.kind!r}")

    def sha256(self) -> str | None:
        """SHA-256 of a saved model's file(s) (a SavedModel folder: of its files in name
        order), recorded so the study's parent means one model wherever the file sits."""
        if self.kind != "file":
            return None
        path = Path(self.target)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            digest.update(file.read_bytes())
        return digest.hexdigest()


def parent_source(study: Study, *, trust_code: bool = False) -> ParentSource:
    """Where `study`'s parent comes from (see `definitions.vocabulary.PARENT_KINDS`);
    `trust_code`: the run's `--trust-model-code` (see `ParentSource`)."""
    if study.model is None:
        return ParentSource(kind="family", target=study.family, trust_code=trust_code)
    if isinstance(study.model, str):
        if classify(study.model).kind == "file":
            return ParentSource(kind="file", target=study.model, trust_code=trust_code)
        return ParentSource(kind="function", target=study.model, trust_code=trust_code)
    if study.defined_in is None:
        raise UsageError(f"study {study.name!r} holds a model object but was not loaded by "
                         "reference; pass --study pkg.module:NAME or path/study.py")
    return ParentSource(kind="study", target=study.defined_in, trust_code=trust_code)


def study_from_record(record: dict[str, Any], *, name: str) -> Study:
    """The definition of a stored user study, from its record (for the reading commands
    and for resuming a `run --model --data` study by `--study NAME`)."""
    origin = record.get("origin") or {}
    if origin.get("kind") == "reference":
        return load_study(str(origin["reference"]))
    if origin.get("kind") == "files":
        return files_study(model=str(origin["model"]), data=str(origin["data"]),
                           name=name.removesuffix(SMOKE_SUFFIX), init=record.get("init"))
    raise UsageError(f"study {name!r} is not a registered study and its record names no "
                     "model and data")
