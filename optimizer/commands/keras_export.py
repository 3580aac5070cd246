"""`export`'s `model.keras`: the chosen candidate back in the user's Keras.

The file holds the candidate's float model: an EPR trial's decoded weights (what its
`.epr` decodes to), or the float Keras model a TFLite trial's artifact was converted from
(kept in the study's artifact store, `FLOAT_MODEL`). It is written in the format of the
Keras the parent came from (`objectives.keras_writer`): Keras 3 for a parent saved by
Keras 3 and for the built-in families and Python builders, Keras 2 for a parent saved by
Keras 2 (tf.keras ≤ 2.15, tf_keras); `--keras-format` chooses. Before the card names it,
the written file is read back through the same reader that takes a user's parent
(`objectives.parent.load_model_file`), and its predictions on the validation split must
equal the float model's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from definitions.errors import CheckFailed
from objectives import keras_writer
from objectives.keras_files import FileFormat
from objectives.parent import load_model_file
from optimizer.store.artifacts import FLOAT_MODEL, fetch, kept
from studies.datasets import as_float

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

KERAS_FILE = "model.keras"
#: How far the written file's predictions may be from the float model's.
PREDICTION_TOLERANCE = 1e-5
#: How each format is opened, for the card.
LOAD = {3: "import keras; model = keras.saving.load_model('model.keras')",
        2: "import tf_keras; model = tf_keras.models.load_model('model.keras')"}


def default_keras_format(record: dict[str, Any]) -> int:
    """The Keras the parent came from: its file's major version (2 or 3); 3 for a parent
    that is no file (a built-in family, a builder, a hypermodel)."""
    parent = record.get("parent") or {}
    file_format = parent.get("file_format") if isinstance(parent, dict) else None
    if not isinstance(file_format, dict):
        return 3
    return FileFormat(str(file_format.get("container")),
                      file_format.get("keras_version")).keras_major


def float_model(trial: optuna.trial.FrozenTrial, *, quantization: str, artifact: Path,
                store: FileSystemArtifactStore, store_dir: Path) -> Any:
    """The trial's float Keras model, or None when the study did not keep it (a TFLite
    trial recorded before float models were kept: `fetch` finds no id)."""
    import tensorflow as tf

    if quantization == "epr":
        from objectives import epr

        return epr.load(artifact)
    if not kept(trial, FLOAT_MODEL):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch(trial, store=store, store_dir=store_dir, into=Path(tmp),
                     stored=FLOAT_MODEL)
        return tf.keras.models.load_model(path, compile=False)


def write_keras_file(*, trial: optuna.trial.FrozenTrial, quantization: str, artifact: Path,
                     out: Path, store: FileSystemArtifactStore, store_dir: Path,
                     keras_format: int, x_check: Any) -> dict[str, Any]:
    """Writes `out/model.keras` (see the module doc) and returns the card's `keras`
    section; `CheckFailed` (the file removed) when it does not predict as the model."""
    model = float_model(trial, quantization=quantization, artifact=artifact, store=store,
                        store_dir=store_dir)
    if model is None:
        return {"file": None, "note": f"trial {trial.number} was recorded before trials "
                "kept their float model: no model.keras"}
    target = out / KERAS_FILE
    keras_writer.save(model, target, keras_format=keras_format)
    x_check = as_float(x_check)  # the images as kept in memory (uint8 or float), as models see them
    written = load_model_file(target).predict(x_check, verbose=0)
    difference = float(np.abs(written - model.predict(x_check, verbose=0)).max())
    if not difference <= PREDICTION_TOLERANCE:
        target.unlink()
        raise CheckFailed(f"{KERAS_FILE} predicts up to {difference:.2g} away from the "
                          "trial's float model; not written")
    return {"file": KERAS_FILE, "keras_format": keras_format,
            "keras_version": keras_writer.written_version(keras_format),
            "load": LOAD[keras_format], "max_abs_diff_rechecked": difference}
