"""What a study stores of its own: above all its definition record, written once when the
study is created and checked on every later use; also the front's test accuracies and
the failures recorded for trials that could no longer take attributes. The one place the
study's user attributes are read.

A study in storage must mean one thing to whoever opens it, from wherever. So `run`
records on the Optuna study everything its numbers depend on — the dataset, where the data
came from and a fingerprint of each split, the seed the splits were carved with, their
sizes, the training budget, the search-space ranges, the model family, and the byte
definition — and every later command takes these from the study, never from today's
defaults. What is given now that contradicts the record is refused with one line naming
both values and what to do, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from definitions.attributes import (
    PARENT_ACCURACY_ATTR,
    RECORD_ATTR,
    STUDY_FAILURE_PREFIX,
    TEST_ACCURACY_ATTR,
)
from definitions.budgets import Budget, DeviceBudgets
from definitions.errors import UsageError
from objectives.size import SIZE_DEFINITION

if TYPE_CHECKING:
    import optuna

    from studies.base import Study
    from studies.datasets import Splits

RECORD_VERSION = 1
#: The share of each class of the user's training data carved as validation (when the
#: data bring no validation split), recorded so every later use carves the same.
USER_VALIDATION_FRACTION = 0.1


def search_space(study: Study) -> dict[str, Any]:
    """The ranges and rules of the study's search space, as stored."""
    return {
        "width_range": list(study.width_range),
        "width_step": study.width_step,
        "epr_lambda_range": list(study.epr_lambda_range),
        "quantization_modes": list(study.quantization_modes),
        "factorize_mode": study.factorize_mode,
        "accuracy_floor": study.accuracy_floor,
        "usable_accuracy": study.usable_accuracy,
        "tflite_epr": study.searches_tflite_epr,
    }


def origin(study: Study) -> dict[str, Any]:
    """Where the study's definition is found again: the registry, a study reference
    (`pkg.module:NAME`, a study file), or the two files of `run --model --data`."""
    if study.defined_in is not None:
        return {"kind": "reference", "reference": study.defined_in}
    if study.model is not None or study.data is not None:
        return {"kind": "files", "model": study.model, "data": study.data}
    return {"kind": "registered", "name": study.name}


def definition_fields(study: Study) -> dict[str, Any]:
    """The parts of the record the study definition alone decides: checked against a stored
    study before its data are loaded or its parent trained (`check_record(keys=...)`), so a
    contradiction costs nothing."""
    return {
        "init": study.init,
        "budget": asdict(study.budget),
        "search_space": search_space(study),
        "size_objective": study.size_objective,
        "device_budgets": asdict(study.device_budgets),
    }


class _Source(Protocol):
    trust_code: bool


class RecordedParent(Protocol):
    """What the record takes of a parent (`optimizer.engine.parents.SearchParent`): its
    description, and whether its stored code was let run."""

    source: _Source

    def describe(self) -> dict[str, Any]: ...


def make_record(*, study: Study, splits: Splits, parent: RecordedParent) -> dict[str, Any]:
    """The record of `study` searched on `splits` from `parent` (JSON-serializable)."""
    return {
        "version": RECORD_VERSION,
        "origin": origin(study),
        "dataset": study.dataset,
        "data_reference": study.data,
        "validation_fraction": USER_VALIDATION_FRACTION if study.data else None,
        "family": study.family,
        "parent": parent.describe(),
        "data_source": splits.source,
        "data_fingerprints": splits.fingerprints(),
        "split_seed": splits.split_seed,
        "splits": splits.sizes(),
        # the name of each label, in label order (None where the data name none): an image
        # folder's classes are numbered by sorted subfolder name
        "class_names": None if splits.class_names is None else list(splits.class_names),
        # an image folder's: the size and channels its images were read at (the parent
        # model's input), and how many were resized and converted (None for other data)
        "folder_images": splits.folder_images,
        "size_definition": SIZE_DEFINITION,
        # the TensorFlow whose converter writes the trials' .tflite files (for the card)
        "tensorflow_version": metadata.version("tensorflow"),
        # whether the parent's stored Python code (a Lambda layer) was let run when loaded
        "trust_model_code": parent.source.trust_code,
        **definition_fields(study),
    }


def write_record(opt_study: optuna.Study, record: dict[str, Any]) -> None:
    """Stores the record on a new study; a few keys also top-level for optuna-dashboard."""
    opt_study.set_user_attr(RECORD_ATTR, record)
    for key in ("dataset", "family", "data_source", "split_seed"):
        opt_study.set_user_attr(key, record[key])


def study_budgets(opt_study: optuna.Study) -> DeviceBudgets | None:
    """The study's recorded device budgets, or None where it has none set (or no record:
    reading commands work on any stored study)."""
    stored = opt_study.user_attrs.get(RECORD_ATTR, {}).get("device_budgets") or {}
    budgets = DeviceBudgets(**stored)
    return budgets if budgets.any else None


def test_accuracies(opt_study: optuna.Study) -> dict[int, float]:
    """Test-split accuracy per front member, as recorded after the search.

    Finished trials cannot take new user attributes, so they are kept on the study,
    keyed by trial number."""
    stored = opt_study.user_attrs.get(TEST_ACCURACY_ATTR) or {}
    try:
        return {int(k): float(v) for k, v in dict(stored).items()}
    except (TypeError, ValueError):
        raise UsageError(f"study {opt_study.study_name!r}: its stored {TEST_ACCURACY_ATTR!r} is "
                         "not a mapping of trial numbers to accuracies; the study was edited "
                         "or written by something else") from None


def write_test_accuracies(opt_study: optuna.Study, accuracies: dict[int, float]) -> None:
    """Stores the front's test accuracies on the study (`test_accuracies` reads them)."""
    opt_study.set_user_attr(TEST_ACCURACY_ATTR, {str(k): v for k, v in accuracies.items()})


def recorded_failure(opt_study: optuna.Study, number: int) -> tuple[str, str | None] | None:
    """(failure_kind, fail_reason) recorded on the study for trial `number`
    (`retry.record_failure`), or None."""
    recorded = opt_study.user_attrs.get(f"{STUDY_FAILURE_PREFIX}{number}")
    if not isinstance(recorded, dict) or not recorded.get("kind"):
        return None
    reason = recorded.get("reason")
    return str(recorded["kind"]), None if reason is None else str(reason)


def write_parent_accuracy(opt_study: optuna.Study, accuracy: float) -> None:
    """Stores the trained parent's validation accuracy on the study."""
    opt_study.set_user_attr(PARENT_ACCURACY_ATTR, accuracy)


def study_attribute(opt_study: optuna.Study, name: str) -> object:
    """A top-level study attribute (`dataset`, `parent_accuracy`, …), None where unset."""
    return opt_study.user_attrs.get(name)


def stored_record(opt_study: optuna.Study) -> dict[str, Any]:
    """The study's record, or `UsageError` for a study made before studies had one."""
    record = opt_study.user_attrs.get(RECORD_ATTR)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise UsageError(
            f"study {opt_study.study_name!r} carries no definition record of version "
            f"{RECORD_VERSION} (made by an older version of this tool), so its data splits "
            "cannot be reproduced; start it again in a new --run-dir or --storage"
        )
    return record


#: The recorded keys a later use must agree with, and what to do when it does not. The
#: data source string and split sizes are not among them: the fingerprints imply both, and
#: the same files may sit in another folder. Nor are `class_names`: the labels are in the
#: fingerprints, and renamed class folders hold the same data (records made before the key
#: existed have none).
_WHAT_TO_DO = {
    "dataset": "use the study's own dataset, or a new --run-dir",
    "family": "use a new --run-dir for another model family",
    "parent": "use the study's own model, or a new --run-dir for another one",
    "init": "drop --init (the stored one is used), or start a new --run-dir",
    "split_seed": "drop --seed (the stored one is used) or pass --seed {stored}, or start a "
    "new --run-dir",
    "data_fingerprints": "pass the --data-dir the study was run with ({source}), or start "
    "a new --run-dir for other data",
    # before the search space, which the size objective narrows (`Study.narrowed`)
    "size_objective": "drop --size-objective (the stored one is used), or start a new "
    "--run-dir",
    "budget": "the study definition's budget changed since the study was created; restore "
    "it, or start a new --run-dir",
    "search_space": "the study definition's ranges changed since the study was created; "
    "restore them, or start a new --run-dir",
    "size_definition": "this version of the tool measures bytes differently; start a new "
    "--run-dir",
    "device_budgets": "drop the budget flags (the stored ones are used), or start a new "
    "--run-dir; trials already run were judged against the stored budgets",
    "trust_model_code": "pass --trust-model-code exactly as when the study was created, or "
    "start a new --run-dir",
}


def check_record(opt_study: optuna.Study, now: dict[str, Any], *,
                 keys: Collection[str] | None = None) -> None:
    """Refuses (`UsageError`) when `now` contradicts the stored record (in `keys` only,
    where given), in one line naming what differs and what to do.

    The data source string may differ (the same files in another folder); the data
    fingerprints may not."""
    stored = stored_record(opt_study)
    for key, advice in _WHAT_TO_DO.items():
        if keys is not None and key not in keys:
            continue
        before, after = _comparable(key, stored.get(key)), _comparable(key, now.get(key))
        if before != after:
            hint = advice.format(source=stored.get("data_source"), stored=stored.get(key))
            if key in FIELD_WISE and isinstance(before, dict) and isinstance(after, dict):
                flags = [FLAGS[k] for k in _changed(before, after) if k in FLAGS]
                if flags:
                    hint = (f"drop {' and '.join(flags)} (the stored one is used), or start "
                            "a new --run-dir")
            raise UsageError(f"study {opt_study.study_name!r}: "
                             f"{_what(key, stored, now, before, after)}; {hint}")


#: Records whose refusal names the fields that differ (each is a dict of many).
FIELD_WISE = ("search_space", "budget")
#: Fields of the stored search space a `run` flag sets, by the flag.
FLAGS = {"quantization_modes": "--quantization", "width_range": "--width-range"}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]


def _what(key: str, stored: dict[str, Any], now: dict[str, Any], before: Any,
          after: Any) -> str:
    """What differs between the stored record's `key` and `now`'s, for people."""
    if key == "data_fingerprints":
        return (f"its data ({stored.get('data_source')}, fingerprint "
                f"{_short(stored.get(key))}) differs from the data found now "
                f"({now.get('data_source')}, fingerprint {_short(now.get(key))})")
    if key == "device_budgets":
        return (f"its device budgets are {DeviceBudgets(**stored[key]).describe()}, "
                f"but now they would be {DeviceBudgets(**now[key]).describe()}")
    if key == "trust_model_code":
        return (f"it was created {_with(stored.get(key))} --trust-model-code, but "
                f"now it would run {_with(now.get(key))} it")
    if key in FIELD_WISE and isinstance(before, dict) and isinstance(after, dict):
        return f"its {key} differs: " + "; ".join(
            f"{k} is {before.get(k)}, but now it would be {after.get(k)}"
            for k in _changed(before, after))
    return f"its {key} is {stored.get(key)}, but now it would be {now.get(key)}"


#: Budget fields added since records were first written, with the value that held before
#: each existed where it is not the field's default: a record stored without
#: `keep_front` ran its rungs by MO-ASHA's rank alone, one without `distill_weight`
#: trained its children on the labels alone.
BUDGET_BEFORE_FIELD: dict[str, Any] = {"keep_front": False, "distill_weight": 0.0}


def _comparable(key: str, value: Any) -> Any:
    """The recorded `key`'s `value` in a form to compare: as stored (JSON, so tuples become
    lists). A budget gets the fields added since it was stored, at the values that held
    before each existed; without rungs, η and `keep_front` mean nothing and are left out."""
    if key == "trust_model_code":  # stored before the flag existed: no code was trusted
        return bool(value)
    if key == "parent" and isinstance(value, dict):
        # the file's format follows from its SHA-256, and was not recorded before
        value = {k: v for k, v in value.items() if k != "file_format"}
    if key == "search_space" and isinstance(value, dict):
        # stored before the switch existed: TFLite modes were always offered the penalty
        value = {"tflite_epr": True, **value}
    if key == "budget" and isinstance(value, dict):
        try:
            value = asdict(Budget(**{**BUDGET_BEFORE_FIELD, **value}))
        except TypeError:  # a field this version does not know: compared as stored
            pass
        else:
            if not value["rungs"]:
                value = {k: v for k, v in value.items() if k not in ("eta", "keep_front")}
    return json.loads(json.dumps(value))


def _with(flag: object) -> str:
    return "with" if flag else "without"


def _short(fingerprints: object) -> str:
    if isinstance(fingerprints, dict):
        return str(fingerprints.get("data", "?"))[:12]
    return str(fingerprints)
