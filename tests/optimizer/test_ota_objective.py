"""`run --size-objective ota`: trials ranked by the update a device receives
(`model.update`, `objectives.ota`), the entropy penalty searched for TFLite modes, and
`ota_bytes` shown by `pareto` and the model card beside flash and payload."""

from __future__ import annotations

import json
from dataclasses import replace

import optuna
import pytest

from objectives import ota
from search_spaces import Candidate
from studies import get_study
from studies.base import OTA_REFERENCE_POINTS
from tests.conftest import run_cli

STUDY_NAME = "digits-smoke"


@pytest.fixture(scope="module")
def ota_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ota") / "digits"
    # the first two reference points: int8 at full width, without and with the penalty
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "2",
                  "--run-dir", str(run_dir), "--size-objective", "ota")
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir, out


def _completed(run_dir) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{run_dir}/study.db")
    assert study.metric_names == ["accuracy", "ota_bytes"]
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_the_second_objective_is_the_update_and_the_penalty_shrinks_it(ota_run):
    plain, penalized = _completed(ota_run[0])
    assert [t.user_attrs["candidate"]["epr_lambda"] for t in (plain, penalized)] == [0, 2.0]
    for t in (plain, penalized):
        assert t.values[1] == t.user_attrs["ota_bytes"]
        assert t.user_attrs["candidate"]["quantization"] == "int8"
        # the same int8 file layout, so the same flash: only the update tells them apart
        assert t.user_attrs["flash_bytes"] == plain.user_attrs["flash_bytes"]
    # measured on this run: 7.8 KB against 20.2 KB
    assert penalized.values[1] < 0.6 * plain.values[1]
    assert "update=" in ota_run[1].stderr


def test_pareto_and_the_card_show_the_update_beside_flash(ota_run, tmp_path):
    run_dir = ota_run[0]
    shown = run_cli("pareto", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                    "--format", "json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    rows = json.loads(shown.stdout)
    assert all(row["ota_bytes"] and row["flash_bytes"] for row in rows)
    table = run_cli("pareto", "--study", "digits", "--smoke", "--run-dir", str(run_dir))
    assert "ota_kb" in table.stdout.splitlines()[0]
    smallest = min(rows, key=lambda row: row["ota_bytes"])
    out = tmp_path / "exported"
    done = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                   "--trial", str(smallest["trial"]), "--out", str(out), "--ota")
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((out / "model_card.json").read_text())
    update = (out / ota.UPDATE_FILE).read_bytes()
    # what the search ranked the trial by is the file export hands the device
    assert card["device"]["ota_bytes"] == smallest["ota_bytes"] == len(update)
    assert ota.decode_update(update) == (out / "model.tflite").read_bytes()


def test_under_ota_tflite_modes_search_the_penalty_and_start_from_its_points():
    study = replace(get_study("digits"), size_objective="ota")
    assert study.searches_tflite_epr
    assert study.reference_point_candidates == OTA_REFERENCE_POINTS
    assert study.contains(Candidate(width=1.0, epr_lambda=5.0, quantization="int8"))
    # as under flash, the epr storage mode is left out unless named: a device runs its
    # decoded model, which an int8 mode with λ covers, measured as exported
    assert "epr" not in study.narrowed().quantization_modes
    assert "epr" in study.narrowed(quantization_modes=("epr", "int8")).quantization_modes
    flash = replace(study, size_objective="flash")
    assert not flash.searches_tflite_epr
    assert not flash.contains(Candidate(width=1.0, epr_lambda=5.0, quantization="int8"))


def test_a_studys_epr_reference_points_are_tried_as_the_devices_int8_files():
    fashion = get_study("fashion_mnist")
    under_ota = replace(fashion, size_objective="ota").narrowed()
    assert [(c.quantization, c.width, c.epr_lambda) for c in fashion.reference_points
            if c.quantization == "epr"] == [("epr", 1.0, 2.0), ("epr", 1.0, 10.0),
                                            ("epr", 0.25, 0.5), ("epr", 1.0, 50.0)]
    # under ota the same widths and λ, stored as int8 files
    assert [(c.quantization, c.width, c.epr_lambda)
            for c in under_ota.reference_point_candidates] == [
        ("float32", 1.0, 0.0), ("int8", 1.0, 2.0), ("int8", 1.0, 10.0), ("int8", 0.25, 0.5),
        ("int8", 1.0, 50.0)]
    # under flash, where λ is not searched, without it, each width once
    under_flash = replace(fashion, size_objective="flash").narrowed()
    assert [(c.quantization, c.width, c.epr_lambda)
            for c in under_flash.reference_point_candidates] == [
        ("float32", 1.0, 0.0), ("int8", 1.0, 0.0), ("int8", 0.25, 0.0)]
