"""A study whose children inherit a trained parent distills it: the parent's outputs on
the training split are computed once and shared with every worker; a study stored before
distillation existed resumes without it."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import optuna

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


def _run_distilling(tmp_path: Path, *, n_trials: int) -> tuple[str, Path, str]:
    """(the study file, its run dir, the run's stderr) of a first run of `DISTILLING`."""
    study = tmp_path / "distilling.py"
    study.write_text(DISTILLING)
    run_dir = tmp_path / "run"
    out = run_cli("run", "--study", str(study), "--smoke", "--n-trials", str(n_trials),
                  "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    return str(study), run_dir, out.stderr


def test_an_inheriting_study_distills_its_parent_computed_once(tmp_path):
    study, tmp_path, stderr = _run_distilling(tmp_path, n_trials=2)
    assert "children distill the trained parent's outputs (weight 0.5, temperature 2)" in \
        stderr
    teachers = list((tmp_path / "parent").glob("teacher-*.npy"))
    assert len(teachers) == 1
    record = _study(tmp_path, "digits_distilling-smoke").user_attrs["definition"]
    outputs = np.load(teachers[0])
    assert outputs.shape == (record["splits"]["train"], 10)
    assert record["budget"]["distill_weight"] == 0.5
    stamp = teachers[0].stat().st_mtime_ns
    again = run_cli("run", "--study", study, "--smoke", "--n-trials", "3", "--run-dir",
                    str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    assert teachers[0].stat().st_mtime_ns == stamp  # not computed again


def test_distillation_is_off_by_default(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--init", "inherit", "--n-trials",
                  "1", "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "children distill" not in out.stderr
    assert _study(tmp_path).user_attrs["definition"]["budget"]["distill_weight"] == 0.0


def test_a_study_stored_before_distillation_resumes_without_it(tmp_path):
    study, tmp_path, _ = _run_distilling(tmp_path, n_trials=1)
    with closing(sqlite3.connect(tmp_path / "study.db")) as db:
        (value,) = db.execute("select value_json from study_user_attributes where key = "
                              "'definition'").fetchone()
        record = json.loads(value)
        for key in ("distill_weight", "distill_temperature"):
            del record["budget"][key]  # as a record written before the fields existed
        db.execute("update study_user_attributes set value_json = ? where key = "
                   "'definition'", (json.dumps(record),))
        db.commit()
    again = run_cli("run", "--study", study, "--smoke", "--n-trials", "2", "--run-dir",
                    str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "children distill" not in again.stderr
    assert len(_study(tmp_path, "digits_distilling-smoke").trials) >= 2
