"""Training one candidate model: Adam, cross-entropy, early stop of hopeless runs.

The loss follows the model (`output_kind`): cross-entropy on logits for a model whose last
layer has no activation, on probabilities for one that ends in a softmax, so a softmax
model is never trained with `from_logits=True` (which would apply a second softmax).

Optuna's pruners do not work with two objectives (`trial.report` raises), so the pruning
rule lives here: after the first epoch the model is evaluated on (at most
`FLOOR_EXAMPLES` of) the validation split, and a trial below the study's
`accuracy_floor` stops with `HopelessTrial` (the study marks it PRUNED). A NaN or
infinite loss stops training at once with `DivergedError`.

With a `Distillation` (the trained parent's outputs on the same examples), the loss is
(1 - w) · cross-entropy on the labels + w · T² · cross-entropy on the parent's outputs
softened at temperature T, against the model's own softened at T (Hinton, Vinyals & Dean,
"Distilling the Knowledge in a Neural Network", 2015; T² keeps the soft term's gradients
at the hard term's scale as T changes). The labels and the soft targets travel together
as one target array, so Keras' `fit` is used as it is.

With a stop rule (`objectives.stopping.StopRule`, e.g. the driver's multi-objective
successive halving), the model is also scored after each rung's epoch (accuracy on the same
validation examples, bytes by `rung_payload`) and training stops where the rule says so;
the record keeps the scores.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from definitions.vocabulary import SCHEDULES
from objectives.batches import predict, steps_per_epoch, training_batches
from objectives.errors import DivergedError, HopelessTrial

if TYPE_CHECKING:
    from collections.abc import Callable

    from tensorflow import keras

    from objectives.stopping import RungScore, StopRule

FLOOR_EXAMPLES = 2000
LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class Distillation:
    """What a child distills: the parent's `outputs` (`kind`: `logits` or
    `probabilities`) on the child's training examples, row for row, at `weight` and
    `temperature` (`Budget.distill_weight`, `Budget.distill_temperature`)."""

    outputs: np.ndarray
    kind: str
    weight: float
    temperature: float

    def targets(self, y: np.ndarray) -> np.ndarray:
        """The labels (first column) and the parent's outputs softened at the temperature
        (the rest), as one float32 array of `len(y)` rows."""
        outputs = self.outputs.astype(np.float64)
        logits = outputs if self.kind == "logits" else np.log(np.clip(outputs, 1e-7, 1.0))
        scaled = logits / self.temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        soft = np.exp(scaled)
        soft /= soft.sum(axis=1, keepdims=True)
        return np.concatenate([np.asarray(y, np.float32)[:, None], soft.astype(np.float32)],
                              axis=1)


def _distillation_loss(*, from_logits: bool, weight: float, temperature: float
                       ) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(the loss, an accuracy metric) on `Distillation.targets`: labels first, then the
    parent's softened outputs."""
    import tensorflow as tf

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        labels = tf.cast(y_true[:, 0], tf.int32)
        logits = y_pred if from_logits else tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0))
        hard = tf.keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                               from_logits=True)
        student = tf.nn.log_softmax(logits / temperature, axis=-1)
        soft = -tf.reduce_sum(y_true[:, 1:] * student, axis=-1) * temperature ** 2
        return (1.0 - weight) * hard + weight * soft

    def accuracy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return tf.keras.metrics.sparse_categorical_accuracy(y_true[:, :1], y_pred)

    return loss, accuracy


@dataclass(frozen=True)
class TrainingRecord:
    """What training did: losses per epoch, the first-epoch check, and the time taken."""

    losses: tuple[float, ...]
    accuracies: tuple[float, ...]
    first_epoch_accuracy: float
    seconds: float
    #: (epoch, validation accuracy, estimated bytes) at each rung reached.
    rungs: tuple[RungScore, ...] = ()
    #: The rung at which the judge stopped training, None when it ran all its epochs.
    stopped_at: int | None = None


#: Learning-rate schedules a budget may name: `cosine` decays Adam's rate from
#: `LEARNING_RATE` to zero at the trial's last step (Loshchilov & Hutter, ICLR 2017, without
#: restarts), so a short budget ends annealed instead of mid-stride; `constant` keeps it.


def learning_rate(schedule: str, *, steps: int
                  ) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Adam's learning rate under `schedule` for a run of `steps` optimizer steps."""
    import tensorflow as tf

    if schedule == "constant":
        return LEARNING_RATE
    if schedule == "cosine":
        return tf.keras.optimizers.schedules.CosineDecay(LEARNING_RATE, max(1, steps),
                                                         alpha=0.0)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def compile_model(model: keras.Model, *, from_logits: bool = True,
                  rate: float | keras.optimizers.schedules.LearningRateSchedule = LEARNING_RATE,
                  distill: Distillation | None = None) -> None:
    """Adam at `rate` (a number or a schedule) and sparse cross-entropy (on logits or
    probabilities), with an accuracy metric; with `distill`, the distillation loss on
    `Distillation.targets`."""
    import tensorflow as tf

    if distill is None:
        loss: Any = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        metric: Any = "accuracy"
    else:
        loss, metric = _distillation_loss(from_logits=from_logits, weight=distill.weight,
                                          temperature=distill.temperature)
    model.compile(optimizer=tf.keras.optimizers.Adam(rate), loss=loss, metrics=[metric])


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512) -> float:
    """Top-1 accuracy of a Keras model's outputs (logits or probabilities alike) on images
    `x` as kept in memory (`objectives.batches.predict`: float32 a batch at a time)."""
    logits = predict(model, x, batch_size=batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _guard(*, state: dict[str, float | str], scores: list[RungScore], x_val: np.ndarray,
           y_val: np.ndarray, accuracy_floor: float, judge: StopRule | None,
           rung_payload: Callable[[keras.Model], float] | None,
           progress: Callable[[], None] | None) -> keras.callbacks.Callback:
    """`train`'s callback: stops on a non-finite loss (`state["diverged"]`), below the
    accuracy floor after the first epoch (`state["first"]`, on `x_val`, the floor's
    rows) and where `judge` says at a rung (`scores`, `state["stopped_at"]`); calls
    `progress` at each epoch's end."""
    import tensorflow as tf

    class _Guard(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                state["diverged"] = f"training loss became {loss} at batch {batch}"
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if progress is not None:
                progress()
            if "diverged" in state:
                return
            checked = None
            if epoch == 0:
                state["first"] = checked = accuracy(self.model, x_val, y_val)
                if state["first"] < accuracy_floor:
                    self.model.stop_training = True
                    return
            if judge is not None and epoch + 1 in judge.rungs:
                if checked is None:
                    checked = accuracy(self.model, x_val, y_val)
                payload = float(rung_payload(self.model))
                scores.append((epoch + 1, checked, payload))
                if not judge.continues(rung=epoch + 1, accuracy=checked, payload=payload):
                    state["stopped_at"] = epoch + 1
                    self.model.stop_training = True

    return _Guard()


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
    from_logits: bool = True,
    schedule: str = "constant",
    judge: StopRule | None = None,
    rung_payload: Callable[[keras.Model], float] | None = None,
    distill: Distillation | None = None,
    progress: Callable[[], None] | None = None,
) -> TrainingRecord:
    """Fits `model` in place under the learning-rate `schedule` (`SCHEDULES`, over all
    `epochs`, so a trial stopped at a rung was judged at the same rates as its rivals);
    raises `HopelessTrial` or `DivergedError` as described above; stops where `judge`
    says (bytes at a rung: `rung_payload(model)`); learns from a parent too with `distill`
    (its outputs on these `x`); calls `progress` at each epoch's end."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    steps = epochs * math.ceil(len(x) / batch_size)
    compile_model(model, from_logits=from_logits, rate=learning_rate(schedule, steps=steps),
                  distill=distill)
    state: dict[str, float | str] = {}
    scores: list[RungScore] = []
    n_check = min(len(y_val), FLOOR_EXAMPLES)

    guard = _guard(state=state, scores=scores, x_val=x_val[:n_check], y_val=y_val[:n_check],
                   accuracy_floor=accuracy_floor, judge=judge, rung_payload=rung_payload,
                   progress=progress)
    start = time.perf_counter()
    # Keras' own batches of the arrays, each made float32 as it is taken (`batches`)
    history = model.fit(
        training_batches(x, y if distill is None else distill.targets(y),
                         batch_size=batch_size, epochs=epochs),
        steps_per_epoch=steps_per_epoch(len(x), batch_size), epochs=epochs, verbose=0,
        callbacks=[guard],
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
        rungs=tuple(scores),
        stopped_at=state.get("stopped_at"),
    )
