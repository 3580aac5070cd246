"""What a worker process is given and measured by: its threads, its resident memory, and
TensorFlow's warnings held back while it works. (The machine's cores and memory, which
decide how many workers a run starts, are `optimizer.engine.machine`'s.)"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator


def thread_environment(threads: int | None) -> dict[str, str]:
    """The environment that gives a worker's TensorFlow (and OpenMP) `threads` threads;
    empty for None (TensorFlow's own choice: every core)."""
    if threads is None:
        return {}
    value = str(max(1, threads))
    return {"TF_NUM_INTRAOP_THREADS": value, "TF_NUM_INTEROP_THREADS": value,
            "OMP_NUM_THREADS": value}


def resident_bytes() -> int:
    """This process's resident memory now (Linux `/proc/self/statm`; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def tensorflow_warnings_held_back() -> Iterator[None]:
    """Raises the `tensorflow` logger (TensorFlow's Python logging) to ERROR for the
    duration, then restores its level; does nothing when our `optimizer` logger is enabled
    for DEBUG (the CLI's `--verbose`). The one rule for a worker's tasks and the driver's
    test scoring alike."""
    if logging.getLogger("optimizer").isEnabledFor(logging.DEBUG):
        yield
        return
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        tf_logger.setLevel(level)
