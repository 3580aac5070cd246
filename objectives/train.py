"""Training one candidate model: Adam, cross-entropy on logits, early stop of hopeless runs.

Optuna's pruners do not work with two objectives (`trial.report` raises), so the pruning
rule lives here: after the first epoch the model is evaluated on (at most
`FLOOR_EXAMPLES` of) the validation split, and a trial below the study's
`accuracy_floor` stops with `HopelessTrial` (the study marks it PRUNED). A NaN or
infinite loss stops training at once with `DivergedError`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from objectives.errors import DivergedError, HopelessTrial

if TYPE_CHECKING:
    from tensorflow import keras

FLOOR_EXAMPLES = 2000
LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class TrainingRecord:
    """What training did: losses per epoch, the first-epoch check, and the time taken."""

    losses: tuple[float, ...]
    accuracies: tuple[float, ...]
    first_epoch_accuracy: float
    seconds: float


def compile_model(model: keras.Model) -> None:
    """Adam and sparse cross-entropy on logits, with an accuracy metric."""
    import tensorflow as tf

    model.compile(
        optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512) -> float:
    """Top-1 accuracy of a Keras model's logits."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def train(
    model: keras.Model,
    *,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    epochs: int,
    batch_size: int,
    accuracy_floor: float,
    seed: int,
) -> TrainingRecord:
    """Fits `model` in place; raises `HopelessTrial` or `DivergedError` as described above."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    compile_model(model)
    state: dict[str, float | str] = {}

    class _Guard(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                state["diverged"] = f"training loss became {loss} at batch {batch}"
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0 and "diverged" not in state:
                n = min(len(y_val), FLOOR_EXAMPLES)
                state["first"] = accuracy(self.model, x_val[:n], y_val[:n])
                if state["first"] < accuracy_floor:
                    self.model.stop_training = True

    start = time.perf_counter()
    history = model.fit(
        x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
        callbacks=[_Guard()],
    )
    seconds = time.perf_counter() - start
    if "diverged" in state:
        raise DivergedError(str(state["diverged"]))
    first = float(state.get("first", float("nan")))
    if first < accuracy_floor:
        raise HopelessTrial(
            f"validation accuracy {first:.3f} after the first epoch is below the floor "
            f"{accuracy_floor}"
        )
    return TrainingRecord(
        losses=tuple(float(v) for v in history.history.get("loss", [])),
        accuracies=tuple(float(v) for v in history.history.get("accuracy", [])),
        first_epoch_accuracy=first,
        seconds=seconds,
    )
