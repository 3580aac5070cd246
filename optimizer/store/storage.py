"""Where a study lives: run directory, storage URL, and create-or-resume with checks.

The default storage is a SQLite file in `runs/<study>/` (one writer; DESIGN §5). Any URL
Optuna's RDB storage accepts works with `--storage` (e.g. `postgresql://…` for many
machines). Storage is always injected, never global.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.attributes import SMOKE_SUFFIX
from definitions.errors import UsageError
from definitions.vocabulary import SIZE_OBJECTIVES
from optimizer.store.retry import retry_stale_trial

if TYPE_CHECKING:
    from collections.abc import Sequence

    import optuna

DIRECTIONS = ("maximize", "minimize")
STORAGE_FILE = "study.db"
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
#: The storage URLs this process opened, last one last: a storage failing mid-command is
#: named by them (`optimizer.store.storage_failures`).
OPENED: list[str] = []
#: Tries at opening a server database whose tables another driver is creating right now.
SCHEMA_RACE_ATTEMPTS = 3


@functools.cache
def _driver_storage() -> type:
    """Optuna's RDB storage, its trial state changes one at a time in this process.

    With `run --jobs N`, N driver threads ask for trials at once; taking a queued trial
    (a reference point, a retry, an extension) is a WAITING → RUNNING change that Optuna
    makes atomic with `SELECT … FOR UPDATE`, which SQLite does not have: two threads
    took the same queued trial (measured: "Cannot tell a COMPLETE trial", a
    `--jobs 2` Fashion-MNIST run). Under one lock the second thread finds it RUNNING and
    takes another. One class (and lock) per process, for every storage it opens."""
    import optuna

    class DriverStorage(optuna.storages.RDBStorage):
        _state_lock = threading.Lock()

        def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState,
                                   values: Sequence[float] | None = None) -> bool:
            with self._state_lock:
                return super().set_trial_state_values(trial_id, state=state, values=values)

    return DriverStorage


def study_name(name: str, *, smoke: bool) -> str:
    """The Optuna study name: the study's name, with `-smoke` for the smoke budget."""
    return f"{name}{SMOKE_SUFFIX}" if smoke else name


def run_dir_for(name: str, *, run_dir: Path | None) -> Path:
    """`--run-dir`, or `runs/<study name>`."""
    return Path(run_dir) if run_dir is not None else Path("runs") / name


def storage_url(*, run_dir: Path, storage: str | None) -> str:
    """`--storage`, or the SQLite file in the run directory."""
    return storage if storage else f"sqlite:///{Path(run_dir) / STORAGE_FILE}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL, or None for other storages."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def shown(url: str) -> str:
    """`url` as a message names it: a SQLite file by its absolute path (a relative one means
    nothing to a user whose command ran from another folder), others as given."""
    path = sqlite_path(url)
    return str(path.resolve()) if path is not None else url


def _check_sqlite_file(path: Path, *, must_exist: bool) -> None:
    """Refuses a file that is not a SQLite database, or one that another tool owns."""
    if not path.exists():
        if must_exist:
            raise UsageError(f"no study storage at {path.resolve()}; run `python -m optimizer "
                             "run` first, or pass the --run-dir or --storage it was run with")
        if not path.parent.exists():
            try:
                path.parent.mkdir(parents=True)
            except OSError as error:
                raise UsageError(f"cannot create {path.parent}: {error.strerror}") from None
        return
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise UsageError(f"{path} is not a SQLite database (corrupt or another tool's file)")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as error:
        raise UsageError(f"{path} cannot be read as SQLite: {error}") from None
    if tables and "studies" not in tables:
        raise UsageError(f"{path} is a SQLite database of another tool (no Optuna tables)")


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for `url`, or `UsageError` saying why it cannot be opened."""
    import optuna
    import sqlalchemy.exc

    path = sqlite_path(url)
    OPENED.append(url)
    if path is not None:
        _check_sqlite_file(path, must_exist=must_exist)
    elif "://" not in url:
        raise UsageError(f"storage URL {url!r} is malformed; expected e.g. sqlite:///runs/x.db")
    kwargs = {}
    if path is None:
        # Many drivers on a server database: heartbeats let Optuna fail the trials of a
        # killed driver (stale after GRACE_SECONDS) and retry each candidate once, while
        # other drivers' trials run on. SQLite has one writer; `resume.sweep_orphaned`
        # does that job there at start-up.
        kwargs = {
            "heartbeat_interval": HEARTBEAT_SECONDS,
            "grace_period": GRACE_SECONDS,
            "heartbeat_stale_trial_callback": retry_stale_trial,
        }
    try:
        for attempt in range(SCHEMA_RACE_ATTEMPTS):
            try:
                with warnings.catch_warnings():  # heartbeats are marked experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return _driver_storage()(url, **kwargs)
            except sqlalchemy.exc.IntegrityError:
                # drivers started together on a fresh server database race to create
                # Optuna's tables; the loser finds them made once the winner commits
                if attempt == SCHEMA_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(1.0 + attempt)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(
            f"cannot open storage {url!r}: {type(error).__name__}: {first_line}"
        ) from None


def load_existing(name: str, *, url: str) -> optuna.Study:
    """A stored study for reading (pareto, export, report, dashboard)."""
    import optuna

    storage = open_storage(url, must_exist=True)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
    if name not in names:
        raise UsageError(
            f"no study {name!r} in {shown(url)}; stored: {', '.join(names) or 'none'} "
            f"(run `python -m optimizer run --study {name.removesuffix(SMOKE_SUFFIX)}` first)"
        )
    return optuna.load_study(study_name=name, storage=storage)


def metric_names(size_objective: str) -> tuple[str, str]:
    """The study's two metrics: accuracy, and the byte figure of its size objective."""
    return ("accuracy", SIZE_OBJECTIVES[size_objective])


def size_metric(opt_study: optuna.Study) -> str:
    """The name of a stored study's second objective (`payload_bytes`, `flash_bytes`, …)."""
    return (opt_study.metric_names or metric_names("payload"))[1]


def check_compatible(opt_study: optuna.Study) -> None:
    """Refuses a stored study whose directions or metric names are not ours."""
    directions = tuple(d.name.lower() for d in opt_study.directions)
    names = tuple(opt_study.metric_names or ())
    allowed = [metric_names(objective) for objective in SIZE_OBJECTIVES]
    if directions != DIRECTIONS or names not in allowed:
        raise UsageError(
            f"stored study {opt_study.study_name!r} has directions {list(directions)} and metrics "
            f"{list(names)}, not {list(DIRECTIONS)} / accuracy and one of "
            f"{', '.join(SIZE_OBJECTIVES.values())}; use another --storage or --run-dir"
        )
