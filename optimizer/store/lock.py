"""One writer per SQLite study: `run` holds an exclusive lock beside the database file.

SQLite is for one writer (DESIGN §5): two drivers on one file duplicate trials, race on
`create_study`, or sweep each other's live trials. The lock is an `flock` on
`<database>.lock`, which the kernel drops when its holder dies, so a lock left by a
killed driver is taken over without any stale-lock heuristics; the holder's pid is
written into the file so that a refused driver can name it. Server databases
(PostgreSQL, MySQL) take several drivers and need no lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from definitions.errors import UsageError

#: A killed driver's worker keeps the lock for up to a second (it polls its parent), so a
#: run started right after a kill waits briefly before refusing.
TAKEOVER_SECONDS = 3.0


class StorageLock:
    """`with StorageLock(db_path):` holds the study's storage for this process, or raises
    `UsageError` naming the holder's pid and how to run several drivers."""

    def __init__(self, database: Path, *, wait_seconds: float = TAKEOVER_SECONDS) -> None:
        if wait_seconds < 0:
            raise ValueError(f"wait_seconds must be >= 0, got {wait_seconds}")
        self.path = Path(f"{database}.lock")
        self.wait_seconds = wait_seconds
        self._fd: int | None = None

    def __enter__(self) -> StorageLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise UsageError(
                        f"the study storage {self.path.with_suffix('')} is in use by another "
                        f"`run` (pid {holder}); SQLite takes one driver at a time: wait for it "
                        "to finish, or run several drivers on a server database "
                        "(--storage postgresql://…)"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
