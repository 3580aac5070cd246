"""The CLI's translation of `run`'s arguments into a Study and the library call
(`optimizer.engine.runner.run_study`), then the front printed. `optimizer.search` (the Python
API) goes through the same translation, so both take the same settings with the same
defaults and checks, and end the same way when nothing usable was found.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from definitions.attributes import SMOKE_SUFFIX
from definitions.budgets import DeviceBudgets
from definitions.errors import NoUsableTrial, UsageError
from definitions.importer import is_reference
from optimizer.commands.lookup import open_stored
from optimizer.commands.pareto import budget_note, format_front, front_rows
from optimizer.engine.runner import run_study
from optimizer.engine.settings import RunSettings
from optimizer.store.record import stored_record
from optimizer.store.record_trust import check_resume_by_name
from studies import STUDIES
from studies.references import files_study, resolve_study, study_from_record

if TYPE_CHECKING:
    import optuna

    from studies.base import Study

#: What `run` says when it stopped (`--timeout`) before any trial ended: not a failure.
NOTHING_FINISHED = "no trial has finished yet; run again to go on"


def budgets_from(args: argparse.Namespace) -> DeviceBudgets | None:
    """The budget flags as `DeviceBudgets`, or None when none was given."""
    given = {name: getattr(args, name) for name in
             ("max_flash_kb", "max_ram_kb", "max_latency_ms", "min_accuracy")}
    if all(value is None for value in given.values()):
        return None
    return DeviceBudgets(**given)


def study_for_run(args: argparse.Namespace) -> Study:
    """The study `run` searches: `--model M --data D [--name N]`, a registered name, a
    study reference, or the name of a stored `--model --data` study to resume."""

    if args.model is not None or args.data is not None:
        if args.study is not None:
            raise UsageError("give either --study or --model with --data, not both")
        if args.model is None or args.data is None:
            raise UsageError("--model and --data go together (a model and its data)")
        return files_study(model=args.model, data=args.data, name=args.name)
    if args.study is None:
        raise UsageError("give --study NAME (see `studies`), --study path/to/study.py, or "
                         "--model my_model.keras --data my_data.npz")
    if args.name is not None:
        raise UsageError("--name names the study made by --model and --data")
    if args.study in STUDIES or is_reference(args.study):
        return resolve_study(args.study)
    return stored_user_study(args)


def stored_user_study(args: argparse.Namespace) -> Study:
    """The definition of a study `run --model --data --name N` stored in the run dir,
    from its record (`UnknownStudyError` when there is none). A record naming Python code
    (a model function, a data loader, a study file) is refused: the user names it again
    on the command line (`optimizer.store.record_trust`)."""

    name, _, existing = open_stored(args)  # the reading commands' lookup, one for all
    record = stored_record(existing)
    check_resume_by_name(record, study_name=name.removesuffix(SMOKE_SUFFIX), smoke=args.smoke)
    return study_from_record(record, name=name)


def run_settings(args: argparse.Namespace, *, progress: bool | None = None) -> RunSettings:
    """`run`'s settings (all but the study), validated; `progress` as `RunSettings`'."""
    return RunSettings(
        smoke=args.smoke, run_dir=args.run_dir, storage=args.storage,
        artifact_dir=args.artifact_dir, sampler=args.sampler, backend=args.backend,
        seed=args.seed, n_trials=args.n_trials, timeout=args.timeout,
        data_dir=args.data_dir, size_objective=args.size_objective,
        device_budgets=budgets_from(args), init=args.init, progress=progress,
        isolate=not args.no_isolation, extend_every=args.extend_every,
        quantization_modes=None if args.quantization is None else tuple(args.quantization),
        width_range=None if args.width_range is None else tuple(args.width_range),
        check_before_training=not args.no_check_before_training,
        trust_model_code=args.trust_model_code, jobs=args.jobs, finalists=args.finalists,
        silence_limit=args.silence_limit,
    )


def usable_front(opt_study: optuna.Study) -> list[dict[str, object]] | None:
    """The front's rows (`store.front.front_rows`), or None when no trial has finished yet (a
    run stopped by `--timeout` before any trial ended: nothing to judge, not a failure).

    A search whose trials ended with nothing on the front raises `NoUsableTrial`, one
    line saying which of the two ways it came to nothing: no trial completed (with the
    count of each state), or every completed trial is over a device budget."""
    from collections import Counter

    rows = front_rows(opt_study)
    if rows:
        return rows
    ended = Counter(t.state.name for t in opt_study.get_trials(deepcopy=False)
                    if t.state.is_finished())
    if not ended:
        return None
    if "COMPLETE" in ended:  # every completed trial is over a device budget
        raise NoUsableTrial(f"no completed trial within the budgets: {budget_note(opt_study)}")
    counts = ", ".join(f"{n} {state}" for state, n in ended.items())
    raise NoUsableTrial(f"no trial completed ({counts}); each trial's line above says why "
                        "(its prune or fail reason)")


def run_command(args: argparse.Namespace) -> int:
    """CLI entry: runs the study, then prints its front. Nothing usable found is
    `NoUsableTrial`: one line on stderr, exit 1 (not 2: the input was fine, the search
    was not)."""

    opt_study = run_study(study=study_for_run(args), settings=run_settings(args))
    rows = usable_front(opt_study)
    if rows is None:
        print(NOTHING_FINISHED)
        return 0
    print(format_front(rows, "table"))
    if excluded := budget_note(opt_study):
        print(excluded)
    return 0
