"""The typed stored trial (`optimizer.store.trial.StoredTrial`): every attribute a trial
writes is one of its fields, read back as written; a value of a form this tool never
writes is refused in one line naming the trial and the attribute, and a command reading
it ends with exit 2 and no traceback, the study unchanged."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from dataclasses import fields
from pathlib import Path

import optuna
import pytest

from optimizer.store.trial import StoredTrial, StoredValueError
from search_spaces.candidate import Candidate
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A run dir holding the digits smoke study (3 trials: 2 complete, 1 pruned)."""
    run_dir = tmp_path_factory.mktemp("typed") / "digits"
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr[-2000:]
    return run_dir


def _trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="digits-smoke",
                              storage=f"sqlite:///{run_dir / 'study.db'}")
    return study.get_trials(deepcopy=False)


def _stored_names() -> set[str]:
    return {f.metadata.get("stored_as") or f.name for f in fields(StoredTrial)
            if "form" in f.metadata}


def test_every_attribute_a_trial_writes_is_a_field_read_back_as_written(stored):
    trials = _trials(stored)
    written = {name for t in trials for name in t.user_attrs}
    assert written - _stored_names() == set()
    for t in trials:
        typed = StoredTrial.from_trial(t)
        for f in fields(StoredTrial):
            name = f.metadata.get("stored_as") or f.name
            if "form" in f.metadata and f.metadata["form"] != "candidate":
                assert getattr(typed, f.name) == t.user_attrs.get(name), (t.number, name)
        assert typed.candidate == Candidate(**{k: v for k, v in t.user_attrs[
            "candidate"].items()})
        assert typed.quantization == t.user_attrs["candidate"]["quantization"]
    complete = [StoredTrial.from_trial(t) for t in trials if t.state.name == "COMPLETE"]
    assert all(isinstance(s.payload_bytes, int) and s.payload_bytes > 0 for s in complete)
    assert all(s.reference_point for s in complete)  # the smoke study's reference points


def test_a_marked_trial_keeps_its_full_budget_marks():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.5, 10.0], user_attrs={
        "extends": 3, "retry_of": 1}))
    typed = StoredTrial.from_trial(study.trials[0])
    assert typed.full_budget_marks() == {"extends": 3}
    assert typed.full_budget and typed.retry_of == 1 and typed.finalist_of is None


@pytest.mark.parametrize(("attr", "value", "expected"), [
    ("payload_bytes", "12 KB", "expected a whole number"),
    ("latency_ms", [1, 2], "expected a number"),
    ("candidate", {"width": "wide", "quantization": "epr"}, "expected a candidate"),
    ("candidate", {"width": 1.0, "factorize": [], "epr_lambda": 0.0,
                   "quantization": "epr"}, "expected a candidate"),
    ("extends", True, "expected a whole number"),
])
def test_a_value_of_the_wrong_form_is_refused_naming_trial_and_attribute(attr, value,
                                                                          expected):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.5, 10.0], user_attrs={attr: value}))
    with pytest.raises(StoredValueError) as refused:
        StoredTrial.from_trial(study.trials[0])
    message = str(refused.value)
    assert message.startswith(f"trial 0's stored attribute {attr!r} is ")
    assert expected in message and "\n" not in message


def _tamper(run_dir: Path, *, number: int, attr: str, value: object, raw: bool = False
            ) -> None:
    """Writes `value` as trial `number`'s `attr` straight into the database, as something
    other than this tool would."""
    with closing(sqlite3.connect(run_dir / "study.db")) as db:
        db.execute(
            "update trial_user_attributes set value_json = ? where key = ? and trial_id = "
            "(select trial_id from trials where number = ?)",
            (value if raw else json.dumps(value), attr, number))
        db.commit()


@pytest.mark.parametrize("command", [["pareto"], ["report"], ["export", "--trial", "1"]])
def test_a_tampered_value_ends_a_reading_command_in_one_line_with_exit_2(stored, tmp_path,
                                                                         command):
    run_dir = tmp_path / "digits"
    shutil.copytree(stored, run_dir)
    _tamper(run_dir, number=1, attr="payload_bytes", value=[3404])
    before = (run_dir / "study.db").read_bytes()
    out = run_cli(*command, "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                  *(["--out", str(tmp_path / "out")] if command[0] != "pareto" else []))
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert ("trial 1's stored attribute 'payload_bytes' is [3404] (list); expected a whole "
            "number") in out.stderr
    assert (run_dir / "study.db").read_bytes() == before


@pytest.mark.parametrize("command", [["pareto"], ["report"], ["export", "--trial", "1"],
                                     ["run"]])
def test_a_value_that_is_not_json_is_one_line_naming_trial_and_attribute(stored, tmp_path,
                                                                         command):
    run_dir = tmp_path / "digits"
    shutil.copytree(stored, run_dir)
    _tamper(run_dir, number=1, attr="payload_bytes", value="{not json", raw=True)
    before = (run_dir / "study.db").read_bytes()
    out = run_cli(*command, "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                  *(["--out", str(tmp_path / "out")] if command[0] in ("report", "export")
                    else []))
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2
    assert "holds trial 1's 'payload_bytes' ('{not json'), not JSON" in out.stderr
    assert (run_dir / "study.db").read_bytes() == before
