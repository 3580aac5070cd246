"""The objective inside a real Optuna study: failures are recorded and the study goes on."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from objectives import pipeline, tflite
from optimizer.objective import TRIAL_FAILURES, Objective
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


def _run(objective, n):
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
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
    objective = Objective(study=_study_def(("float16",)), splits=splits, run_dir=tmp_path,
                          seed=0, isolate=False)
    study = _run(objective, 2)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs["fail_reason"] == (
        "ConversionError: TFLite int8 conversion failed: no kernel for op X"
    )
    assert second.state == optuna.trial.TrialState.COMPLETE


def test_an_infinite_objective_is_never_stored_as_complete(monkeypatch, splits, tmp_path):
    real = pipeline.evaluate_candidate

    def infinite(**kwargs):
        return dataclasses.replace(real(**kwargs), accuracy=float("inf"))

    monkeypatch.setattr(pipeline, "evaluate_candidate", infinite)
    objective = Objective(study=_study_def(("float32",)), splits=splits, run_dir=tmp_path,
                          seed=0, isolate=False)
    study = _run(objective, 1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert "not finite" in trial.user_attrs["fail_reason"]


def test_an_unusable_artifact_is_pruned_with_its_reason(splits, tmp_path):
    # one epoch of a tiny model stays well below 99.9%: the artifact is not usable
    definition = dataclasses.replace(_study_def(("float32",)), usable_accuracy=0.999)
    objective = Objective(study=definition, splits=splits, run_dir=tmp_path, seed=0,
                          isolate=False)
    trial = _run(objective, 1).trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert "below the study's usable_accuracy 0.999" in trial.user_attrs["prune_reason"]
    assert not list((tmp_path / "artifacts").glob("*"))  # nothing left to export


def test_completed_trials_upload_artifact_and_plot(splits, tmp_path):
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta

    store_dir = tmp_path / "store"
    store_dir.mkdir()
    objective = Objective(study=_study_def(("dynamic",)), splits=splits, run_dir=tmp_path,
                          seed=0, isolate=False,
                          artifact_store=FileSystemArtifactStore(str(store_dir)))
    study = _run(objective, 1)
    metas = get_all_artifact_meta(study.trials[0], storage=study._storage)
    assert sorted(m.mimetype for m in metas) == ["application/octet-stream", "image/png"]
