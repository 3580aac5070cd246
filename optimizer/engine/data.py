"""The data a search runs on: a built-in dataset or the user's, split as the study records
(`optimizer.store.record`), read where TensorFlow may be imported and kept out of the
driver, which forks its workers with the data in memory."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.errors import UsageError
from definitions.sources import classify
from objectives.model_input import declared_input_shape
from optimizer.engine.worker import without_tensorflow_here
from optimizer.store.record import USER_VALIDATION_FRACTION, check_record, stored_record
from optimizer.store.record_trust import check_recorded_data
from studies.datasets import Splits, load_dataset
from studies.user_data import ImageShape, load_user_data

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


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
        return load_dataset(dataset, data_dir=data_dir, split_seed=split_seed)
    source: str | Path = data
    if data_dir is not None:
        if classify(data).kind == "code":
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
    return without_tensorflow_here(read)


def _read_for_parent(source: str | Path, *, split_seed: int, image_shape: ImageShape | None,
                     model: Path | None) -> Splits:
    """The user's data read for the parent model (see `load_data`); where TensorFlow may
    be imported (a SavedModel's metadata needs its protobufs)."""
    if image_shape is None and model is not None and Path(source).expanduser().is_dir():
        image_shape = declared_input_shape(model)
    return load_user_data(source, split_seed=split_seed, image_shape=image_shape,
                          validation_fraction=USER_VALIDATION_FRACTION)


def load_recorded_data(opt_study: optuna.Study, *, data_dir: Path | None,
                       data: str | None = None) -> Splits:
    """The study's data, split as recorded (its dataset and split seed), refused when the
    data found now is not the data the study was run on (fingerprints differ).

    A loader the record names runs only when `data` (`export --data`) names it again: a
    stored study is data (`optimizer.store.record_trust`)."""
    record = stored_record(opt_study)
    check_recorded_data(record.get("data_reference"), given=data,
                        study_name=opt_study.study_name)
    # `run` warned of a small validation split when the study was made
    read = record.get("folder_images")  # read again as it was (None: as its images are)
    splits = load_data(dataset=str(record["dataset"]), data=record.get("data_reference"),
                       data_dir=data_dir, split_seed=int(record["split_seed"]), warn=False,
                       image_shape=(*read["size"], read["channels"]) if read else None)
    check_record(opt_study, {**record, "data_source": splits.source,
                             "data_fingerprints": splits.fingerprints()})
    return splits
