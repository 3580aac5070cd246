"""`run --jobs N` (issue 24): N trials at once in lasting workers, the driver the only
writer; rung decisions see the trials in flight; Ctrl-C ends every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from definitions.attributes import PHASE_SECONDS_ATTR, RETRY_ATTR, RUNGS_ATTR, WORKER_ATTR
from optimizer.engine.halving import RungQuestion
from optimizer.engine.objective import Objective
from studies import get_study
from studies.base import Budget
from tests.conftest import ROOT, run_cli


def _study(path) -> optuna.Study:
    return optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{path}/study.db")


def _overlap(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> bool:
    return a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete


def test_jobs_2_runs_trials_at_once_in_two_lasting_workers(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "6", "--jobs", "2",
                  "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    study = _study(tmp_path)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) >= 6
    ran = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert all(WORKER_ATTR in t.user_attrs for t in ran)  # pruned ones ran in a worker too
    workers = [t.user_attrs[WORKER_ATTR] for t in ran]
    assert len({w["pid"] for w in workers}) == 2
    assert max(w["task"] for w in workers) >= 1  # a worker ran more than one trial
    ended = [t for t in study.trials if t.state.is_finished()]
    assert any(_overlap(a, b) for i, a in enumerate(ended) for b in ended[i + 1:])
    assert "retracing" not in out.stderr and "Downloading" not in out.stderr


def test_one_job_runs_every_trial_in_one_worker_that_imports_tensorflow_once(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "3", "--jobs", "1",
                  "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    done = [t for t in _study(tmp_path).trials if t.state == TrialState.COMPLETE]
    assert len(done) >= 2
    assert len({t.user_attrs[WORKER_ATTR]["pid"] for t in done}) == 1
    phases = [t.user_attrs[PHASE_SECONDS_ATTR] for t in done]
    for name in ("build", "train", "compress", "evaluate", "device", "worker_start", "record"):
        assert all(name in p for p in phases), name
    first, later = phases[0], phases[1:]
    assert first["import"] > 0.3  # the worker's one TensorFlow import
    assert all(p["import"] < 0.05 for p in later)
    assert all(p["worker_start"] < 0.5 for p in later)


@pytest.mark.parametrize("extra, said", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--jobs", "2", "--no-isolation"], "cannot be combined with --no-isolation"),
    (["--jobs", "2", "--backend", "kerastuner"], "run it with --jobs 1"),
])
def test_impossible_jobs_are_refused_in_one_line(tmp_path, extra, said):
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(tmp_path), *extra)
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "study.db").exists()


def _with_rungs(study: optuna.Study, rungs: list[list[float]], *, state: TrialState) -> None:
    trial = study.ask()
    trial.set_user_attr(RUNGS_ATTR, rungs)
    if state == TrialState.COMPLETE:
        study.tell(trial, [rungs[-1][1], rungs[-1][2]])


def test_a_rung_decision_counts_the_trials_in_flight():
    """Two completed trials and one still running reached rung 1: with η = 3 the running
    one makes three earlier scores, so a trial dominated by all of them stops; judged on
    completed trials alone (two, fewer than η) it would train on."""
    definition = replace(get_study("digits"), budget=Budget(
        epochs=3, batch_size=32, n_trials=5, rungs=(1,), eta=3))
    objective = Objective(study=definition, parent=None, splits=None, scratch_dir=".",
                          seed=0, artifact_store=None, storage=None)
    study = optuna.create_study(directions=["maximize", "minimize"])
    _with_rungs(study, [[1, 0.90, 1000.0]], state=TrialState.COMPLETE)
    _with_rungs(study, [[1, 0.88, 900.0]], state=TrialState.COMPLETE)
    me = study.ask()
    question = RungQuestion(rung=1, accuracy=0.50, payload=5000.0)
    assert objective._rung_decision(me, question, seen=[], exempt=False)  # 2 < η earlier
    _with_rungs(study, [[1, 0.85, 800.0]], state=TrialState.RUNNING)  # in another worker
    seen: list = []
    assert not objective._rung_decision(me, question, seen=seen, exempt=False)
    assert study.trials[me.number].user_attrs[RUNGS_ATTR] == [[1, 0.50, 5000.0]]
    assert objective._rung_decision(me, question, seen=[], exempt=True)  # a reference point


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


LONG_TRIALS = """
from dataclasses import replace

from studies import get_study
from studies.base import Budget

# digits trials long enough (300 epochs) that both are mid-training when Ctrl-C comes
STUDY = replace(get_study("digits"), smoke=Budget(epochs=300, batch_size=32, n_trials=4))
"""


def test_ctrl_c_ends_every_trial_in_flight_and_each_is_retried(tmp_path):
    study_file = tmp_path / "long_trials.py"
    study_file.write_text(LONG_TRIALS)
    driver = subprocess.Popen(
        [sys.executable, "-m", "optimizer", "run", "--study", str(study_file), "--smoke",
         "--n-trials", "4", "--jobs", "2", "--run-dir", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 180

    def running() -> int:
        try:
            return len(_study(tmp_path).get_trials(states=(TrialState.RUNNING,)))
        except Exception:  # not created yet
            return 0

    while time.time() < deadline and running() < 2:
        time.sleep(0.2)
    assert running() == 2, "two trials never ran at once"
    workers = _children(driver.pid)
    time.sleep(1.0)
    driver.send_signal(signal.SIGINT)
    started = time.time()
    code = driver.wait(timeout=60)
    _, err = driver.communicate()
    assert code == 130, err[-2000:]
    assert time.time() - started < 30
    assert "Traceback" not in err
    study = _study(tmp_path)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL
                   and t.user_attrs.get("fail_reason", "").startswith("interrupted")]
    assert len(interrupted) == 2
    retried = {t.user_attrs.get(RETRY_ATTR) for t in study.get_trials(
        states=(TrialState.WAITING,))}
    assert {t.number for t in interrupted} <= retried
    assert workers and not any(os.path.exists(f"/proc/{pid}") for pid in workers)


def test_driver_threads_never_take_the_same_queued_trial(tmp_path):
    """`--jobs N` threads ask for queued trials at once; on SQLite (no `FOR UPDATE`) plain
    Optuna storage handed one WAITING trial to two threads (found in a `--jobs 2` run)."""
    import threading

    from optimizer.store.storage import open_storage

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/s.db"),
                                study_name="queued")
    for i in range(40):
        study.enqueue_trial({"x": float(i)})
    taken: list[int] = []

    def take() -> None:
        for _ in range(20):
            trial = study.ask()
            taken.append(trial.number)
            study.tell(trial, 1.0)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(40))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
