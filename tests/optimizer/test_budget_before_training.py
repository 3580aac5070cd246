"""Device-first search: flash and RAM budgets steer the search before anything trains, and
the space can be narrowed from the CLI."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from definitions.attributes import REJECTED_ATTR
from optimizer.engine.extension import steps
from optimizer.store.retry import finished_count, rejected_count
from search_spaces import Candidate, suggest
from studies import get_study
from studies.base import DEVICE_REFERENCE_POINTS, DeviceBudgets, StudyDefinitionError
from tests.conftest import run_cli

RAM_KB = 6  # digits' tiny_cnn: float32 at width 1 needs 7.9 KB of arena, int8 4.3 KB


# -- definitions, no training -------------------------------------------------------------


def test_flash_and_ram_are_known_before_training_latency_and_accuracy_are_not():
    assert DeviceBudgets(max_ram_kb=64).before_training
    assert DeviceBudgets(max_flash_kb=256).before_training
    assert not DeviceBudgets(max_latency_ms=1.0, min_accuracy=0.9).before_training
    budgets = DeviceBudgets(max_flash_kb=1, max_ram_kb=2, max_latency_ms=1.0)
    assert budgets.footprint_constraints({"flash_bytes": 1500, "ram_bytes": 1000}) == {
        "flash_bytes": 1500 - 1024, "ram_bytes": 1000 - 2048}


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0, -3.0])
def test_a_budget_must_be_positive_and_finite(value):
    with pytest.raises(StudyDefinitionError, match="must be positive and finite"):
        DeviceBudgets(max_ram_kb=value)


def test_under_flash_neither_epr_storage_nor_lambda_on_tflite_is_searched():
    study = get_study("digits")
    flash = _flash(study)
    assert "epr" not in flash.quantization_modes
    assert not flash.searches_tflite_epr
    # suggest never asks for the penalty switch: a FixedTrial without it still suggests
    candidate = suggest(FixedTrial({"width": 0.5, "quantization": "int8"}), study=flash,
                        offered=lambda width: ())
    assert candidate == Candidate(width=0.5, quantization="int8")
    # the payload objective keeps both
    assert study.searches_tflite_epr and "epr" in study.narrowed().quantization_modes


def test_a_study_that_asks_for_epr_under_flash_keeps_it():
    flash = _flash(get_study("digits"), quantization_modes=("epr", "int8"))
    assert flash.quantization_modes == ("epr", "int8")
    assert flash.contains(Candidate(width=1.0, epr_lambda=2.0, quantization="epr"))
    # but λ on a TFLite mode is still not searched: it cannot change the file
    assert not flash.contains(Candidate(width=1.0, epr_lambda=2.0, quantization="int8"))


def test_narrowing_the_space_drops_the_studys_own_references_outside_it():
    study = get_study("fashion_mnist")
    narrowed = study.narrowed(quantization_modes=("int8", "float32"), width_range=(0.5, 1.0))
    assert narrowed.reference_points == tuple(
        c for c in study.reference_points
        if c.quantization in ("int8", "float32") and 0.5 <= c.width <= 1.0)
    narrowed.validate()  # what is left lies in the space


def test_device_reference_points_under_flash_are_int8_first():
    flash = _flash(get_study("digits"))
    assert flash.reference_point_candidates == DEVICE_REFERENCE_POINTS
    assert flash.reference_point_candidates[0] == Candidate(width=1.0, quantization="int8")


def test_without_the_penalty_an_extension_steps_in_width_then_factorization():
    flash = _flash(get_study("digits"))
    start = Candidate(width=1.0, quantization="int8")
    found = list(steps(start, study=flash, offered=lambda width: ("conv_2",)))
    assert found == [Candidate(width=0.7, quantization="int8"),
                     Candidate(width=1.0, factorize=("conv_2",), quantization="int8")]


def _flash(study, **narrow):
    from dataclasses import replace

    return replace(study, size_objective="flash").narrowed(**narrow)


def test_a_rejected_candidate_does_not_count_toward_the_budget():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED,
                                              user_attrs={REJECTED_ATTR: {"ram_bytes": 1}}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(values=[0.9, 100.0]))
    assert finished_count(study) == 2 and rejected_count(study) == 1


# -- through the CLI -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("device") / "digits"
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "4", "--run-dir",
                  str(run_dir), "--size-objective", "flash", "--max-ram-kb", str(RAM_KB),
                  "--extend-every", "0")
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{run_dir}/study.db")
    return run_dir, out, study


def test_no_candidate_over_a_ram_budget_is_trained(device_run):
    _, out, study = device_run
    rejected = [t for t in study.trials if REJECTED_ATTR in t.user_attrs]
    # the float32 reference point at width 1 is over 6 KB: rejected at once, untrained
    assert rejected and rejected[0].user_attrs["candidate"]["quantization"] == "float32"
    for t in rejected:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs[REJECTED_ATTR]["ram_bytes"] > RAM_KB * 1024
        assert "train_seconds" not in t.user_attrs
        # the sampler sees it as infeasible, by how much
        assert t.constraints["ram_bytes"] == t.user_attrs[REJECTED_ATTR]["ram_bytes"] - 6144
    assert "over budget before training: RAM" in out.stderr
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(trained) == 4  # --n-trials counts trained candidates
    for t in trained:
        assert t.user_attrs["ram_bytes"] <= RAM_KB * 1024
        # the untrained file predicted the trained one exactly
        before = t.user_attrs["footprint_before_training"]
        assert before["flash_bytes"] == t.user_attrs["flash_bytes"]
        assert before["ram_bytes"] == t.user_attrs["ram_bytes"]
        assert t.user_attrs["macs"] > 1000


def test_a_flash_study_records_its_narrowed_space(device_run):
    _, _, study = device_run
    space = study.user_attrs["definition"]["search_space"]
    assert "epr" not in space["quantization_modes"] and space["tflite_epr"] is False
    for t in study.trials:
        assert t.user_attrs["candidate"]["epr_lambda"] == 0
        assert "epr" not in t.params


def test_the_space_narrowed_from_the_cli_is_searched_and_recorded(tmp_path):
    run_dir = tmp_path / "narrow"
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "2", "--run-dir",
                  str(run_dir), "--quantization", "int8", "dynamic", "--width-range", "0.5",
                  "0.75")
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{run_dir}/study.db")
    space = study.user_attrs["definition"]["search_space"]
    assert space["quantization_modes"] == ["int8", "dynamic"]
    assert space["width_range"] == [0.5, 0.75]
    for t in study.trials:
        assert t.user_attrs["candidate"]["quantization"] in ("int8", "dynamic")
        assert 0.5 <= t.user_attrs["candidate"]["width"] <= 0.75
    # resuming keeps the stored space; another one is refused, nothing written
    before = (run_dir / "study.db").read_bytes()
    again = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "2", "--run-dir",
                    str(run_dir), "--quantization", "float32")
    assert again.returncode == 2 and "search_space" in again.stderr
    assert "Traceback" not in again.stderr
    assert (run_dir / "study.db").read_bytes() == before
    resumed = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "2", "--run-dir",
                      str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]


@pytest.mark.parametrize(("flags", "needle"), [
    (["--width-range", "1.0", "0.5"], "width_range"),
    (["--width-range", "0.5", "inf"], "width_range"),
    (["--width-range", "1", "1000"], "goes above 4, the widest a candidate may be"),
    (["--max-ram-kb", "inf"], "must be positive and finite"),
    (["--quantization", "int4"], "invalid choice"),
])
def test_a_bad_space_or_budget_is_one_line_and_nothing_is_stored(tmp_path, flags, needle):
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(tmp_path), *flags)
    assert out.returncode == 2 and needle in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "study.db").exists()


def test_a_space_wholly_over_budget_stops_with_one_line(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "1", "--run-dir",
                  str(tmp_path), "--quantization", "float32", "--max-ram-kb", "1")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "over the flash or RAM budget before training" in out.stderr
    assert "--width-range" in out.stderr and "Traceback" not in out.stderr
    study = optuna.load_study(study_name="digits-smoke",
                              storage=f"sqlite:///{tmp_path}/study.db")
    assert all(REJECTED_ATTR in t.user_attrs for t in study.trials)
    assert not [t for t in study.trials if "train_seconds" in t.user_attrs]
