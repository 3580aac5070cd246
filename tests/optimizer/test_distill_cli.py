"""A study whose children inherit a trained parent distills it: the parent's outputs on
the training split are computed once and shared with every worker; a study stored before
distillation existed resumes without it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import optuna
import pytest

from studies import STUDIES
from studies.base import Budget
from tests.conftest import run_cli


def _study(run_dir: Path, name: str = "digits-smoke") -> optuna.Study:
    return optuna.load_study(study_name=name,
                             storage=f"sqlite:///{run_dir / 'study.db'}")


#: digits with a trained parent that its children distill (off by default)
DISTILLING = """
from dataclasses import replace

from studies import get_study

_DIGITS = get_study("digits")
STUDY = replace(_DIGITS, name="digits_distilling", init="inherit",
                smoke=replace(_DIGITS.smoke, distill_weight=0.5))
"""


@pytest.fixture(scope="module")
def distilled(tmp_path_factory) -> tuple[str, Path, str]:
    """(the study file, its run dir, the run's stderr) of a 2-trial run of `DISTILLING`
    (copied by the tests that change it)."""
    tmp_path = tmp_path_factory.mktemp("distilling")
    study = tmp_path / "distilling.py"
    study.write_text(DISTILLING)
    run_dir = tmp_path / "run"
    out = run_cli("run", "--study", str(study), "--smoke", "--n-trials", "2", "--run-dir",
                  str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    return str(study), run_dir, out.stderr


def test_an_inheriting_study_distills_its_parent_computed_once(distilled, tmp_path):
    study, stored, stderr = distilled
    assert "children distill the trained parent's outputs (weight 0.5, temperature 2)" in \
        stderr
    teachers = list((stored / "parent").glob("teacher-*.npy"))
    assert len(teachers) == 1
    record = _study(stored, "digits_distilling-smoke").user_attrs["definition"]
    outputs = np.load(teachers[0])
    assert outputs.shape == (record["splits"]["train"], 10)
    assert record["budget"]["distill_weight"] == 0.5
    run_dir = tmp_path / "run"
    shutil.copytree(stored, run_dir)
    teacher = run_dir / "parent" / teachers[0].name
    stamp = teacher.stat().st_mtime_ns
    again = run_cli("run", "--study", study, "--smoke", "--n-trials", "3", "--run-dir",
                    str(run_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert teacher.stat().st_mtime_ns == stamp  # not computed again


def test_distillation_is_off_by_default():
    assert Budget(epochs=1, batch_size=1, n_trials=1).distill_weight == 0.0
    for study in STUDIES.values():
        assert study.budget.distill_weight == 0.0 and study.smoke.distill_weight == 0.0


def test_a_study_stored_before_distillation_resumes_without_it(distilled, tmp_path):
    study, stored, _ = distilled
    run_dir = tmp_path / "run"
    shutil.copytree(stored, run_dir)
    with closing(sqlite3.connect(run_dir / "study.db")) as db:
        (value,) = db.execute("select value_json from study_user_attributes where key = "
                              "'definition'").fetchone()
        record = json.loads(value)
        for key in ("distill_weight", "distill_temperature"):
            del record["budget"][key]  # as a record written before the fields existed
        db.execute("update study_user_attributes set value_json = ? where key = "
                   "'definition'", (json.dumps(record),))
        db.commit()
    again = run_cli("run", "--study", study, "--smoke", "--n-trials", "3", "--run-dir",
                    str(run_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "children distill" not in again.stderr
    assert len(_study(run_dir, "digits_distilling-smoke").trials) >= 3
