"""A stored study is data: no command that reads one imports Python code its record names.

One module-scoped CLI run of `run --model tiny.keras --data digits.npz --smoke` (2 trials,
about a minute); each test works on a copy of its run dir whose record is then tampered
with through Optuna's public API, the way someone handing over a `study.db` could: the
record names a `loader.py:load` (and a study file) written here, which leave a marker file
when imported and when called. `export`, `report`, `pareto`, `dashboard` and
`run --study NAME` must then import nothing (no marker); naming the reference again on the
command line runs it (the marker appears, so the tests would see execution). A trial's
`artifact_id` edited in the database is one line, exit 2, and nothing outside the
artifact store is read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest

from tests.conftest import fit_on_digits, run_cli, save_digits_npz

NAME = "mine-smoke"
LOADER = '''
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
(HERE / "imported").touch()


def load():
    (HERE / "called").touch()
    with np.load(HERE / "digits.npz") as archive:
        return dict(archive)


def build():
    (HERE / "called").touch()
    raise RuntimeError("a model function a tampered record names")
'''
STUDY_FILE = '''
from pathlib import Path

(Path(__file__).parent / "imported").touch()
'''


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A folder with `tiny.keras`, `digits.npz` and `run/` (the 2-trial smoke study)."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("stored")
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)),
        tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    fit_on_digits(model, epochs=20).save(folder / "tiny.keras")
    save_digits_npz(folder / "digits.npz")
    out = run_cli("run", "--model", str(folder / "tiny.keras"), "--data",
                  str(folder / "digits.npz"), "--name", "mine", "--smoke", "--n-trials", "2",
                  "--run-dir", str(folder / "run"))
    assert out.returncode == 0, out.stderr[-3000:]
    return folder


@pytest.fixture
def copy(stored, tmp_path) -> Path:
    """A copy of the stored run dir, beside the loader and study file a tampered record
    may name (and the digits, which the loader returns)."""
    shutil.copytree(stored / "run", tmp_path / "run")
    shutil.copy(stored / "digits.npz", tmp_path / "digits.npz")
    (tmp_path / "loader.py").write_text(LOADER)
    (tmp_path / "evil_study.py").write_text(STUDY_FILE)
    return tmp_path


def _study(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=f"sqlite:///{run_dir}/study.db")


def _tamper(run_dir: Path, **changes) -> None:
    """The study's `definition` record with `changes`, written back as a user attribute."""
    study = _study(run_dir)
    study.set_user_attr("definition", {**study.user_attrs["definition"], **changes})


def _loader(folder: Path, attr: str = "load") -> str:
    return f"{folder / 'loader.py'}:{attr}"


def _markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name in ("imported", "called"))


def _one_line_error(out, command: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"optimizer {command}: error: "), lines
    assert "Traceback" not in out.stderr
    return lines[0]


def _first_complete(run_dir: Path) -> int:
    return next(t.number for t in _study(run_dir).trials
                if t.state == optuna.trial.TrialState.COMPLETE)


def _export(folder: Path, *extra: str):
    return run_cli("export", "--study", "mine", "--smoke", "--run-dir", str(folder / "run"),
                   "--trial", str(_first_complete(folder / "run")), "--out",
                   str(folder / "out"), *extra)


def test_export_refuses_a_loader_the_record_names_and_imports_nothing(copy):
    _tamper(copy / "run", data_reference=_loader(copy))
    before = (copy / "run" / "study.db").read_bytes()
    line = _one_line_error(_export(copy), "export")
    assert _loader(copy) in line and f"--data {_loader(copy)}" in line
    assert _markers(copy) == []
    assert not list((copy / "out").glob("model*"))
    assert (copy / "run" / "study.db").read_bytes() == before


def test_export_runs_the_loader_named_again_with_data(copy):
    _tamper(copy / "run", data_reference=_loader(copy))
    out = _export(copy, "--data", _loader(copy))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "(matches the record)" in out.stdout
    assert _markers(copy) == ["called", "imported"]  # the test sees execution when it happens


def test_export_refuses_a_data_reference_other_than_the_recorded_one(copy):
    _tamper(copy / "run", data_reference=_loader(copy))
    other = _loader(copy, "build")
    line = _one_line_error(_export(copy, "--data", other), "export")
    assert _loader(copy) in line and other in line
    assert _markers(copy) == []


@pytest.mark.parametrize("what", ["data loader", "model function", "study"])
def test_resuming_by_name_imports_nothing_the_record_names(copy, what):
    record = _study(copy / "run").user_attrs["definition"]
    origin = record["origin"]
    if what == "data loader":
        reference = _loader(copy)
        changes = {"origin": {**origin, "data": reference}, "data_reference": reference}
    elif what == "model function":
        reference = _loader(copy, "build")
        changes = {"origin": {**origin, "model": reference}}
    else:
        reference = str(copy / "evil_study.py")
        changes = {"origin": {"kind": "reference", "reference": reference}}
    _tamper(copy / "run", **changes)
    before = (copy / "run" / "study.db").read_bytes()
    out = run_cli("run", "--study", "mine", "--smoke", "--n-trials", "3", "--run-dir",
                  str(copy / "run"))
    line = _one_line_error(out, "run")
    assert f"{what} {reference}" in line
    assert ("--study " if what == "study" else "--model ") in line  # how to allow it
    assert _markers(copy) == []
    assert (copy / "run" / "study.db").read_bytes() == before


def test_resuming_with_the_loader_named_again_runs_it(copy, stored):
    reference = _loader(copy)
    origin = _study(copy / "run").user_attrs["definition"]["origin"]
    _tamper(copy / "run", origin={**origin, "data": reference}, data_reference=reference)
    out = run_cli("run", "--model", str(stored / "tiny.keras"), "--data", reference,
                  "--name", "mine", "--smoke", "--n-trials", "2", "--run-dir",
                  str(copy / "run"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert _markers(copy) == ["called", "imported"]


def test_reading_trials_needs_no_code(copy):
    """`pareto`, `report` and `dashboard` read the trials; none imports what the record
    names, whatever it names."""
    _tamper(copy / "run", data_reference=_loader(copy),
            origin={"kind": "reference", "reference": str(copy / "evil_study.py")})
    common = ("--study", "mine", "--smoke", "--run-dir", str(copy / "run"))
    pareto = run_cli("pareto", *common, "--format", "json")
    assert pareto.returncode == 0, pareto.stderr[-3000:]
    assert json.loads(pareto.stdout)
    report = run_cli("report", *common, "--out", str(copy / "report"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (copy / "report" / "trials.csv").is_file()
    # the study is read, then the port refused: no server left running
    dashboard = run_cli("dashboard", *common, "--port", "0")
    assert "--port 0" in _one_line_error(dashboard, "dashboard")
    assert _markers(copy) == []


def _set_trial_attr(run_dir: Path, number: int, key: str, value) -> None:
    """Edits a finished trial's user attribute in the database itself (Optuna's API does
    not change finished trials)."""
    with sqlite3.connect(run_dir / "study.db") as db:
        changed = db.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE key = ? AND trial_id = "
            "(SELECT trial_id FROM trials WHERE number = ?)",
            (json.dumps(value), key, number)).rowcount
    assert changed == 1


#: An id no Optuna upload writes (they are UUIDs), but a store file it could name.
ESCAPE = "00000000-0000-4000-8000-00000000e5ca"


@pytest.mark.parametrize("artifact_id", [
    "../secret.tflite", "../../secret.tflite", "ABSOLUTE", ".", 12345, ESCAPE,
])
def test_a_tampered_artifact_id_is_one_line_and_reads_nothing_outside_the_store(
        copy, artifact_id):
    run_dir = copy / "run"
    number = _first_complete(run_dir)
    # files outside the store that the edited record vouches for: read, they would pass
    secret = b"not an artifact of this study"
    for place in (run_dir / "secret.tflite", copy / "secret.tflite"):
        place.write_bytes(secret)
    if artifact_id == "ABSOLUTE":
        artifact_id = str(copy / "secret.tflite")
    if artifact_id == ESCAPE:  # a well-formed id whose file in the store leads out of it
        (run_dir / "artifact-store" / ESCAPE).symlink_to(copy / "secret.tflite")
    _set_trial_attr(run_dir, number, "artifact_id", artifact_id)
    _set_trial_attr(run_dir, number, "artifact_sha256", hashlib.sha256(secret).hexdigest())
    line = _one_line_error(_export(copy), "export")
    assert f"trial {number}" in line and "artifact" in line
    assert not list((copy / "out").glob("model*"))


def test_a_record_naming_files_only_resumes_by_name(copy):
    """Files are data: the untampered study (a saved model, an .npz) resumes by name."""
    out = run_cli("run", "--study", "mine", "--smoke", "--n-trials", "2", "--run-dir",
                  str(copy / "run"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert _markers(copy) == []
