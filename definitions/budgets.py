"""How much a trial trains (`Budget`) and what a deployed model must meet
(`DeviceBudgets`): validated constructor arguments, plain data, no TensorFlow or Optuna.

A `Study` (`studies.base`) holds one of each; the driver, the pipeline and every reading
command take them from the study or from its stored record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from definitions.errors import StudyDefinitionError

#: Distillation from the trained parent: the weight of its soft outputs in a child's loss
#: (off by default, by measurement: on Fashion-MNIST it made EPR children larger at the
#: same λ and the front's hypervolume lower, 0.620 against 0.630; BENCHMARKS.md, issue
#: 30), and their temperature where a study turns it on (2, the better of 2 and 4).
DISTILL_WEIGHT = 0.0
DISTILL_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Budget:
    """How much training one trial gets.

    Attributes:
        epochs: passes over the (possibly subset) training split.
        batch_size: examples per step.
        train_subset: use only the first N training examples (stratified shuffle happens
            in the loader, so the first N are a fair sample); None for all.
        n_trials: trials per `run` unless `--n-trials` says otherwise.
        schedule: the learning-rate schedule, one of `objectives.train.SCHEDULES`.
        parent_epochs: with `init="inherit"`, the epochs the parent is trained for, once,
            on the whole training split (None: `epochs`, on the same subset as a trial).
        rungs: multi-objective successive halving (`optimizer.engine.halving`, MO-ASHA): after
            each of these epochs a trial is ranked against the earlier trials' scores at
            the same epoch and trains on to `epochs` only while it is among the best
            1/`eta`; a trial stopped early is still compressed and scored. Empty: every
            trial trains `epochs`.
        eta: the reduction factor of `rungs`.
        keep_front: with `rungs`, a trial on the first non-dominated front of its rung's
            scores also trains on, whatever its rank: stopping it could only take a point
            off that rung's front (with few trials, ⌊n/η⌋ keeps only the most accurate).
            On by measurement (BENCHMARKS.md "Search efficiency"); False is MO-ASHA's rule.
        distill_weight: with a trained parent, a child learns from the parent's soft
            outputs as well as from the labels (knowledge distillation, Hinton, Vinyals &
            Dean, 2015): its loss is (1 - w) · cross-entropy on the labels + w · T² ·
            cross-entropy on the parent's outputs softened at temperature T. 0 turns it
            off (the default, by measurement: BENCHMARKS.md); a study turns it on.
        distill_temperature: T, the temperature both outputs are softened at.
    """

    epochs: int
    batch_size: int
    n_trials: int
    train_subset: int | None = None
    schedule: str = "constant"
    parent_epochs: int | None = None
    rungs: tuple[int, ...] = ()
    eta: int = 3
    keep_front: bool = True
    distill_weight: float = DISTILL_WEIGHT
    distill_temperature: float = DISTILL_TEMPERATURE


@dataclass(frozen=True)
class DeviceBudgets:
    """Limits a deployed model must meet, checked as Optuna constraints on every trial.

    A trial over any budget stays in the study, marked infeasible (constraint > 0), and is
    left off the feasible front that `pareto`, `report` and `export` use. `None` is no
    limit. Flash, RAM and latency are measured by `objectives.device` on the TFLite file a
    device runs (latency on the host CPU, one thread, batch 1).

    Attributes:
        max_flash_kb: the `.tflite` file, in KB (1 KB = 1024 bytes).
        max_ram_kb: peak activation memory (tensor arena), in KB.
        max_latency_ms: median single-example inference time, in milliseconds.
        min_accuracy: validation accuracy of the artifact.
    """

    max_flash_kb: float | None = None
    max_ram_kb: float | None = None
    max_latency_ms: float | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_flash_kb", "max_ram_kb", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise StudyDefinitionError(f"--{name.replace('_', '-')} must be positive "
                                           f"and finite, got {value}")
        if self.min_accuracy is not None and not 0 < self.min_accuracy <= 1:
            raise StudyDefinitionError(
                f"--min-accuracy must lie in (0, 1], got {self.min_accuracy}"
            )

    @property
    def before_training(self) -> bool:
        """Whether a budget is set that the architecture and storage mode decide alone
        (flash, RAM), so a candidate over it is known before it is trained (DESIGN §2)."""
        return self.max_flash_kb is not None or self.max_ram_kb is not None

    def footprint_constraints(self, attrs: Mapping[str, Any]) -> dict[str, float]:
        """The flash and RAM constraint values (feasible when <= 0) of the figures in
        `attrs` (`flash_bytes`, `ram_bytes`): known before training, from the untrained
        candidate's TFLite file, and again after it from the artifact's."""
        values: dict[str, float] = {}
        if self.max_flash_kb is not None:
            values["flash_bytes"] = float(attrs["flash_bytes"]) - 1024 * self.max_flash_kb
        if self.max_ram_kb is not None:
            values["ram_bytes"] = float(attrs["ram_bytes"]) - 1024 * self.max_ram_kb
        return values

    def constraints(self, *, accuracy: float, attrs: Mapping[str, Any]) -> dict[str, float]:
        """Optuna constraint values (feasible when <= 0) of a trial with `accuracy` and
        the device figures in `attrs` (`flash_bytes`, `ram_bytes`, `latency_ms`)."""
        values = self.footprint_constraints(attrs)
        if self.max_latency_ms is not None:
            values["latency_ms"] = float(attrs["latency_ms"]) - self.max_latency_ms
        if self.min_accuracy is not None:
            values["accuracy"] = self.min_accuracy - accuracy
        return values

    def describe(self) -> str:
        """`flash <= 256 KB, RAM <= 64 KB`, or `none`."""
        parts = [
            f"{label} {op} {value:g}{unit}"
            for label, op, value, unit in (
                ("flash", "<=", self.max_flash_kb, " KB"),
                ("RAM", "<=", self.max_ram_kb, " KB"),
                ("latency", "<=", self.max_latency_ms, " ms"),
                ("accuracy", ">=", self.min_accuracy, ""),
            )
            if value is not None
        ]
        return ", ".join(parts) or "none"

    @property
    def any(self) -> bool:
        """Whether any budget is set."""
        return any(v is not None for v in asdict(self).values())
