"""Pure pieces of the driver: hypervolume, trial picking for export, budget counting."""

from __future__ import annotations

import optuna
import pytest

from definitions.errors import UsageError
from optimizer.commands.export import pick_trial
from optimizer.commands.report import hypervolume_2d, hypervolume_history
from optimizer.engine.resume import sweep_orphaned
from optimizer.store.retry import finished_count


def test_hypervolume_of_two_points():
    # log10 sizes 1 and 2, reference 3: [1, 2) at accuracy 0.5, [2, 3) at 1.0
    assert hypervolume_2d([(0.5, 10.0), (1.0, 100.0)], ref_log_bytes=3.0) == pytest.approx(1.5)


def test_dominated_points_add_no_hypervolume():
    base = hypervolume_2d([(0.5, 10.0), (1.0, 100.0)], ref_log_bytes=3.0)
    assert hypervolume_2d([(0.5, 10.0), (1.0, 100.0), (0.4, 50.0)], ref_log_bytes=3.0) == base


def _study(values, *, storage=None):
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    for v in values:
        trial = study.ask()
        study.tell(trial, list(v))
    return study


def test_hypervolume_never_falls_over_trials():
    study = _study([(0.5, 1000), (0.9, 5000), (0.3, 9000), (0.95, 800)])
    history = [h for _, h in hypervolume_history(study)]
    assert history == sorted(history) and history[-1] > history[0]


def test_pick_by_bytes_and_accuracy():
    study = _study([(0.80, 1000), (0.90, 4000), (0.97, 20000), (0.85, 5000)])
    assert pick_trial(study, max_bytes=5000).number == 1
    assert pick_trial(study, min_accuracy=0.95).number == 2
    assert pick_trial(study, trial=3).number == 3
    with pytest.raises(UsageError, match="no trial 9"):
        pick_trial(study, trial=9)
    with pytest.raises(UsageError, match="smallest is 1000"):
        pick_trial(study, max_bytes=10)


def test_pick_refuses_a_trial_that_did_not_complete():
    study = _study([(0.8, 1000)])
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    with pytest.raises(UsageError, match="did not complete"):
        pick_trial(study, trial=1)


def test_interrupted_trials_are_swept_retried_once_and_not_counted():
    storage = optuna.storages.InMemoryStorage()
    study = _study([(0.8, 1000)], storage=storage)
    running = study.ask({"width": optuna.distributions.FloatDistribution(0.25, 1.0)})
    assert sweep_orphaned(study, storage=storage) == 1
    frozen = study.trials[running.number]
    assert frozen.state == optuna.trial.TrialState.FAIL
    assert frozen.user_attrs["fail_reason"].startswith("interrupted")
    assert finished_count(study) == 1
    retry = study.ask()  # the enqueued retry of the same candidate
    assert retry.suggest_float("width", 0.25, 1.0) == frozen.params["width"]
    assert retry.user_attrs["retry_of"] == running.number
    assert sweep_orphaned(study, storage=storage) == 1  # the retry itself dies too ...
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 0  # ... no more
