"""`run_study`: the library entry point of `run`: a study and its validated
`RunSettings` in; prepare (create or resume the stored study) → search (its trials with
progress, then the finalists) → finish (score the front on test).

The search sees only the validation split; after it, each front member's artifact is
evaluated once on the test split and the figure is stored on the study
(`test_accuracy`, keyed by trial number). The parts live in their own modules: samplers
(`optimizer.engine.sampling`), create/resume (`optimizer.engine.resume`), the trial loop
(`optimizer.engine.trial_loop`), the progress display (`optimizer.engine.progress`), test scoring
(`optimizer.engine.scoring`); the CLI's translation of arguments is `optimizer.commands.run_args`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from definitions.errors import UsageError
from definitions.vocabulary import JOBS_AUTO
from optimizer.engine.data import load_data
from optimizer.engine.finalists import WEIGHTS_DIR, keep_front_weights, run_finalists
from optimizer.engine.objective import TRIAL_FAILURES, Objective
from optimizer.engine.parents import plan_parent
from optimizer.engine.patience import Patience
from optimizer.engine.progress import Progress
from optimizer.engine.resume import (
    create_or_resume,
    existing_study,
    resolve_seed,
    retry_unrecorded_failures,
    sweep_orphaned,
    with_run_settings,
)
from optimizer.engine.sampling import make_sampler
from optimizer.engine.scoring import score_front_on_test
from optimizer.engine.settings import RunSettings
from optimizer.engine.stop import request_interrupt
from optimizer.engine.trial_loop import (
    extension_for,
    kerastuner_trials,
    pending_retries,
    run_trials,
)
from optimizer.engine.worker import WorkerPool
from optimizer.store.artifacts import open_store, store_dir_for
from optimizer.store.lock import StorageLock
from optimizer.store.record import (
    check_record,
    definition_fields,
    make_record,
    stored_record,
    write_parent_accuracy,
)
from optimizer.store.retry import finished_count
from optimizer.store.storage import (
    STORAGE_FILE,
    open_storage,
    run_dir_for,
    sqlite_path,
    storage_url,
    study_name,
)
from studies.base import check_study_name

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from optimizer.engine.parents import SearchParent
    from optimizer.engine.worker import WorkerPool
    from studies.base import Study
    from studies.datasets import Splits

log = logging.getLogger(__name__)


def _sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM ends the running trial like Ctrl-C: FAIL with a reason, then a prompt exit
    (raised by the worker wait itself when one is under way; see `stop.request_interrupt`)."""

    if not request_interrupt():
        raise KeyboardInterrupt


def _stopped_by_timeout(start: float, timeout: float | None) -> bool:
    """Whether `--timeout` has run out since `start`: a run stopped by it trains no
    finalists (they would overrun it by a full training each)."""
    return timeout is not None and time.perf_counter() - start >= timeout


@contextlib.contextmanager
def _signals_stop_the_run() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM end every trial in flight, each FAIL with a reason and
    its candidate retried, then a prompt exit: a driver thread waiting on a worker raises
    the interrupt itself (`stop.request_interrupt`), in whichever thread it waits."""
    previous = {sig: signal.signal(sig, _sigterm_as_interrupt)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _workers(settings: RunSettings, *, splits: Splits, teacher: np.ndarray | None
             ) -> Iterator[WorkerPool | None]:
    """`settings.workers` lasting workers sharing the machine's cores (None for 0: trials
    run in this process), forked now, with the data, before the run starts threads of its
    own; none waited for past its silence limit, nor silent past `--timeout` (`Patience`)."""
    jobs, cores = settings.workers, settings.machine.cores
    if jobs == 0:
        yield None
        return
    if settings.jobs == JOBS_AUTO:
        log.info("%d trial(s) at once (--jobs auto: %d cores%s)", jobs, cores,
                 "" if settings.machine.available_bytes is None else
                 f", {settings.machine.available_bytes / (1 << 30):.1f} GiB available")
    threads = None if jobs == 1 else max(1, cores // jobs)
    if jobs > cores:
        log.warning("--jobs %d on %d cores: trials will share cores and each run slower",
                    jobs, cores)
    patience = Patience(silence_limit=settings.silence_limit, deadline=None
                        if settings.timeout is None else time.monotonic() + settings.timeout)
    with WorkerPool(jobs, shared={"splits": splits, "teacher": teacher},
                    threads=threads, patience=patience) as pool:
        yield pool


def run_study(*, study: Study, settings: RunSettings) -> optuna.Study:
    """Runs `study` until it has `settings.n_trials` finished trials (default: its
    budget's): prepare (storage, data, parent, the stored study) → search (the trials,
    then the finalists) → finish (the front scored on test). Returns the Optuna study.

    The sampler is seeded with the run's seed plus the number of trials so far, so a
    resumed random search does not repeat its draws. This process stays the only writer
    of the study; `settings.jobs` trials run at once, each in a worker of its own."""
    if settings.smoke:
        study = study.with_smoke_budget()
    check_study_name(study.name)
    name = study_name(study.name, smoke=settings.smoke)
    run_dir = run_dir_for(name, run_dir=settings.run_dir)
    created = _writable_run_dir(run_dir)
    with _removed_on_refusal(run_dir, created=created):
        url = storage_url(run_dir=run_dir, storage=settings.storage)
        database = sqlite_path(url)
        with StorageLock(database) if database is not None else contextlib.nullcontext():
            run = _prepare(study, settings, name=name, run_dir=run_dir, url=url)
            _search(run, settings)
            score_front_on_test(run.opt_study, splits=run.splits, store=run.store,
                                store_dir=run.store_dir)
        return run.opt_study


@dataclass(frozen=True)
class _Run:
    """A prepared run: the study as this run searches it, its data and parent, the stored
    study and its storage, the artifact store, and how many trials to reach and run."""

    study: Study
    name: str
    run_dir: Path
    seed: int
    splits: Splits
    parent: SearchParent
    storage: optuna.storages.BaseStorage
    opt_study: optuna.Study
    store: FileSystemArtifactStore
    store_dir: Path
    target: int
    remaining: int


def _writable_run_dir(run_dir: Path) -> bool:
    """Makes `run_dir` (`UsageError` when it cannot be written); whether it was new."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"run dir {run_dir} is not writable: {error.strerror}") from None
    return created


def _prepare(study: Study, settings: RunSettings, *, name: str, run_dir: Path,
             url: str) -> _Run:
    """Everything before the first trial. What the study definition alone decides is
    checked against a stored study first; the data and parent come before any write, so
    an error in either leaves no storage behind."""
    storage, existing = _stored(url, name=name)
    stored = None if existing is None else stored_record(existing)
    seed = resolve_seed(settings.seed, stored=stored, name=name)
    study = with_run_settings(study, stored=stored, size_objective=settings.size_objective,
                              device_budgets=settings.device_budgets, init=settings.init,
                              quantization_modes=settings.quantization_modes,
                              width_range=settings.width_range)
    if existing is not None:  # what the definition alone decides, before any training
        fields = definition_fields(study)
        check_record(existing, fields, keys=fields)
    splits = load_data(dataset=study.dataset, data=study.data, data_dir=settings.data_dir,
                       split_seed=seed, model=study.model)
    parent = plan_parent(study=study, splits=splits, seed=seed, cache_dir=run_dir / "parent",
                         isolate=settings.isolate, trust_code=settings.trust_model_code)
    if settings.backend == "kerastuner" and parent.info is None:
        raise UsageError("--backend kerastuner searches one parent; a hypermodel study "
                         "runs with --backend optuna")
    storage = storage or open_storage(url)
    opt_study = _opened(study, settings, name=name, storage=storage, existing=existing,
                        splits=splits, parent=parent, seed=seed)
    target = settings.n_trials or study.budget.n_trials
    remaining = max(target - finished_count(opt_study), pending_retries(opt_study))
    store_dir = store_dir_for(run_dir, artifact_dir=settings.artifact_dir)
    store = open_store(store_dir, create=True)
    log.info("study %s: %s from %s; storage %s; artifacts %s; %d of %d trials to run",
             name, study.parent_label, splits.source, url, store_dir, remaining, target)
    return _Run(study=study, name=name, run_dir=run_dir, seed=seed, splits=splits,
                parent=parent, storage=storage, opt_study=opt_study, store=store,
                store_dir=store_dir, target=target, remaining=remaining)


def _stored(url: str, *, name: str
            ) -> tuple[optuna.storages.BaseStorage | None, optuna.Study | None]:
    """(the storage, the stored study `name`) where the storage exists already; a SQLite
    file not yet made is not made here (a refusal then leaves none)."""
    database = sqlite_path(url)
    if database is None or (database.exists() and database.stat().st_size > 0):
        storage = open_storage(url)
        return storage, existing_study(storage, name)
    return None, None


def _opened(study: Study, settings: RunSettings, *, name: str,
            storage: optuna.storages.BaseStorage, existing: optuna.Study | None,
            splits: Splits, parent: SearchParent, seed: int) -> optuna.Study:
    """The Optuna study, created with its record or resumed; trials a killed run or a
    failed storage cut short are retried once; its sampler set for this run."""
    opt_study = create_or_resume(
        study=study, name=name, storage=storage,
        record=make_record(study=study, splits=splits, parent=parent), existing=existing,
        # a hypermodel's convs depend on its hp_* values: reference points factorize none
        offered=parent.info.offered_at if parent.info else lambda width: (),
        # a KerasTuner user starts from its own proposals
        enqueue_reference_points=settings.backend == "optuna",
    )
    if parent.info is not None and parent.info.parent_accuracy is not None:
        write_parent_accuracy(opt_study, parent.info.parent_accuracy)
    # one decision, made in `open_storage`: storages with heartbeats fail stale trials
    # themselves; without them (SQLite) we hold the lock, so RUNNING means orphaned
    if storage.get_heartbeat_interval() is None:
        swept = sweep_orphaned(opt_study, storage=storage) + retry_unrecorded_failures(opt_study)
        if swept:
            log.warning("%d trial(s) cut short by a killed run or a failed storage; "
                        "each is retried once", swept)
    opt_study.sampler = make_sampler(settings.sampler, seed=seed + len(opt_study.trials))
    return opt_study


def _search(run: _Run, settings: RunSettings) -> None:
    """The run's trials, `settings.jobs` at a time, then the finalists (not after a
    `--timeout`: each would overrun it by a full training); the front's trained weights
    are kept, the others removed."""
    if run.remaining <= 0:
        log.info("study %s already has %d finished trials; pass a larger --n-trials to "
                 "add more", run.name, run.target)
        return
    start = time.perf_counter()
    # each trial's trained weights, kept for the finalists to fine-tune
    weights_dir = run.run_dir / WEIGHTS_DIR if settings.finalist_count else None
    teacher = _teacher(run)
    with _workers(settings, splits=run.splits, teacher=teacher) as pool:
        objective = Objective(
            study=run.study, parent=run.parent, splits=run.splits,
            scratch_dir=run.run_dir / "scratch", seed=run.seed, artifact_store=run.store,
            storage=run.storage, workers=pool,
            check_before_training=settings.check_before_training, weights_dir=weights_dir,
            teacher=teacher)
        with _progress(run.remaining, settings.progress) as bar, _signals_stop_the_run():
            _trials(run, settings, objective, progress=bar)
            if settings.finalist_count and not _stopped_by_timeout(start, settings.timeout):
                run_finalists(run.opt_study, objective, k=settings.finalist_count,
                              jobs=settings.job_count, catch=TRIAL_FAILURES, progress=bar)
            if weights_dir is not None:
                keep_front_weights(run.opt_study, weights_dir)
    log.info("finished %d of %d trials; this run took %.0f s",
             finished_count(run.opt_study), run.target, time.perf_counter() - start)


def _teacher(run: _Run) -> np.ndarray | None:
    """The trained parent's outputs on the training split, which the children distill
    (`Budget.distill_weight`); None without a trained parent or with distillation off."""
    path = None if run.parent.info is None else run.parent.info.teacher
    if path is None or run.study.budget.distill_weight <= 0:
        return None
    teacher = np.load(path)
    if len(teacher) != len(run.splits.y_train):
        raise UsageError(f"the parent's outputs in {path} have {len(teacher)} rows, the "
                         f"training split {len(run.splits.y_train)}; remove the file and "
                         "run again")
    log.info("children distill the trained parent's outputs (weight %g, temperature %g)",
             run.study.budget.distill_weight, run.study.budget.distill_temperature)
    return teacher


def _trials(run: _Run, settings: RunSettings, objective: Objective, *,
            progress: Progress | None) -> None:
    """The search's trials, proposed by KerasTuner or by the Optuna sampler (with the
    small-end extensions)."""
    if settings.backend == "kerastuner":
        kerastuner_trials(run.opt_study, objective, study=run.study, parent=run.parent,
                          n_trials=run.remaining, timeout=settings.timeout, seed=run.seed,
                          directory=run.run_dir / "kerastuner", progress=progress)
        return
    run_trials(run.opt_study, objective, target=run.target, timeout=settings.timeout,
               progress=progress, jobs=settings.job_count,
               extension=extension_for(settings.extend_every, study=run.study,
                                       parent=run.parent, target=run.target))


@contextlib.contextmanager
def _progress(remaining: int, show: bool | None) -> Iterator[Progress | None]:
    """The progress display: a bar when `show` (None: when stderr is a terminal), plain
    lines otherwise, nothing for False; closed after the run."""
    if show is False:
        yield None
        return
    bar = Progress(remaining, bar=sys.stderr.isatty() if show is None else show)
    try:
        yield bar
    finally:
        bar.close()


def _has_trials(run_dir: Path) -> bool:
    """Whether a run dir holds a study database with anything in it."""
    database = run_dir / STORAGE_FILE
    return database.exists() and database.stat().st_size > 0


@contextlib.contextmanager
def _removed_on_refusal(run_dir: Path, *, created: bool) -> Iterator[None]:
    """A run refused before any trial ran takes away the run dir this call made (lock
    file, parent cache and all), so a refusal leaves nothing behind."""
    try:
        yield
    except UsageError:
        if created and not _has_trials(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
