"""Trial isolation: a trial's work runs in a worker process, not in the driver.

Why a process: a crash inside TensorFlow would otherwise take the whole study down, and
the driver stays the single writer of the study (SQLite keeps working). Why a *lasting*
one (`Worker`, `WorkerPool`): a fresh process per trial paid a TensorFlow import and a
first graph trace every trial — about 30% of the median trial of `run --study mnist`
(issue 24; BENCHMARKS.md "Where a trial's time goes"). A worker now runs trial after
trial, and is replaced once its resident memory has grown by more than
`RECYCLE_GROWTH_BYTES` since its first task (TensorFlow keeps some of every trial's
graphs alive; measured over 50 trials, BENCHMARKS.md), so memory stays bounded.

Workers are forked after the data are loaded, so the data are in every worker once,
copy-on-write, and never sent with a task (`shared`); if the driver already imported
TensorFlow (which is not fork-safe) they are spawned instead, and the shared data are
sent once per worker, over the worker's own pipe before its first task. A spawned worker
never runs the caller's `__main__` again (multiprocessing's spawn would re-run a script,
`python - < script.py`'s `<stdin>` or a kernel's launcher in the child:
`_spawned_without_main`), so a script without an `if __name__ == "__main__":` guard and a
notebook work alike. With `--jobs N` the pool has N workers and each gets 1/N of the
machine's cores (TensorFlow's intra- and inter-op threads, OpenMP).

While a task runs, the worker may ask the driver a question (`ask_driver`): the rung
decisions of successive halving are taken in the driver, on the scores of every trial
known at that moment, including those in flight in other workers (`optimizer.engine.halving`).

The messages on a worker's pipe are types (`optimizer.engine.messages`); the stop request
is `optimizer.engine.stop`'s.

A worker that dies without an answer (killed, segfault, out of memory, a failed start) is
noticed at once: the driver waits on the worker's pipe and its process sentinel together.
It fails that trial with `WorkerDied` and is replaced; the study goes on. A worker alive
but silent (stopped, deadlocked, swapping) is ended past its pool's bounds
(`optimizer.engine.patience.Patience`): its trial fails with `WorkerHung`, and it is
replaced likewise. While a task runs, the task reports its progress (`report_progress`)
and a thread of the worker says the process is alive (`Beat`). A worker whose
parent dies exits by itself. Ctrl-C or SIGTERM in the driver (`stop.request_interrupt`)
ends every worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_any
from typing import Any, NoReturn

from definitions.attributes import WORKER_DIED, WORKER_HUNG
from definitions.errors import UsageError
from objectives.errors import TrialFailure
from optimizer.engine.messages import (
    Answer,
    Beat,
    Bug,
    Interrupted,
    Question,
    Raised,
    Returned,
    Shared,
    Started,
    Stop,
    Task,
    Working,
)
from optimizer.engine.patience import BEAT_SECONDS, Patience
from optimizer.engine.processes import (
    resident_bytes,
    tensorflow_warnings_held_back,
    thread_environment,
)
from optimizer.engine.stop import STOP

PARENT_POLL_SECONDS = 1.0
#: How often a waiting driver thread looks for an answer, a death or a stop request.
WAIT_POLL_SECONDS = 0.2
#: A worker whose resident memory grew by more than this since its first task finished
#: is replaced before its next task. Measured (BENCHMARKS.md "Where a trial's time
#: goes"): TensorFlow keeps about 25 MiB of each trial's `train_function` graphs alive
#: past `clear_session()` and garbage collection, so a worker grows steadily; replaced at
#: this growth, a worker's memory stays bounded, at the cost of one TensorFlow import
#: (about 2 s) every 15–20 trials of `run --study mnist`.
RECYCLE_GROWTH_BYTES = 512 << 20

#: Held while a worker is spawned with `__main__` hidden (`_spawned_without_main`).
_SPAWN_LOCK = threading.Lock()

#: In a worker: the pipe to the driver (`ask_driver`); None in the driver.
_CHANNEL = None
#: In a worker: held while a message is sent (by the task, or by the beat thread).
_SEND_LOCK = threading.Lock()
#: In a worker: set while a task runs (the beat thread beats only then).
_BUSY = threading.Event()
#: In the driver, for a task run in this process (`run_in_process`): who answers.
_LOCAL = threading.local()


class WorkerDied(TrialFailure):
    """The worker process ended without returning a result."""

    kind = WORKER_DIED


class WorkerHung(TrialFailure):
    """The worker process was alive but silent past its bound (`Patience`) and was
    ended."""

    kind = WORKER_HUNG


class WorkerStartFailed(UsageError):
    """A worker process could not be started (the machine's limit on processes or memory
    was reached): the run ends in one line, exit 2; a trial cut short is retried by the
    next run, as after an interrupt."""


class WorkerBug(RuntimeError):
    """The worker raised an unexpected exception (a bug): it is not caught by the study."""


def ask_driver(question: Any) -> Any:
    """From inside a task: the driver's answer to `question` (its `serve` callable's).

    In a worker the question travels over the task's pipe and the worker waits for the
    answer; in the driver's own process (`run_in_process`) it is answered directly."""
    if _CHANNEL is not None:
        _send(Question(question))
        return _CHANNEL.recv()
    serve = getattr(_LOCAL, "serve", None)
    if serve is None:
        raise RuntimeError("ask_driver called outside a task that was given a serve callable")
    return serve(question)


def report_progress() -> None:
    """From inside a task: tells the driver the task advanced (a phase began or ended, an
    epoch ended), which is what its silence limit counts (`Patience`); nothing in the
    driver's own process (`run_in_process`)."""
    if _CHANNEL is not None:
        _send(Working())


def _send(message: object) -> None:
    """In a worker: `message` to the driver, never interleaved with a beat."""
    with _SEND_LOCK:
        _CHANNEL.send(message)


def _beat(conn) -> None:
    """In a worker: a `Beat` every `BEAT_SECONDS` while a task runs, whatever the task
    does (a stopped process sends none)."""
    while True:
        time.sleep(BEAT_SECONDS)
        with _SEND_LOCK:
            if not _BUSY.is_set():
                continue
            try:
                conn.send(Beat())
            except OSError:  # the driver is gone
                return


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(PARENT_POLL_SECONDS)


def _serve_tasks(conn, parent: int, shared: dict[str, Any] | None,
                 environment: dict[str, str]) -> None:
    """A worker's life: `Task`s one after another until told to `Stop` or the pipe
    closes; each ends in one `Answer` (`optimizer.engine.messages`). `shared` None (a
    spawned worker): the shared data are the first message on the pipe."""
    global _CHANNEL
    # The driver ends a worker (SIGTERM, then SIGKILL): a terminal's Ctrl-C, sent to the
    # whole process group, is the driver's to handle, and a forked worker would otherwise
    # run the driver's handlers (a KeyboardInterrupt traceback of its own, issue 23)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.update(environment)  # before this worker first imports TensorFlow
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    threading.Thread(target=_beat, args=(conn,), daemon=True).start()
    _CHANNEL = conn
    if shared is None:
        first = _received(conn)
        if not isinstance(first, Shared):  # told to stop before any task
            return
        shared = dict(first.data)
    while isinstance(task := _received(conn), Task):
        _send(Started(time.time()))
        _BUSY.set()
        answer = _answer(task, shared)
        with _SEND_LOCK:  # no beat after the answer
            _BUSY.clear()
            try:
                conn.send(answer)
            except Exception:  # the exception (or result) itself does not pickle
                conn.send(_unpicklable(answer))
    conn.close()


def _received(conn) -> object:
    """The next message, or `Stop()` when the pipe is closed."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return Stop()


def _answer(task: Task, shared: Mapping[str, Any]) -> Answer:
    """`task` run: what it returned or raised (every exception travels back; the driver
    decides), with the worker's resident memory after it."""
    try:
        # one lasting worker predicts with many models, and TensorFlow warns of
        # "retracing" once it has seen five
        with tensorflow_warnings_held_back():
            value = task.fn(**shared, **task.kwargs)
    except Exception as error:
        return Raised(error, resident_bytes())
    except KeyboardInterrupt:
        return Interrupted(resident_bytes())
    return Returned(value, resident_bytes())


def _unpicklable(answer: Answer) -> Bug:
    detail = answer.error if isinstance(answer, Raised) else getattr(answer, "value", None)
    text = ("".join(traceback.format_exception(detail))
            if isinstance(detail, BaseException) else f"unpicklable result {detail!r}")
    return Bug(text, resident_bytes())


def _tensorflow_imported() -> bool:
    """Whether this process imported TensorFlow: its workers are then spawned, not forked
    (TensorFlow's threads do not survive a fork)."""
    return "tensorflow" in sys.modules


def _context() -> mp.context.BaseContext:
    return mp.get_context("spawn" if _tensorflow_imported() else "fork")


@contextlib.contextmanager
def _spawned_without_main() -> Iterator[None]:
    """While a process is started: `__main__` advertises neither a file nor a module to
    multiprocessing, so a spawned child does not run the caller's main module again.

    Spawn's preparation data (`multiprocessing.spawn.get_preparation_data`) name the
    parent's `__main__` by its `__spec__` or `__file__`, and the child's `prepare` runs
    it as `__mp_main__`: a script without an `if __name__ == "__main__":` guard would
    search again in every worker (and die on its own parent's storage lock), and
    `python - < script.py` names a file `<stdin>` that does not exist. Our workers run
    functions of this package only, so they need nothing of `__main__`; a bare module
    stands in for it while the preparation data are taken."""
    with _SPAWN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is None:
                sys.modules.pop("__main__", None)
            else:
                sys.modules["__main__"] = main


@dataclass(frozen=True)
class TaskFigures:
    """What running one task in a worker cost, beside the task's own figures.

    Attributes:
        start_seconds: from handing the task over to the worker starting it (for a new
            worker, its process start; for a warm one, milliseconds).
        resident_bytes: the worker's resident memory after the task.
        task: how many tasks this worker had run before this one (0: a new worker).
        pid: the worker's process id.
    """

    start_seconds: float
    resident_bytes: int
    task: int
    pid: int

    def as_attrs(self) -> dict[str, int]:
        """Which worker ran the trial and its memory after it: the trial's `worker`
        attribute (the start time goes into `phase_seconds`)."""
        return {"pid": self.pid, "task": self.task, "resident_bytes": self.resident_bytes}


class Worker:
    """One lasting worker process; `run` hands it one task at a time.

    `shared` (e.g. the data splits) is given to every task as keyword arguments without
    being sent: inherited by a forked worker, sent once to a spawned one. `threads`: the
    TensorFlow threads it may use (None: TensorFlow's default). `recycle_growth_bytes`:
    the growth of resident memory after which it is `worn`. `patience`: how long it may
    be silent during a task (None: as long as it lives, e.g. the parent's training, which
    reports no progress). `last`: the `TaskFigures` of the latest task, whether it
    returned or raised (None when it died unanswered)."""

    def __init__(self, *, shared: Mapping[str, Any] | None = None,
                 threads: int | None = None,
                 recycle_growth_bytes: int = RECYCLE_GROWTH_BYTES,
                 patience: Patience | None = None) -> None:
        self.shared = dict(shared or {})
        self.recycle_growth_bytes = recycle_growth_bytes
        self.patience = patience
        ctx = _context()
        spawned = ctx.get_start_method() != "fork"
        self._conn, child = ctx.Pipe(duplex=True)
        # A spawned worker gets the shared data over its pipe, not with the process
        # object: multiprocessing writes that into a pipe of which the parent itself holds
        # the reading end until the write is done, so a child that died before reading
        # more than the pipe's buffer would block this process for good.
        self._unsent: dict[str, Any] | None = self.shared if spawned else None
        self.process = ctx.Process(
            target=_serve_tasks,
            args=(child, os.getpid(), None if spawned else self.shared,
                  thread_environment(threads)),
            daemon=False)
        try:
            with _spawned_without_main() if spawned else contextlib.nullcontext():
                self.process.start()
        except OSError as error:  # fork or spawn refused: EAGAIN, ENOMEM
            self._conn.close()
            child.close()
            raise WorkerStartFailed(
                f"cannot start a worker process ({type(error).__name__}: "
                f"{error.strerror or error}): this machine's limit on processes or memory "
                "was reached; run again with fewer --jobs (what was stored stays, and a "
                "trial cut short is retried)") from None
        child.close()
        self.tasks = 0
        self.dead = False
        self.first_resident: int | None = None
        self.last: TaskFigures | None = None

    @property
    def worn(self) -> bool:
        """Whether the worker should be replaced before another task: it died, or its
        memory grew by more than `recycle_growth_bytes` since its first task."""
        if self.dead or not self.process.is_alive():
            return True
        grown = (self.last.resident_bytes - self.first_resident
                 if self.last is not None and self.first_resident else 0)
        return grown > self.recycle_growth_bytes

    def run(self, fn: Callable[..., Any], /, *, serve: Callable[[Any], Any] | None = None,
            **kwargs: Any) -> Any:
        """`fn(**shared, **kwargs)` in the worker; re-raises its exceptions here.

        Project exceptions (`TrialFailure`, `HopelessTrial`, …) come back as themselves;
        one that cannot be pickled comes back as `WorkerBug`; a worker that dies without
        answering raises `WorkerDied`, one silent past its `patience` is killed and raises
        `WorkerHung`. A stop request (`request_interrupt`), Ctrl-C or
        SIGTERM here ends the worker and raises KeyboardInterrupt. The task's questions
        (`ask_driver`) are answered by `serve`."""
        self.last = None  # set again only when this task answers
        if STOP.is_set():
            raise KeyboardInterrupt
        sent = {k: v for k, v in kwargs.items()
                if not (k in self.shared and self.shared[k] is v)}
        handed = time.time()
        with STOP.waiting():
            try:
                self._hand_over(Task(fn, sent))
                started, answer = self._await_answer(serve, started=handed)
            except BaseException:
                self.close(kill=True)
                raise
        if answer is None:
            self._died()
        self.last = TaskFigures(start_seconds=max(0.0, started - handed),
                                resident_bytes=int(answer.resident_bytes), task=self.tasks,
                                pid=int(self.process.pid or 0))
        if self.first_resident is None:
            self.first_resident = int(answer.resident_bytes)
        self.tasks += 1
        return _outcome(answer)

    def _hand_over(self, task: Task) -> None:
        """Sends `task` (a spawned worker's shared data first); a worker gone already (a
        broken or reset pipe) is marked dead."""
        try:
            if self._unsent is not None:  # a spawned worker's first task
                self._conn.send(Shared(self._unsent))
                self._unsent = None
            self._conn.send(task)
        except OSError:
            self.process.join(1)
            self.dead = True

    def _await_answer(self, serve: Callable[[Any], Any] | None, *, started: float
                      ) -> tuple[float, Answer | None]:
        """(when the task started, its answer), its questions answered by `serve` on the
        way; None for the answer when the worker died without one. The pipe and the
        process are waited on together: a death is seen at once, never waited out on a
        recv that no one will answer; a silence is timed (`_Heard`) and ended past the
        worker's `patience` (`_end_silent`)."""
        heard = _Heard(time.monotonic())
        while True:
            if STOP.is_set():
                raise KeyboardInterrupt
            if self.dead:
                return started, None
            if self.patience is not None and (why := heard.overdue(self.patience)):
                self._end_silent(why)
            ready = wait_for_any([self._conn, self.process.sentinel],
                                 timeout=WAIT_POLL_SECONDS)
            if not ready:
                continue
            if self._conn not in ready and not self._conn.poll(0):
                return started, None
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                return started, None
            heard.said(progress=not isinstance(message, Beat))
            if isinstance(message, Started):
                started = message.at
            elif isinstance(message, Question):
                self._conn.send(None if serve is None else serve(message.question))
                heard.said(progress=True, counted=False)  # answering took the driver's time
            elif not isinstance(message, Beat | Working):
                if self.patience is not None:
                    self.patience.answered(heard.longest)
                return started, message

    def _end_silent(self, why: str) -> NoReturn:
        """Kills a worker silent past its bounds (SIGKILL ends a stopped process too; a
        worker shares the driver's process group, so only its process) and fails its task."""
        self.dead = True
        self.process.kill()
        self.process.join(10)
        raise WorkerHung(f"worker {self.process.pid} stopped answering ({why}) and was ended")

    def _died(self) -> NoReturn:
        self.dead = True
        self.process.join(30)
        code = self.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise WorkerDied(f"worker process died without a result ({how})")

    def close(self, *, kill: bool = False) -> None:
        """Ends the worker: asked to stop (after its task), or terminated at once."""
        self.dead = True
        if not kill and self.process.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                self._conn.send(Stop())
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)
        self._conn.close()


class _Heard:
    """When a busy worker last said anything, when its task last reported progress, and
    the task's longest silence between two reports (`time.monotonic()` seconds)."""

    def __init__(self, now: float) -> None:
        self.anything = self.progress = now
        self.longest = 0.0

    def said(self, *, progress: bool, counted: bool = True) -> None:
        """A message came now; `progress`: a report of the task (not a `Beat`);
        `counted`: its gap is the task's own silence (not the driver's answering)."""
        now = time.monotonic()
        self.anything = now
        if progress:
            if counted:
                self.longest = max(self.longest, now - self.progress)
            self.progress = now

    def overdue(self, patience: Patience) -> str | None:
        """Why the worker is to be ended now (`Patience.overdue`), or None."""
        return patience.overdue(heard=self.anything, advanced=self.progress,
                                now=time.monotonic())


def _outcome(answer: Answer) -> Any:
    """What `Worker.run` gives for the task's answer: its value, or its exception."""
    if isinstance(answer, Returned):
        return answer.value
    if isinstance(answer, Raised):
        raise answer.error
    if isinstance(answer, Interrupted):
        raise KeyboardInterrupt
    raise WorkerBug(answer.text)


class WorkerPool:
    """`size` lasting workers; a driver thread takes one for a task (`worker()`).

    All are started at once, from the calling thread (`start`), before the driver runs
    threads of its own: forking a process while other threads hold locks is what makes
    fork unsafe. A worn worker (`Worker.worn`) is replaced when it is next taken.
    `patience`: the bounds on every worker's silence (`Worker`), one for the pool, so each
    task's measure raises the limit for all."""

    def __init__(self, size: int, *, shared: Mapping[str, Any] | None = None,
                 threads: int | None = None,
                 recycle_growth_bytes: int = RECYCLE_GROWTH_BYTES,
                 patience: Patience | None = None) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, got {size}")
        self.size = size
        self.shared = dict(shared or {})
        self.threads = threads
        self.recycle_growth_bytes = recycle_growth_bytes
        self.patience = patience
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._all: list[Worker] = []
        self._lock = threading.Lock()

    def _new(self) -> Worker:
        worker = Worker(shared=self.shared, threads=self.threads,
                        recycle_growth_bytes=self.recycle_growth_bytes,
                        patience=self.patience)
        with self._lock:
            self._all.append(worker)
        return worker

    def start(self) -> WorkerPool:
        for _ in range(self.size - len(self._all)):
            self._idle.put(self._new())
        return self

    @contextlib.contextmanager
    def worker(self) -> Iterator[Worker]:
        """An idle worker (a fresh one in place of a worn one), returned after use."""
        worker = self._idle.get()
        if worker.worn:
            worker.close(kill=worker.dead)
            worker = self._new()
        try:
            yield worker
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Ends every worker (each is asked to stop; one still busy is terminated)."""
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.close(kill=worker.dead)

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_process(fn: Callable[..., Any], /, *, serve: Callable[[Any], Any] | None = None,
                   **kwargs: Any) -> Any:
    """`fn(**kwargs)` here, with `Worker.run`'s signature (`--no-isolation`)."""
    previous = getattr(_LOCAL, "serve", None)
    _LOCAL.serve = serve
    try:
        return fn(**kwargs)
    finally:
        _LOCAL.serve = previous


def run_isolated(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`fn(**kwargs)` in a worker of its own, ended after it (the parent's training)."""
    worker = Worker()
    try:
        return worker.run(fn, **kwargs)
    finally:
        worker.close(kill=worker.dead)


def without_tensorflow_here(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`fn(**kwargs)`, run so that it leaves this process without TensorFlow: in a
    one-shot worker (`run_isolated`) while TensorFlow is not imported here, so that the
    workers forked after it inherit what it returned; here once it is (nothing to keep
    out). For work that may import TensorFlow in the driver, e.g. decoding an image
    folder with Keras."""
    if _tensorflow_imported():
        return fn(**kwargs)
    return run_isolated(fn, **kwargs)
