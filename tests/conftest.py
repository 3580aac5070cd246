"""Shared test set-up: quiet TensorFlow, and a helper to run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m optimizer ARGS` in a fresh interpreter, as a user would run it.

    A `run` without `--jobs` runs one trial at a time here (`--jobs 1`): a test's run then
    costs one worker process on a CI machine running two tests at once, and its trials
    come in a reproducible order. `--jobs auto`, the product's default, is tested where a
    test names it (`tests/optimizer/test_machine.py`)."""
    if args and args[0] == "run" and "--jobs" not in args:
        args = (*args, "--jobs", "1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "optimizer", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


def digits(classes: int = 10):
    """scikit-learn's 8×8 digits as uint8 images 0..255 and int64 labels; with more than 10
    `classes`, the first 40 images relabelled to classes no 10-unit model has."""
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images * (255 / 16)).astype(np.uint8)
    y = data.target.astype(np.int64)
    if classes > 10:
        y = y.copy()
        y[:40] = 10 + np.arange(40) % (classes - 10)
    return x, y


def save_digits_npz(path, *, classes: int = 10, drop: str | None = None,
                    shift_labels: int = 0) -> None:
    """The digits as a user's .npz (1,400 training images, the rest test); `drop` leaves
    one array out, `shift_labels` moves every label by that many classes (mod 10)."""
    import numpy as np

    x, y = digits(classes)
    y = (y + shift_labels) % 10 if shift_labels else y
    arrays = {"x_train": x[:1400], "y_train": y[:1400], "x_test": x[1400:], "y_test": y[1400:]}
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)


def fit_on_digits(model, *, epochs: int):
    """`model` (8×8×1 input, 10 classes) trained on the first 1,400 digits; returns it."""
    import tensorflow as tf

    x, y = digits()
    loss = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=model.layers[-1].get_config().get("activation") != "softmax")
    model.compile("adam", loss)
    model.fit(x[:1400, ..., None] / 255.0, y[:1400], epochs=epochs, verbose=0)
    return model


#: The second virtualenv's Python, with today's Keras (`tests/keras_today/requirements.txt`;
#: `.ci/run` makes it).
KERAS_TODAY = Path(os.environ.get("KERAS_TODAY_PYTHON", ROOT / ".venv-keras3" / "bin" / "python"))
WRITE_MODELS = ROOT / "tests" / "keras_today" / "write_models.py"


def keras_today_run(*args: object, timeout: float = 300) -> str:
    """`write_models.py ARGS` run by today's Keras (skipped without it; a failure in CI,
    which makes it); its standard output."""
    if not KERAS_TODAY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{KERAS_TODAY} is missing: .ci/run makes it")
        pytest.skip(f"no virtualenv with today's Keras at {KERAS_TODAY}")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([str(KERAS_TODAY), str(WRITE_MODELS), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**env, "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="session")
def keras_today(tmp_path_factory) -> Path:
    """A folder of models written by Keras 3 and tf_keras 2.21 (`write_models.py`), with
    their own predictions, and `digits.npz` with the trained `*-digits` parents: written
    once per test run, by whichever test worker asks first (the others wait on a lock)."""
    import fcntl

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the run's folder, above each worker's own
        shared = shared.parent
    out = shared / "keras_today"
    with open(shared / "keras_today.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "done").exists():
            out.mkdir(exist_ok=True)
            save_digits_npz(out / "digits.npz")
            keras_today_run(out, "--digits", out / "digits.npz")
            (out / "done").touch()
    return out


#: A digits study whose trials are its reference points (`reference_study_run`).
REFERENCE_STUDY = '''
from dataclasses import replace

from search_spaces import Candidate
from studies import Budget, get_study

STUDY = replace(
    get_study("digits"), name={name!r}, usable_accuracy=0.0,
    smoke=Budget(epochs=10, batch_size=32, n_trials={n}),
    reference_points=({candidates}),
)
'''


def reference_study_run(base: Path, *, name: str, candidates: list[str]):
    """(study file, run dir, {quantization: FrozenTrial}, study) of a finished smoke run of a
    digits study whose trials are `candidates` (`Candidate(...)` source, one per mode)."""
    import optuna

    study_file = base / f"{name}_study.py"
    study_file.write_text(REFERENCE_STUDY.format(
        name=name, n=len(candidates), candidates="".join(f"{c}, " for c in candidates)))
    run_dir = base / "run"
    out = run_cli("run", "--study", str(study_file), "--smoke", "--n-trials",
                  str(len(candidates)), "--run-dir", str(run_dir), cwd=base)
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name=f"{name}-smoke", storage=f"sqlite:///{run_dir}/study.db")
    trials = {t.user_attrs["candidate"]["quantization"]: t for t in study.trials
              if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(trials) == len(candidates), trials
    return study_file, run_dir, trials, study
