"""Trials cut short from outside (kill, Ctrl-C, SIGTERM, a dead or hung worker): how they are
recognised, and how their candidate is tried again, once.

Every FAIL trial carries a structured `failure_kind` (the `kind` of the `TrialFailure`
that ended it, or one of `INTERRUPTED_KINDS` below); nothing is decided by parsing a
message. Five paths end a trial from outside, and all retry through `retry_once`:
- Ctrl-C or SIGTERM during the trial (`objective.Objective`, kind `interrupted`),
- a worker process that dies mid-trial (`objective.Objective`, kind `worker_died`),
- a worker alive but silent past its bound, ended by the driver (stopped, deadlocked,
  swapping: `engine.patience`; kind `worker_hung`),
- a single-writer run (SQLite) killed outright, its trial found RUNNING by the next run
  holding the storage lock (`resume.sweep_orphaned`, kind `orphaned`),
- a driver on a server database (PostgreSQL, MySQL) killed outright: its heartbeat stops,
  and after `storage.GRACE_SECONDS` Optuna fails the trial and calls
  `retry_stale_trial` (kind `stale_heartbeat`; other drivers' live trials are left alone).
A retry that fails again is not retried: it counts toward the budget like any failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from definitions.attributes import (
    INTERRUPTED,
    INTERRUPTED_KINDS,
    RETRY_ATTR,
    STALE_HEARTBEAT,
    STUDY_FAILURE_PREFIX,
)
from optimizer.store.record import recorded_failure
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    import optuna


STALE_REASON = "interrupted: heartbeat stopped (its driver was killed or lost the database)"


def failure(opt_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> tuple[str, str | None]:
    """(failure_kind, fail_reason) of a FAIL trial: its own attributes, else the ones
    recorded on the opt_study. A FAIL trial with neither was failed while its process was
    already dead (e.g. by Optuna before our callback ran): `interrupted`."""
    stored = StoredTrial.from_trial(trial)
    kind, reason = stored.failure_kind, stored.fail_reason
    if kind is None and (recorded := recorded_failure(opt_study, trial.number)) is not None:
        kind, reason = recorded
    return (kind or INTERRUPTED), (reason or None)


def is_interrupted(opt_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a FAIL trial was cut short from outside rather than failed by its candidate."""
    return failure(opt_study, trial)[0] in INTERRUPTED_KINDS


def finished_count(opt_study: optuna.Study) -> int:
    """Trials that count toward the budget: COMPLETE, PRUNED, and FAIL for a reason of the
    candidate's own. A trial cut short from outside (interrupt, dead worker, killed driver)
    is retried instead, so it counts only when it was itself a retry. A candidate rejected
    before training (over a flash or RAM budget, `REJECTED_ATTR`) cost no training and does
    not count: `--n-trials` is the number of candidates trained. Nor does a finalist (a
    front member trained again, `optimizer.engine.finalists`): it is not a new candidate."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    count = 0
    for t in opt_study.get_trials(deepcopy=False, states=done):
        stored = StoredTrial.from_trial(t)
        if stored.rejected_before_training is None and stored.finalist_of is None and (
                t.state != TrialState.FAIL or stored.retry_of is not None
                or not is_interrupted(opt_study, t)):
            count += 1
    return count


def rejected_count(opt_study: optuna.Study) -> int:
    """Candidates rejected before training: over a flash or RAM budget as built."""
    from optuna.trial import TrialState

    return sum(1 for t in opt_study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
               if StoredTrial.from_trial(t).rejected_before_training is not None)


def retry_once(opt_study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> bool:
    """Enqueues `trial`'s candidate again unless `trial` is itself a retry (or has no
    parameters yet); returns whether it did. A reference point's or an extension's
    retry is one too (`StoredTrial.full_budget_marks`)."""
    stored = StoredTrial.from_trial(trial)
    if stored.retry_of is not None or not trial.params:
        return False
    opt_study.enqueue_trial(trial.params, user_attrs={**stored.full_budget_marks(),
                                                  RETRY_ATTR: trial.number})
    return True


def record_failure(opt_study: optuna.Study, number: int, *, kind: str, reason: str) -> None:
    """Records why a finished trial failed on the study (for trials that can no longer
    take attributes of their own)."""
    opt_study.set_user_attr(f"{STUDY_FAILURE_PREFIX}{number}", {"kind": kind, "reason": reason})


def retry_stale_trial(opt_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's `heartbeat_stale_trial_callback`: records why the trial failed on the
    study, then retries it once (the role of Optuna's `RetryFailedTrialCallback`, with our
    once-only rule and `retry_of` attribute)."""
    record_failure(opt_study, trial.number, kind=STALE_HEARTBEAT, reason=STALE_REASON)
    retry_once(opt_study, trial)
