"""The reference points a new study enqueues first (`Study.reference_points`)."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest

from definitions.attributes import REFERENCE_POINT_ATTR, RETRY_ATTR
from optimizer.engine.resume import create_or_resume
from optimizer.store.retry import retry_once
from search_spaces import Candidate
from search_spaces.suggest import suggest
from studies import get_study
from studies.base import DEFAULT_REFERENCE_POINTS, StudyDefinitionError

RECORD = {"dataset": "digits", "family": "lenet5_caffe", "data_source": "test",
          "split_seed": 0}


def _queued(definition) -> list[Candidate]:
    """What the trials enqueued by creating the study propose, in order; each is marked
    as a reference point (so successive halving lets it train its full budget)."""
    created = create_or_resume(study=definition, name="s", record=RECORD, existing=None,
                               storage=optuna.storages.InMemoryStorage())
    waiting = len(created.get_trials(states=(optuna.trial.TrialState.WAITING,)))
    trials = [created.ask() for _ in range(waiting)]
    assert all(t.user_attrs.get(REFERENCE_POINT_ATTR) is True for t in trials)
    assert REFERENCE_POINT_ATTR not in created.ask().user_attrs  # the sampler's own proposal
    return [suggest(t, study=definition) for t in trials]


def test_a_study_naming_no_references_gets_the_default_ones_in_its_space():
    digits = get_study("digits")
    assert digits.reference_point_candidates == DEFAULT_REFERENCE_POINTS
    epr_only = replace(digits, quantization_modes=("epr",))
    assert [c.epr_lambda for c in epr_only.reference_point_candidates] == [2.0, 10.0]
    narrow = replace(digits, width_range=(0.25, 0.75))
    assert narrow.reference_point_candidates == ()  # every default is at width 1
    small_lambda = replace(digits, epr_lambda_range=(0.5, 5.0))
    assert [c.epr_lambda for c in small_lambda.reference_point_candidates] == [0.0, 2.0]


def test_a_new_study_enqueues_its_own_references_in_order():
    own = (Candidate(width=0.25, epr_lambda=0.5, quantization="epr"),
           Candidate(width=0.5, quantization="int8"))
    definition = replace(get_study("digits"), reference_points=own)
    definition.validate()
    assert _queued(definition) == list(own)


def test_a_new_study_without_references_named_enqueues_the_defaults():
    assert _queued(get_study("digits")) == list(DEFAULT_REFERENCE_POINTS)


def test_no_references_enqueues_nothing():
    assert _queued(replace(get_study("digits"), reference_points=())) == []


@pytest.mark.parametrize("reference", [
    Candidate(width=2.0, quantization="float32"),  # wider than the range
    Candidate(width=1.0, epr_lambda=500.0, quantization="epr"),  # λ above the range
    "width=1",  # not a Candidate
])
def test_a_reference_outside_the_space_is_refused(reference):
    definition = replace(get_study("digits"), reference_points=(reference,))
    with pytest.raises(StudyDefinitionError, match="reference"):
        definition.validate()


def test_a_reference_in_a_mode_the_study_does_not_offer_is_refused():
    definition = replace(get_study("digits"), quantization_modes=("int8",),
                         reference_points=(Candidate(width=1.0, quantization="float32"),))
    with pytest.raises(StudyDefinitionError, match="modes"):
        definition.validate()


def test_a_retried_reference_point_is_still_a_reference_point():
    created = create_or_resume(study=get_study("digits"), name="s", record=RECORD,
                               existing=None, storage=optuna.storages.InMemoryStorage())
    first = created.ask()
    suggest(first, study=get_study("digits"))
    created.tell(first, state=optuna.trial.TrialState.FAIL)
    failed = created.trials[first.number]
    assert retry_once(created, failed)
    waiting = created.get_trials(states=(optuna.trial.TrialState.WAITING,))
    retry = next(t for t in waiting if t.user_attrs.get(RETRY_ATTR) == first.number)
    assert retry.user_attrs[REFERENCE_POINT_ATTR] is True
