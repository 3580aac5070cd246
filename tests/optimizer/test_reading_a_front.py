"""What a user needs to read a front: a hypermodel's `hp_*` values in the progress lines,
`pareto` (table, JSON, CSV) and trials.csv; an image folder's class names, logged once and
recorded; a warning for a small validation split; and a study found nowhere says where it
was looked for."""

from __future__ import annotations

import csv
import io
import json
import logging

import numpy as np
import optuna
import pandas as pd
import pytest

from objectives.parent import ParentInfo
from optimizer.commands.cli import main
from optimizer.commands.pareto import COLUMNS, TABLE_COLUMNS, format_front, front_rows
from optimizer.commands.report import trials_frame
from optimizer.engine.data import load_data
from optimizer.engine.parents import SearchParent
from optimizer.engine.progress import Progress as _Progress
from optimizer.store.record import check_record, make_record, write_record
from studies.base import Budget, Study
from studies.datasets import MIN_VALIDATION_PER_CLASS, Splits, load_dataset
from studies.references import ParentSource
from studies.user_data import load_user_data
from tests.conftest import run_cli, save_digits_npz
from tests.optimizer.test_user_models import HYPERMODEL_STUDY

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

CANDIDATE = {"width": 0.5, "factorize": [], "epr_lambda": 2.0, "quantization": "epr"}
#: (accuracy, payload, hypermodel values): three front members, by payload; the middle
#: one has the conditional `hp_filters_2` inactive, the last has a float.
MEMBERS = [
    (0.90, 5_000, {"hp_filters": 8, "hp_second": True, "hp_filters_2": 12}),
    (0.93, 9_000, {"hp_filters": 16, "hp_second": False}),
    (0.95, 20_000, {"hp_filters": 16, "hp_second": True, "hp_filters_2": 8,
                    "hp_lr": 0.00123456}),
]
DISTRIBUTIONS = {"hp_filters": optuna.distributions.IntDistribution(8, 16, step=8),
                 "hp_second": optuna.distributions.CategoricalDistribution([False, True])}


def _hypermodel_study() -> optuna.Study:
    """An in-memory study as a hypermodel run stores it, with one trial whose build
    failed before its candidate was recorded (its values are in its params only)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "payload_bytes"])
    for accuracy, payload, hp in MEMBERS:
        study.add_trial(optuna.trial.create_trial(
            values=[accuracy, payload],
            user_attrs={"candidate": {**CANDIDATE, "hypermodel": hp}, "payload_bytes": payload,
                        "artifact_bytes": payload + 100}))
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"hp_filters": 8, "hp_second": False},
        distributions=DISTRIBUTIONS, user_attrs={"fail_reason": "HypermodelError: boom"}))
    return study


HP = ["hp_filters", "hp_second", "hp_filters_2", "hp_lr"]


def test_json_rows_carry_every_hp_value_exactly_and_none_where_inactive():
    rows = json.loads(format_front(front_rows(_hypermodel_study()), "json"))
    assert [r["hp_filters"] for r in rows] == [8, 16, 16]
    assert [r["hp_filters_2"] for r in rows] == [12, None, 8]
    assert [r["hp_lr"] for r in rows] == [None, None, 0.00123456]
    assert all(list(r)[-len(HP):] == HP for r in rows)  # after the compression axes


def test_csv_has_one_hp_column_per_hyperparameter_after_the_fixed_ones():
    text = format_front(front_rows(_hypermodel_study()), "csv")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == [*COLUMNS, *HP]
    rows = list(reader)
    assert [r["hp_second"] for r in rows] == ["True", "False", "True"]
    assert [r["hp_filters_2"] for r in rows] == ["12", "", "8"]


def test_table_shows_hp_columns_with_floats_to_three_digits():
    lines = format_front(front_rows(_hypermodel_study()), "table").splitlines()
    assert lines[0].split() == [*TABLE_COLUMNS, *HP]
    assert lines[-1].split()[-4:] == ["16", "True", "8", "0.00123"]


def test_a_study_without_a_hypermodel_has_no_hp_column():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(
        values=[0.9, 1000], user_attrs={"candidate": CANDIDATE, "payload_bytes": 1000}))
    reader = csv.DictReader(io.StringIO(format_front(front_rows(study), "csv")))
    assert reader.fieldnames == list(COLUMNS)
    assert format_front(front_rows(study), "table").splitlines()[0].split() == \
        list(TABLE_COLUMNS)


def test_trials_csv_has_hp_columns_after_quantization_for_every_trial():
    frame = trials_frame(_hypermodel_study())
    columns = list(frame.columns)
    at = columns.index("quantization") + 1
    assert columns[at:at + len(HP)] == HP
    assert frame["hp_filters"].tolist() == [8, 16, 16, 8]  # the failed build's from params
    assert frame["hp_second"].tolist() == [True, False, True, False]
    assert pd.isna(frame["hp_filters_2"][1]) and frame["hp_filters_2"][2] == 8


def test_a_progress_line_names_the_hypermodel_values(capsys):
    study = _hypermodel_study()
    progress = _Progress(len(study.trials), bar=False)
    for trial in study.trials:
        progress(study, trial)
    lines = capsys.readouterr().err.splitlines()
    assert "quantization=epr hp_filters=16 hp_second=True hp_filters_2=8 hp_lr=0.00123 " \
        "accuracy=0.9500" in lines[2]
    assert "trial 3 FAIL" in lines[3] and "hp_filters=8 hp_second=False" in lines[3]
    assert "HypermodelError: boom" in lines[3]


# --- a study found nowhere -------------------------------------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_pareto_from_another_folder_says_which_run_dir_it_looked_in(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pareto", "--study", "mine"]) == 2
    line = _one_error_line(capsys)
    here = tmp_path.resolve()
    assert line.startswith("optimizer pareto: error: unknown study 'mine'")
    assert f"looked for {here / 'runs' / 'mine' / 'study.db'}" in line
    assert f"the default --run-dir runs/mine in the current folder {here}" in line
    assert "--run-dir or --storage the study was run with" in line
    assert main(["pareto", "--study", "mine", "--smoke", "--run-dir", "elsewhere"]) == 2
    line = _one_error_line(capsys)
    assert f"no stored study 'mine-smoke' either: looked for {here / 'elsewhere' / 'study.db'}" \
        f" (--run-dir elsewhere)" in line


def test_a_registered_study_never_run_here_names_the_absolute_storage(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pareto", "--study", "digits"]) == 2
    line = _one_error_line(capsys)
    assert f"no study storage at {tmp_path.resolve() / 'runs' / 'digits' / 'study.db'}" in line


# --- class names and the validation split -----------------------------------------------


def _write_pngs(folder, images) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")


def test_a_driver_reads_an_image_folder_without_importing_tensorflow(tmp_path):
    """Keras decodes the folder in a child of its own, so that `run`'s driver stays
    without TensorFlow and forks its workers with the data (issue 24); the splits are
    the ones read in the driver itself."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    rng = np.random.default_rng(0)
    for name in ("dog", "cat"):
        _write_pngs(tmp_path / "images" / name, rng.integers(0, 256, (30, 6, 6), dtype=np.uint8))
    code = (
        "import sys\n"
        "from optimizer.engine.data import load_data\n"
        f"s = load_data(dataset='user', data={str(tmp_path / 'images')!r}, data_dir=None,\n"
        "              split_seed=3, warn=False)\n"
        "print('tensorflow' in sys.modules, s.class_names, s.fingerprints()['data'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    here = load_data(dataset="user", data=str(tmp_path / "images"), data_dir=None,
                     split_seed=3, warn=False)
    assert out.stdout.split() == ["False", "('cat',", "'dog')", here.fingerprints()["data"]]


def test_an_image_folder_names_its_classes_once_in_label_order(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name in ("emu", "cat", "dog"):
        _write_pngs(tmp_path / "images" / name, rng.integers(0, 256, (4, 6, 6), dtype=np.uint8))
    with caplog.at_level(logging.INFO, logger="studies"):
        splits = load_user_data(tmp_path / "images")
    assert splits.class_names == ("cat", "dog", "emu")
    named = [r.getMessage() for r in caplog.records if r.getMessage().startswith("classes:")]
    assert named == ["classes: 0=cat, 1=dog, 2=emu"]


def test_built_in_datasets_name_their_classes_and_an_npz_names_none(tmp_path):
    assert load_dataset("digits").class_names == tuple("0123456789")
    x = np.zeros((30, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(30) % 3)
    assert load_user_data(tmp_path / "d.npz").class_names is None


def _splits(y_val: np.ndarray, *, names=None) -> Splits:
    x = np.zeros((len(y_val), 2, 2, 1), np.float32)
    return Splits(x_train=x, y_train=y_val, x_val=x, y_val=y_val, x_test=x, y_test=y_val,
                  source="test", split_seed=0, num_classes=3, class_names=names)


def test_the_study_record_keeps_the_class_names_and_an_older_record_still_loads():
    splits = _splits(np.arange(60) % 3, names=("cat", "dog", "emu"))
    study = Study(name="pets", model="m:build", data="images", budget=Budget(
        epochs=1, batch_size=8, n_trials=1))
    parent = SearchParent(ParentSource(kind="function", target="m:build"),
                          ParentInfo(name="m", outputs="logits"))
    record = make_record(study=study, splits=splits, parent=parent)
    assert record["class_names"] == ["cat", "dog", "emu"]
    stored = optuna.create_study(directions=["maximize", "minimize"])
    write_record(stored, {k: v for k, v in record.items() if k != "class_names"})
    check_record(stored, record)  # a record made before the key existed: no refusal
    renamed = make_record(study=study, parent=parent,
                          splits=_splits(np.arange(60) % 3, names=("a", "b", "c")))
    check_record(stored, renamed)  # renamed class folders hold the same data


def test_a_validation_split_under_20_per_class_is_warned_of_with_its_smallest_class():
    enough = np.repeat(np.arange(3), MIN_VALIDATION_PER_CLASS)
    assert _splits(enough).small_validation() is None
    short = np.delete(enough, [0, 1, 2])  # class 0: 17 left; 19.0 per class on average
    warning = _splits(short, names=("cat", "dog", "emu")).small_validation()
    assert warning.startswith("the validation split has 19.0 examples per class on average "
                              "(fewest: 17, class 0 ('cat')), under 20")


def test_run_loads_its_data_with_the_warning_and_export_without(tmp_path, caplog):
    x = np.zeros((60, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(60) % 3)
    with caplog.at_level(logging.WARNING, logger="optimizer"):
        load_data(dataset="", data=str(tmp_path / "d.npz"), data_dir=None, split_seed=0)
        load_data(dataset="", data=str(tmp_path / "d.npz"), data_dir=None, split_seed=0,
                  warn=False)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # 60 images, 12 held out for test, 10% of the other 16 per class for validation: 2
    assert len(warned) == 1 and "(fewest: 2, class 0)" in warned[0], warned


# --- through the CLI --------------------------------------------------------------------


@pytest.fixture(scope="module")
def hypermodel_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tuned")
    save_digits_npz(folder / "digits.npz")
    (folder / "tuned_study.py").write_text(HYPERMODEL_STUDY)
    run_dir = folder / "run"
    out = run_cli("run", "--study", str(folder / "tuned_study.py"), "--run-dir", str(run_dir),
                  cwd=folder)
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="tuned", storage=f"sqlite:///{run_dir}/study.db")
    return folder, run_dir, out, study


def test_a_hypermodel_runs_progress_lines_name_each_trials_hp_values(hypermodel_run):
    _, _, out, study = hypermodel_run
    for trial in study.trials:
        hp = " ".join(f"{k}={v}" for k, v in trial.params.items() if k.startswith("hp_"))
        line = next(li for li in out.stderr.splitlines() if f"trial {trial.number} " in li)
        assert hp and hp in line, (hp, line)


def test_a_hypermodel_runs_pareto_and_trials_csv_carry_the_hp_values(hypermodel_run):
    folder, run_dir, _, study = hypermodel_run
    params = {t.number: t.params for t in study.trials}
    common = ("--study", str(folder / "tuned_study.py"), "--run-dir", str(run_dir))
    out = run_cli("pareto", *common, "--format", "csv", cwd=folder)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert rows and {"hp_filters", "hp_second"} <= set(rows[0])
    for row in rows:
        assert int(row["hp_filters"]) == params[int(row["trial"])]["hp_filters"]
        assert row["hp_second"] == str(params[int(row["trial"])]["hp_second"])
    out = run_cli("pareto", *common, "--format", "json", cwd=folder)
    for row in json.loads(out.stdout):
        assert row["hp_filters"] == params[row["trial"]]["hp_filters"]
    out = run_cli("pareto", *common, cwd=folder)
    assert {"hp_filters", "hp_second"} <= set(out.stdout.splitlines()[0].split())
    out = run_cli("report", *common, "--out", str(folder / "report"), cwd=folder)
    assert out.returncode == 0, out.stderr[-2000:]
    frame = pd.read_csv(folder / "report" / "trials.csv")
    assert frame["hp_filters"].tolist() == [params[n]["hp_filters"] for n in frame["trial"]]
    assert study.user_attrs["definition"]["class_names"] is None  # an npz names none


FOLDER_STUDY = '''
import tensorflow as tf

from studies import Budget, Study


def build():
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = tf.keras.layers.Flatten()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="logits")(x))


STUDY = Study(name="pets", model=build, data="images",
              budget=Budget(epochs=1, batch_size=16, n_trials=1),
              quantization_modes=("float32",), usable_accuracy=0.0)
'''


def test_a_run_on_an_image_folder_prints_and_records_its_classes(tmp_path):
    rng = np.random.default_rng(0)
    for name, low in (("dog", 160), ("cat", 0)):  # 30 images each: 6 test, 2 validation
        _write_pngs(tmp_path / "images" / name,
                    rng.integers(low, low + 96, (30, 8, 8), dtype=np.uint8))
    (tmp_path / "pets.py").write_text(FOLDER_STUDY)
    run_dir = tmp_path / "run"
    out = run_cli("run", "--study", str(tmp_path / "pets.py"), "--run-dir", str(run_dir),
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    (named,) = [li for li in lines if "classes:" in li]
    assert named.endswith("classes: 0=cat, 1=dog")
    small = [li for li in lines if "WARNING the validation split has" in li]
    assert len(small) == 1 and "2.0 examples per class on average (fewest: 2" in small[0]
    study = optuna.load_study(study_name="pets", storage=f"sqlite:///{run_dir}/study.db")
    assert study.user_attrs["definition"]["class_names"] == ["cat", "dog"]
