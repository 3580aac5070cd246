"""`run`: create or resume a study, run its trials with progress, then score the front on test.

The search sees only the validation split; after it, each front member's artifact is
evaluated once on the test split and the figure is stored on the study
(`test_accuracy`, keyed by trial number).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.attributes import (
    EXTENSION_ATTR,
    FAIL_REASON_ATTR,
    FAILURE_KIND_ATTR,
    ORPHANED,
    RECORD_ATTR,
    REFERENCE_ATTR,
    RETRY_ATTR,
)
from definitions.errors import BudgetNotReached, UsageError
from definitions.vocabulary import BACKENDS, SAMPLERS
from optimizer.artifacts import fetch, open_store, store_dir_for
from optimizer.constraints import violated
from optimizer.extension import EXTEND_EVERY, SmallEndExtension
from optimizer.lock import StorageLock
from optimizer.record import check_record, make_record, stored_record, write_record
from optimizer.retry import finished_count, rejected_count, retry_once
from optimizer.storage import (
    DIRECTIONS,
    check_compatible,
    metric_names,
    open_storage,
    run_dir_for,
    sqlite_path,
    storage_url,
    study_name,
)
from search_spaces import candidate_params

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from definitions.budgets import DeviceBudgets
    from search_spaces.suggest import Offered
    from studies.base import Study
    from studies.datasets import Splits

log = logging.getLogger(__name__)

#: How long a driver waits for a study another driver has just created to be recorded.
RECORD_WAIT_SECONDS = 30.0
#: Rounds of trials in a row that may all be cut short before a run gives up.
MAX_STALLED_ROUNDS = 2
#: Candidates a run may reject before training (over a flash or RAM budget), per trial of
#: its budget, before it gives up: each costs seconds, not a training, but a space almost
#: wholly over budget is better narrowed (`--width-range`, `--quantization`) than searched.
MAX_REJECTED_PER_TRIAL = 5


def _sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM ends the running trial like Ctrl-C: FAIL with a reason, then a prompt exit
    (raised by the worker wait itself when one is under way; see `worker.request_interrupt`)."""
    from optimizer.worker import request_interrupt

    if not request_interrupt():
        raise KeyboardInterrupt


def make_sampler(name: str, *, seed: int) -> optuna.samplers.BaseSampler:
    """An explicitly constructed sampler (Optuna 5 changed the multi-objective default).

    `tpe` is multivariate, grouped TPE (MOTPE for two objectives), which copes with the
    conditional parameters (`epr_lambda`, the offered `factorize_<layer>`) and with small
    budgets; `nsga2` uses a population of 10 so that a few dozen trials still evolve.
    `tpe` is the default by measurement: the largest front hypervolume on each of three
    seeds of 30-trial MNIST runs (`benchmarks/sampler_comparison.py`, BENCHMARKS.md).
    """
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=6
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UsageError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def sweep_orphaned(study: optuna.Study, *, storage: optuna.storages.BaseStorage) -> int:
    """Marks trials left RUNNING by a killed single-writer run as FAIL (`orphaned`), and
    enqueues each one's candidate again, once.

    Called only while this process holds the study's `StorageLock`: on SQLite no other
    driver can be running, so every RUNNING trial is orphaned. Uses the injected storage's
    public API (trial ids from study name and trial number)."""
    from optuna.trial import TrialState

    swept = 0
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, FAILURE_KIND_ATTR, ORPHANED)
        storage.set_trial_user_attr(
            trial_id, FAIL_REASON_ATTR, "interrupted: found RUNNING when the study resumed"
        )
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        swept += 1
        retry_once(study, trial)
    return swept


def _load_recorded(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Loads study `name` once its creator has recorded its definition.

    On a server database another driver may have created the study a moment ago and not
    yet written its metric names and record; wait for them (up to `RECORD_WAIT_SECONDS`)
    rather than refuse a study that is being born."""
    import optuna

    # a SQLite study is held under our lock: nobody else can be creating it
    server = storage.get_heartbeat_interval() is not None
    deadline = time.monotonic() + (RECORD_WAIT_SECONDS if server else 0.0)
    while True:
        loaded = optuna.load_study(study_name=name, storage=storage,
                                   sampler=optuna.samplers.RandomSampler())
        if RECORD_ATTR in loaded.user_attrs or time.monotonic() >= deadline:
            check_compatible(loaded)
            stored_record(loaded)
            return loaded
        time.sleep(0.5)


def _existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The stored study `name` with its record checked readable, or None when there is
    no such study."""
    import optuna

    if name not in {s.study_name for s in optuna.study.get_all_study_summaries(storage)}:
        return None
    return _load_recorded(storage, name)


def resolve_seed(seed: int | None, *, stored: dict[str, object] | None, name: str) -> int:
    """The study's seed: it carves the splits, so a stored study keeps its own; another
    `--seed` on resume would re-carve validation (and a held-out test split) and is
    refused."""
    if stored is None:
        return 0 if seed is None else seed
    split_seed = int(stored["split_seed"])
    if seed is not None and seed != split_seed:
        raise UsageError(
            f"study {name!r} was created with --seed {split_seed}, which carved its data "
            f"splits; --seed {seed} would carve other ones (validation images could have been "
            f"trained on). Drop --seed (the stored one is used), pass --seed {split_seed}, "
            "or start a new --run-dir"
        )
    return split_seed


def _with_run_settings(
    study: Study, *, stored: dict[str, object] | None, size_objective: str | None,
    device_budgets: DeviceBudgets | None, init: str | None,
    quantization_modes: tuple[str, ...] | None = None,
    width_range: tuple[float, float] | None = None,
) -> Study:
    """The study with its size objective, device budgets, init, quantization modes and
    width range: as given, else as stored (resume), else the definition's own (narrowed
    for the size objective: `Study.narrowed`). A given value that contradicts the stored
    one is left for `check_record` to refuse."""
    from definitions.budgets import DeviceBudgets

    if size_objective is None:
        size_objective = str(stored["size_objective"]) if stored else study.size_objective
    if device_budgets is None:
        device_budgets = (DeviceBudgets(**stored["device_budgets"]) if stored
                          else study.device_budgets)
    if init is None:
        init = str(stored.get("init") or study.init) if stored else study.init
    space = stored.get("search_space", {}) if stored else {}
    if quantization_modes is None and "quantization_modes" in space:
        quantization_modes = tuple(space["quantization_modes"])
    if width_range is None and "width_range" in space:
        width_range = tuple(space["width_range"])
    changed = replace(study, size_objective=size_objective, device_budgets=device_budgets,
                      init=init)
    if stored and "tflite_epr" not in space:
        # stored before the switch existed: TFLite modes were always offered the penalty
        changed = replace(changed, tflite_epr=True)
    changed = changed.narrowed(quantization_modes=quantization_modes, width_range=width_range)
    changed.validate()
    return changed


def create_or_resume(
    *, study: Study, name: str, storage: optuna.storages.BaseStorage, record: dict[str, object],
    existing: optuna.Study | None, offered: Offered | None = None, references: bool = True,
) -> optuna.Study:
    """Resumes `existing` (the stored study `name`, or None), refusing it when `record`
    contradicts what it stored, or creates the study, records its definition and enqueues
    the reference points."""
    import optuna

    if existing is None:
        try:
            created = optuna.create_study(
                study_name=name, storage=storage, directions=list(DIRECTIONS),
                sampler=optuna.samplers.RandomSampler(),
            )
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another driver on the server database created it first
        else:
            _initialize(created, study=study, record=record, offered=offered,
                        references=references)
            return created
        existing = _load_recorded(storage, name)
    check_record(existing, record)
    return existing


def _initialize(created: optuna.Study, *, study: Study, record: dict[str, object],
                offered: Offered | None, references: bool = True) -> None:
    """Metric names, the definition record, then the reference points of a new study."""
    import optuna

    with warnings.catch_warnings():  # set_metric_names is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        created.set_metric_names(list(metric_names(study.size_objective)))
    write_record(created, record)
    for candidate in study.reference_candidates if references else ():
        created.enqueue_trial(candidate_params(candidate, study=study, offered=offered),
                              user_attrs={REFERENCE_ATTR: True}, skip_if_exists=True)


def score_front_on_test(
    study: optuna.Study, *, splits: Splits, store: FileSystemArtifactStore, store_dir: Path,
) -> dict[int, float]:
    """Evaluates each front member's artifact (read from the store) on the test split
    once; stores the result on the study."""
    from definitions.attributes import TEST_ACCURACY_ATTR
    from objectives.pipeline import evaluate_artifact
    from optimizer.pareto import front_trials, test_accuracies

    known = test_accuracies(study)
    todo = [t for t in front_trials(study) if t.number not in known]
    if not todo:
        return known
    with tempfile.TemporaryDirectory() as tmp:
        for trial in todo:
            try:
                path = fetch(trial, store=store, store_dir=store_dir, into=Path(tmp))
            except UsageError as error:
                # another driver's trial whose store this machine does not see: that
                # driver (or a run with its --artifact-dir) scores it
                log.warning("test accuracy of trial %d not scored here: %s", trial.number, error)
                continue
            mode = trial.user_attrs["candidate"]["quantization"]
            known[trial.number] = evaluate_artifact(
                path, quantization=mode, x=splits.x_test, y=splits.y_test
            )
    study.set_user_attr(TEST_ACCURACY_ATTR, {str(k): v for k, v in known.items()})
    return known


class _Progress:
    """One line per finished trial; on a terminal also a tqdm bar (trials done, front size,
    ETA). Logs written to a file or pipe get the lines only, no redraws."""

    def __init__(self, total: int, *, bar: bool) -> None:
        from tqdm import tqdm

        self.bar = (
            tqdm(total=total, unit="trial", file=sys.stderr, dynamic_ncols=True) if bar else None
        )
        self.total = total
        self.done = 0

    def expect(self, more: int) -> None:
        """`more` trials are about to run: retries may add to the first estimate."""
        if self.done + more > self.total:
            self.total = self.done + more
            if self.bar is not None:
                self.bar.total = self.total
                self.bar.refresh()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Prints the trial's line: its candidate (with a hypermodel's `hp_<name>` values,
        so a line names the architecture), then its figures or why it stopped."""
        from optuna.trial import TrialState

        from optimizer.pareto import hp_values

        cand = trial.user_attrs.get("candidate", {})
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start else float("nan")
        )
        head = (
            f"trial {trial.number} {trial.state.name}: width={cand.get('width')} "
            f"factorize={','.join(cand.get('factorize', [])) or '-'} "
            f"epr_lambda={float(cand.get('epr_lambda', 0)):.3g} "
            f"quantization={cand.get('quantization')}"
        )
        for name, value in hp_values(trial).items():
            head += f" {name}={value:.3g}" if isinstance(value, float) else f" {name}={value}"
        if EXTENSION_ATTR in trial.user_attrs:
            head += f" (extends trial {trial.user_attrs[EXTENSION_ATTR]})"
        if trial.state == TrialState.COMPLETE:
            attrs = trial.user_attrs
            tail = (f"accuracy={trial.values[0]:.4f} "
                    f"payload={attrs.get('payload_bytes', 0) / 1024:.2f} KB "
                    f"flash={attrs.get('flash_bytes', 0) / 1024:.1f} KB "
                    f"ram={attrs.get('ram_bytes', 0) / 1024:.1f} KB "
                    f"host latency={attrs.get('latency_ms', float('nan')):.3f} ms")
            if attrs.get("stopped_at_epoch") is not None:
                tail += f" (halving: stopped after epoch {attrs['stopped_at_epoch']})"
            over = violated(trial)
            if over:
                tail += f" over budget: {', '.join(over)}"
        else:
            tail = (trial.user_attrs.get(FAIL_REASON_ATTR)
                    or trial.user_attrs.get("prune_reason", ""))
        self.done += 1
        line = f"{head} {tail} ({seconds:.0f} s)"
        if self.bar is None:
            print(f"[{self.done}/{self.total}] {line}", file=sys.stderr, flush=True)
            return
        self.bar.write(line, file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(front=len(study.best_trials))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _pending_retries(study: optuna.Study) -> int:
    """Retries enqueued for trials cut short from outside and not yet run."""
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return sum(1 for t in waiting if RETRY_ATTR in t.user_attrs)


def _run_trials(
    opt_study: optuna.Study, objective, *, target: int, timeout: float | None,
    progress: _Progress | None, extension: SmallEndExtension | None = None,
) -> None:
    """Runs trials until `target` count toward the budget and no retry is pending.

    Retries of interrupted or dead-worker trials run in this same invocation, even where
    other queued trials (the reference points) would fill the budget first, so no
    candidate cut short is left behind. A run ends with its budget, stopped by `timeout`,
    or with `BudgetNotReached`."""
    from optimizer.objective import TRIAL_FAILURES

    callbacks = [c for c in (progress, extension) if c is not None]
    deadline = None if timeout is None else time.monotonic() + timeout
    stalled = 0
    rejected_before = rejected_count(opt_study)
    while True:
        finished, rejected = finished_count(opt_study), rejected_count(opt_study)
        todo = max(target - finished, _pending_retries(opt_study))
        if todo <= 0:
            return
        if rejected - rejected_before > MAX_REJECTED_PER_TRIAL * target:
            raise BudgetNotReached(
                f"{rejected - rejected_before} candidates were over the flash or RAM budget "
                f"before training, and {finished} of {target} trials finished; narrow the "
                "space to what can fit (--width-range, --quantization int8) or loosen the "
                "budget (inspect shows a candidate's flash and RAM without training)"
            )
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            log.warning("stopped by --timeout with %d of %d trials finished", finished, target)
            return
        if progress is not None:
            progress.expect(todo)
        opt_study.optimize(
            objective, n_trials=todo, timeout=left, catch=TRIAL_FAILURES,
            callbacks=callbacks or None, gc_after_trial=True,
        )
        progressed = (finished_count(opt_study) != finished
                      or rejected_count(opt_study) != rejected)
        stalled = 0 if progressed else stalled + 1
        if stalled >= MAX_STALLED_ROUNDS:
            raise BudgetNotReached(
                f"{MAX_STALLED_ROUNDS} rounds of trials in a row were all cut short (workers "
                f"died or were killed); {finished} of {target} trials finished. See the "
                "trial lines above; --no-isolation shows a worker's crash in this process"
            )


def _kerastuner_trials(opt_study: optuna.Study, objective, *, study: Study, parent,
                       n_trials: int, timeout: float | None, seed: int, directory: Path,
                       progress: _Progress | None) -> None:
    """`n_trials` KerasTuner proposals, each run as a trial of `opt_study`."""
    from optimizer.kerastuner_backend import search

    if parent.info is None:
        raise UsageError("--backend kerastuner searches one parent; a hypermodel study "
                         "runs with --backend optuna")
    layers = tuple(dict.fromkeys(
        name for width in parent.info.offered for name in parent.info.offered[width]))
    search(opt_study, objective, study=study, offered=parent.info.offered_at, layers=layers,
           n_trials=n_trials, timeout=timeout, seed=seed, directory=directory,
           callbacks=[progress] if progress else None)


def _extension(every: int, *, study: Study, parent, target: int
               ) -> SmallEndExtension | None:
    """The small-end extension callback, or None when off or when the study's convs
    depend on a hypermodel's values (a candidate alone does not name such a model)."""
    if every == 0 or parent.info is None:
        return None
    return SmallEndExtension(every=every, study=study, offered=parent.info.offered_at,
                             target=target)


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
) -> optuna.Study:
    """Runs `study` until it has `n_trials` finished trials (default: its budget's).

    `seed` (default 0 for a new study, the stored one on resume) carves the data splits
    and seeds training; the sampler is seeded with it plus the number of trials so far, so
    a resumed random search does not repeat its draws. `size_objective` and
    `device_budgets` override the study definition's for a new study; None keeps the
    stored ones on resume (others are refused). `progress`: None shows a bar when stderr
    is a terminal and plain lines otherwise; False shows nothing. `extend_every`: one
    trial in this many steps below the front's smallest member (`optimizer.extension`;
    0: none; searches of a built-in family with Optuna's samplers only).
    `quantization_modes` and `width_range` narrow the study's space for a new study (the
    CLI's `--quantization` and `--width-range`); None keeps the stored ones on resume.
    `check_before_training=False` trains candidates over a flash or RAM budget and judges
    them after (the behaviour before the check, kept for `benchmarks/device_search.py`)."""

    from optimizer.objective import Objective
    from optimizer.parents import plan_parent
    from optimizer.record import load_data

    if smoke:
        study = study.with_smoke_budget()
    name = study_name(study.name, smoke=smoke)
    run_dir = run_dir_for(name, run_dir=run_dir)
    if n_trials is not None and n_trials < 1:
        raise UsageError(f"--n-trials must be at least 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {timeout}")
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if extend_every < 0 or extend_every == 1:
        raise UsageError(f"--extend-every must be 0 (no extensions) or at least 2, got "
                         f"{extend_every}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"run dir {run_dir} is not writable: {error.strerror}") from None
    url = storage_url(run_dir=run_dir, storage=storage)
    database = sqlite_path(url)
    holding = StorageLock(database) if database is not None else contextlib.nullcontext()
    with holding:
        rdb, existing = None, None
        if database is None or (database.exists() and database.stat().st_size > 0):
            rdb = open_storage(url)
            existing = _existing_study(rdb, name)
        stored = None if existing is None else stored_record(existing)
        seed = resolve_seed(seed, stored=stored, name=name)
        study = _with_run_settings(study, stored=stored, size_objective=size_objective,
                                   device_budgets=device_budgets, init=init,
                                   quantization_modes=quantization_modes,
                                   width_range=width_range)
        # data and parent before any write: an error in either leaves no storage behind
        splits = load_data(dataset=study.dataset, data=study.data, data_dir=data_dir,
                           split_seed=seed)
        parent = plan_parent(study=study, splits=splits, seed=seed,
                             cache_dir=run_dir / "parent", isolate=isolate)
        record = make_record(study=study, splits=splits, parent=parent)
        rdb = rdb or open_storage(url)
        opt_study = create_or_resume(
            study=study, name=name, storage=rdb, record=record, existing=existing,
            # a hypermodel's convs depend on its hp_* values: reference points factorize none
            offered=parent.info.offered_at if parent.info else lambda width: (),
            references=backend == "optuna",  # a KerasTuner user starts from its proposals
        )
        if parent.info is not None and parent.info.parent_accuracy is not None:
            opt_study.set_user_attr("parent_accuracy", parent.info.parent_accuracy)
        # one decision, made in `open_storage`: storages with heartbeats fail stale trials
        # themselves; without them (SQLite) we hold the lock, so RUNNING means orphaned
        if rdb.get_heartbeat_interval() is None:
            swept = sweep_orphaned(opt_study, storage=rdb)
            if swept:
                log.warning("marked %d trial(s) left RUNNING by a killed run as FAIL; "
                            "each is retried once", swept)
        opt_study.sampler = make_sampler(sampler, seed=seed + len(opt_study.trials))
        target = n_trials or study.budget.n_trials
        remaining = max(target - finished_count(opt_study), _pending_retries(opt_study))
        store_dir = store_dir_for(run_dir, artifact_dir=artifact_dir)
        store = open_store(store_dir, create=True)
        log.info(
            "study %s: %s from %s; storage %s; artifacts %s; %d of %d trials to run",
            name, study.parent_label, splits.source, url, store_dir, remaining, target,
        )
        if remaining > 0:
            objective = Objective(
                study=study, parent=parent, splits=splits, scratch_dir=run_dir / "scratch",
                seed=seed, artifact_store=store, storage=rdb, isolate=isolate,
                check_before_training=check_before_training,
            )
            show = sys.stderr.isatty() if progress is None else progress
            bar = _Progress(remaining, bar=show) if progress is not False else None
            start = time.perf_counter()
            previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
            try:
                if backend == "kerastuner":
                    _kerastuner_trials(opt_study, objective, study=study, parent=parent,
                                       n_trials=remaining, timeout=timeout, seed=seed,
                                       directory=run_dir / "kerastuner", progress=bar)
                else:
                    _run_trials(opt_study, objective, target=target, timeout=timeout,
                                progress=bar, extension=_extension(
                                    extend_every, study=study, parent=parent,
                                    target=target))
            finally:
                signal.signal(signal.SIGTERM, previous)
                if bar:
                    bar.close()
            log.info("finished %d of %d trials; this run took %.0f s", finished_count(opt_study),
                     target, time.perf_counter() - start)
        else:
            log.info("study %s already has %d finished trials; pass a larger --n-trials to "
                     "add more", name, target)
        score_front_on_test(opt_study, splits=splits, store=store, store_dir=store_dir)
    return opt_study


def _budgets_from(args: argparse.Namespace) -> DeviceBudgets | None:
    """The budget flags as `DeviceBudgets`, or None when none was given."""
    from definitions.budgets import DeviceBudgets

    given = {name: getattr(args, name) for name in
             ("max_flash_kb", "max_ram_kb", "max_latency_ms", "min_accuracy")}
    if all(value is None for value in given.values()):
        return None
    return DeviceBudgets(**given)


def study_for_run(args: argparse.Namespace) -> Study:
    """The study `run` searches: `--model M --data D [--name N]`, a registered name, a
    study reference, or the name of a stored `--model --data` study to resume."""
    from definitions.importer import is_reference
    from studies import STUDIES
    from studies.references import files_study, resolve_study

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
    from its record (`UnknownStudyError` when there is none)."""
    from optimizer.storage import open_stored
    from studies.references import study_from_record

    name, _, existing = open_stored(args)  # the reading commands' lookup, one for all
    return study_from_record(stored_record(existing), name=name)


def run_command(args: argparse.Namespace) -> int:
    """CLI entry: runs the study, then prints its front."""
    from optimizer.pareto import budget_note, format_front, front_rows

    opt_study = run_study(
        study=study_for_run(args), smoke=args.smoke, run_dir=args.run_dir,
        storage=args.storage, artifact_dir=args.artifact_dir, sampler=args.sampler,
        backend=args.backend,
        seed=args.seed, n_trials=args.n_trials, timeout=args.timeout, data_dir=args.data_dir,
        size_objective=args.size_objective, device_budgets=_budgets_from(args),
        init=args.init, isolate=not args.no_isolation, extend_every=args.extend_every,
        quantization_modes=None if args.quantization is None else tuple(args.quantization),
        width_range=None if args.width_range is None else tuple(args.width_range),
        check_before_training=not args.no_check_before_training,
    )
    rows = front_rows(opt_study)
    excluded = budget_note(opt_study)
    if not rows:
        from collections import Counter

        ended = Counter(t.state.name for t in opt_study.get_trials(deepcopy=False)
                        if t.state.is_finished())
        if not ended:  # stopped (--timeout) before any trial ended: nothing to judge yet
            print("no trial has finished yet; run again to go on")
            return 0
        # nothing usable was found: exit 1 (not 2: the input was fine, the search was not),
        # one line on stderr saying which of the two ways it came to nothing
        if "COMPLETE" in ended:  # every completed trial is over a device budget
            what = f"no completed trial within the budgets: {excluded}"
        else:
            counts = ", ".join(f"{n} {state}" for state, n in ended.items())
            what = (f"no trial completed ({counts}); each trial's line above says why (its "
                    "prune or fail reason)")
        print(f"optimizer run: error: {what}", file=sys.stderr)
        return 1
    print(format_front(rows, "table"))
    if excluded:
        print(excluded)
    return 0
