"""Create or resume a stored study: the definition record, the reference points of a new
study, the run settings merged with what is stored, the seed it keeps, and the trials a
killed single-writer run left RUNNING.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

from definitions.attributes import (
    FAIL_REASON_ATTR,
    FAILURE_KIND_ATTR,
    INTERRUPTED,
    ORPHANED,
    RECORD_ATTR,
    REFERENCE_POINT_ATTR,
)
from definitions.budgets import DeviceBudgets
from definitions.errors import UsageError
from optimizer.store.record import (
    check_record,
    recorded_failure,
    stored_record,
    study_attribute,
    write_record,
)
from optimizer.store.retry import record_failure, retry_once
from optimizer.store.storage import DIRECTIONS, check_compatible, metric_names
from optimizer.store.trial import StoredTrial
from search_spaces import candidate_params

if TYPE_CHECKING:
    import optuna

    from search_spaces.suggest import Offered
    from studies.base import Study


#: How long a driver waits for a study another driver has just created to be recorded.
RECORD_WAIT_SECONDS = 30.0


def sweep_orphaned(opt_study: optuna.Study, *, storage: optuna.storages.BaseStorage) -> int:
    """Marks trials left RUNNING by a killed single-writer run as FAIL (`orphaned`), and
    enqueues each one's candidate again, once.

    Called only while this process holds the study's `StorageLock`: on SQLite no other
    driver can be running, so every RUNNING trial is orphaned. Uses the injected storage's
    public API (trial ids from study name and trial number)."""
    from optuna.trial import TrialState

    swept = 0
    study_id = storage.get_study_id_from_name(opt_study.study_name)
    for trial in opt_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, FAILURE_KIND_ATTR, ORPHANED)
        storage.set_trial_user_attr(
            trial_id, FAIL_REASON_ATTR, "interrupted: found RUNNING when the study resumed"
        )
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        swept += 1
        retry_once(opt_study, trial)
    return swept


def retry_unrecorded_failures(opt_study: optuna.Study) -> int:
    """Retries, once, the candidates of FAIL trials whose failure was never recorded: the
    storage failed as the trial ended (a full disk measured it: the trial's state was
    written, its `failure_kind` and the retry were not). Such a trial was cut short from
    outside, so it is retried like any interrupted one; its failure is recorded on the study
    (`record_failure`), so it is not retried again. Called, like `sweep_orphaned`, only
    while this process holds the study's lock."""
    from optuna.trial import TrialState

    trials = opt_study.get_trials(deepcopy=False)
    stored = [StoredTrial.from_trial(t) for t in trials]
    retried = {s.retry_of for s in stored}
    count = 0
    for trial, s in zip(trials, stored, strict=True):
        if (trial.state != TrialState.FAIL or s.failure_kind is not None
                or recorded_failure(opt_study, trial.number) is not None
                or trial.number in retried):
            continue
        record_failure(opt_study, trial.number, kind=INTERRUPTED,
                       reason="interrupted: the storage failed as the trial ended")
        count += retry_once(opt_study, trial)
    return count


def load_recorded(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Loads study `name` once its creator has recorded its definition.

    On a server database another driver may have created the study a moment ago and not
    yet written its metric names and record; wait for them (up to `RECORD_WAIT_SECONDS`)
    rather than refuse a study that is being born."""
    import optuna

    # a SQLite study is held under our lock: nobody else can be creating it
    server = storage.get_heartbeat_interval() is not None
    deadline = time.monotonic() + (RECORD_WAIT_SECONDS if server else 0.0)
    while True:
        loaded = optuna.load_study(study_name=name, storage=storage,
                                   sampler=optuna.samplers.RandomSampler())
        if study_attribute(loaded, RECORD_ATTR) is not None or time.monotonic() >= deadline:
            check_compatible(loaded)
            stored_record(loaded)
            return loaded
        time.sleep(0.5)


def existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The stored study `name` with its record checked readable, or None when there is
    no such study."""
    import optuna

    if name not in {s.study_name for s in optuna.study.get_all_study_summaries(storage)}:
        return None
    return load_recorded(storage, name)


def resolve_seed(seed: int | None, *, stored: dict[str, object] | None, name: str) -> int:
    """The study's seed: it carves the splits, so a stored study keeps its own; another
    `--seed` on resume would re-carve validation (and a held-out test split) and is
    refused."""
    if stored is None:
        return 0 if seed is None else seed
    split_seed = int(stored["split_seed"])
    if seed is not None and seed != split_seed:
        raise UsageError(
            f"study {name!r} was created with --seed {split_seed}, which carved its data "
            f"splits; --seed {seed} would carve other ones (validation images could have been "
            f"trained on). Drop --seed (the stored one is used), pass --seed {split_seed}, "
            "or start a new --run-dir"
        )
    return split_seed


def with_run_settings(
    study: Study, *, stored: dict[str, object] | None, size_objective: str | None,
    device_budgets: DeviceBudgets | None, init: str | None,
    quantization_modes: tuple[str, ...] | None = None,
    width_range: tuple[float, float] | None = None,
) -> Study:
    """The study with its size objective, device budgets, init, quantization modes and
    width range: as given, else as stored (resume), else the definition's own (narrowed
    for the size objective: `Study.narrowed`). A given value that contradicts the stored
    one is left for `check_record` to refuse."""
    if size_objective is None:
        size_objective = str(stored["size_objective"]) if stored else study.size_objective
    if device_budgets is None:
        device_budgets = (DeviceBudgets(**stored["device_budgets"]) if stored
                          else study.device_budgets)
    if init is None:
        init = str(stored.get("init") or study.init) if stored else study.init
    space = stored.get("search_space", {}) if stored else {}
    if quantization_modes is None and "quantization_modes" in space:
        quantization_modes = tuple(space["quantization_modes"])
    if width_range is None and "width_range" in space:
        width_range = tuple(space["width_range"])
    changed = replace(study, size_objective=size_objective, device_budgets=device_budgets,
                      init=init)
    if stored and "tflite_epr" not in space:
        # stored before the switch existed: TFLite modes were always offered the penalty
        changed = replace(changed, tflite_epr=True)
    if stored and "distill_weight" not in dict(stored.get("budget") or {}):
        # stored before distillation existed: its children learn from the labels alone
        changed = replace(changed, budget=replace(changed.budget, distill_weight=0.0))
    changed = changed.narrowed(quantization_modes=quantization_modes, width_range=width_range)
    changed.validate()
    return changed


def create_or_resume(
    *, study: Study, name: str, storage: optuna.storages.BaseStorage, record: dict[str, object],
    existing: optuna.Study | None, offered: Offered | None = None,
    enqueue_reference_points: bool = True,
) -> optuna.Study:
    """Resumes `existing` (the stored study `name`, or None), refusing it when `record`
    contradicts what it stored, or creates the study, records its definition and enqueues
    the reference points."""
    import optuna

    if existing is None:
        try:
            created = optuna.create_study(
                study_name=name, storage=storage, directions=list(DIRECTIONS),
                sampler=optuna.samplers.RandomSampler(),
            )
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another driver on the server database created it first
        else:
            initialize(created, study=study, record=record, offered=offered,
                        enqueue_reference_points=enqueue_reference_points)
            return created
        existing = load_recorded(storage, name)
    check_record(existing, record)
    return existing


def initialize(created: optuna.Study, *, study: Study, record: dict[str, object],
                offered: Offered | None, enqueue_reference_points: bool = True) -> None:
    """Metric names, the definition record, then the reference points of a new study."""
    import optuna

    with warnings.catch_warnings():  # set_metric_names is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        created.set_metric_names(list(metric_names(study.size_objective)))
    write_record(created, record)
    for candidate in study.reference_point_candidates if enqueue_reference_points else ():
        created.enqueue_trial(candidate_params(candidate, study=study, offered=offered),
                              user_attrs={REFERENCE_POINT_ATTR: True}, skip_if_exists=True)
