"""The names of what a study stores: trial and study user attributes, system attributes,
and the suffix of a smoke study's name. Every layer that writes or reads one uses the
name defined here, so a stored study means the same to every command and version.
"""

from __future__ import annotations

# -- study names ---------------------------------------------------------------------------

#: `run --smoke` searches a study of its own: the name plus this suffix.
SMOKE_SUFFIX = "-smoke"

# -- study attributes ----------------------------------------------------------------------

#: The study user attribute holding the definition record (`optimizer.store.record`).
RECORD_ATTR = "definition"
#: The study user attribute with the front's test accuracies, keyed by trial number.
TEST_ACCURACY_ATTR = "test_accuracy"
#: The study user attribute with the trained parent's validation accuracy.
PARENT_ACCURACY_ATTR = "parent_accuracy"
#: Study user attribute prefix for the failures of trials that could no longer take
#: attributes (Optuna refuses them on a finished trial); one key per trial, so concurrent
#: drivers never overwrite each other's entries.
STUDY_FAILURE_PREFIX = "failure:"

# -- trial attributes ----------------------------------------------------------------------
# Every one is a field of `optimizer.store.trial.StoredTrial`, which reads them back.

#: The candidate the trial built (`Candidate.to_params()`), with a hypermodel trial's
#: hyperparameter values under `HYPERMODEL_KEY`.
CANDIDATE_ATTR = "candidate"
HYPERMODEL_KEY = "hypermodel"
#: Where the trial's data came from (`Splits.source`).
DATA_SOURCE_ATTR = "data_source"
#: A PRUNED trial: why it was stopped, for people.
PRUNE_REASON_ATTR = "prune_reason"
#: A finalist: whether it started from its trial's trained weights, for people.
FINALIST_START_ATTR = "finalist_start"

#: The trial's artifact in the study's artifact store.
ARTIFACT_ID_ATTR = "artifact_id"
#: A TFLite trial's float Keras model (what its artifact was converted from) in the store,
#: and its SHA-256: what `export` gives back as `model.keras`.
FLOAT_MODEL_ID_ATTR = "float_model_id"
FLOAT_MODEL_SHA256_ATTR = "float_model_sha256"
#: A trial's successive-halving scores (`optimizer.engine.halving`).
RUNGS_ATTR = "rungs"
#: Marks a reference point (`Study.reference_points`): the candidate a new study enqueues first;
#: such a trial trains its full budget (`RungJudge.exempt`), and its retry keeps the mark.
REFERENCE_POINT_ATTR = "reference"
#: Marks a small-end extension (`optimizer.engine.extension`); the value is the number of the
#: trial it steps down from. Such a trial trains its full budget too.
EXTENSION_ATTR = "extends"
#: Marks a finalist (`optimizer.engine.finalists`): a front member's candidate trained again on
#: the whole training split to the end of a decaying schedule; the value is the number of
#: the trial it came from. It trains its full (finalist) budget.
FINALIST_ATTR = "finalist_of"
#: The marks that exempt a trial from being stopped (`RungJudge.exempt`); a retry keeps them.
FULL_BUDGET_ATTRS = (REFERENCE_POINT_ATTR, EXTENSION_ATTR, FINALIST_ATTR)
#: Where a trial's time went, in seconds by phase (`objectives.pipeline.PHASES`, plus the
#: driver's `worker_start` and `record`).
PHASE_SECONDS_ATTR = "phase_seconds"
#: The worker that ran a trial: its pid, how many tasks it had run before, and its
#: resident memory after this one (bytes).
WORKER_ATTR = "worker"
#: A retry: the number of the trial it repeats.
RETRY_ATTR = "retry_of"
#: A candidate rejected before training (PRUNED): its untrained flash and RAM figures, over
#: a budget (`objectives.errors.OverBudget`).
REJECTED_ATTR = "rejected_before_training"
#: A FAIL trial: the structured kind, and a sentence for people.
FAILURE_KIND_ATTR = "failure_kind"
FAIL_REASON_ATTR = "fail_reason"
#: Failure kinds that say nothing about the candidate: the trial was cut short from outside.
INTERRUPTED = "interrupted"
WORKER_DIED = "worker_died"
#: A worker alive but silent past its limit (stopped, deadlocked, swapping), ended by the
#: driver (`optimizer.engine.patience`).
WORKER_HUNG = "worker_hung"
ORPHANED = "orphaned"
STALE_HEARTBEAT = "stale_heartbeat"
INTERRUPTED_KINDS = frozenset({INTERRUPTED, WORKER_DIED, WORKER_HUNG, ORPHANED,
                               STALE_HEARTBEAT})

# -- trial system attributes ---------------------------------------------------------------

#: The list form of a trial's constraints, which optuna-dashboard reads.
DASHBOARD_CONSTRAINTS_KEY = "constraints"
