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
import json
import sqlite3
from contextlib import closing

from definitions.errors import UsageError, one_line
from optimizer.store.storage import OPENED, shown, sqlite_path

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
    if any(isinstance(link, json.JSONDecodeError) for link in _chain(error)):
        return UsageError(f"storage {storage} holds {_not_json()}, which this tool never "
                          "writes: the database was changed by something else or is "
                          "damaged; restore it from a copy (nothing was changed)")
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


#: Where Optuna's SQLite storage keeps JSON values (its schema), and what names a row.
_JSON_COLUMNS = (
    ("trial_user_attributes", "value_json", "key"),
    ("trial_system_attributes", "value_json", "key"),
    ("study_user_attributes", "value_json", "key"),
    ("study_system_attributes", "value_json", "key"),
    ("trial_params", "distribution_json", "param_name"),
)


def _not_json() -> str:
    """`trial 3's 'payload_bytes' ('{not json'), not JSON`, found by reading the SQLite file
    Optuna could not load (read only, for the message); `a value that is not JSON` where
    the storage is not a readable SQLite file or nothing is found."""
    path = sqlite_path(OPENED[-1]) if OPENED else None
    found = None
    if path is not None and path.is_file():
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                found = _first_not_json(db)
        except sqlite3.Error:
            pass
    return found or "a value that is not JSON"


def _first_not_json(db: sqlite3.Connection) -> str | None:
    for table, column, name in _JSON_COLUMNS:
        owner = "trial_id" if table.startswith("trial") else "study_id"
        for row_id, key, value in db.execute(f"select {owner}, {name}, {column} from {table}"):
            try:
                json.loads(value)
            except (TypeError, ValueError):
                shown_value = one_line(str(value), limit=40)
                return f"{_owner(db, owner, row_id)}'s {key!r} ({shown_value!r}), not JSON"
    return None


def _owner(db: sqlite3.Connection, owner: str, row_id: int) -> str:
    """`trial 3` (its number in the study) or `the study`."""
    if owner == "study_id":
        return "the study"
    found = db.execute("select number from trials where trial_id = ?", (row_id,)).fetchone()
    return f"trial {found[0]}" if found else "a trial"
