"""`run`: create or resume a study, run its trials with progress, then score the front on test.

The search sees only the validation split; after it, each front member's artifact is
evaluated once on the test split and the figure is stored on the study
(`test_accuracy`, keyed by trial number).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.errors import UsageError
from optimizer.retry import is_interrupted, retry_once
from optimizer.storage import (
    DIRECTIONS,
    METRIC_NAMES,
    check_compatible,
    open_storage,
    run_dir_for,
    storage_url,
    study_name,
)
from search_spaces import Candidate, candidate_params
from studies import get_study

if TYPE_CHECKING:
    import optuna

    from studies.base import Study
    from studies.datasets import Splits

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "nsga2", "random")
#: Reference points enqueued first in a new study (DESIGN §6 / seed 004): the base model
#: uncompressed, and the EPR tutorial's λ = 2 and λ = 10 at full width.
REFERENCE_CANDIDATES = (
    Candidate(width=1.0, quantization="float32"),
    Candidate(width=1.0, epr_lambda=2.0, quantization="epr"),
    Candidate(width=1.0, epr_lambda=10.0, quantization="epr"),
)


def _sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM ends the running trial like Ctrl-C: FAIL with a reason, then a prompt exit."""
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


def _finished(study: optuna.Study) -> int:
    """Trials that count toward the budget: COMPLETE, PRUNED, and FAIL for a reason of the
    candidate's own; trials cut short by an interrupt or a dead worker are retried instead."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=done)
        if not (t.state == TrialState.FAIL and is_interrupted(t))
    )


def sweep_interrupted(study: optuna.Study) -> int:
    """Marks trials left RUNNING by a killed single-writer run as FAIL, with the reason,
    and enqueues each one's candidate again, once: a retry is not retried."""
    from optuna.trial import TrialState

    swept = 0
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(
            trial._trial_id, "fail_reason", "interrupted: found RUNNING when the study resumed"
        )
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        swept += 1
        retry_once(study, trial)
    return swept


def create_or_resume(
    *, study: Study, name: str, storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler, splits: Splits,
) -> optuna.Study:
    """Loads study `name` (checking directions and metrics) or creates it with references."""
    import optuna

    existing = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    if name in existing:
        loaded = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        check_compatible(loaded)
        return loaded
    created = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, directions=list(DIRECTIONS)
    )
    with warnings.catch_warnings():  # set_metric_names is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        created.set_metric_names(list(METRIC_NAMES))
    created.set_user_attr("dataset", study.dataset)
    created.set_user_attr("family", study.family)
    created.set_user_attr("data_source", splits.source)
    created.set_user_attr("splits", splits.sizes())
    created.set_user_attr("budget", vars(study.budget))
    for candidate in REFERENCE_CANDIDATES:
        if candidate.quantization in study.quantization_modes:
            created.enqueue_trial(candidate_params(candidate, study=study), skip_if_exists=True)
    return created


def score_front_on_test(study: optuna.Study, *, splits: Splits) -> dict[int, float]:
    """Evaluates each front member's artifact on the test split once; stores the result."""
    from objectives.pipeline import evaluate_artifact
    from optimizer.pareto import TEST_ACCURACY_ATTR, front_trials, test_accuracies

    known = test_accuracies(study)
    for trial in front_trials(study):
        if trial.number in known:
            continue
        path = Path(trial.user_attrs["artifact_path"])
        mode = trial.user_attrs["candidate"]["quantization"]
        known[trial.number] = evaluate_artifact(
            path, quantization=mode, x=splits.x_test, y=splits.y_test
        )
    study.set_user_attr(TEST_ACCURACY_ATTR, {str(k): v for k, v in known.items()})
    return known


class _Progress:
    """A tqdm bar (trials done, front size, ETA) and one log line per finished trial."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="trial", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

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
        if trial.state == TrialState.COMPLETE:
            tail = f"accuracy={trial.values[0]:.4f} payload={trial.values[1] / 1024:.2f} KB"
        else:
            tail = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("prune_reason", "")
        self.bar.write(f"{head} {tail} ({seconds:.0f} s)", file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(front=len(study.best_trials))

    def close(self) -> None:
        self.bar.close()


def run_study(
    *,
    study: Study,
    smoke: bool = False,
    run_dir: Path | None = None,
    storage: str | None = None,
    sampler: str = "tpe",
    seed: int = 0,
    n_trials: int | None = None,
    timeout: float | None = None,
    data_dir: Path | None = None,
    progress: bool = True,
    isolate: bool = True,
) -> optuna.Study:
    """Runs `study` until it has `n_trials` finished trials (default: its budget's)."""
    import optuna

    from optimizer.objective import TRIAL_FAILURES, Objective
    from studies.datasets import load_dataset

    if smoke:
        study = study.with_smoke_budget()
    name = study_name(study.name, smoke=smoke)
    run_dir = run_dir_for(name, run_dir=run_dir)
    if n_trials is not None and n_trials < 1:
        raise UsageError(f"--n-trials must be at least 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {timeout}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"run dir {run_dir} is not writable: {error.strerror}") from None
    the_sampler = make_sampler(sampler, seed=seed)
    # data first: a data error must leave no storage behind
    splits = load_dataset(study.dataset, data_dir=data_dir, seed=seed)
    url = storage_url(run_dir=run_dir, storage=storage)
    rdb = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt_study = create_or_resume(
        study=study, name=name, storage=rdb, sampler=the_sampler, splits=splits
    )
    # one decision, made in `open_storage`: storages with heartbeats fail stale trials
    # themselves; without them (SQLite, one writer) every RUNNING trial is orphaned
    swept = sweep_interrupted(opt_study) if rdb.get_heartbeat_interval() is None else 0
    if swept:
        log.warning("marked %d trial(s) left RUNNING by an interrupted run as FAIL", swept)
    target = n_trials or study.budget.n_trials
    remaining = target - _finished(opt_study)
    log.info(
        "study %s: %s from %s; storage %s; %d of %d trials to run",
        name, study.family, splits.source, url, max(remaining, 0), target,
    )
    if remaining > 0:
        from optuna.artifacts import FileSystemArtifactStore

        store_dir = run_dir / "artifact-store"
        store_dir.mkdir(parents=True, exist_ok=True)
        objective = Objective(
            study=study, splits=splits, run_dir=run_dir, seed=seed,
            artifact_store=FileSystemArtifactStore(str(store_dir)), isolate=isolate,
        )
        bar = _Progress(remaining) if progress else None
        start = time.perf_counter()
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        try:
            opt_study.optimize(
                objective, n_trials=remaining, timeout=timeout, catch=TRIAL_FAILURES,
                callbacks=[bar] if bar else None, gc_after_trial=True,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
            if bar:
                bar.close()
        log.info("ran %d trial(s) in %.0f s", remaining, time.perf_counter() - start)
    else:
        log.info("study %s already has %d finished trials; pass a larger --n-trials to add more",
                 name, target)
    score_front_on_test(opt_study, splits=splits)
    return opt_study


def run_command(args: argparse.Namespace) -> int:
    """CLI entry: runs the study, then prints its front."""
    from optimizer.pareto import format_front, front_rows

    opt_study = run_study(
        study=get_study(args.study), smoke=args.smoke, run_dir=args.run_dir,
        storage=args.storage, sampler=args.sampler, seed=args.seed, n_trials=args.n_trials,
        timeout=args.timeout, data_dir=args.data_dir, isolate=not args.no_isolation,
    )
    rows = front_rows(opt_study)
    print(format_front(rows, "table") if rows else "no completed trials; see the log above")
    return 0
