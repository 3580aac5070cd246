"""The trial loop: runs trials until the budget counts enough of them and no retry is
pending, with Optuna's sampler or KerasTuner's proposals; stops on `--timeout`, on rounds
whose trials were all cut short, or on a space almost wholly over budget.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.errors import BudgetNotReached
from optimizer.engine import kerastuner_backend
from optimizer.engine.extension import SmallEndExtension
from optimizer.engine.objective import TRIAL_FAILURES
from optimizer.engine.progress import OneAtATime, Progress
from optimizer.engine.stop import clear_stop, stop_requested
from optimizer.store.retry import finished_count, rejected_count
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    import optuna

    from optimizer.engine.objective import Objective
    from optimizer.engine.parents import SearchParent
    from studies.base import Study

log = logging.getLogger(__name__)


#: Rounds of trials in a row that may all be cut short before a run gives up.
MAX_STALLED_ROUNDS = 2


#: Candidates a run may reject before training (over a flash or RAM budget), per trial of
#: its budget, before it gives up: each costs seconds, not a training, but a space almost
#: wholly over budget is better narrowed (`--width-range`, `--quantization`) than searched.
MAX_REJECTED_PER_TRIAL = 5


def pending_retries(opt_study: optuna.Study) -> int:
    """Retries enqueued for trials cut short from outside and not yet run."""
    from optuna.trial import TrialState

    waiting = opt_study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return sum(1 for t in waiting if StoredTrial.from_trial(t).retry_of is not None)


def run_trials(
    opt_study: optuna.Study, objective: Objective, *, target: int, timeout: float | None,
    progress: Progress | None, extension: SmallEndExtension | None = None, jobs: int = 1,
) -> None:
    """Runs trials until `target` count toward the budget and no retry is pending, `jobs`
    at a time (Optuna's threads, each waiting on a worker of the objective's pool).

    Retries of interrupted or dead-worker trials run in this same invocation, even where
    other queued trials (the reference points) would fill the budget first, so no
    candidate cut short is left behind. A run ends with its budget, stopped by `timeout`,
    or with `BudgetNotReached`; a stop request (Ctrl-C, SIGTERM: `stop.request_interrupt`)
    ends every trial in flight and raises KeyboardInterrupt."""
    clear_stop()
    lock = threading.Lock()
    callbacks = [OneAtATime(c, lock) for c in (progress, extension) if c is not None]
    deadline = None if timeout is None else time.monotonic() + timeout
    stalled = 0
    rejected_before = rejected_count(opt_study)
    while True:
        finished, rejected = finished_count(opt_study), rejected_count(opt_study)
        todo = max(target - finished, pending_retries(opt_study))
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
            callbacks=callbacks or None, gc_after_trial=True, n_jobs=jobs,
        )
        if stop_requested():  # a thread's KeyboardInterrupt that Optuna did not re-raise
            raise KeyboardInterrupt
        progressed = (finished_count(opt_study) != finished
                      or rejected_count(opt_study) != rejected)
        stalled = 0 if progressed else stalled + 1
        if stalled >= MAX_STALLED_ROUNDS:
            raise BudgetNotReached(
                f"{MAX_STALLED_ROUNDS} rounds of trials in a row were all cut short (workers "
                f"died or were killed); {finished} of {target} trials finished. See the "
                "trial lines above; --no-isolation shows a worker's crash in this process"
            )


def kerastuner_trials(opt_study: optuna.Study, objective: Objective, *, study: Study,
                      parent: SearchParent,
                       n_trials: int, timeout: float | None, seed: int, directory: Path,
                       progress: Progress | None) -> None:
    """`n_trials` KerasTuner proposals, each run as a trial of `opt_study`."""
    # a hypermodel study was refused before the study was created (`runner`)
    kerastuner_backend.search(
        opt_study, objective, study=study, offered=parent.info.offered_at,
        n_trials=n_trials, timeout=timeout, seed=seed, directory=directory,
        callbacks=[progress] if progress else None)


def extension_for(every: int, *, study: Study, parent: SearchParent, target: int
               ) -> SmallEndExtension | None:
    """The small-end extension callback, or None when off or when the study's convs
    depend on a hypermodel's values (a candidate alone does not name such a model)."""
    if every == 0 or parent.info is None:
        return None
    return SmallEndExtension(every=every, study=study, offered=parent.info.offered_at,
                             target=target)
