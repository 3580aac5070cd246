"""The objective inside a real Optuna study: failures are recorded and the study goes on."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from objectives import pipeline, tflite
from optimizer.engine.objective import TRIAL_FAILURES, Objective
from studies import STUDIES
from studies.base import Budget
from studies.datasets import load_dataset


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits")


def _study_def(modes):
    tiny = Budget(epochs=1, batch_size=64, n_trials=2)
    # one epoch is far from usable; these tests are about other rules
    return dataclasses.replace(STUDIES["digits"], budget=tiny, smoke=tiny,
                               quantization_modes=modes, usable_accuracy=0.0)


def _run(definition, splits, tmp_path, n, storage=None):
    """A real in-memory study of `n` trials of the objective (in-process)."""
    from optuna.artifacts import FileSystemArtifactStore

    (tmp_path / "store").mkdir(exist_ok=True)
    storage = storage or optuna.storages.InMemoryStorage()
    study = optuna.create_study(directions=["maximize", "minimize"], storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    from optimizer.engine.parents import plan_parent

    parent = plan_parent(study=definition, splits=splits, seed=0, cache_dir=tmp_path,
                         isolate=False)
    objective = Objective(
        study=definition, parent=parent, splits=splits, scratch_dir=tmp_path / "scratch",
        seed=0,
        artifact_store=FileSystemArtifactStore(str(tmp_path / "store")),
        storage=storage,
    )
    study.optimize(objective, n_trials=n, catch=TRIAL_FAILURES)
    return study


def test_a_failed_conversion_fails_the_trial_with_its_reason(monkeypatch, splits, tmp_path):
    calls = {"n": 0}
    real = tflite.convert

    def flaky(model, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise tflite.ConversionError("TFLite int8 conversion failed: no kernel for op X")
        return real(model, **kwargs)

    monkeypatch.setattr(tflite, "convert", flaky)
    study = _run(_study_def(("float16",)), splits, tmp_path, 2)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs["fail_reason"] == (
        "ConversionError: TFLite int8 conversion failed: no kernel for op X"
    )
    assert first.user_attrs["failure_kind"] == "conversion_failed"
    assert "retry_of" not in second.user_attrs  # a candidate's own failure is not retried
    assert second.state == optuna.trial.TrialState.COMPLETE


def test_an_infinite_objective_is_never_stored_as_complete(monkeypatch, splits, tmp_path):
    real = pipeline.evaluate_candidate

    def infinite(**kwargs):
        return dataclasses.replace(real(**kwargs), accuracy=float("inf"))

    monkeypatch.setattr(pipeline, "evaluate_candidate", infinite)
    study = _run(_study_def(("float32",)), splits, tmp_path, 1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert "not finite" in trial.user_attrs["fail_reason"]
    assert trial.user_attrs["failure_kind"] == "diverged"


def test_an_unusable_artifact_is_pruned_with_its_reason(splits, tmp_path):
    # one epoch of a tiny model stays well below 99.9%: the artifact is not usable
    definition = dataclasses.replace(_study_def(("float32",)), usable_accuracy=0.999)
    trial = _run(definition, splits, tmp_path, 1).trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert "below the study's usable_accuracy 0.999" in trial.user_attrs["prune_reason"]
    assert not list((tmp_path / "scratch").glob("*"))  # nothing left to export
    assert not list((tmp_path / "store").glob("*"))


def test_completed_trials_keep_their_artifact_only_in_the_store(splits, tmp_path):
    from optuna.artifacts import get_all_artifact_meta

    from objectives.pipeline import sha256_file

    storage = optuna.storages.InMemoryStorage()
    trial = _run(_study_def(("dynamic",)), splits, tmp_path, 1, storage=storage).trials[0]
    metas = get_all_artifact_meta(trial, storage=storage)
    # the artifact, the float Keras model it was converted from (for export's
    # model.keras), and the trial's plot
    assert sorted(m.mimetype for m in metas) == [
        "application/octet-stream", "application/octet-stream", "image/png"]
    stored = tmp_path / "store" / trial.user_attrs["artifact_id"]
    assert sha256_file(stored) == trial.user_attrs["artifact_sha256"]
    float_model = tmp_path / "store" / trial.user_attrs["float_model_id"]
    assert sha256_file(float_model) == trial.user_attrs["float_model_sha256"]
    assert "artifact_path" not in trial.user_attrs  # no machine-local path is recorded
    assert not list((tmp_path / "scratch").glob("*"))
