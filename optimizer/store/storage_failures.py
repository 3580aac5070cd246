"""A storage that fails mid-command — corrupt pages, a read-only file, a full disk, a
lock held too long — said in one line naming the storage and what to do (exit 2), instead
of the SQLAlchemy traceback (89–121 lines, measured in issue 23).

Optuna commits each write on its own, so what was stored before the failure stays; a
trial the failure left RUNNING is found by the next `run` (`resume.sweep_orphaned`) and its
candidate retried, like any interrupted trial. The line names the storage this process
opened last (`storage.OPENED`).
"""

from __future__ import annotations

import errno

from definitions.errors import UsageError, one_line
from optimizer.store.storage import OPENED, shown

#: What SQLite (through SQLAlchemy) or the OS says, what it means, and what to do.
_KNOWN: tuple[tuple[str, str, str], ...] = (
    ("malformed", "is corrupt", "restore it from a copy, or start a new --run-dir (the "
     "file was left as it is)"),
    ("file is not a database", "is corrupt", "restore it from a copy, or start a new "
     "--run-dir (the file was left as it is)"),
    ("readonly database", "is read-only", "make it writable (and its folder, for SQLite's "
     "journal), or use another --run-dir"),
    ("unable to open database", "cannot be opened", "check that the file and its folder "
     "exist and are readable and writable"),
    ("disk is full", "is on a full disk", "free some space and run again: what was stored "
     "stays, and a trial cut short is retried"),
    ("no space left", "is on a full disk", "free some space and run again: what was stored "
     "stays, and a trial cut short is retried"),
    ("database is locked", "is locked by another process", "wait for it to finish, or use "
     "another --run-dir"),
    ("disk i/o error", "could not be read or written (disk I/O error)", "check the disk, "
     "then run again"),
)


def _chain(error: BaseException):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def as_usage_error(error: BaseException) -> UsageError | None:
    """The one-line `UsageError` for a storage failure anywhere in `error`'s chain (Optuna
    wraps SQLAlchemy, and a failed write can end as Optuna's own `AssertionError`), or None
    when it is not one (a bug, which is not hidden)."""
    try:
        import sqlalchemy.exc
        from optuna.exceptions import StorageInternalError
    except ImportError:  # storage was never touched
        return None

    storage = shown(OPENED[-1]) if OPENED else "the study storage"
    failures = [link for link in _chain(error)
                if isinstance(link, sqlalchemy.exc.SQLAlchemyError | StorageInternalError)
                or (isinstance(link, OSError)
                    and link.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO))]
    for link in failures:  # the most telling: a known cause anywhere in the chain
        text = str(link).lower()
        for needle, what, todo in _KNOWN:
            if needle in text:
                return UsageError(f"storage {storage} {what}: {todo}")
    if failures:
        link = failures[-1]  # the root cause
        return UsageError(f"storage {storage} failed: {type(link).__name__}: "
                          f"{one_line(str(link).splitlines()[0], limit=200)}")
    return None
