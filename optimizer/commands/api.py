"""`optimizer.search`: `run` as a Python call, for scripts and notebooks.

    from optimizer import search

    result = search(study="digits", smoke=True, n_trials=2)
    print(result.front)                                   # a pandas DataFrame
    result.export(trial=int(result.front.trial[0]), out="exported")

`search` takes what `run` takes — a study (a `Study` or a name, as `--study`), or a model
and its data (as `--model` and `--data`), and the run's settings — and goes through the
CLI's own translation (`optimizer.commands.run_args`), so defaults, checks and messages are
`run`'s. It returns a `SearchResult` whose `front` holds the rows `pareto` shows and which
exports a trial as `export` does. As a script or a notebook needs:
- workers never run the caller's script again (`optimizer.engine.worker`): a script without an
  `if __name__ == "__main__":` guard, `python - < script.py` and a notebook that imported
  TensorFlow first all work, and a worker that dies is found within seconds;
- a search that found nothing usable raises `NoUsableTrial` with the line `run` prints
  (bad input: `UsageError`; both are `definitions.errors.OptimizerError`);
- library chatter — TensorFlow's C++ and Python logs, absl, Optuna's INFO lines, the
  converter's warnings — stays off the caller's output unless `verbose=True`, and what
  was changed to keep it off is restored on return. The per-trial lines are ours
  (`progress`); our warnings reach the caller's logging as `run`'s do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from definitions.errors import UsageError
from definitions.vocabulary import JOBS_AUTO
from optimizer.commands.cli import build_parser
from optimizer.commands.export import export_stored
from optimizer.commands.pareto import budget_note
from optimizer.commands.run_args import NOTHING_FINISHED, run_settings, study_for_run, usable_front
from optimizer.engine.extension import EXTEND_EVERY
from optimizer.engine.patience import SILENCE_LIMIT
from optimizer.engine.runner import run_study
from optimizer.store.front import COLUMNS, hp_columns
from optimizer.store.record import stored_record
from optimizer.store.record_trust import is_code
from optimizer.store.storage import load_existing, run_dir_for, storage_url
from studies.base import Study

if TYPE_CHECKING:
    import pandas as pd

    from studies.base import Study

#: The Python loggers of the libraries under the search, held at ERROR while it runs.
LIBRARY_LOGGERS = ("tensorflow", "absl", "h5py")


@dataclass(frozen=True, eq=False)
class SearchResult:
    """What `search` found.

    Attributes:
        study_name: the stored study's name (`<name>-smoke` for a smoke run).
        run_dir: the run dir (`runs/<study_name>` unless `run_dir` was given).
        storage: the storage URL of the study (the run dir's `study.db` by default).
        front: the Pareto front, one row per member and the columns of `pareto --format
            csv` (`optimizer.commands.pareto.COLUMNS`, then any `hp_<name>`): exact integer bytes,
            unrounded accuracies, `factorize` as a list. Empty (with those columns) when
            no trial has finished yet (a `timeout` reached first).
        note: what `run` prints under the front: the trials a device budget left off it,
            or that no trial has finished yet; '' when there is nothing to say.
        artifact_dir: the artifact store given to `search` (None: the run dir's).
        data_dir: the `data_dir` given to `search`, where `export` finds the data again.
        loader: the data loader reference the caller named (`module:function`), which
            `export` may then run again to re-check accuracy; None for files and built-in
            datasets.
    """

    study_name: str
    run_dir: Path
    storage: str
    front: pd.DataFrame
    note: str = ""
    artifact_dir: Path | None = None
    data_dir: Path | None = None
    loader: str | None = None

    def export(self, *, out: str | Path, trial: int | None = None,
               max_bytes: int | None = None, min_accuracy: float | None = None,
               device_mode: str | None = None, verbose: bool = False) -> dict[str, object]:
        """`export`: writes the chosen trial's artifact, the device files and
        `model_card.json` into `out`, after checking the copy scores the recorded accuracy;
        returns the card (a dict). Choose by `trial` number, or the most accurate within
        `max_bytes`, or the smallest reaching `min_accuracy` (one of the three).
        `device_mode`: `int8` (default) or `float32`, for an `epr` trial's device file;
        `verbose`: as `search`'s."""

        if sum(choice is not None for choice in (trial, max_bytes, min_accuracy)) != 1:
            raise UsageError("export: give one of trial=, max_bytes= or min_accuracy=")
        with _library_output_quiet(verbose=verbose):
            return export_stored(
                opt_study=load_existing(self.study_name, url=self.storage), run_dir=self.run_dir,
                out=Path(out), trial=trial, max_bytes=max_bytes, min_accuracy=min_accuracy,
                artifact_dir=self.artifact_dir, data_dir=self.data_dir, data=self.loader,
                device_mode=device_mode)


def search(
    *,
    study: Study | str | None = None,
    model: str | Path | None = None,
    data: str | Path | None = None,
    name: str | None = None,
    trust_model_code: bool = False,
    smoke: bool = False,
    n_trials: int | None = None,
    timeout: float | None = None,
    seed: int | None = None,
    jobs: int | str = JOBS_AUTO,
    run_dir: str | Path | None = None,
    storage: str | None = None,
    artifact_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    sampler: str = "tpe",
    backend: str = "optuna",
    init: str | None = None,
    extend_every: int = EXTEND_EVERY,
    finalists: int | None = None,
    size_objective: str | None = None,
    quantization: Sequence[str] | None = None,
    width_range: tuple[float, float] | None = None,
    max_flash_kb: float | None = None,
    max_ram_kb: float | None = None,
    max_latency_ms: float | None = None,
    min_accuracy: float | None = None,
    check_before_training: bool = True,
    isolate: bool = True,
    silence_limit: float = SILENCE_LIMIT,
    progress: bool | None = None,
    verbose: bool = False,
) -> SearchResult:
    """Runs a search as `python -m optimizer run` does and returns its `SearchResult`.

    What to search: `study` (a `studies.Study`, a registered name, a reference, or the
    `name` of a stored `model`/`data` study) or `model` and `data` together, as `run
    --model --data` takes them. Every other argument is the `run` flag of that name, with
    its default (`run --help`); `isolate=False` is `--no-isolation`. `progress`: a line per
    trial on stderr (None: a bar on a terminal; False: none). `verbose`: let TensorFlow's,
    absl's and Optuna's log lines through.

    Raises what `run` prints: `UsageError` (bad input, nothing stored changed),
    `NoUsableTrial` (nothing on the front), `BudgetNotReached` (trials cut short again and
    again), KeyboardInterrupt (the interrupted trial is retried by the next call)."""
    given_study = _given_study(study, model=model, data=data, name=name)
    args = _run_args(
        study=None if given_study is not None else study, model=_text(model),
        data=_text(data), name=name, trust_model_code=trust_model_code, smoke=smoke,
        n_trials=n_trials, timeout=timeout, seed=seed, jobs=jobs, run_dir=_path(run_dir),
        storage=storage, artifact_dir=_path(artifact_dir), data_dir=_path(data_dir),
        sampler=sampler, backend=backend, init=init, extend_every=extend_every,
        finalists=finalists, size_objective=size_objective,
        quantization=None if quantization is None else list(quantization),
        width_range=None if width_range is None else list(width_range),
        max_flash_kb=max_flash_kb, max_ram_kb=max_ram_kb, max_latency_ms=max_latency_ms,
        min_accuracy=min_accuracy, no_check_before_training=not check_before_training,
        no_isolation=not isolate, silence_limit=silence_limit)
    with _library_output_quiet(verbose=verbose):
        return _searched(given_study, args, progress=progress)


def _searched(given_study: Study | None, args: Any, *, progress: bool | None
              ) -> SearchResult:
    """`run` of `given_study` (else the study `args` name) with `args`' settings, as a
    `SearchResult`."""

    if given_study is not None:
        given_study.validate()
    chosen = given_study if given_study is not None else study_for_run(args)
    opt_study = run_study(study=chosen, settings=run_settings(args, progress=progress))
    rows = usable_front(opt_study)
    note = NOTHING_FINISHED if rows is None else budget_note(opt_study)
    recorded_data = stored_record(opt_study).get("data_reference")
    where = run_dir_for(opt_study.study_name, run_dir=args.run_dir)
    return SearchResult(
        study_name=opt_study.study_name, run_dir=where,
        storage=storage_url(run_dir=where, storage=args.storage),
        front=front_frame(rows or []), note=note, artifact_dir=args.artifact_dir,
        data_dir=args.data_dir, loader=str(recorded_data) if is_code(recorded_data) else None,
    )


def _given_study(study: Study | str | None, *, model: object, data: object,
                 name: str | None) -> Study | None:
    """The `Study` object given (None for a name or for `model`/`data`), or `UsageError`
    for a combination `run` would not take."""

    if study is not None and not isinstance(study, Study | str):
        raise UsageError(f"study must be a studies.Study or a name, not "
                         f"{type(study).__name__}")
    if not isinstance(study, Study):
        return None
    if model is not None or data is not None:
        raise UsageError("give either study or model with data, not both")
    if name is not None:
        raise UsageError("name names the study made by model and data; a Study has its own")
    return study


def _run_args(**settings: Any) -> Any:
    """`run`'s parsed arguments: every setting at the CLI's default, then `settings` (by
    their `args.` names)."""

    args = build_parser().parse_args(["run"])
    vars(args).update(settings)
    return args


def front_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """`store.front.front_rows` as a DataFrame with `pareto --format csv`'s columns (also when
    the front is empty)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=[*COLUMNS, *hp_columns(rows)])


def _text(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


# -- keeping the libraries' output off the caller's ---------------------------------------


class _PastDivertedStderr:
    """`sys.stderr` while file descriptor 2 goes to /dev/null: what Python writes still
    reaches the caller's stream (through a copy of the original descriptor). Once the
    diversion ends it passes everything to the original `sys.stderr`, so a logging
    handler that took hold of it meanwhile keeps working."""

    def __init__(self, original: TextIO, fd: int) -> None:
        self._original = original
        self._fd: int | None = fd

    def write(self, text: str) -> int:
        fd = self._fd
        if fd is None:
            return self._original.write(text)
        data = text.encode(getattr(self._original, "encoding", None) or "utf-8", "replace")
        while data:
            data = data[os.write(fd, data):]
        return len(text)

    def flush(self) -> None:
        if self._fd is None:
            self._original.flush()

    def isatty(self) -> bool:
        fd = self._fd
        return self._original.isatty() if fd is None else os.isatty(fd)

    def fileno(self) -> int:
        fd = self._fd
        return self._original.fileno() if fd is None else fd

    def end(self) -> None:
        self._fd = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


@contextlib.contextmanager
def _native_stderr_diverted() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the duration, for this process and the workers
    it starts: native chatter (TensorFlow's C++ logs, the TFLite converter's and
    interpreter's lines) is written there, below Python. `sys.stderr`, where it wrote to
    descriptor 2, keeps reaching the caller's stream; a `sys.stderr` that is no file
    (a notebook kernel's) writes elsewhere anyway and is left alone."""
    stream = sys.stderr
    try:
        writes_to_fd2 = stream is not None and stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        writes_to_fd2 = False
    if stream is not None:
        stream.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    past = _PastDivertedStderr(stream, saved) if writes_to_fd2 else None
    if past is not None:
        sys.stderr = past
    try:
        yield
    finally:
        os.dup2(saved, 2)
        if past is not None:
            past.end()
            if sys.stderr is past:
                sys.stderr = stream
        os.close(saved)


@contextlib.contextmanager
def _levels_at_least(level: int, names: Sequence[str]) -> Iterator[None]:
    """The named loggers raised to `level` for the duration, then restored."""
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.level for logger in loggers]
    for logger, was in zip(loggers, before, strict=True):
        logger.setLevel(max(was, level))
    try:
        yield
    finally:
        for logger, was in zip(loggers, before, strict=True):
            logger.setLevel(was)


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna's verbosity at ERROR (it logs every trial at INFO, every failure with a
    traceback at WARNING; our own lines say both), restored after. Set after import:
    Optuna configures its logger when first imported."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables set where unset (workers start with them), then unset."""
    added = [key for key in values if key not in os.environ]
    for key in added:
        os.environ[key] = values[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _library_output_quiet(*, verbose: bool) -> Iterator[None]:
    """The libraries' log lines kept off the caller's output for the duration (nothing
    changed when `verbose`): TensorFlow's C++ logs and the converter's native lines
    (`_native_stderr_diverted`, and `TF_CPP_MIN_LOG_LEVEL` for a TensorFlow imported
    now), the `tensorflow`, `absl` and `h5py` loggers at ERROR, Optuna at ERROR, and the
    warnings the CLI also filters (the TFLite converter's, Optuna's experimental flags)."""
    if verbose:
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environment(TF_CPP_MIN_LOG_LEVEL="3"))
        stack.enter_context(_native_stderr_diverted())
        stack.enter_context(_levels_at_least(logging.ERROR, LIBRARY_LOGGERS))
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", category=UserWarning, module=r"tensorflow\.lite")
        warnings.filterwarnings("ignore", module=r"optuna\._experimental")
        # Optuna imports tqdm.auto, which in a kernel without ipywidgets warns that it
        # found no IProgress: a progress bar it will not draw, not the caller's concern
        warnings.filterwarnings("ignore", message=r"IProgress not found")
        stack.enter_context(_optuna_quiet())
        yield
