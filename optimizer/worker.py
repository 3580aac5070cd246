"""Trial isolation: run one trial's work in a fresh worker process.

Keras leaks memory across many models in one process, and a crash inside TensorFlow
would otherwise take the whole study down. So each trial runs in its own child process
(recycled every trial: the measured cost is one TensorFlow import, a few seconds, small
next to a trial's training; see BENCHMARKS.md). The child is forked after the data are
loaded, so data are still loaded once per study and shared copy-on-write; if the parent
already imported TensorFlow (which is not fork-safe), the child is spawned instead.

A worker that dies without an answer (killed, segfault, out of memory) fails that trial
with `WorkerDied`; the study goes on. A worker whose parent dies exits by itself.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from definitions.attributes import WORKER_DIED
from objectives.errors import TrialFailure

PARENT_POLL_SECONDS = 1.0


class _Wait:
    """Whether `run_isolated` is waiting for a worker, and whether it was asked to stop.

    A KeyboardInterrupt raised straight from a signal handler lands on whatever bytecode
    runs at that moment — inside a garbage-collector callback it is printed as "Exception
    ignored … Traceback" and lost. While waiting here, a handler only sets `stop`, and the
    wait loop raises the interrupt itself, from ordinary code."""

    waiting = False
    stop = False


def request_interrupt() -> bool:
    """For a signal handler: True when a `run_isolated` wait will raise KeyboardInterrupt
    itself (within its poll interval); False when the handler must raise it."""
    if _Wait.waiting:
        _Wait.stop = True
        return True
    return False


class WorkerDied(TrialFailure):
    """The worker process ended without returning a result."""

    kind = WORKER_DIED


class WorkerBug(RuntimeError):
    """The worker raised an unexpected exception (a bug): it is not caught by the study."""


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(PARENT_POLL_SECONDS)


def _child(conn, parent: int, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    # The driver ends a worker (SIGTERM, then SIGKILL): a terminal's Ctrl-C, sent to the
    # whole process group, is the driver's to handle, and a forked worker would otherwise
    # run the driver's handlers (a KeyboardInterrupt traceback of its own, issue 23)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        result = fn(**kwargs)
    except Exception as error:  # every exception travels back; the parent decides
        try:
            conn.send(("raised", error))
        except Exception:  # the exception itself does not pickle
            conn.send(("bug", "".join(traceback.format_exception(error))))
    except KeyboardInterrupt:
        conn.send(("interrupted", None))
    else:
        conn.send(("ok", result))
    conn.close()


def _context() -> mp.context.BaseContext:
    return mp.get_context("spawn" if "tensorflow" in sys.modules else "fork")


def run_in_process(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`fn(**kwargs)` here, with `run_isolated`'s signature (`--no-isolation`)."""
    return fn(**kwargs)


def run_isolated(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`fn(**kwargs)` in a child process; re-raises its exceptions here.

    Project exceptions (`TrialFailure`, `HopelessTrial`, …) come back as themselves; an
    exception that cannot be pickled comes back as `WorkerBug`; a child that dies without
    answering raises `WorkerDied`. Ctrl-C or SIGTERM here terminates the child.
    """
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, os.getpid(), fn, kwargs), daemon=False)
    process.start()
    send.close()
    _Wait.waiting, _Wait.stop = True, False
    try:
        while True:
            if _Wait.stop:
                raise KeyboardInterrupt
            if receive.poll(0.2):
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    kind, payload = "died", None
                break
            if not process.is_alive():
                if receive.poll(0):
                    continue
                kind, payload = "died", None
                break
    except BaseException:
        _Wait.waiting = False
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
        raise
    _Wait.waiting = False
    process.join(30)
    if kind == "ok":
        return payload
    if kind == "raised":
        raise payload
    if kind == "interrupted":
        raise KeyboardInterrupt
    if kind == "bug":
        raise WorkerBug(payload)
    code = process.exitcode
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    raise WorkerDied(f"worker process died without a result ({how})")
