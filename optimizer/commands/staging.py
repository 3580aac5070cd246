"""`export`'s folder written whole or not at all (issue 31).

The bundle is written into a fresh staging folder and moved into place only once every
file is written and checked, by renames on one filesystem:

- no `--out` yet: the staging folder is made beside it (same parent folder) and renamed
  to `--out`;
- an existing `--out` folder: the staging folder is a hidden folder inside it (so on its
  filesystem even where `--out` is a mount point or its parent may not be written, as
  for `--out .`), whose files are moved into `--out` one by one (`os.replace`); then the
  model files of an earlier export that this one did not write are removed, and every
  other file is kept (a folder exported into twice holds one model).

Until then no file of `--out` changes: any failure — a full disk, a check that fails, a
refused artifact, a bug — removes the staging folder and any parent folders the export
made, and `--out` is as it was (absent, or holding what it held). A failed write is a
`UsageError` naming `--out`, one line (`staged`); the study's storage is not blamed for
it (`optimizer.store.storage_failures` reads any ENOSPC as the storage's).

The staging folder is made with mode 0o777 less the umask, as `mkdir` makes folders, so
an `--out` it becomes has the user's normal mode, like the files in it
(`objectives.files.write_atomically`).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from definitions.errors import UsageError, one_line

#: The staging folder's name: `.<name of --out>.export-<random>`.
STAGE_MARK = ".export-"


def check_out(out: Path) -> None:
    """`UsageError` unless an export into `out` can be written: its staging folder is made
    and removed again, with any parent folder made for it; nothing is left behind."""
    stage, made = _open_stage(Path(os.path.realpath(out)), shown=out)
    _discard(stage, made)


@contextmanager
def staged(out: Path, *, replaces: Collection[str]) -> Iterator[Path]:
    """A fresh, empty folder to write the export into; when the block ends without an
    exception its files are moved into `out` (see the module doc), the names in
    `replaces` that it lacks removed from `out`. On any exception the folder (and parent
    folders made for it) is removed and `out` is left as it was; an `OSError` of the
    writing becomes a one-line `UsageError` naming `out` (one naming a file outside the
    staging folder and `out`, such as the artifact store's, is not the export's and
    is raised as it is)."""
    real = Path(os.path.realpath(out))
    stage, made = _open_stage(real, shown=out)
    moved = False
    try:
        yield stage
        _move_into_place(stage, real, replaces=replaces)
        moved = True
    except OSError as error:
        if _elsewhere(error, stage, real):
            raise
        file = f" ({Path(os.fsdecode(error.filename)).name})" if error.filename else ""
        raise UsageError(one_line(
            f"--out {out} could not be written{file}: {error.strerror or error}; nothing "
            "was exported and --out is as it was")) from None
    finally:
        _discard(stage, [] if moved else made)


def _open_stage(out: Path, *, shown: Path) -> tuple[Path, list[Path]]:
    """The new staging folder for `out` (a real path, links resolved: the staging folder
    is on the filesystem of the folder it goes to) and the parent folders made for it
    (outermost first); `UsageError` naming `shown`, as the user wrote `--out`, when
    neither `out`'s parent nor an existing `out` takes it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {shown} is not writable: it is a file, not a folder")
    made: list[Path] = []
    try:
        for folder in reversed(out.parents):
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
        return _make_stage(out), made
    except OSError as error:
        _discard(None, made)
        raise UsageError(f"--out {shown} is not writable: {error.strerror}") from None


def _make_stage(out: Path) -> Path:
    """A new folder `.<name>.export-<random>`: inside `out` when it is a folder already,
    else beside it (to be renamed to it)."""
    stage = (out if out.is_dir() else out.parent) / (
        f".{out.name}{STAGE_MARK}{secrets.token_hex(6)}")
    os.mkdir(stage, 0o777)
    return stage


def _move_into_place(stage: Path, out: Path, *, replaces: Collection[str]) -> None:
    """`stage` renamed to `out`, or its files moved into the existing `out` and the
    `replaces` names it does not hold removed there."""
    if not out.exists():
        os.rename(stage, out)
        return
    written = sorted(path.name for path in stage.iterdir())
    for name in written:
        os.replace(stage / name, out / name)
    for name in replaces:
        if name not in written:
            (out / name).unlink(missing_ok=True)


def _discard(stage: Path | None, made: list[Path]) -> None:
    """Removes the staging folder if it is still there, and the folders in `made` (the
    innermost first) if empty."""
    if stage is not None:
        shutil.rmtree(stage, ignore_errors=True)
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            break


def _elsewhere(error: OSError, stage: Path, out: Path) -> bool:
    """Whether `error` names a file outside both the staging folder and `out`."""
    if not error.filename:
        return False
    path = Path(os.path.abspath(os.fsdecode(error.filename)))
    return not (path.is_relative_to(stage) or path.is_relative_to(out))
