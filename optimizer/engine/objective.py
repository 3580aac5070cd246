"""The Optuna objective: a callable that gets data and budget once, and a trial per call.

It suggests a `Candidate`, hands it to `objectives.pipeline.evaluate_candidate`, stores
every measured figure as a trial user attribute, uploads the artifact to the study's
artifact store, and returns `(accuracy, payload_bytes)`. It depends on Optuna only through
the trial it is handed (DESIGN §3), so another driver (KerasTuner) can reuse the pipeline.

Every FAIL trial gets a structured `failure_kind` and a human `fail_reason`; a trial cut
short from outside (Ctrl-C, SIGTERM, a dead worker, a silent one ended) has its candidate
retried once.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.attributes import (
    ARTIFACT_ID_ATTR,
    CANDIDATE_ATTR,
    DATA_SOURCE_ATTR,
    FAIL_REASON_ATTR,
    FAILURE_KIND_ATTR,
    FINALIST_START_ATTR,
    FLOAT_MODEL_ID_ATTR,
    HYPERMODEL_KEY,
    INTERRUPTED,
    INTERRUPTED_KINDS,
    PHASE_SECONDS_ATTR,
    PRUNE_REASON_ATTR,
    REJECTED_ATTR,
    RUNGS_ATTR,
    WORKER_ATTR,
)
from definitions.vocabulary import SIZE_OBJECTIVES
from objectives.errors import DivergedError, HopelessTrial, OverBudget, TrialFailure
from optimizer.engine.finalists import finalist_budget, weights_path
from optimizer.engine.halving import DriverJudge, RungQuestion, judge_for
from optimizer.engine.parents import trial_parent
from optimizer.engine.plots import trial_plot
from optimizer.engine.task import TrialTask, run_task
from optimizer.engine.worker import WorkerStartFailed, run_in_process
from optimizer.store.constraints import set_constraints
from optimizer.store.retry import retry_once
from optimizer.store.trial import StoredTrial
from search_spaces import InvalidCandidateError, suggest
from search_spaces.candidate import Candidate
from search_spaces.hypermodel import HypermodelError

if TYPE_CHECKING:
    import numpy as np
    import optuna

    from objectives.pipeline import TrialResult
    from optimizer.engine.parents import SearchParent
    from optimizer.engine.worker import TaskFigures, WorkerPool
    from studies.base import Study
    from studies.datasets import Splits

log = logging.getLogger(__name__)


#: Exceptions that fail one trial and let the study go on; anything else is a bug.
TRIAL_FAILURES: tuple[type[Exception], ...] = (TrialFailure, InvalidCandidateError)


def _fail(trial: optuna.Trial, *, kind: str, reason: str) -> None:
    trial.set_user_attr(FAILURE_KIND_ATTR, kind)
    trial.set_user_attr(FAIL_REASON_ATTR, reason)


class Objective:
    """Scores one trial of `study` on `splits`; candidates are rewrites of `parent`;
    artifacts go to `artifact_store`.

    The second objective is the byte figure of the study's `size_objective`; its
    `device_budgets` become the trial's Optuna constraints (written through `storage`).

    `scratch_dir` is where a worker writes an artifact before it is uploaded (and then
    removed); the store is the only place artifacts are kept. `check_before_training`
    (default on) rejects a candidate over a flash or RAM budget before it trains; off, it
    is trained and judged after, as before the check existed (for comparison only).

    `workers` runs each trial's work in one of its lasting worker processes (the data
    are the pool's `shared` splits, never sent per trial); None runs it in this process
    (`--no-isolation`). With a pool of several workers, `__call__` runs in several driver
    threads at once (`run --jobs N`): everything it does is one trial's own, and the
    rung decisions (`_rung_decision`) read the study as it stands. `weights_dir`: where
    each trial's trained weights are kept, for a finalist to fine-tune
    (`optimizer.engine.finalists`); None keeps none (a finalist then trains from the start).
    `teacher`: the trained parent's outputs on the training split, which every child
    distills (the pool shares them like the data; None: none)."""

    def __init__(
        self,
        *,
        study: Study,
        parent: SearchParent,
        splits: Splits,
        scratch_dir: Path,
        seed: int,
        artifact_store: optuna.artifacts.FileSystemArtifactStore,
        storage: optuna.storages.BaseStorage,
        workers: WorkerPool | None = None,
        check_before_training: bool = True,
        weights_dir: Path | None = None,
        teacher: np.ndarray | None = None,
    ) -> None:
        self.study = study
        self.parent = parent
        self.splits = splits
        self.scratch_dir = Path(scratch_dir)
        self.seed = seed
        self.artifact_store = artifact_store
        self.storage = storage
        self.workers = workers
        self.check_before_training = check_before_training
        self.weights_dir = None if weights_dir is None else Path(weights_dir)
        self.teacher = teacher

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        """Suggests the candidate, runs its task (in a worker, unless no pool), records
        every figure and uploads the artifact; returns (accuracy, bytes)."""
        candidate, outputs, hp_params = self._suggest(trial)
        marks = StoredTrial.from_trial(trial)
        task = self._task(trial, marks, candidate=candidate, outputs=outputs,
                          hp_params=hp_params)
        serve = functools.partial(self._rung_decision, trial, seen=[],
                                  exempt=marks.full_budget)
        result, figures = self._evaluate(trial, task, serve=serve)
        return self._record(trial, result, figures)

    def _suggest(self, trial: optuna.Trial
                 ) -> tuple[Candidate, str, dict[str, object] | None]:
        """(the candidate, the parent's outputs, a hypermodel's values), the candidate and
        the data's source recorded on the trial. A hypermodel whose values do not build
        fails the trial (`InvalidCandidateError`)."""

        try:
            offered, outputs, hp_params = trial_parent(self.parent, trial, study=self.study,
                                                       splits=self.splits)
        except HypermodelError as error:  # these values do not build: this trial fails
            _fail(trial, kind=InvalidCandidateError.kind, reason=f"HypermodelError: {error}")
            raise InvalidCandidateError(str(error)) from None
        candidate = suggest(trial, study=self.study, offered=offered)
        trial.set_user_attr(CANDIDATE_ATTR, {**candidate.to_params(), **(
            {HYPERMODEL_KEY: hp_params} if hp_params is not None else {})})
        trial.set_user_attr(DATA_SOURCE_ATTR, self.splits.source)
        return candidate, outputs, hp_params

    def _task(self, trial: optuna.Trial, marks: StoredTrial, *, candidate: Candidate,
              outputs: str, hp_params: dict[str, object] | None) -> TrialTask:
        """The trial's task: the study's budget, or a finalist's (a front member
        fine-tuned to the end from its trial's trained weights, where they are kept)."""
        budget, start_from = self.study.budget, None
        if marks.finalist_of is not None:
            source = self._weights(marks.finalist_of)
            start_from = source if source is not None and source.is_file() else None
            budget = finalist_budget(budget, fine_tune=start_from is not None)
            trial.set_user_attr(FINALIST_START_ATTR, "the trained weights of its trial"
                                if start_from else "its trial's start (weights not here)")
        return TrialTask(
            candidate=candidate, parent=self.parent.source,
            weights=None if self.parent.info is None else self.parent.info.weights,
            outputs=outputs, hp_params=hp_params, budget=budget,
            accuracy_floor=self.study.accuracy_floor,
            usable_accuracy=self.study.usable_accuracy, artifact_dir=self.scratch_dir,
            trial_number=trial.number, seed=self.seed,
            judge=DriverJudge(rungs=tuple(int(r) for r in budget.rungs))
            if budget.rungs else None,
            device_budgets=self.study.device_budgets if self.check_before_training else None,
            keep_weights=self._weights(trial.number), start_from=start_from,
            measure_update=self.study.size_objective == "ota")

    def _evaluate(self, trial: optuna.Trial, task: TrialTask, *,
                  serve: Callable[[RungQuestion], bool]
                  ) -> tuple[TrialResult, TaskFigures | None]:
        """(the task's result, what its worker cost), or the trial ended as the task
        did: PRUNED (over budget before training, hopeless) or FAIL (its `failure_kind`
        stored; the candidate of a trial cut short from outside, by a dead or silent
        worker or an interrupt, retried once)."""
        import optuna

        try:
            if self.workers is None:
                return run_in_process(run_task, serve=serve, task=task, splits=self.splits,
                                      teacher=self.teacher), None
            with self.workers.worker() as worker:
                try:
                    return worker.run(run_task, serve=serve, task=task, splits=self.splits,
                                      teacher=self.teacher), worker.last
                finally:  # a pruned or failed trial ran in a worker too
                    if worker.last is not None:
                        trial.set_user_attr(WORKER_ATTR, worker.last.as_attrs())
        except OverBudget as error:
            # known infeasible before training: PRUNED with the figures, and told to the
            # sampler as infeasible through the constraints the worker decided it by
            trial.set_user_attr(REJECTED_ATTR, error.figures)
            trial.set_user_attr(PRUNE_REASON_ATTR, str(error))
            set_constraints(trial, error.constraints, storage=self.storage)
            raise optuna.TrialPruned(str(error)) from None
        except HopelessTrial as error:
            trial.set_user_attr(PRUNE_REASON_ATTR, str(error))
            raise optuna.TrialPruned(str(error)) from None
        except TRIAL_FAILURES as error:
            _fail(trial, kind=error.kind, reason=f"{type(error).__name__}: {error}")
            if error.kind in INTERRUPTED_KINDS:  # `WorkerDied`, `WorkerHung`
                retry_once(trial.study, trial)
            raise
        except KeyboardInterrupt:
            _fail(trial, kind=INTERRUPTED, reason="interrupted (Ctrl-C or SIGTERM)")
            retry_once(trial.study, trial)
            raise
        except WorkerStartFailed as error:  # no worker to run it: the run ends, as on Ctrl-C
            _fail(trial, kind=INTERRUPTED, reason=str(error))
            retry_once(trial.study, trial)
            raise

    def _record(self, trial: optuna.Trial, result: TrialResult,
                figures: TaskFigures | None) -> tuple[float, float]:
        """Stores every figure of `result`, its constraints and its artifact on the trial;
        returns the objective values (a non-finite one fails the trial: `DivergedError`)."""
        attrs = result.as_attrs()
        values = (result.accuracy, float(attrs[SIZE_OBJECTIVES[self.study.size_objective]]))
        if not all(math.isfinite(v) for v in values):
            reason = f"objective values {values} are not finite"
            _fail(trial, kind=DivergedError.kind, reason=f"DivergedError: {reason}")
            raise DivergedError(reason)
        recording = time.perf_counter()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        set_constraints(
            trial, self.study.device_budgets.constraints(accuracy=result.accuracy, attrs=attrs),
            storage=self.storage,
        )
        self._upload(trial, Path(result.artifact_path), result)
        phases = dict(result.phase_seconds)
        if figures is not None:
            phases["worker_start"] = figures.start_seconds
        phases["record"] = time.perf_counter() - recording
        trial.set_user_attr(PHASE_SECONDS_ATTR, phases)
        return values

    def _weights(self, number: int) -> Path | None:
        """Where trial `number`'s trained weights are kept; None when none are."""
        return None if self.weights_dir is None else weights_path(self.weights_dir, number)

    def _rung_decision(self, trial: optuna.Trial, question: RungQuestion, *, seen: list,
                       exempt: bool) -> bool:
        """Whether `trial`, at a rung (`question`, from its worker's `DriverJudge`), trains
        on: `RungJudge` over the rung scores of every other trial that completed or is in
        flight now (other workers, other drivers), so that N trials at once are judged on
        what is known, as in asynchronous successive halving (ASHA). The score is stored
        on the trial at once, for the trials judged after it."""
        import optuna

        others = [StoredTrial.from_trial(t).rungs or [] for t in trial.study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                    optuna.trial.TrialState.RUNNING))
            if t.number != trial.number]
        judge = judge_for(budget=self.study.budget, scores=others, exempt=exempt)
        seen.append([question.rung, question.accuracy, question.payload])
        trial.set_user_attr(RUNGS_ATTR, list(seen))
        return judge is None or judge.continues(rung=question.rung, accuracy=question.accuracy,
                                                payload=question.payload)

    def _upload(self, trial: optuna.Trial, path: Path, result) -> None:
        """The artifact (its id recorded on the trial) and a small per-trial plot, so
        `export` and optuna-dashboard find both in the store; the scratch copies go."""
        from optuna.artifacts import upload_artifact

        artifact_id = upload_artifact(
            artifact_store=self.artifact_store, file_path=str(path), study_or_trial=trial
        )
        trial.set_user_attr(ARTIFACT_ID_ATTR, artifact_id)
        if result.float_model_path is not None:  # a TFLite trial's float Keras model
            trial.set_user_attr(FLOAT_MODEL_ID_ATTR, upload_artifact(
                artifact_store=self.artifact_store, file_path=result.float_model_path,
                study_or_trial=trial))
            Path(result.float_model_path).unlink(missing_ok=True)
        png = path.with_suffix(".png")
        trial_plot(result, png, title=f"trial {trial.number}")
        upload_artifact(artifact_store=self.artifact_store, file_path=str(png),
                        study_or_trial=trial, mimetype="image/png")
        path.unlink(missing_ok=True)
        png.unlink(missing_ok=True)
