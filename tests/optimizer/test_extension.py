"""The small-end extension (`optimizer.engine.extension`): one trial in N steps below the front's
smallest member."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from definitions.attributes import EXTENSION_ATTR, REFERENCE_POINT_ATTR, RETRY_ATTR
from optimizer.engine.extension import SmallEndExtension, next_extension, steps
from optimizer.engine.halving import judge_for
from optimizer.store.retry import retry_once
from optimizer.store.trial import full_budget
from search_spaces import Candidate
from search_spaces.suggest import candidate_params, family_offered, suggest
from studies import get_study
from studies.base import Budget
from tests.conftest import run_cli

STUDY = get_study("fashion_mnist")
OFFERED = family_offered(STUDY)  # lenet5_caffe: conv_2 is offered at every width


def _epr(width: float, lam: float, factorize: tuple[str, ...] = ()) -> Candidate:
    return Candidate(width=width, factorize=factorize, epr_lambda=lam, quantization="epr")


def test_a_wide_member_steps_to_a_narrower_width_on_the_grid_first():
    first, second, third = steps(_epr(1.0, 50.0), study=STUDY, offered=OFFERED)
    assert first == _epr(0.7, 50.0)
    assert second == _epr(1.0, 100.0)  # λ × 3, capped at the range's high end
    assert third == _epr(1.0, 50.0, ("conv_2",))


def test_a_member_at_the_narrowest_width_steps_its_lambda_up():
    assert next(steps(_epr(0.25, 0.5), study=STUDY, offered=OFFERED)) == _epr(0.25, 1.5)
    # just above the low end: one grid step down, not below the range
    assert next(steps(_epr(0.3, 5.0), study=STUDY, offered=OFFERED)).width == 0.25


def test_a_member_at_every_bound_has_only_factorization_left_then_nothing():
    assert list(steps(_epr(0.25, 100.0), study=STUDY, offered=OFFERED)) == [
        _epr(0.25, 100.0, ("conv_2",))]
    assert list(steps(_epr(0.25, 100.0, ("conv_2",)), study=STUDY, offered=OFFERED)) == []


def test_a_member_without_the_penalty_steps_to_epr_at_the_smallest_lambda():
    int8 = Candidate(width=0.5, quantization="int8")
    assert list(steps(int8, study=STUDY, offered=OFFERED)) == [
        Candidate(width=0.5, epr_lambda=0.5, quantization="epr")]
    no_epr = replace(STUDY, quantization_modes=("int8", "float16"))
    assert list(steps(int8, study=no_epr, offered=OFFERED)) == []


def _trial(number: int, candidate: Candidate, accuracy: float, payload: float, *,
           state: TrialState = TrialState.COMPLETE, **attrs) -> optuna.trial.FrozenTrial:
    trial = create_trial(
        state=state, values=[accuracy, payload] if state == TrialState.COMPLETE else None,
        params={"width": candidate.width},
        distributions={"width": FloatDistribution(0.25, 1.5, step=0.05)},
        user_attrs={"candidate": candidate.to_params(), **attrs})
    trial.number = number
    return trial


def test_the_smallest_front_member_is_extended_by_its_first_untried_step():
    big = _trial(0, _epr(1.0, 2.0), 0.90, 30_000)
    small = _trial(1, _epr(1.0, 50.0), 0.85, 3_300)
    tried = _trial(2, _epr(0.7, 50.0), 0.80, 4_000)  # dominated by `small`: not on the front
    found = next_extension([big, small, tried], front=[big, small], study=STUDY,
                           offered=OFFERED)
    assert found == (1, _epr(1.0, 100.0))


def test_a_member_whose_step_fell_below_usable_accuracy_is_not_extended_again():
    small = _trial(1, _epr(0.25, 50.0), 0.70, 900)
    pruned = _trial(2, _epr(0.25, 100.0), 0.0, 0.0, state=TrialState.PRUNED,
                    **{EXTENSION_ATTR: 1})
    assert next_extension([small, pruned], front=[small], study=STUDY,
                          offered=OFFERED) is None


def _study_with(definition, candidates: list[tuple[Candidate, float, float]], *,
                reference_points: int = 0) -> optuna.Study:
    """An in-memory study whose finished trials propose `candidates` with these scores,
    the first `reference_points` of them marked as reference points."""
    created = optuna.create_study(directions=["maximize", "minimize"],
                                  sampler=optuna.samplers.RandomSampler(seed=0))
    for i, (candidate, accuracy, payload) in enumerate(candidates):
        created.enqueue_trial(candidate_params(candidate, study=definition),
                              user_attrs={REFERENCE_POINT_ATTR: True}
                              if i < reference_points else {})
        trial = created.ask()
        trial.set_user_attr("candidate", suggest(trial, study=definition).to_params())
        created.tell(trial, [accuracy, payload])
    return created


def test_the_callback_enqueues_one_extension_in_every_n_searched_trials():
    points = [(_epr(1.0, 2.0), 0.90, 30_000), (_epr(1.0, 50.0), 0.85, 3_300),  # references
              (_epr(0.5, 5.0), 0.86, 9_000), (_epr(0.8, 3.0), 0.87, 20_000)]
    extend = SmallEndExtension(every=3, study=STUDY, offered=OFFERED)
    opt_study = _study_with(STUDY, points[:3], reference_points=2)
    extend(opt_study, opt_study.trials[-1])
    assert not opt_study.get_trials(states=(TrialState.WAITING,))  # 1 searched: not yet
    opt_study = _study_with(STUDY, points, reference_points=2)
    extend(opt_study, opt_study.trials[-1])
    waiting = opt_study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    assert waiting[0].user_attrs[EXTENSION_ATTR] == 1  # steps down from trial 1, 3.3 KB
    proposed = suggest(opt_study.ask(), study=STUDY)
    assert proposed == _epr(0.7, 50.0)
    extend(opt_study, opt_study.trials[-1])  # the extension is running: no second one
    assert not opt_study.get_trials(states=(TrialState.WAITING,))


@pytest.mark.parametrize("in_flight", [0, 1], ids=["none in flight", "one in flight"])
def test_nothing_is_enqueued_once_the_run_has_its_trials(in_flight):
    """Trials still running (`--jobs N`, other drivers) will finish and count: an
    extension queued for them would be left waiting in the stored study."""
    points = [(_epr(0.5, 5.0), 0.86, 9_000), (_epr(0.8, 3.0), 0.87, 20_000)]
    opt_study = _study_with(STUDY, points)
    for _ in range(in_flight):
        opt_study.ask()  # a trial in flight in another worker
    SmallEndExtension(every=2, study=STUDY, offered=OFFERED, target=2 + in_flight)(
        opt_study, opt_study.trials[1])
    assert not opt_study.get_trials(states=(TrialState.WAITING,))
    SmallEndExtension(every=2, study=STUDY, offered=OFFERED, target=3 + in_flight)(
        opt_study, opt_study.trials[1])
    assert len(opt_study.get_trials(states=(TrialState.WAITING,))) == 1


def test_nothing_is_enqueued_while_reference_points_or_retries_wait():
    points = [(_epr(0.5, 5.0), 0.86, 9_000), (_epr(0.8, 3.0), 0.87, 20_000)]
    opt_study = _study_with(STUDY, points)
    opt_study.enqueue_trial(candidate_params(_epr(1.0, 2.0), study=STUDY),
                            user_attrs={REFERENCE_POINT_ATTR: True})
    SmallEndExtension(every=2, study=STUDY, offered=OFFERED)(opt_study, opt_study.trials[1])
    waiting = opt_study.get_trials(states=(TrialState.WAITING,))
    assert [EXTENSION_ATTR in t.user_attrs for t in waiting] == [False]


def test_an_extension_trains_its_full_budget_and_keeps_its_mark_when_retried():
    assert full_budget({EXTENSION_ATTR: 0}) and full_budget({REFERENCE_POINT_ATTR: True})
    assert not full_budget({RETRY_ATTR: 3})
    budget = Budget(epochs=9, batch_size=64, n_trials=30, rungs=(1, 3), eta=3)
    better = [[(1, 0.9, 1_000.0)]] * 3  # three earlier trials, each better at rung 1
    judge = judge_for(budget=budget, scores=better, exempt=full_budget({EXTENSION_ATTR: 4}))
    assert judge.continues(rung=1, accuracy=0.5, payload=50_000.0)
    assert not judge_for(budget=budget, scores=better).continues(
        rung=1, accuracy=0.5, payload=50_000.0)

    opt_study = _study_with(STUDY, [(_epr(0.5, 5.0), 0.86, 9_000)])
    opt_study.enqueue_trial(candidate_params(_epr(0.35, 5.0), study=STUDY),
                            user_attrs={EXTENSION_ATTR: 0})
    running = opt_study.ask()
    suggest(running, study=STUDY)
    opt_study.tell(running, state=TrialState.FAIL)
    assert retry_once(opt_study, opt_study.trials[running.number])
    retry, = opt_study.get_trials(states=(TrialState.WAITING,))
    assert retry.user_attrs[EXTENSION_ATTR] == 0


@pytest.mark.parametrize("every", ["1", "-2"])
def test_run_refuses_an_extension_period_that_is_not_0_or_at_least_2(tmp_path, every):
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(tmp_path / "r"),
                  "--extend-every", every)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "--extend-every must be 0" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r" / "study.db").exists()


def test_a_run_with_extensions_steps_below_its_smallest_member(tmp_path):
    """With --extend-every 2: 3 reference points, a sampled trial, then a small-end
    extension of the front's smallest member at that moment, shown on its progress line."""
    run_dir = tmp_path / "r"
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "5",
                  "--extend-every", "2", "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    trials = optuna.load_study(study_name="digits-smoke",
                               storage=f"sqlite:///{run_dir}/study.db").trials
    extension = trials[4]
    parent_number = extension.user_attrs[EXTENSION_ATTR]
    before = [t for t in trials[:4] if t.state == TrialState.COMPLETE]
    smallest = min(before, key=lambda t: t.values[1])
    assert parent_number == smallest.number
    definition = get_study("digits")
    parent = Candidate(**smallest.user_attrs["candidate"])
    expected = next(steps(parent, study=definition, offered=family_offered(definition)))
    assert Candidate(**extension.user_attrs["candidate"]) == expected
    assert f"(extends trial {parent_number})" in out.stderr
    assert not any(EXTENSION_ATTR in t.user_attrs for t in trials[:4])
