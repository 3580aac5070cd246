"""`--trust-model-code` through the CLI (issue 23): a model file holding Python code is
refused in one line before any of it runs, nothing stored; trusted, the run searches it,
the candidates EPR cannot store each FAIL with a `failure_kind`, and the study goes on (and
resumes); the flag is recorded on the study and a resume must agree with it."""

from __future__ import annotations

import optuna
import pytest

from definitions.attributes import FAIL_REASON_ATTR, FAILURE_KIND_ATTR, RECORD_ATTR
from definitions.errors import UsageError
from tests.conftest import fit_on_digits, run_cli, save_digits_npz
from tests.objectives.test_model_trust import (
    EVAL_ENTRIES,
    marker_model,
    save_marker_model,
    with_activation,
)

FAIL = optuna.trial.TrialState.FAIL
COMPLETE = optuna.trial.TrialState.COMPLETE


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained marker model (`evil.h5`, and the same bytes as `evil_h5.keras`), its
    marker path, and the digits as `digits.npz`."""
    folder = tmp_path_factory.mktemp("trust")
    model = fit_on_digits(marker_model(folder / "marker"), epochs=5)
    save_marker_model(folder, fmt="h5 renamed .keras", model=model)
    save_digits_npz(folder / "digits.npz")
    return folder


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def _assert_refused(out, marker) -> None:
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    (line,) = _error_lines(out.stderr)
    assert "holds Python code in layer 'evil' (Lambda); it would run when loaded" in line
    assert line.endswith("Pass --trust-model-code if you trust this file, or rebuild the "
                         "model without Lambda layers")
    assert not marker.exists(), "the model's code ran"


def test_run_refuses_a_model_holding_code_and_stores_nothing(files, tmp_path):
    (files / "marker").unlink(missing_ok=True)
    out = run_cli("run", "--model", str(files / "evil.h5"), "--data",
                  str(files / "digits.npz"), "--smoke", "--run-dir", str(tmp_path / "run"))
    _assert_refused(out, files / "marker")
    assert not (tmp_path / "run" / "study.db").exists()


@pytest.mark.parametrize("name", ["evil.h5", "evil_h5.keras"])
def test_inspect_refuses_a_model_holding_code_whatever_its_suffix(files, name):
    (files / "marker").unlink(missing_ok=True)
    out = run_cli("inspect", "--model", str(files / name), "--no-device")
    _assert_refused(out, files / "marker")


def test_inspect_refuses_a_model_naming_builtins_eval_in_one_line(tmp_path):
    """Issue 31: a `.keras` file edited to name Python's `eval` is refused by the tool,
    not left to Keras."""
    import tensorflow as tf

    inputs = tf.keras.Input((4,))
    tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="out")(inputs)).save(
        tmp_path / "plain.keras")
    marker = tmp_path / "marker"
    with_activation(tmp_path / "plain.keras", tmp_path / "evil.keras",
                    EVAL_ENTRIES["class"](marker))
    out = run_cli("inspect", "--model", str(tmp_path / "evil.keras"), "--no-device")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    (line,) = _error_lines(out.stderr)
    assert "evil.keras holds Python code in layer 'out' (eval from module builtins)" in line
    assert not marker.exists()


@pytest.fixture(scope="module")
def trusted_run(files):
    run_dir = files / "trusted"
    out = run_cli("run", "--model", str(files / "evil.h5"), "--data",
                  str(files / "digits.npz"), "--smoke", "--run-dir", str(run_dir),
                  "--trust-model-code")
    return run_dir, out


def _study(run_dir) -> optuna.Study:
    return optuna.load_study(study_name="evil-smoke", storage=f"sqlite:///{run_dir}/study.db")


def test_a_trusted_run_fails_each_candidate_epr_cannot_store_and_goes_on(trusted_run):
    run_dir, out = trusted_run
    assert out.returncode == 0, out.stderr[-3000:]  # trial 0 (float32, no EPR) completes
    assert "Traceback" not in out.stderr
    study = _study(run_dir)
    failed = [t for t in study.trials if t.state == FAIL]
    assert failed and [t for t in study.trials if t.state == COMPLETE]
    for trial in failed:  # the smoke reference points with EPR: refused before training
        assert trial.params["epr_lambda"] > 0
        assert trial.user_attrs[FAILURE_KIND_ATTR] == "epr_failed"
        assert trial.user_attrs[FAIL_REASON_ATTR].startswith(
            "EPRError: EPR cannot store model 'marked': layer 'evil' (Lambda) holds Python code")
    assert study.user_attrs[RECORD_ATTR]["trust_model_code"] is True


def test_a_trusted_study_resumes_only_with_the_flag(files, trusted_run):
    run_dir, _ = trusted_run
    before = len(_study(run_dir).trials)
    common = ("run", "--model", str(files / "evil.h5"), "--data", str(files / "digits.npz"),
              "--smoke", "--run-dir", str(run_dir), "--n-trials", str(before + 1))
    (files / "marker").unlink(missing_ok=True)
    _assert_refused(run_cli(*common), files / "marker")
    assert len(_study(run_dir).trials) == before
    out = run_cli(*common, "--trust-model-code")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert len(_study(run_dir).trials) == before + 1


def test_a_resume_must_trust_as_the_study_was_created():
    from optimizer.store.record import RECORD_VERSION, check_record

    study = optuna.create_study()
    older = {"version": RECORD_VERSION, "dataset": "d"}  # made before the flag existed
    study.set_user_attr(RECORD_ATTR, older)
    check_record(study, {**older, "trust_model_code": False})  # an older record: False
    with pytest.raises(UsageError, match=r"it was created without --trust-model-code, but "
                       r"now it would run with it; pass --trust-model-code exactly as when"):
        check_record(study, {**older, "trust_model_code": True})
