"""A run's stop request: Ctrl-C or SIGTERM in the driver, seen by every driver thread that
waits for a worker.

A KeyboardInterrupt raised straight from a signal handler lands on whatever bytecode runs
at that moment (inside a garbage-collector callback it is printed as "Exception ignored …
Traceback" and lost), and only in the main thread, while with `--jobs N` the waits are in
N others. So the handler asks (`request_interrupt`), and each waiting thread ends its
worker and raises KeyboardInterrupt itself (`optimizer.engine.worker.Worker.run`).

The request is the process's one: a signal reaches a process, not a run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class StopRequest:
    """Whether a stop was asked, and how many driver threads wait for a worker now."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._waiting = 0
        self._lock = threading.Lock()

    def request(self) -> bool:
        """Sets the request when some thread is waiting for a worker (True: each such wait
        raises KeyboardInterrupt within `WAIT_POLL_SECONDS`); False when none is, and the
        signal handler must raise it."""
        with self._lock:
            if self._waiting:
                self._event.set()
                return True
        return False

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Counts the calling thread as waiting for a worker while inside."""
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1


#: This process's stop request.
STOP = StopRequest()


def request_interrupt() -> bool:
    """For a signal handler: `STOP.request()` (see `StopRequest.request`)."""
    return STOP.request()


def stop_requested() -> bool:
    """Whether Ctrl-C or SIGTERM asked this run to stop (`request_interrupt`)."""
    return STOP.is_set()


def clear_stop() -> None:
    """Forgets an earlier stop request (a new run in the same process)."""
    STOP.clear()
