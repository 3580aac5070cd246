"""The reading commands' study lookup: from `--study --smoke --run-dir --storage` to the
stored study (`pareto`, `export`, `report`, `dashboard`, and `run --study NAME` of a
`--model --data` study). Storages themselves are `optimizer.store.storage`'s; this module knows
the CLI's arguments and the registry.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.attributes import SMOKE_SUFFIX
from definitions.errors import UsageError
from definitions.importer import is_reference
from optimizer.store.storage import load_existing, run_dir_for, sqlite_path, storage_url, study_name
from studies import STUDIES
from studies.base import UnknownStudyError
from studies.references import load_study

if TYPE_CHECKING:
    import optuna


class StudyNotStored(UnknownStudyError):
    """A `--study` name that is neither registered nor a study reference, and no storage
    where it was looked for; args are (name, valid names, where it was looked for), so
    a command run from another folder says which run dir it opened."""

    def __str__(self) -> str:
        return f"{super().__str__()}; {self.args[2]}"


def check_study_arg(name: str) -> None:
    """Refuses `--study digits-smoke` (the Optuna study name `run --smoke` creates) with
    the spelling that works: `--study digits --smoke`. Other names pass through to
    `studies.get_study`, which names the valid choices."""
    base = name.removesuffix(SMOKE_SUFFIX)
    if name not in STUDIES and base != name and base in STUDIES:
        raise UsageError(
            f"unknown study {name!r}: that is the stored name of study {base!r}'s smoke "
            f"run; use --study {base} --smoke"
        )


def stored_study_name(args: argparse.Namespace) -> str:
    """The Optuna study name `--study` (and `--smoke`) names: a registered study, a study
    reference, or the `--name` a `run --model --data` study was given."""
    check_study_arg(args.study)
    if args.study in STUDIES:
        base = args.study
    elif is_reference(args.study):
        base = load_study(args.study).name
    else:
        base = args.study  # a study made by run --model --data; found in storage or not
    return study_name(base, smoke=args.smoke)


def open_stored(args: argparse.Namespace) -> tuple[str, Path, optuna.Study]:
    """For the reading subcommands: (study name, run dir, stored study) from the common
    `--study --smoke --run-dir --storage` arguments. A name found nowhere is refused
    with the storage it was looked for in (`StudyNotStored`)."""
    name = stored_study_name(args)
    run_dir = run_dir_for(name, run_dir=args.run_dir)
    url = storage_url(run_dir=run_dir, storage=args.storage)
    path = sqlite_path(url)
    if args.study not in STUDIES and path is not None and not path.exists():
        if args.storage:
            given = "--storage"
        elif args.run_dir is not None:
            given = f"--run-dir {args.run_dir}"
        else:
            given = f"the default --run-dir runs/{name} in the current folder {Path.cwd()}"
        raise StudyNotStored(
            args.study, tuple(STUDIES),
            f"no stored study {name!r} either: looked for {path.resolve()} ({given}); pass "
            "the --run-dir or --storage the study was run with")
    return name, run_dir, load_existing(name, url=url)
