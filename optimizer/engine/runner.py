"""`run_study`: the library entry point of `run` (keyword-only): create or resume a study,
run its trials with progress, then score the front on test.

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
import math
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.errors import UsageError
from definitions.vocabulary import BACKENDS, SAMPLERS
from optimizer.engine.extension import EXTEND_EVERY
from optimizer.engine.finalists import FINALISTS, WEIGHTS_DIR, keep_front_weights, run_finalists
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
from optimizer.engine.trial_loop import (
    extension_for,
    kerastuner_trials,
    pending_retries,
    run_trials,
)
from optimizer.store.artifacts import open_store, store_dir_for
from optimizer.store.lock import StorageLock
from optimizer.store.record import make_record, stored_record
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

    from definitions.budgets import DeviceBudgets
    from optimizer.engine.worker import WorkerPool
    from studies.base import Study

log = logging.getLogger(__name__)


def _sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM ends the running trial like Ctrl-C: FAIL with a reason, then a prompt exit
    (raised by the worker wait itself when one is under way; see `stop.request_interrupt`)."""
    from optimizer.engine.stop import request_interrupt

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
def _workers(jobs: int, *, splits) -> Iterator[WorkerPool | None]:
    """`jobs` lasting workers sharing the cores (None for 0: trials run in this process),
    forked now, with the data, before the run starts threads of its own."""
    if jobs == 0:
        yield None
        return
    from optimizer.engine.processes import cores
    from optimizer.engine.worker import WorkerPool

    threads = None if jobs == 1 else max(1, cores() // jobs)
    if jobs > cores():
        log.warning("--jobs %d on %d cores: trials will share cores and each run slower",
                    jobs, cores())
    with WorkerPool(jobs, shared={"splits": splits}, threads=threads) as pool:
        yield pool


def run_study(
    *,
    study: Study,
    smoke: bool = False,
    run_dir: Path | None = None,
    storage: str | None = None,
    artifact_dir: Path | None = None,
    sampler: str = "tpe",
    backend: str = "optuna",
    seed: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    data_dir: Path | None = None,
    size_objective: str | None = None,
    device_budgets: DeviceBudgets | None = None,
    init: str | None = None,
    progress: bool | None = None,
    isolate: bool = True,
    extend_every: int = EXTEND_EVERY,
    quantization_modes: tuple[str, ...] | None = None,
    width_range: tuple[float, float] | None = None,
    check_before_training: bool = True,
    trust_model_code: bool = False,
    jobs: int = 1,
    finalists: int | None = None,
) -> optuna.Study:
    """Runs `study` until it has `n_trials` finished trials (default: its budget's).

    `seed` (default 0 for a new study, the stored one on resume) carves the data splits
    and seeds training; the sampler is seeded with it plus the number of trials so far, so
    a resumed random search does not repeat its draws. `size_objective` and
    `device_budgets` override the study definition's for a new study; None keeps the
    stored ones on resume (others are refused). `progress`: None shows a bar when stderr
    is a terminal and plain lines otherwise; False shows nothing. `extend_every`: one
    trial in this many steps below the front's smallest member (`optimizer.engine.extension`;
    0: none; searches of a built-in family with Optuna's samplers only).
    `quantization_modes` and `width_range` narrow the study's space for a new study (the
    CLI's `--quantization` and `--width-range`); None keeps the stored ones on resume.
    `check_before_training=False` trains candidates over a flash or RAM budget and judges
    them after (the behaviour before the check, kept for `benchmarks/device_search.py`).
    `trust_model_code` (the CLI's `--trust-model-code`, recorded on the study) lets a
    saved parent's stored Python code (a `Lambda` layer) be loaded; without it such a
    file is refused before any of its code runs. `jobs` (the CLI's `--jobs`, a setting of
    this run, not recorded on the study): trials at once, each in a lasting worker of
    its own with 1/`jobs` of the cores (`optimizer.engine.worker.WorkerPool`); this process
    stays the only writer of the study. `finalists` (the CLI's `--finalists`): front
    members trained again to the end after the search (`optimizer.engine.finalists`; None:
    `FINALISTS`, or none for a smoke run; 0: none)."""

    if smoke:
        study = study.with_smoke_budget()
    check_study_name(study.name)
    name = study_name(study.name, smoke=smoke)
    run_dir = run_dir_for(name, run_dir=run_dir)
    if n_trials is not None and n_trials < 1:
        raise UsageError(f"--n-trials must be at least 1, got {n_trials}")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout}")
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if finalists is not None and finalists < 0:
        raise UsageError(f"--finalists must be 0 (none) or more, got {finalists}")
    if finalists is None:
        finalists = 0 if smoke else FINALISTS
    if jobs > 1 and not isolate:
        raise UsageError("--jobs runs each trial in a worker of its own; it cannot be "
                         "combined with --no-isolation")
    if jobs > 1 and backend == "kerastuner":
        raise UsageError("--backend kerastuner proposes one trial at a time; run it with "
                         "--jobs 1")
    if extend_every < 0 or extend_every == 1:
        raise UsageError(f"--extend-every must be 0 (no extensions) or at least 2, got "
                         f"{extend_every}")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"run dir {run_dir} is not writable: {error.strerror}") from None
    from optimizer.engine.data import load_data
    from optimizer.engine.objective import TRIAL_FAILURES, Objective
    from optimizer.engine.parents import plan_parent
    from optimizer.store.record import check_record, definition_fields

    with _removed_on_refusal(run_dir, created=created):
        url = storage_url(run_dir=run_dir, storage=storage)
        database = sqlite_path(url)
        holding = StorageLock(database) if database is not None else contextlib.nullcontext()
        with holding:
            rdb, existing = None, None
            if database is None or (database.exists() and database.stat().st_size > 0):
                rdb = open_storage(url)
                existing = existing_study(rdb, name)
            stored = None if existing is None else stored_record(existing)
            seed = resolve_seed(seed, stored=stored, name=name)
            study = with_run_settings(study, stored=stored, size_objective=size_objective,
                                       device_budgets=device_budgets, init=init,
                                       quantization_modes=quantization_modes,
                                       width_range=width_range)
            if existing is not None:  # what the definition alone decides, before any training
                fields = definition_fields(study)
                check_record(existing, fields, keys=fields)
            # data and parent before any write: an error in either leaves no storage behind
            splits = load_data(dataset=study.dataset, data=study.data, data_dir=data_dir,
                               split_seed=seed, model=study.model)
            parent = plan_parent(study=study, splits=splits, seed=seed,
                                 cache_dir=run_dir / "parent", isolate=isolate,
                                 trust_code=trust_model_code)
            if backend == "kerastuner" and parent.info is None:
                raise UsageError("--backend kerastuner searches one parent; a hypermodel study "
                                 "runs with --backend optuna")
            record = make_record(study=study, splits=splits, parent=parent)
            rdb = rdb or open_storage(url)
            opt_study = create_or_resume(
                study=study, name=name, storage=rdb, record=record, existing=existing,
                # a hypermodel's convs depend on its hp_* values: reference points factorize none
                offered=parent.info.offered_at if parent.info else lambda width: (),
                # a KerasTuner user starts from its own proposals
                enqueue_reference_points=backend == "optuna",
            )
            if parent.info is not None and parent.info.parent_accuracy is not None:
                opt_study.set_user_attr("parent_accuracy", parent.info.parent_accuracy)
            # one decision, made in `open_storage`: storages with heartbeats fail stale trials
            # themselves; without them (SQLite) we hold the lock, so RUNNING means orphaned
            if rdb.get_heartbeat_interval() is None:
                swept = (sweep_orphaned(opt_study, storage=rdb)
                         + retry_unrecorded_failures(opt_study))
                if swept:
                    log.warning("%d trial(s) cut short by a killed run or a failed storage; "
                                "each is retried once", swept)
            opt_study.sampler = make_sampler(sampler, seed=seed + len(opt_study.trials))
            target = n_trials or study.budget.n_trials
            remaining = max(target - finished_count(opt_study), pending_retries(opt_study))
            store_dir = store_dir_for(run_dir, artifact_dir=artifact_dir)
            store = open_store(store_dir, create=True)
            log.info(
                "study %s: %s from %s; storage %s; artifacts %s; %d of %d trials to run",
                name, study.parent_label, splits.source, url, store_dir, remaining, target,
            )
            if remaining > 0:
                start = time.perf_counter()
                # each trial's trained weights, kept for the finalists to fine-tune
                weights_dir = run_dir / WEIGHTS_DIR if finalists else None
                with _workers(jobs if isolate else 0, splits=splits) as pool:
                    objective = Objective(
                        study=study, parent=parent, splits=splits,
                        scratch_dir=run_dir / "scratch", seed=seed, artifact_store=store,
                        storage=rdb, workers=pool, check_before_training=check_before_training,
                        weights_dir=weights_dir,
                    )
                    show = sys.stderr.isatty() if progress is None else progress
                    bar = Progress(remaining, bar=show) if progress is not False else None
                    try:
                        with _signals_stop_the_run():
                            if backend == "kerastuner":
                                kerastuner_trials(
                                    opt_study, objective, study=study, parent=parent,
                                    n_trials=remaining, timeout=timeout, seed=seed,
                                    directory=run_dir / "kerastuner", progress=bar)
                            else:
                                run_trials(opt_study, objective, target=target,
                                           timeout=timeout, progress=bar, jobs=jobs,
                                           extension=extension_for(
                                               extend_every, study=study, parent=parent,
                                               target=target))
                            if finalists and not _stopped_by_timeout(start, timeout):
                                run_finalists(opt_study, objective, k=finalists, jobs=jobs,
                                              catch=TRIAL_FAILURES, progress=bar)
                            if weights_dir is not None:
                                keep_front_weights(opt_study, weights_dir)
                    finally:
                        if bar:
                            bar.close()
                log.info("finished %d of %d trials; this run took %.0f s",
                         finished_count(opt_study), target, time.perf_counter() - start)
            else:
                log.info("study %s already has %d finished trials; pass a larger --n-trials to "
                         "add more", name, target)
            score_front_on_test(opt_study, splits=splits, store=store, store_dir=store_dir)
        return opt_study


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
