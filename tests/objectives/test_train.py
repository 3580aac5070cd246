"""Training guards: hopeless trials stop after the first epoch, divergence fails the trial."""

from __future__ import annotations

import numpy as np
import pytest

from objectives.errors import DivergedError, HopelessTrial, TrialFailure
from objectives.train import train


def _model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def test_a_trial_below_the_floor_stops_after_one_epoch():
    x, y = _data()
    model = _model()
    with pytest.raises(HopelessTrial, match=r"below the floor 1\.01"):
        train(model, x=x, y=y, x_val=x, y_val=y, epochs=50, batch_size=16,
              accuracy_floor=1.01, seed=0)
    assert not issubclass(HopelessTrial, TrialFailure)  # PRUNED, not FAIL


def test_a_nan_loss_fails_the_trial():
    x, y = _data()
    x[5, 0] = np.nan
    with pytest.raises(DivergedError, match="nan"):
        train(_model(), x=x, y=y, x_val=x, y_val=y, epochs=3, batch_size=8,
              accuracy_floor=0.0, seed=0)


def test_a_healthy_run_records_its_losses():
    x, y = _data()
    record = train(_model(), x=x, y=y, x_val=x, y_val=y, epochs=3, batch_size=16,
                   accuracy_floor=0.0, seed=0)
    assert len(record.losses) == 3 and record.seconds > 0
    assert record.losses[-1] < record.losses[0]  # it learns the linearly separable labels


def test_the_first_epoch_accuracy_is_the_model_s_validation_accuracy_after_one_epoch():
    from objectives.train import accuracy

    x, y = _data()
    model = _model()
    record = train(model, x=x, y=y, x_val=x[:32], y_val=y[:32], epochs=1, batch_size=16,
                   accuracy_floor=0.0, seed=0)
    assert record.first_epoch_accuracy == pytest.approx(accuracy(model, x[:32], y[:32]))


def test_the_cosine_schedule_ends_at_zero_on_the_trial_s_last_step():
    from objectives.train import LEARNING_RATE, learning_rate

    rate = learning_rate("cosine", steps=100)
    assert float(rate(0)) == pytest.approx(LEARNING_RATE)
    assert float(rate(50)) == pytest.approx(LEARNING_RATE / 2, rel=1e-5)
    assert float(rate(100)) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate("constant", steps=100) == LEARNING_RATE
    with pytest.raises(ValueError, match="schedule"):
        learning_rate("step", steps=100)


def test_a_study_with_an_unknown_schedule_is_refused():
    from dataclasses import replace

    from studies import get_study
    from studies.base import Budget, StudyDefinitionError

    study = get_study("digits")
    with pytest.raises(StudyDefinitionError, match="schedule 'warm'"):
        replace(study, budget=Budget(epochs=1, batch_size=8, n_trials=1,
                                     schedule="warm")).validate()
    with pytest.raises(StudyDefinitionError, match="at least 1"):
        replace(study, budget=Budget(epochs=1, batch_size=8, n_trials=1,
                                     parent_epochs=0)).validate()


@pytest.mark.parametrize("budget", [{"epochs": 1001}, {"epochs": 5, "parent_epochs": 10**6}])
def test_epochs_no_one_can_mean_are_refused_with_the_limit(budget):
    from dataclasses import replace

    from studies import get_study
    from studies.base import MAX_EPOCHS, Budget, StudyDefinitionError

    with pytest.raises(StudyDefinitionError, match=f"must be at most {MAX_EPOCHS}"):
        replace(get_study("digits"), budget=Budget(batch_size=8, n_trials=1, **budget)
                ).validate()
    replace(get_study("digits"), budget=Budget(epochs=MAX_EPOCHS, batch_size=8, n_trials=1)
            ).validate()


def test_a_judge_stops_training_at_the_rung_where_the_trial_ranks_low():
    from optimizer.engine.halving import RungJudge

    x, y = _data()
    rivals = tuple((2, 1.0, 10.0) for _ in range(3))  # perfect and tiny: nothing beats them
    stopped = train(_model(), x=x, y=y, x_val=x, y_val=y, epochs=5, batch_size=16,
                    accuracy_floor=0.0, seed=0, rung_payload=lambda model: 1e6,
                    judge=RungJudge(rungs=(2, 4), eta=3, history=rivals))
    assert stopped.stopped_at == 2 and len(stopped.losses) == 2
    (rung, _, payload), = stopped.rungs
    assert (rung, payload) == (2, 1e6)
    free = train(_model(), x=x, y=y, x_val=x, y_val=y, epochs=5, batch_size=16,
                 accuracy_floor=0.0, seed=0, rung_payload=lambda model: 1e6,
                 judge=RungJudge(rungs=(2, 4), eta=3))
    assert free.stopped_at is None and len(free.losses) == 5
    assert [score[0] for score in free.rungs] == [2, 4]
