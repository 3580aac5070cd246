"""A model saved by today's Keras is a parent end to end (`run --model m.keras`), and the
chosen candidate goes back as a `model.keras` that today's Keras opens with the same
predictions."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from tests.conftest import keras_today_run, run_cli


def _study(run_dir, name):
    return optuna.load_study(study_name=f"{name}-smoke", storage=f"sqlite:///{run_dir}/study.db")


@pytest.fixture(scope="module")
def keras3_run(keras_today):
    run_dir = keras_today / "run-keras3"
    out = run_cli("run", "--model", str(keras_today / "keras3-digits.keras"), "--data",
                  str(keras_today / "digits.npz"), "--name", "k3", "--smoke", "--run-dir",
                  str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


def test_a_keras3_parent_is_searched_and_its_children_inherit_its_weights(keras3_run,
                                                                         keras_today):
    study = _study(keras3_run, "k3")
    record = study.user_attrs["definition"]
    version = json.loads((keras_today / "versions.json").read_text())["keras3"]
    assert record["parent"]["file_format"] == {"container": "keras", "keras_version": version}
    assert record["parent"]["outputs"] == "probabilities"
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    # one epoch on 512 images from the inherited weights: far above chance (10%)
    assert max(t.user_attrs["first_epoch_accuracy"] for t in complete) > 0.6


def test_inspect_names_the_keras_that_wrote_the_file(keras_today):
    out = run_cli("inspect", "--model", str(keras_today / "keras3-digits.keras"),
                  "--no-device")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "keras format, written by Keras 3." in out.stdout
    assert "translated into Keras 2.14" in out.stdout


def _export(run_dir, name, trial, out, *extra):
    done = run_cli("export", "--study", f"{name}-smoke", "--run-dir", str(run_dir),
                   "--trial", str(trial), "--out", str(out), *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "model_card.json").read_text()), done.stdout


def _checked_in_todays_keras(path, x, reader, tmp_path):
    """Max difference between today's Keras' predictions of `path` and this tool's read."""
    from objectives.parent import load_model_file

    reference = tmp_path / f"{path.parent.name}-reference.npz"
    np.savez(reference, x=x, y=load_model_file(path).predict(x, verbose=0))
    (check,) = json.loads(keras_today_run("--check", reader, path, reference))
    return check["max_abs_diff"]


@pytest.mark.parametrize("mode", ["float32", "epr"])
def test_the_exported_model_keras_opens_in_keras3_with_the_trials_predictions(
        keras3_run, keras_today, tmp_path, mode):
    study = _study(keras3_run, "k3")
    trial = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                 and t.user_attrs["candidate"]["quantization"] == mode)
    out = tmp_path / mode
    card, stdout = _export(keras3_run, "k3", trial.number, out)
    assert card["keras"]["keras_format"] == 3 and (out / "model.keras").is_file()
    assert "model.keras (Keras 3 format" in stdout
    x = np.load(keras_today / "keras3-digits.npz")["x"]
    assert _checked_in_todays_keras(out / "model.keras", x, "keras3", tmp_path) < 1e-5
    if mode == "epr":  # the float model is what the .epr decodes to
        from objectives import epr
        from objectives.parent import load_model_file

        decoded = epr.load(out / "model.epr").predict(x, verbose=0)
        written = load_model_file(out / "model.keras").predict(x, verbose=0)
        assert np.abs(decoded - written).max() < 1e-5
    assert card["runtimes"]["converted_with_tensorflow"].startswith("2.14")
    assert "ai_edge_litert" in card["runtimes"]["phones_and_hosts"]


def test_a_tf_keras_parent_exports_keras_2_unless_told(keras_today, tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("run", "--model", str(keras_today / "tf_keras-digits.h5"), "--data",
                  str(keras_today / "digits.npz"), "--name", "tk", "--smoke", "--n-trials",
                  "1", "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    x = np.load(keras_today / "tf_keras-digits.npz")["x"]
    card, _ = _export(run_dir, "tk", 0, tmp_path / "two")
    assert card["keras"]["keras_format"] == 2
    assert _checked_in_todays_keras(tmp_path / "two" / "model.keras", x, "tf_keras",
                                    tmp_path) < 1e-5
    card, _ = _export(run_dir, "tk", 0, tmp_path / "three", "--keras-format", "3")
    assert card["keras"]["keras_format"] == 3
    assert _checked_in_todays_keras(tmp_path / "three" / "model.keras", x, "keras3",
                                    tmp_path) < 1e-5


@pytest.mark.parametrize(("parent", "expected"), [
    ({"kind": "file", "file_format": {"container": "keras", "keras_version": "3.15.1"}}, 3),
    ({"kind": "file", "file_format": {"container": "h5", "keras_version": "2.21.0"}}, 2),
    ({"kind": "file", "file_format": {"container": "keras", "keras_version": "2.14.0"}}, 2),
    ({"kind": "family", "reference": "lenet5_caffe"}, 3),
    ({"kind": "file", "sha256": "recorded before file formats were"}, 3),
])
def test_model_keras_defaults_to_the_keras_the_parent_came_from(parent, expected):
    from optimizer.commands.keras_export import default_keras_format

    assert default_keras_format({"parent": parent}) == expected


@pytest.mark.parametrize(("model", "says"), [
    ("keras3-untranslated.keras", "layer 'random_flip' (RandomFlip) has no translation"),
    ("keras3-exported", "serving SavedModel"),
])
def test_a_file_it_cannot_translate_is_one_line_exit_2_and_nothing_stored(
        keras_today, tmp_path, model, says):
    run_dir = tmp_path / "run"
    out = run_cli("run", "--model", str(keras_today / model), "--data",
                  str(keras_today / "digits.npz"), "--name", "bad", "--smoke",
                  "--run-dir", str(run_dir))
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and says in errors[0], out.stderr[-2000:]
    assert errors[0] == out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr
    assert not run_dir.exists()
