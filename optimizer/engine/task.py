"""`TrialTask`: one trial's work as the driver hands it to a worker — everything
`objectives.pipeline.evaluate_candidate` takes but the data and the parent's outputs on
them (what children distill), which the worker pool shares (sent once per worker, never
per trial)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objectives import pipeline
from optimizer.engine.worker import report_progress

if TYPE_CHECKING:
    import numpy as np

    from definitions.budgets import Budget, DeviceBudgets
    from objectives.parent import ParentSource
    from objectives.pipeline import TrialResult
    from objectives.stopping import StopRule
    from search_spaces.candidate import Candidate
    from studies.datasets import Splits


@dataclass(frozen=True)
class TrialTask:
    """What a worker builds, trains and measures for one trial (see `evaluate_candidate`).

    Attributes:
        candidate: the point of the search space.
        parent: where the parent model comes from; `weights` its trained weights (None:
            the candidate starts from scratch); `outputs` `logits` or `probabilities`.
        hp_params: a hypermodel's `hp_*` values (None for other parents).
        budget: the training budget (a finalist's, for a finalist).
        accuracy_floor, usable_accuracy: below the first after one epoch, or an artifact
            below the second, the trial is pruned.
        artifact_dir: where the worker writes the artifact before the driver uploads it.
        trial_number, seed: name the artifact; seed training and calibration.
        judge: the stop rule at the rungs (`DriverJudge`), None without rungs.
        device_budgets: checked on the untrained file (None: not checked).
        keep_weights: where the trained weights are kept (for a finalist); `start_from`:
            such a file to start from instead of the parent's weights.
        measure_update: whether to measure `ota_bytes` (the study ranks by it).
    """

    candidate: Candidate
    parent: ParentSource
    weights: str | None
    outputs: str
    hp_params: dict[str, object] | None
    budget: Budget
    accuracy_floor: float
    usable_accuracy: float
    artifact_dir: Path
    trial_number: int
    seed: int
    judge: StopRule | None
    device_budgets: DeviceBudgets | None
    keep_weights: Path | None
    start_from: Path | None
    measure_update: bool

    def arguments(self) -> dict[str, Any]:
        """The task as `evaluate_candidate`'s keyword arguments (the data aside); a
        shallow copy, so the candidate and budget stay the frozen values they are."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def run_task(*, task: TrialTask, splits: Splits, teacher: np.ndarray | None = None
             ) -> TrialResult:
    """`evaluate_candidate` of `task` on `splits` (distilling `teacher`, the parent's
    outputs on the training split, where given): what a worker runs per trial, reporting
    its progress to the driver (`report_progress`)."""
    return pipeline.evaluate_candidate(splits=splits, teacher=teacher,
                                       progress=report_progress, **task.arguments())


__all__ = ["TrialTask", "run_task"]
