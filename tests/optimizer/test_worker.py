"""Trial isolation: results, project exceptions and worker deaths cross the process line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from objectives.errors import HopelessTrial, TrialFailure
from optimizer.engine.worker import WorkerBug, WorkerDied, run_isolated
from tests.conftest import ROOT


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


# -- lasting workers (issue 24: no fixed cost per trial) ----------------------------------

_HELD: list[bytes] = []


def _whoami(*, data=None):
    return os.getpid(), None if data is None else data()


def _grow(*, megabytes):
    _HELD.append(b"x" * (megabytes << 20))
    return os.getpid()


def _threads():
    return {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")}


def _ask_twice(*, base):
    from optimizer.engine.worker import ask_driver

    return [ask_driver(base), ask_driver(base + 1)]


def _sleep(*, seconds):
    import time

    time.sleep(seconds)
    return "slept"


def test_a_pool_worker_runs_trial_after_trial_in_one_process():
    from optimizer.engine.worker import WorkerPool

    with WorkerPool(1) as pool:
        pids, tasks = set(), []
        for _ in range(3):
            with pool.worker() as worker:
                pids.add(worker.run(_whoami)[0])
                tasks.append(worker.last.task)
    assert len(pids) == 1 and os.getpid() not in pids
    assert tasks == [0, 1, 2]


def test_a_task_that_raises_still_reports_what_it_cost_and_a_dead_one_does_not():
    """A pruned or failed trial ran in its worker too: its figures (pid, task) are
    recorded; a worker that died answered nothing, so it reports none, not the last
    task's."""
    from optimizer.engine.worker import WorkerPool

    with WorkerPool(1) as pool:
        with pool.worker() as worker:
            pid = worker.run(_whoami)[0]
        with pool.worker() as worker, pytest.raises(HopelessTrial):
            worker.run(_hopeless)
        assert worker.last is not None
        assert (worker.last.pid, worker.last.task) == (pid, 1)
        with pool.worker() as worker, pytest.raises(WorkerDied):
            worker.run(_die)
        assert worker.last is None


def test_shared_data_reach_every_task_without_being_sent():
    """In a driver without TensorFlow (a fresh interpreter, as `run` is) the workers are
    forked: a shared object that cannot even be pickled reaches every task."""
    code = (
        "import sys\n"
        "from optimizer.engine.worker import WorkerPool\n"
        "from tests.optimizer.test_worker import _whoami\n"
        "data = lambda: 42  # a lambda cannot be pickled: it is inherited\n"
        "with WorkerPool(1, shared={'data': data}) as pool, pool.worker() as worker:\n"
        "    answers = [worker.run(_whoami, data=data)[1] for _ in range(2)]\n"
        "print(answers, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[42, 42] False"


def test_a_dead_pool_worker_is_replaced_before_the_next_trial():
    from optimizer.engine.worker import WorkerPool

    with WorkerPool(1) as pool:
        with pool.worker() as worker:
            first = worker.run(_whoami)[0]
        with pool.worker() as worker, pytest.raises(WorkerDied, match="signal 9"):
            worker.run(_die)
        with pool.worker() as worker:
            after = worker.run(_whoami)[0]
            assert worker.last.task == 0
    assert after != first


def test_a_worker_whose_memory_grew_past_its_limit_is_replaced():
    from optimizer.engine.worker import WorkerPool

    with WorkerPool(1, recycle_growth_bytes=20 << 20) as pool:
        with pool.worker() as worker:
            first = worker.run(_grow, megabytes=1)
        with pool.worker() as worker:
            assert worker.run(_grow, megabytes=64) == first  # same worker, now 64 MB larger
        with pool.worker() as worker:
            assert worker.run(_grow, megabytes=1) != first


def test_a_task_asks_the_driver_and_gets_its_answers():
    from optimizer.engine.worker import Worker

    asked = []

    def serve(question):
        asked.append(question)
        return question * 10

    worker = Worker()
    try:
        assert worker.run(_ask_twice, serve=serve, base=4) == [40, 50]
    finally:
        worker.close()
    assert asked == [4, 5]


def test_in_process_tasks_are_answered_directly():
    from optimizer.engine.worker import run_in_process

    assert run_in_process(_ask_twice, serve=lambda q: -q, base=1) == [-1, -2]


def test_workers_get_their_share_of_the_cores():
    from optimizer.engine.worker import WorkerPool

    with WorkerPool(2, threads=1) as pool, pool.worker() as worker:
        assert worker.run(_threads) == {"TF_NUM_INTRAOP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with WorkerPool(1) as pool, pool.worker() as worker:  # one job: TensorFlow's default
        assert worker.run(_threads)["TF_NUM_INTRAOP_THREADS"] is None


def test_a_stop_request_ends_every_busy_worker_at_once():
    import threading
    import time

    from optimizer.engine.stop import clear_stop, request_interrupt
    from optimizer.engine.worker import WorkerPool

    outcomes, processes = [], []

    def one(pool):
        with pool.worker() as worker:
            processes.append(worker.process)
            try:
                worker.run(_sleep, seconds=60)
            except KeyboardInterrupt:
                outcomes.append("interrupted")

    clear_stop()
    try:
        with WorkerPool(2) as pool:
            threads = [threading.Thread(target=one, args=(pool,)) for _ in range(2)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while len(processes) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            began = time.monotonic()
            assert request_interrupt()
            for t in threads:
                t.join(10)
            took = time.monotonic() - began
    finally:
        clear_stop()
    assert outcomes == ["interrupted", "interrupted"]
    assert took < 5
    assert not any(p.is_alive() for p in processes)


# -- spawned workers from scripts and notebooks (issue 28) --------------------------------

#: A driver script without an `if __name__ == "__main__":` guard, whose workers are
#: spawned as when TensorFlow is imported in it; each run of the script leaves a line.
UNGUARDED = """\
import os
import optimizer.engine.worker as w
from tests.optimizer.test_worker import _whoami
with open("ran.txt", "a") as f:
    f.write(f"{os.getpid()}\\n")
w._tensorflow_imported = lambda: True  # as in a driver that imported TensorFlow: spawn
worker = w.Worker()
try:
    print(worker.run(_whoami)[0] != os.getpid())
finally:
    worker.close()
"""


def _python(*args: str, cwd, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_spawned_worker_does_not_run_the_callers_script_again(tmp_path, how):
    """Spawn would run the caller's `__main__` in the child (as `__mp_main__`): a script
    without a guard ran again, and `python -`'s `<stdin>` is no file at all."""
    (tmp_path / "script.py").write_text(UNGUARDED)
    out = (_python("script.py", cwd=tmp_path) if how == "file"
           else _python("-", cwd=tmp_path, stdin=UNGUARDED))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
    assert len((tmp_path / "ran.txt").read_text().splitlines()) == 1


class _ExitsWhenUnpickled:
    """Ends the process that unpickles it: a worker dying while it reads its data."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_a_spawned_worker_that_dies_reading_its_data_is_found_at_once(tmp_path):
    """Shared data far larger than a pipe's buffer, and the worker dies before it has
    read them. Sent with the process object, they blocked the driver for good (the
    parent holds the reading end of that pipe until its write is done); over the
    worker's own pipe, the death is `WorkerDied` at once."""
    script = (
        "import time\n"
        "import optimizer.engine.worker as w\n"
        "from tests.optimizer.test_worker import _ExitsWhenUnpickled, _whoami\n"
        "w._tensorflow_imported = lambda: True\n"
        "began = time.monotonic()\n"
        "worker = w.Worker(shared={'poison': _ExitsWhenUnpickled(), 'data': b'x' * (16 << 20)})\n"
        "try:\n"
        "    worker.run(_whoami)\n"
        "except w.WorkerDied as error:\n"
        "    print(error, time.monotonic() - began < 10)\n"
        "worker.close(kill=True)\n"
    )
    out = _python("-c", script, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "worker process died without a result (exit code 3) True"


def test_a_worker_killed_while_the_driver_waits_is_found_within_seconds():
    import threading
    import time

    from optimizer.engine.worker import Worker

    worker = Worker()
    killer = threading.Timer(0.5, lambda: os.kill(worker.process.pid, signal.SIGKILL))
    began = time.monotonic()
    killer.start()
    try:
        with pytest.raises(WorkerDied, match="signal 9"):
            worker.run(_sleep, seconds=60)
    finally:
        killer.cancel()
        worker.close(kill=True)
    assert time.monotonic() - began < 5


def test_a_worker_that_cannot_start_is_one_line_naming_the_limit(monkeypatch):
    import errno
    import multiprocessing.util

    from definitions.errors import UsageError
    from optimizer.engine.worker import WorkerPool, WorkerStartFailed

    def refused(*args, **kwargs):  # what fork says at the process limit
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)  # a forked worker
    monkeypatch.setattr(multiprocessing.util, "spawnv_passfds", refused)  # a spawned one
    with pytest.raises(WorkerStartFailed) as caught:
        WorkerPool(size=2).start()
    assert isinstance(caught.value, UsageError)  # the CLI: one line, exit 2
    assert str(caught.value).startswith(
        "cannot start a worker process (BlockingIOError: Resource temporarily unavailable): "
        "this machine's limit on processes or memory was reached; run again with fewer "
        "--jobs")
