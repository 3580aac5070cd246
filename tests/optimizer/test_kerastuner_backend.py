"""`run --backend kerastuner`: KerasTuner's proposals as ordinary trials of the study."""

from __future__ import annotations

import keras_tuner
import optuna
import pytest

from optimizer.engine.kerastuner_backend import BYTES_WEIGHT, propose, score
from search_spaces import candidate_params, suggest
from search_spaces.suggest import family_offered
from studies import get_study
from tests.conftest import run_cli


def test_score_trades_two_accuracy_points_per_decade_of_bytes():
    assert BYTES_WEIGHT == 0.02
    assert score(0.90, 1_000) == pytest.approx(0.84)
    assert score(0.90, 10_000) == pytest.approx(score(0.88, 1_000))


@pytest.mark.parametrize("values", [
    {},
    {"width": 0.5, "factorize_conv_2": True, "quantization": "int8", "epr": True,
     "epr_lambda": 3.0},
    {"width": 1.0, "factorize_conv_2": True, "quantization": "epr", "epr": False,
     "epr_lambda": 7.0},
])
def test_a_proposal_is_the_candidate_suggest_makes_from_its_params(values):
    study = get_study("fashion_mnist")
    offered = family_offered(study)
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        if name == "width":
            hp.Float("width", *study.width_range, step=study.width_step, default=value)
        elif name == "epr_lambda":
            hp.Float("epr_lambda", *study.epr_lambda_range, sampling="log", default=value)
        elif name == "quantization":
            hp.Choice("quantization", list(study.quantization_modes), default=value)
        else:
            hp.Boolean(name, default=value)
    candidate = propose(hp, study=study, offered=offered)
    if values.get("quantization") == "epr":
        assert candidate.epr_lambda == 7.0  # epr storage needs the penalty, switch or not
    if values.get("width") == 0.5:
        assert candidate.factorize == ("conv_2",) and candidate.epr_lambda == 3.0
    again = suggest(optuna.trial.FixedTrial(candidate_params(candidate, study=study)),
                    study=study)
    assert again == candidate


def test_kerastuner_backend_runs_its_proposals_as_study_trials(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("run", "--study", "digits", "--smoke", "--backend", "kerastuner",
                  "--n-trials", "2", "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Trial 2 Complete" not in out.stdout  # KerasTuner's own chatter is off
    study = optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{run_dir}/study.db")
    assert len(study.trials) == 2
    # no reference points: the first trial is KerasTuner's own first proposal (its defaults)
    first = study.trials[0]
    assert first.params["width"] == 0.25 and first.params["quantization"] == "epr"
    assert (run_dir / "kerastuner" / "digits-smoke").is_dir()
    for trial in study.trials:
        assert set(trial.params) <= {"width", "factorize_conv_2", "factorize_conv_3",
                                     "quantization", "epr", "epr_lambda"}
