"""Chaos: kill workers and the driver at random moments, resume, check the invariants.

Slow (real training, several restarts): `pytest -m slow tests/optimizer/test_chaos.py`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import optuna
import pytest

from objectives.pipeline import sha256_file
from optimizer.store.retry import finished_count
from tests.conftest import ROOT

N_TRIALS = 6


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _start(run_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "optimizer", "run", "--study", "digits", "--smoke",
         "--n-trials", str(N_TRIALS), "--run-dir", str(run_dir)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_kills_lose_nothing_and_duplicate_nothing(tmp_path):
    rng = random.Random(7)
    run_dir = tmp_path / "digits"
    kills = 0
    for _ in range(3):  # kill a worker mid-trial, three times
        driver = _start(run_dir)
        time.sleep(rng.uniform(8, 20))
        workers = _children(driver.pid)
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            kills += 1
        time.sleep(rng.uniform(2, 6))
        driver.send_signal(signal.SIGKILL)  # and then the driver itself
        driver.wait()
        for pid in workers:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            time.sleep(3)  # an orphaned worker notices its parent is gone and exits
    assert kills >= 1
    final = _start(run_dir)
    assert final.wait(timeout=900) == 0

    study = optuna.load_study(study_name="digits-smoke",
                              storage=f"sqlite:///{run_dir}/study.db")
    trials = study.trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    for t in complete:
        path = run_dir / "artifact-store" / t.user_attrs["artifact_id"]
        assert sha256_file(path) == t.user_attrs["artifact_sha256"]
    assert finished_count(study) >= N_TRIALS
    retried = [t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs]
    assert len(retried) == len(set(retried))  # each candidate retried at most once
