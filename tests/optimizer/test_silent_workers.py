"""No wait without a bound (issue 31, item 6): a worker alive but silent — stopped
(SIGSTOP), deadlocked — is ended past its silence limit, or past `--timeout` once it stops
saying it is alive; its trial is FAIL `worker_hung` and retried like a dead worker's.

The worker-level tests run tiny tasks (no TensorFlow); the runs that train are `slow`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from definitions.attributes import RETRY_ATTR, WORKER_HUNG
from optimizer.engine.patience import SILENCE_FACTOR, Patience
from optimizer.engine.worker import Worker, WorkerHung, report_progress
from tests.conftest import ROOT, run_cli


def _sleep(*, seconds):
    time.sleep(seconds)
    return "slept"


def _deadlock():
    threading.Event().wait()  # never set: the task waits for good, its beats go on


def _busy_reporting(*, seconds, every):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(every)
        report_progress()
    return "done"


def _stop_later(pid: int, after: float) -> threading.Timer:
    timer = threading.Timer(after, lambda: os.kill(pid, signal.SIGSTOP))
    timer.start()
    return timer


@contextlib.contextmanager
def _worker(patience: Patience):
    """A worker bounded by `patience`, killed after 20 s whatever happens: a wait without
    its bound then fails its test (`WorkerDied`) instead of hanging the suite."""
    worker = Worker(patience=patience)
    safety = threading.Timer(20, lambda: os.kill(worker.process.pid, signal.SIGKILL))
    safety.start()
    try:
        yield worker
    finally:
        safety.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.process.pid, signal.SIGCONT)
        worker.close(kill=True)


def test_a_worker_stopped_mid_task_is_ended_after_its_silence_limit():
    with _worker(Patience(silence_limit=1.5)) as worker:
        timer = _stop_later(worker.process.pid, 0.5)
        began = time.monotonic()
        with pytest.raises(WorkerHung, match=r"stopped answering .* and was ended") as raised:
            worker.run(_sleep, seconds=60)
        took = time.monotonic() - began
        timer.cancel()
        assert not worker.process.is_alive() and worker.worn
    assert raised.value.kind == WORKER_HUNG
    assert 1.5 <= took < 6


def test_a_deadlocked_task_is_ended_though_its_process_still_beats():
    with _worker(Patience(silence_limit=2.0)) as worker:
        began = time.monotonic()
        with pytest.raises(WorkerHung, match="no progress within its limit of 2 s"):
            worker.run(_deadlock)
        assert 2.0 <= time.monotonic() - began < 6


def test_a_task_that_reports_progress_is_waited_for_however_long_it_runs():
    with _worker(Patience(silence_limit=1.0)) as worker:
        assert worker.run(_busy_reporting, seconds=3.0, every=0.1) == "done"


def test_past_the_timeout_a_stopped_worker_is_ended_within_its_beat_grace():
    patience = Patience(silence_limit=600, deadline=time.monotonic() + 1.0, beat_grace=2.0)
    with _worker(patience) as worker:
        timer = _stop_later(worker.process.pid, 0.5)
        began = time.monotonic()
        with pytest.raises(WorkerHung, match="past --timeout"):
            worker.run(_sleep, seconds=60)
        timer.cancel()
        assert 2.0 <= time.monotonic() - began < 7


def test_past_the_timeout_a_worker_that_still_beats_finishes_its_task():
    """Its task reports nothing for 4 s, past the deadline and twice the beat grace: its
    process's beats keep it (the task is slow, not stopped)."""
    patience = Patience(silence_limit=600, deadline=time.monotonic() + 0.5, beat_grace=2.0)
    with _worker(patience) as worker:
        assert worker.run(_sleep, seconds=4.0) == "slept"


def test_the_silence_limit_grows_with_the_longest_silence_of_an_answered_task():
    patience = Patience(silence_limit=10.0)
    assert patience.limit() == 10.0
    patience.answered(4.0)
    assert patience.limit() == SILENCE_FACTOR * 4.0
    patience.answered(1.0)  # a shorter one does not lower it
    assert patience.limit() == SILENCE_FACTOR * 4.0
    assert patience.overdue(heard=0.0, advanced=0.0, now=19.0) is None
    assert patience.overdue(heard=20.5, advanced=0.0, now=21.0) == (
        "no progress within its limit of 20 s")


def test_a_worker_measures_its_task_silences_into_the_pool_limit():
    patience = Patience(silence_limit=1.0)
    with _worker(patience) as worker:
        worker.run(_sleep, seconds=0.6)  # one silence of 0.6 s, within the floor
    assert SILENCE_FACTOR * 0.6 <= patience.limit() < SILENCE_FACTOR * 0.95


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf"])
def test_a_silence_limit_is_a_finite_positive_number(tmp_path, value):
    out = run_cli("run", "--study", "digits", "--smoke", "--silence-limit", value,
                  "--run-dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"--silence-limit must be a positive number of seconds, got {float(value)}" in (
        out.stderr)
    assert not (tmp_path / "study.db").exists()


# -- runs that train: a stopped worker in a real run ---------------------------------------

#: digits trials long enough (40 epochs) that a worker is stopped mid-trial.
LONG_TRIALS = """
from dataclasses import replace

from studies import get_study
from studies.base import Budget

STUDY = replace(get_study("digits"), smoke=Budget(epochs=40, batch_size=32, n_trials=4))
"""


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _study(run_dir) -> optuna.Study:
    return optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{run_dir}/study.db")


def _running(run_dir) -> int:
    try:
        return len(_study(run_dir).get_trials(states=(TrialState.RUNNING,)))
    except Exception:  # not created yet
        return 0


def _run_and_stop_a_worker(run_dir, *flags: str) -> tuple[int, str, float]:
    """A `--jobs 2` run of `LONG_TRIALS` whose first worker is stopped (SIGSTOP) once both
    run a trial: (exit code, stderr, seconds from the stop to the exit)."""
    study_file = run_dir / "long_trials.py"
    study_file.write_text(LONG_TRIALS)
    driver = subprocess.Popen(
        [sys.executable, "-m", "optimizer", "run", "--study", str(study_file), "--smoke",
         "--jobs", "2", "--run-dir", str(run_dir), *flags],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and _running(run_dir) < 2:
            time.sleep(0.2)
        assert _running(run_dir) == 2, "two trials never ran at once"
        workers = _children(driver.pid)
        os.kill(workers[0], signal.SIGSTOP)
        stopped = time.monotonic()
        code = driver.wait(timeout=600)
        return code, driver.communicate()[1], time.monotonic() - stopped
    finally:
        for pid in workers:  # whatever the run left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()


def _hung(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == TrialState.FAIL
            and t.user_attrs.get("failure_kind") == WORKER_HUNG]


@pytest.mark.slow
def test_a_stopped_worker_ends_no_later_than_the_timeout_and_resume_retries_it(tmp_path):
    """The issue's measurement: `--timeout 15`, a worker stopped mid-trial. The run ends
    as a timed-out run does (exit 0, "stopped by --timeout"), within the beat grace
    after the deadline and one trial of the other worker; the next run retries the trial."""
    code, err, took = _run_and_stop_a_worker(tmp_path, "--timeout", "15", "--n-trials", "4")
    assert code == 0, err[-3000:]
    assert took < 90, err[-3000:]
    assert "stopped by --timeout" in err and "Traceback" not in err
    study = _study(tmp_path)
    hung = _hung(study)
    assert len(hung) == 1, err[-3000:]
    assert "stopped answering (silent for" in hung[0].user_attrs["fail_reason"]
    assert "stopped answering" in err and "was ended" in err  # the trial's progress line
    retry = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == hung[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    out = run_cli("run", "--study", str(tmp_path / "long_trials.py"), "--smoke",
                  "--n-trials", "4", "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    retried = _study(tmp_path).trials[retry[0].number]
    assert retried.state == TrialState.COMPLETE and retried.params == hung[0].params


@pytest.mark.slow
def test_a_stopped_worker_is_ended_at_its_silence_limit_and_its_trial_retried_in_the_run(
        tmp_path):
    """No timeout: the silence limit (30 s here, the floor) ends the stopped worker, a
    new worker takes its place and the retry runs in the same invocation."""
    code, err, took = _run_and_stop_a_worker(tmp_path, "--silence-limit", "30",
                                             "--n-trials", "3")
    assert code == 0, err[-3000:]
    study = _study(tmp_path)
    hung = _hung(study)
    assert len(hung) == 1, err[-3000:]
    assert "stopped answering (no progress within" in hung[0].user_attrs["fail_reason"]
    retry = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == hung[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))
    assert took < 300
