"""Trustworthy studies (one writer per SQLite study, runs that keep their budget, refusals
that change nothing, data that must be the study's own), each through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest

from definitions.attributes import RETRY_ATTR
from optimizer.store.retry import finished_count
from tests.conftest import ROOT, run_cli

FAIL = optuna.trial.TrialState.FAIL
COMPLETE = optuna.trial.TrialState.COMPLETE
RUNNING = optuna.trial.TrialState.RUNNING


def _start(run_dir, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optimizer", "run", "--study", "digits", "--smoke",
         "--run-dir", str(run_dir), *extra],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _wait_for_worker(driver: subprocess.Popen, timeout: float = 120) -> list[int]:
    deadline = time.time() + timeout
    while time.time() < deadline and not _children(driver.pid):
        time.sleep(0.2)
    workers = _children(driver.pid)
    assert workers, "no worker process started"
    return workers


def _study(run_dir) -> optuna.Study:
    return optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{run_dir}/study.db")


def test_two_drivers_started_together_one_runs_one_is_refused(tmp_path):
    drivers = [_start(tmp_path, "--n-trials", "2") for _ in range(2)]
    results = [(d.wait(timeout=600), *d.communicate()) for d in drivers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], [err[-1500:] for _, _, err in results]
    refused = next(err for code, _, err in results if code == 2)
    assert "in use by another `run` (pid" in refused and "postgresql" in refused
    assert len(refused.strip().splitlines()) == 1
    trials = _study(tmp_path).trials
    assert len(trials) == 3  # the two runs + the third reference, still queued: no duplicates
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[2].state == optuna.trial.TrialState.WAITING
    trials = trials[:2]
    assert not [t for t in trials if t.state in (FAIL, RUNNING)]  # all 3 ran to their end


def test_a_second_driver_never_touches_the_first_ones_live_trial(tmp_path):
    first = _start(tmp_path, "--n-trials", "1")
    _wait_for_worker(first)
    second = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "1",
                     "--run-dir", str(tmp_path))
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr
    assert first.wait(timeout=600) == 0, first.communicate()[1][-2000:]
    trials = _study(tmp_path).trials
    assert trials[0].state == COMPLETE  # not swept to FAIL by the refused driver


def test_a_worker_killed_mid_trial_still_ends_the_run_with_its_budget(tmp_path):
    driver = _start(tmp_path, "--n-trials", "2")
    worker = _wait_for_worker(driver)[0]
    time.sleep(1.0)
    os.kill(worker, signal.SIGKILL)
    code = driver.wait(timeout=600)
    _, err = driver.communicate()
    assert code == 0, err[-2000:]
    study = _study(tmp_path)
    died = [t for t in study.trials if t.state == FAIL]
    assert len(died) == 1 and died[0].user_attrs["failure_kind"] == "worker_died"
    retries = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == died[0].number]
    assert len(retries) == 1 and retries[0].state == COMPLETE
    assert retries[0].params == died[0].params
    # the budget of 2 is reached by trials 1 and 2 (queued references), and the pending
    # retry still runs in this invocation rather than being left WAITING
    assert finished_count(study) == 3
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_sigterm_mid_trial_is_one_line_and_the_candidate_is_retried_on_resume(tmp_path):
    driver = _start(tmp_path, "--n-trials", "2")
    _wait_for_worker(driver)
    time.sleep(1.0)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 130
    _, err = driver.communicate()
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "interrupted" in line] == [
        "optimizer run: interrupted; run it again to resume (the interrupted trial is retried)"
    ]
    interrupted = _study(tmp_path).trials[0]
    assert interrupted.state == FAIL and interrupted.user_attrs["failure_kind"] == "interrupted"

    resumed = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "2",
                      "--run-dir", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = _study(tmp_path)
    retries = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == interrupted.number]
    assert len(retries) == 1 and retries[0].params == interrupted.params  # the float32 reference
    assert retries[0].state == COMPLETE
    assert finished_count(study) == 3  # the retry ran although the queued references filled 2


def _tiny_mnist(path, *, seed: int, n_train: int = 300, n_test: int = 100) -> None:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(
        path / "mnist.npz",
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=np.arange(n_train, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=np.arange(n_test, dtype=np.uint8) % 10,
    )


def _create_only(run_dir, data_dir):
    """Creates the study (its record) without training: the timeout ends before trial 0."""
    return run_cli("run", "--study", "mnist", "--smoke", "--run-dir", str(run_dir),
                   "--data-dir", str(data_dir), "--timeout", "0.001")


def test_resume_or_export_with_other_data_is_refused_and_changes_nothing(tmp_path):
    _tiny_mnist(tmp_path / "a", seed=0)
    _tiny_mnist(tmp_path / "b", seed=1)
    created = _create_only(tmp_path / "run", tmp_path / "a")
    assert created.returncode == 0, created.stderr[-2000:]
    db = tmp_path / "run" / "study.db"
    before = db.read_bytes()
    refused = _create_only(tmp_path / "run", tmp_path / "b")
    assert refused.returncode == 2, refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert "differs from the data found now" in line and str(tmp_path / "a") in line
    assert "Traceback" not in refused.stderr
    assert db.read_bytes() == before
    # the same files in another folder are the same data
    (tmp_path / "a2").mkdir()
    (tmp_path / "a2" / "mnist.npz").write_bytes((tmp_path / "a" / "mnist.npz").read_bytes())
    assert _create_only(tmp_path / "run", tmp_path / "a2").returncode == 0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("garbage", "mnist.npz"),
        ("wrong_keys", "x_train"),
        ("ten_images", "mnist.npz"),
    ],
)
def test_a_bad_data_file_is_one_line_and_exit_2(tmp_path, content, needle):
    data = tmp_path / "data"
    data.mkdir()
    npz = data / "mnist.npz"
    if content == "garbage":
        npz.write_bytes(b"this is not a zip file" * 10)
    elif content == "wrong_keys":
        np.savez(npz, images=np.zeros((20, 28, 28), np.uint8), labels=np.zeros(20, np.uint8))
    else:
        np.savez(npz, x_train=np.zeros((10, 28, 28), np.uint8),
                 y_train=np.arange(10, dtype=np.uint8), x_test=np.zeros((10, 28, 28), np.uint8),
                 y_test=np.arange(10, dtype=np.uint8))
    out = run_cli("run", "--study", "mnist", "--smoke", "--run-dir", str(tmp_path / "run"),
                  "--data-dir", str(data))
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "study.db").exists()


def test_the_int8_calibration_draw_covers_every_class():
    from objectives.pipeline import REPRESENTATIVE_EXAMPLES, representative_draw
    from studies.datasets import load_dataset

    splits = load_dataset("digits")
    drawn = representative_draw(splits.y_train, n=REPRESENTATIVE_EXAMPLES, seed=0)
    assert len(drawn) == len(set(drawn.tolist())) == REPRESENTATIVE_EXAMPLES
    counts = np.bincount(splits.y_train[drawn], minlength=10)
    assert counts.min() >= REPRESENTATIVE_EXAMPLES // 10 - 1  # spread, not the first rows
    # drawn from the whole split, not its first rows
    assert drawn.max() > len(splits.y_train) // 2
    other = representative_draw(splits.y_train, n=REPRESENTATIVE_EXAMPLES, seed=1)
    assert set(drawn.tolist()) != set(other.tolist())
