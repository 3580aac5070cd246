"""Trials cut short from outside (kill, Ctrl-C, SIGTERM, a dead worker): how they are
recognised, and how their candidate is tried again, once.

Three paths end such a trial as FAIL, and all three retry through `retry_once`:
- a worker process that dies mid-trial (`objective.Objective`),
- a run killed outright on SQLite, found RUNNING at the next start-up
  (`runner.sweep_interrupted`; SQLite has one writer, so every RUNNING trial is orphaned),
- a run killed outright on a server database (PostgreSQL, MySQL): the driver's heartbeat
  stops, and after `storage.GRACE_SECONDS` Optuna fails the trial and calls
  `retry_stale_trial` (RDB heartbeats; other drivers' live trials are left alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

#: User attribute of a retry: the number of the trial it repeats.
RETRY_ATTR = "retry_of"


def is_interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a FAIL trial was cut short from outside rather than failed by its candidate.

    A trial failed by a stopped heartbeat has no `fail_reason`: its process was dead when
    Optuna failed it, so a missing reason means interrupted too.
    """
    reason = str(trial.user_attrs.get("fail_reason", ""))
    return reason.startswith(("interrupted", "WorkerDied")) or not reason


def retry_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Enqueues `trial`'s candidate again unless `trial` is itself a retry (or has no
    parameters yet); returns whether it did."""
    if RETRY_ATTR in trial.user_attrs or not trial.params:
        return False
    study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
    return True


#: Study user attribute prefix for the reasons of trials failed after their process died
#: (Optuna refuses attributes on a finished trial); one key per trial, so concurrent
#: drivers never overwrite each other's entries.
STUDY_FAIL_REASON_PREFIX = "fail_reason:"
STALE_REASON = "interrupted: heartbeat stopped (its driver was killed or lost the database)"


def retry_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's `failed_trial_callback` for heartbeat storages: records why the trial
    failed on the study, then retries it once (the role of Optuna's
    `RetryFailedTrialCallback`, with our once-only rule and `retry_of` attribute)."""
    study.set_user_attr(f"{STUDY_FAIL_REASON_PREFIX}{trial.number}", STALE_REASON)
    retry_once(study, trial)


def fail_reason(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str | None:
    """Why a trial failed: its own `fail_reason`, else one recorded on the study."""
    own = trial.user_attrs.get("fail_reason")
    if own:
        return str(own)
    return study.user_attrs.get(f"{STUDY_FAIL_REASON_PREFIX}{trial.number}")
