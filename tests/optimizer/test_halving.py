"""Multi-objective successive halving: the ranking, the judge, the budget, and a study run
through the CLI whose stopped trials were stopped by the rule and still scored."""

from __future__ import annotations

import math
from dataclasses import replace

import optuna
import pytest

from optimizer.engine.halving import (
    RungJudge,
    epsilon_net_order,
    judge_for,
    nondominated_fronts,
    ranking,
)
from optimizer.store.trial import StoredTrial
from studies.base import Budget, Study, StudyDefinitionError
from tests.conftest import run_cli

# (accuracy, log10 bytes)
POINTS = [(0.90, 5.0), (0.80, 3.0), (0.85, 4.0), (0.70, 2.0), (0.84, 4.5), (0.60, 5.5)]


def test_fronts_put_a_dominated_point_after_the_point_that_dominates_it():
    fronts = nondominated_fronts(POINTS)
    assert fronts[0] == [0, 1, 2, 3]
    assert fronts[1] == [4]  # (0.84, 4.5) is dominated by (0.85, 4.0)
    assert fronts[2] == [5]  # dominated by every point, (0.84, 4.5) included


def test_epsilon_net_takes_the_two_extremes_then_the_farthest_point():
    order = epsilon_net_order(POINTS, [0, 1, 2, 3])
    assert order[:2] == [0, 3]  # most accurate, then smallest
    # (0.80, 3.0) is farther from both extremes than (0.85, 4.0) on the scaled axes
    assert order[2:] == [1, 2]


def test_ranking_lists_every_point_once_front_by_front():
    order = ranking(POINTS)
    assert sorted(order) == list(range(len(POINTS)))
    assert order[-2:] == [4, 5]


def test_the_first_eta_trials_at_a_rung_always_train_on():
    judge = RungJudge(rungs=(1,), eta=3, history=((1, 0.9, 1e3), (1, 0.95, 1e2)))
    assert judge.continues(rung=1, accuracy=0.1, payload=1e6)


def test_by_rank_alone_only_the_best_floor_n_over_eta_train_on():
    history = tuple((1, a, 10 ** b) for a, b in POINTS[:4])
    judge = RungJudge(rungs=(1, 3), eta=3, history=history, keep_front=False)
    assert not judge.continues(rung=1, accuracy=0.75, payload=10 ** 4.8)
    # 5 scores keep ⌊5/3⌋ = 1: only the most accurate point of the first front
    assert judge.continues(rung=1, accuracy=0.95, payload=10 ** 5.2)
    # the smallest point comes second: kept once there are 6 scores (⌊6/3⌋ = 2)
    six = RungJudge(rungs=(1, 3), eta=3, history=(*history, (1, 0.5, 10 ** 6)),
                    keep_front=False)
    assert six.continues(rung=1, accuracy=0.65, payload=10 ** 1.5)
    assert not six.continues(rung=1, accuracy=0.86, payload=10 ** 4.2)


def test_keep_front_lets_a_non_dominated_trial_on_whatever_its_rank():
    history = tuple((1, a, 10 ** b) for a, b in POINTS[:4])
    # (0.86, 10^4.2) is dominated by none of the four, but 5 scores keep only the most
    # accurate by rank, so without keep_front it stops
    assert not RungJudge(rungs=(1,), eta=3, history=history, keep_front=False).continues(
        rung=1, accuracy=0.86, payload=10 ** 4.2)
    front = RungJudge(rungs=(1,), eta=3, history=history)  # keep_front is the default
    assert front.continues(rung=1, accuracy=0.86, payload=10 ** 4.2)
    assert not front.continues(rung=1, accuracy=0.84, payload=10 ** 4.5)  # (0.85, 4.0) wins


def test_a_reference_point_trains_on_where_any_other_trial_would_stop():
    history = tuple((1, a, 10 ** b) for a, b in POINTS[:4])
    budget = Budget(epochs=9, batch_size=32, n_trials=9, rungs=(1, 3))
    scores = [[score] for score in history]
    cut = dict(rung=1, accuracy=0.76, payload=10 ** 4.3)  # dominated by (0.85, 10^4.0)
    assert not judge_for(budget=budget, scores=scores).continues(**cut)
    assert judge_for(budget=budget, scores=scores, exempt=True).continues(**cut)


def test_scores_at_other_rungs_do_not_count():
    judge = RungJudge(rungs=(1, 3), eta=2, history=((3, 0.99, 10.0), (3, 0.98, 5.0)))
    assert judge.continues(rung=1, accuracy=0.1, payload=1e6)


def test_no_rungs_means_no_judge():
    budget = Budget(epochs=9, batch_size=32, n_trials=2)
    assert judge_for(budget=budget, scores=[[(1, 0.9, 1e3)]]) is None
    halved = replace(budget, rungs=[1, 3], eta=4, keep_front=False)  # as stored: a list
    judge = judge_for(budget=halved, scores=[[[1, 0.9, 1e3], [3, 0.92, 9e2]], []])
    assert judge.history == ((1, 0.9, 1e3), (3, 0.92, 9e2))
    assert (judge.rungs, judge.eta, judge.keep_front) == ((1, 3), 4, False)


@pytest.mark.parametrize("rungs, eta", [((3,), 3), ((2, 1), 3), ((0,), 3), ((1,), 1)])
def test_a_budget_with_impossible_rungs_is_refused(rungs, eta):
    with pytest.raises(StudyDefinitionError, match="rungs"):
        Study(name="bad", dataset="digits", family="tiny_cnn",
              budget=Budget(epochs=3, batch_size=32, n_trials=2, rungs=rungs, eta=eta)
              ).validate()


HALVED_STUDY = '''
from studies import Budget, Study

STUDY = Study(name="halved", dataset="digits", family="tiny_cnn",
              budget=Budget(epochs=2, batch_size=32, n_trials=6, rungs=(1,), eta=2),
              width_range=(0.25, 1.0), accuracy_floor=0.0, usable_accuracy=0.0)
'''


def test_a_halved_study_stops_trials_by_the_rule_and_still_scores_them(tmp_path):
    study_file = tmp_path / "halved_study.py"
    study_file.write_text(HALVED_STUDY)
    run_dir = tmp_path / "run"
    out = run_cli("run", "--study", str(study_file), "--run-dir", str(run_dir),
                  "--no-isolation", "--finalists", "0",  # the search's six trials alone
                  cwd=tmp_path)  # one TensorFlow import for six trials
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="halved", storage=f"sqlite:///{run_dir}/study.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 6
    stopped = [t for t in trials if t.user_attrs["stopped_at_epoch"] is not None]
    assert stopped, "six trials at η = 2: some must rank in the lower half at epoch 1"
    assert any(t.user_attrs["stopped_at_epoch"] is None for t in trials)
    for i, trial in enumerate(trials):
        (rung, accuracy, payload), = trial.user_attrs["rungs"]
        assert rung == 1 and 0 < accuracy <= 1 and payload > 0
        judge = judge_for(budget=Budget(epochs=2, batch_size=32, n_trials=6, rungs=(1,), eta=2),
                          scores=[t.user_attrs["rungs"] for t in trials[:i]],
                          exempt=StoredTrial.from_trial(trial).full_budget)
        went_on = judge.continues(rung=1, accuracy=accuracy, payload=payload)
        assert went_on == (trial.user_attrs["stopped_at_epoch"] is None)
        assert len(trial.user_attrs["losses"]) == (2 if went_on else 1)
        assert math.isfinite(trial.values[0]) and trial.user_attrs["payload_bytes"] > 0
    assert "halving: stopped after epoch 1" in out.stderr


def test_a_study_stored_before_budgets_had_rungs_resumes_and_other_rungs_are_refused():
    from dataclasses import asdict

    from definitions.attributes import RECORD_ATTR
    from definitions.errors import UsageError
    from optimizer.store.record import RECORD_VERSION, check_record

    now = {"version": RECORD_VERSION, "budget": asdict(Budget(epochs=3, batch_size=32,
                                                              n_trials=2))}
    old = {**now, "budget": {k: v for k, v in now["budget"].items()
                             if k not in ("rungs", "eta")}}
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(RECORD_ATTR, old)
    check_record(study, now)  # the older record means what the defaults mean
    halved = {**now, "budget": asdict(Budget(epochs=3, batch_size=32, n_trials=2,
                                             rungs=(1,)))}
    with pytest.raises(UsageError, match="budget"):
        check_record(study, halved)
    study.set_user_attr(RECORD_ATTR, halved)  # a tuple and its JSON list compare equal
    check_record(study, halved)


def test_a_record_from_before_keep_front_with_rungs_means_the_rank_alone():
    from dataclasses import asdict

    from definitions.attributes import RECORD_ATTR
    from definitions.errors import UsageError
    from optimizer.store.record import RECORD_VERSION, check_record

    halved = Budget(epochs=3, batch_size=32, n_trials=2, rungs=(1,))
    now = {"version": RECORD_VERSION, "budget": asdict(halved)}
    before_field = {k: v for k, v in now["budget"].items() if k != "keep_front"}
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr(RECORD_ATTR, {**now, "budget": before_field})
    with pytest.raises(UsageError, match="keep_front"):  # it ran MO-ASHA's rank alone
        check_record(study, now)
    check_record(study, {**now, "budget": asdict(replace(halved, keep_front=False))})
    # without rungs keep_front means nothing: such a record still matches today's default
    plain = asdict(Budget(epochs=3, batch_size=32, n_trials=2))
    study.set_user_attr(RECORD_ATTR, {**now, "budget": {
        k: v for k, v in plain.items() if k != "keep_front"}})
    check_record(study, {**now, "budget": plain})
