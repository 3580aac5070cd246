"""The search space, the factorization rule and Candidate checks: no TensorFlow needed."""

from __future__ import annotations

import sys

import optuna
import pytest

from search_spaces import Candidate, InvalidCandidateError, candidate_params, suggest
from search_spaces.families import FAMILIES, scaled
from search_spaces.rule import (
    conv_table,
    factorized_params,
    offered_layers,
    rule_of_thumb,
    square_params,
)
from studies import STUDIES, Budget, Study, StudyDefinitionError


def test_seed_cnn_rule_table_matches_seed_002():
    # Seed 002's table: only the third conv (n=3, m=64, c=64) is worth replacing.
    table = conv_table(FAMILIES["seed_cnn"], input_shape=(28, 28, 1), width=1.0)
    assert [(r.name, r.n, r.m, r.c) for r in table] == [
        ("conv_1", 3, 32, 1),
        ("conv_2", 3, 64, 32),
        ("conv_3", 3, 64, 64),
    ]
    assert [r.rule for r in table] == [False, False, True]
    assert [r.pays for r in table] == [False, False, True]
    assert table[2].p0 == 36928 and table[2].p1 == 12352 * 2


@pytest.mark.parametrize(("n", "m", "c"), [(3, 32, 1), (3, 64, 64), (5, 50, 20), (7, 8, 3)])
def test_parameter_formulas(n, m, c):
    assert square_params(n=n, m=m, c=c) == n * n * c * m + m
    assert factorized_params(n=n, m=m, c=c) == n * c * m + m + n * m * m + m
    assert rule_of_thumb(n=n, m=m, c=c) == (n > 1 + m / c)


def test_guided_offers_only_layers_that_pay_and_unguided_offers_all():
    family = FAMILIES["lenet5_caffe"]
    assert offered_layers(family, input_shape=(28, 28, 1), width=1.0, mode="guided") == ("conv_2",)
    assert offered_layers(family, input_shape=(28, 28, 1), width=1.0, mode="unguided") == (
        "conv_1",
        "conv_2",
    )
    with pytest.raises(ValueError, match="guided"):
        offered_layers(family, input_shape=(28, 28, 1), width=1.0, mode="sometimes")


def test_rule_barely_depends_on_width():
    family = FAMILIES["seed_cnn"]
    for width in (0.25, 0.5, 1.0, 1.5):
        assert offered_layers(family, input_shape=(28, 28, 1), width=width, mode="guided") == (
            "conv_3",
        )


def test_scaled_rounds_and_keeps_at_least_one():
    assert scaled(20, 0.5) == 10
    assert scaled(50, 0.25) == 13  # 12.5 rounds half up
    assert scaled(3, 0.01) == 1


@pytest.mark.parametrize(
    "candidate",
    [
        Candidate(),
        Candidate(width=0.5, factorize=("conv_2",), epr_lambda=3.5, quantization="epr"),
        Candidate(width=1.25, epr_lambda=10.0, quantization="int8"),
        Candidate(width=0.3, quantization="dynamic"),
    ],
)
def test_candidate_round_trips_through_fixed_trial(candidate):
    study = STUDIES["mnist"]
    params = candidate_params(candidate, study=study)
    assert suggest(optuna.trial.FixedTrial(params), study=study) == candidate


def test_suggest_uses_one_name_per_concept():
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    candidate = suggest(trial, study=STUDIES["mnist"])
    names = set(trial.params)
    assert {"width", "quantization"} <= names
    assert names <= {"width", "factorize_conv_2", "quantization", "epr", "epr_lambda"}
    assert (candidate.epr_lambda > 0) == ("epr_lambda" in names)


def test_epr_mode_is_never_proposed_without_a_penalty():
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1)
    )
    for _ in range(60):
        candidate = suggest(study.ask(), study=STUDIES["mnist"])
        if candidate.quantization == "epr":
            assert candidate.epr_lambda > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0.0}, "width"),
        ({"width": float("nan")}, "width"),
        ({"quantization": "int4"}, "unknown quantization"),
        ({"quantization": "epr"}, "epr_lambda > 0"),
        ({"epr_lambda": -1.0}, "epr_lambda"),
    ],
)
def test_bad_candidates_are_refused(kwargs, message):
    with pytest.raises(InvalidCandidateError, match=message):
        Candidate(**kwargs)


def test_study_definitions_are_checked():
    budget = Budget(epochs=1, batch_size=8, n_trials=1)
    base = {"name": "x", "dataset": "digits", "family": "tiny_cnn", "budget": budget,
            "smoke": budget, "expected_runtime": "?"}
    Study(**base).validate()
    with pytest.raises(StudyDefinitionError, match="quantization"):
        Study(**base, quantization_modes=("int3",)).validate()
    with pytest.raises(StudyDefinitionError, match="width_range"):
        Study(**base, width_range=(1.0, 0.5)).validate()
    with pytest.raises(StudyDefinitionError, match="epr_lambda_range"):
        Study(**base, epr_lambda_range=(0.0, 1.0)).validate()
    with pytest.raises(StudyDefinitionError, match="dataset"):
        Study(**{**base, "dataset": "cifar"}).validate()
    with pytest.raises(StudyDefinitionError, match="usable_accuracy"):
        Study(**base, usable_accuracy=1.5).validate()
    for study in STUDIES.values():
        study.validate()


def test_search_space_does_not_import_tensorflow():
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, optuna, search_spaces, studies; "
         "from search_spaces import suggest; from studies import STUDIES; "
         "suggest(optuna.trial.FixedTrial({'width': 1.0, 'factorize_conv_2': True, "
         "'quantization': 'float16', 'epr': False}), study=STUDIES['mnist']); "
         "print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False"
