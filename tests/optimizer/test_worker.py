"""Trial isolation: results, project exceptions and worker deaths cross the process line."""

from __future__ import annotations

import os
import signal

import pytest

from objectives.errors import HopelessTrial, TrialFailure
from optimizer.worker import WorkerBug, WorkerDied, run_isolated


def _add(*, a, b):
    return {"sum": a + b, "pid": os.getpid()}


def _fail(*, reason):
    raise TrialFailure(reason)


def _hopeless():
    raise HopelessTrial("below the floor")


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _exit_silently():
    os._exit(0)


class _Unpicklable(Exception):
    def __init__(self, handle):
        super().__init__("cannot travel")
        self.handle = handle

    def __reduce__(self):
        raise TypeError("no pickling")


def _raise_unpicklable():
    raise _Unpicklable(lambda: None)


def test_result_comes_back_from_another_process():
    out = run_isolated(_add, a=2, b=3)
    assert out["sum"] == 5 and out["pid"] != os.getpid()


def test_project_exceptions_come_back_as_themselves():
    with pytest.raises(TrialFailure, match="no room"):
        run_isolated(_fail, reason="no room")
    with pytest.raises(HopelessTrial):
        run_isolated(_hopeless)


def test_a_killed_worker_fails_the_trial_not_the_study():
    with pytest.raises(WorkerDied, match="signal 9"):
        run_isolated(_die)
    assert issubclass(WorkerDied, TrialFailure)


def test_a_worker_that_exits_without_answering():
    with pytest.raises(WorkerDied, match="exit code 0"):
        run_isolated(_exit_silently)


def test_an_exception_that_cannot_travel_is_a_bug():
    with pytest.raises(WorkerBug, match="cannot travel"):
        run_isolated(_raise_unpicklable)
    assert not issubclass(WorkerBug, TrialFailure)
