"""Trials cut short from outside (kill, Ctrl-C, SIGTERM, a dead worker): how they are
recognised, and how their candidate is tried again, once.

Every FAIL trial carries a structured `failure_kind` (the `kind` of the `TrialFailure`
that ended it, or one of `INTERRUPTED_KINDS` below); nothing is decided by parsing a
message. Four paths end a trial from outside, and all retry through `retry_once`:
- Ctrl-C or SIGTERM during the trial (`objective.Objective`, kind `interrupted`),
- a worker process that dies mid-trial (`objective.Objective`, kind `worker_died`),
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
    FAIL_REASON_ATTR,
    FAILURE_KIND_ATTR,
    FINALIST_ATTR,
    FULL_BUDGET_ATTRS,
    INTERRUPTED,
    INTERRUPTED_KINDS,
    REJECTED_ATTR,
    RETRY_ATTR,
    STALE_HEARTBEAT,
    STUDY_FAILURE_PREFIX,
)

if TYPE_CHECKING:
    import optuna


STALE_REASON = "interrupted: heartbeat stopped (its driver was killed or lost the database)"


def failure(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> tuple[str, str | None]:
    """(failure_kind, fail_reason) of a FAIL trial: its own attributes, else the ones
    recorded on the study. A FAIL trial with neither was failed while its process was
    already dead (e.g. by Optuna before our callback ran): `interrupted`."""
    kind = trial.user_attrs.get(FAILURE_KIND_ATTR)
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    if kind is None:
        recorded = study.user_attrs.get(f"{STUDY_FAILURE_PREFIX}{trial.number}")
        if recorded:
            kind, reason = recorded["kind"], recorded["reason"]
    return (str(kind) if kind else INTERRUPTED), (str(reason) if reason else None)


def is_interrupted(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a FAIL trial was cut short from outside rather than failed by its candidate."""
    return failure(study, trial)[0] in INTERRUPTED_KINDS


def finished_count(study: optuna.Study) -> int:
    """Trials that count toward the budget: COMPLETE, PRUNED, and FAIL for a reason of the
    candidate's own. A trial cut short from outside (interrupt, dead worker, killed driver)
    is retried instead, so it counts only when it was itself a retry. A candidate rejected
    before training (over a flash or RAM budget, `REJECTED_ATTR`) cost no training and does
    not count: `--n-trials` is the number of candidates trained. Nor does a finalist (a
    front member trained again, `optimizer.finalists`): it is not a new candidate."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=done)
        if REJECTED_ATTR not in t.user_attrs and FINALIST_ATTR not in t.user_attrs and (
            t.state != TrialState.FAIL
            or RETRY_ATTR in t.user_attrs
            or not is_interrupted(study, t))
    )


def rejected_count(study: optuna.Study) -> int:
    """Candidates rejected before training: over a flash or RAM budget as built."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
               if REJECTED_ATTR in t.user_attrs)


def retry_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Enqueues `trial`'s candidate again unless `trial` is itself a retry (or has no
    parameters yet); returns whether it did. A reference point's or an extension's
    retry is one too (`FULL_BUDGET_ATTRS`)."""
    if RETRY_ATTR in trial.user_attrs or not trial.params:
        return False
    kept = {k: trial.user_attrs[k] for k in FULL_BUDGET_ATTRS if k in trial.user_attrs}
    study.enqueue_trial(trial.params, user_attrs={**kept, RETRY_ATTR: trial.number})
    return True


def record_failure(study: optuna.Study, number: int, *, kind: str, reason: str) -> None:
    """Records why a finished trial failed on the study (for trials that can no longer
    take attributes of their own)."""
    study.set_user_attr(f"{STUDY_FAILURE_PREFIX}{number}", {"kind": kind, "reason": reason})


def retry_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's `heartbeat_stale_trial_callback`: records why the trial failed on the
    study, then retries it once (the role of Optuna's `RetryFailedTrialCallback`, with our
    once-only rule and `retry_of` attribute)."""
    record_failure(study, trial.number, kind=STALE_HEARTBEAT, reason=STALE_REASON)
    retry_once(study, trial)
