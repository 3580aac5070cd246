"""Test scoring keeps TensorFlow's "triggered tf.function retracing" warnings (several
decoded EPR models predicted one after another) off the terminal unless `--verbose`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import optuna
import pytest

from optimizer.engine import scoring
from optimizer.engine.scoring import score_front_on_test, tensorflow_warnings_held_back
from studies.datasets import Splits
from tests.conftest import ROOT

RETRACING = ("5 out of the last 5 calls to <function Model.make_predict_function.<locals>."
             "predict_function at 0x7f00> triggered tf.function retracing.")


def _tensorflow_records(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "tensorflow"]


@pytest.fixture
def tf_logger():
    logger = logging.getLogger("tensorflow")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_tensorflow_warnings_are_held_back_and_the_level_restored(caplog, tf_logger):
    caplog.set_level(logging.WARNING)
    tf_logger.setLevel(logging.NOTSET)
    with tensorflow_warnings_held_back():
        tf_logger.warning(RETRACING)
        tf_logger.error("an error still shows")
    assert _tensorflow_records(caplog) == ["an error still shows"]
    assert tf_logger.level == logging.NOTSET
    tf_logger.warning(RETRACING)
    assert _tensorflow_records(caplog)[-1] == RETRACING


def test_verbose_keeps_tensorflow_warnings(caplog, tf_logger):
    caplog.set_level(logging.WARNING)
    caplog.set_level(logging.DEBUG, logger="optimizer")  # as the CLI's --verbose sets it
    with tensorflow_warnings_held_back():
        tf_logger.warning(RETRACING)
    assert _tensorflow_records(caplog) == [RETRACING]


def _splits():
    x, y = np.zeros((6, 8, 8, 1), np.float32), np.arange(6) % 3
    return Splits(x, y, x, y, x, y, source="test", split_seed=0, num_classes=3)


def test_scoring_several_epr_members_logs_no_tensorflow_warning(caplog, tmp_path,
                                                                monkeypatch):
    caplog.set_level(logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, size in ((0.9, 3000), (0.8, 2000), (0.7, 1000)):  # all on the front
        study.add_trial(optuna.trial.create_trial(
            values=[accuracy, size], user_attrs={"candidate": {"quantization": "epr"}}))
    evaluated = []

    def evaluate_artifact(path, *, quantization, x, y):
        evaluated.append((path.name, quantization))
        logging.getLogger("tensorflow").warning(RETRACING)  # as Model.predict does
        return 0.5

    monkeypatch.setattr(scoring, "fetch",
                        lambda trial, *, store, store_dir, into: into / f"{trial.number}.epr")
    monkeypatch.setattr("objectives.pipeline.evaluate_artifact", evaluate_artifact)
    known = score_front_on_test(study, splits=_splits(), store=None, store_dir=tmp_path)
    assert known == {0: 0.5, 1: 0.5, 2: 0.5}
    assert sorted(evaluated) == [("0.epr", "epr"), ("1.epr", "epr"), ("2.epr", "epr")]
    assert _tensorflow_records(caplog) == []


def test_tensorflows_own_retracing_warning_is_held_back(tmp_path):
    """Real TensorFlow, in a fresh process (its detector warns twice per process): six new
    models predicted once each inside the context warn nothing; a tf.function made anew in
    a loop, after it, still warns (the level is restored)."""
    script = tmp_path / "retrace.py"
    script.write_text("\n".join((
        "import logging, sys",
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)",
        "import numpy as np, tensorflow as tf",
        "from optimizer.engine.scoring import tensorflow_warnings_held_back",
        "x = np.zeros((2, 4), np.float32)",
        "with tensorflow_warnings_held_back():",
        "    for _ in range(6):",
        "        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])",
        "        model.predict(x, verbose=0)",
        "def double(t):",
        "    return t * 2",
        "for _ in range(6):",
        "    tf.function(double)(tf.constant(x))",
    )))
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT),
                              "TF_CPP_MIN_LOG_LEVEL": "3"})
    retracing = [line for line in out.stderr.splitlines() if "tf.function retracing" in line]
    assert len(retracing) == 2, out.stderr
    assert all("calls to <function double at" in line for line in retracing), retracing
