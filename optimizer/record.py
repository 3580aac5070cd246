"""What defines a stored study: written once when the study is created, checked on every
later use.

A study in storage must mean one thing to whoever opens it, from wherever. So `run`
records on the Optuna study everything its numbers depend on — the dataset, where the data
came from and a fingerprint of each split, the seed the splits were carved with, their
sizes, the training budget, the search-space ranges, the model family, and the byte
definition — and every later command takes these from the study, never from today's
defaults. What is given now that contradicts the record is refused with one line naming
both values and what to do, before anything is written.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from definitions.attributes import RECORD_ATTR
from definitions.budgets import Budget, DeviceBudgets
from definitions.errors import UsageError

if TYPE_CHECKING:
    import optuna

    from optimizer.parents import SearchParent
    from studies.base import Study
    from studies.datasets import Splits
    from studies.user_data import ImageShape

log = logging.getLogger(__name__)

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


def make_record(*, study: Study, splits: Splits, parent: SearchParent) -> dict[str, Any]:
    """The record of `study` searched on `splits` from `parent` (JSON-serializable)."""
    from importlib import metadata

    from objectives.size import SIZE_DEFINITION

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
    where given).

    The data source string may differ (the same files in another folder); the data
    fingerprints may not."""
    stored = stored_record(opt_study)
    for key, advice in _WHAT_TO_DO.items():
        if keys is not None and key not in keys:
            continue
        if _comparable(key, stored.get(key)) != _comparable(key, now.get(key)):
            hint = advice.format(source=stored.get("data_source"), stored=stored.get(key))
            if key == "data_fingerprints":
                what = (f"its data ({stored.get('data_source')}, fingerprint "
                        f"{_short(stored.get(key))}) differs from the data found now "
                        f"({now.get('data_source')}, fingerprint {_short(now.get(key))})")
            elif key == "device_budgets":
                what = (f"its device budgets are {DeviceBudgets(**stored[key]).describe()}, "
                        f"but now they would be {DeviceBudgets(**now[key]).describe()}")
            elif key == "trust_model_code":
                what = (f"it was created {_with(stored.get(key))} --trust-model-code, but "
                        f"now it would run {_with(now.get(key))} it")
            else:
                what = f"its {key} is {stored.get(key)}, but now it would be {now.get(key)}"
            raise UsageError(f"study {opt_study.study_name!r}: {what}; {hint}")


#: Budget fields added since records were first written, with the value that held before
#: each existed where it is not the field's default: a record stored without
#: `keep_front` ran its rungs by MO-ASHA's rank alone.
BUDGET_BEFORE_FIELD = {"keep_front": False}


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


def load_data(*, dataset: str, data: str | None, data_dir: Path | None,
              split_seed: int, warn: bool = True, model: object = None,
              image_shape: ImageShape | None = None) -> Splits:
    """A built-in `dataset` (from `data_dir` where given) or the user's `data` (where
    `data_dir` is given, a file or folder of the same name in it), split with
    `split_seed`. `warn`: log one line when the validation split is too small to rank
    trials on (`Splits.small_validation`), as `run` loads them.

    An image folder is read for its parent model, as Keras would for it: at
    `image_shape` (H, W, C) where given (a study's recorded `folder_images`), else at the
    input shape `model` declares when it is a saved model file (read from its config as
    data, `objectives.model_input`), else as its images are (`studies.user_data`)."""
    splits = _load_splits(dataset=dataset, data=data, data_dir=data_dir,
                          split_seed=split_seed, model=model, image_shape=image_shape)
    if warn and (small := splits.small_validation()) is not None:
        log.warning("%s", small)
    return splits


def _load_splits(*, dataset: str, data: str | None, data_dir: Path | None,
                 split_seed: int, model: object, image_shape: ImageShape | None) -> Splits:
    if not data:
        from studies.datasets import load_dataset

        return load_dataset(dataset, data_dir=data_dir, split_seed=split_seed)
    from studies.user_data import load_user_data

    source: str | Path = data
    if data_dir is not None:
        if ":" in data and not Path(data).exists():
            raise UsageError(f"--data-dir finds files and folders; this study's data come "
                             f"from the loader {data}")
        # a Path is read as a file or folder, never as a loader reference
        source = Path(data_dir) / Path(data).name
    if Path(source).expanduser().is_file():  # an .npz: NumPy reads it
        return load_user_data(source, split_seed=split_seed,
                              validation_fraction=USER_VALIDATION_FRACTION)
    saved = (Path(model).expanduser() if isinstance(model, str | Path)
             and Path(model).expanduser().exists() else None)
    read = functools.partial(_read_for_parent, source, split_seed=split_seed,
                             image_shape=image_shape, model=saved)
    # An image folder is decoded by Keras, and a loader may import TensorFlow as well:
    # kept out of the driver, which then forks its workers with the data in memory
    # instead of spawning them (issue 24).
    from optimizer.worker import without_tensorflow_here

    return without_tensorflow_here(read)


def _read_for_parent(source: str | Path, *, split_seed: int, image_shape: ImageShape | None,
                     model: Path | None) -> Splits:
    """The user's data read for the parent model (see `load_data`); where TensorFlow may
    be imported (a SavedModel's metadata needs its protobufs)."""
    from studies.user_data import load_user_data

    if image_shape is None and model is not None and Path(source).expanduser().is_dir():
        from objectives.model_input import declared_input_shape

        image_shape = declared_input_shape(model)
    return load_user_data(source, split_seed=split_seed, image_shape=image_shape,
                          validation_fraction=USER_VALIDATION_FRACTION)


def load_recorded_data(opt_study: optuna.Study, *, data_dir: Path | None,
                       data: str | None = None) -> Splits:
    """The study's data, split as recorded (its dataset and split seed), refused when the
    data found now is not the data the study was run on (fingerprints differ).

    A loader the record names runs only when `data` (`export --data`) names it again: a
    stored study is data (`optimizer.record_trust`)."""
    from optimizer.record_trust import check_recorded_data

    record = stored_record(opt_study)
    check_recorded_data(record.get("data_reference"), given=data,
                        study=opt_study.study_name)
    # `run` warned of a small validation split when the study was made
    read = record.get("folder_images")  # read again as it was (None: as its images are)
    splits = load_data(dataset=str(record["dataset"]), data=record.get("data_reference"),
                       data_dir=data_dir, split_seed=int(record["split_seed"]), warn=False,
                       image_shape=(*read["size"], read["channels"]) if read else None)
    check_record(opt_study, {**record, "data_source": splits.source,
                             "data_fingerprints": splits.fingerprints()})
    return splits
