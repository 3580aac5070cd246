"""Finalists: after the search, the front's members are fine-tuned to the end.

Why: a search trial is cheap on purpose — it trains on a subset of the training split
(`Budget.train_subset`), and under successive halving most trials stop after a rung —
so the accuracy it reports is what a short training reached, not what its candidate can
reach. Measured on Fashion-MNIST (issue 24): the front's most accurate point was 91.2%
on test, while the same kind of parent fine-tuned 2 more epochs on all 54,000 training
images to the end of a cosine schedule reached 91.7% as int8.

So the front's members, one per size band (the front cut every factor of `BAND_FACTOR` in
bytes from its smallest member, so the small end gets finalists of its own, issue 30: the
most accurate member of each band), up to `FINALISTS` per run (in the ε-net order of
`optimizer.engine.halving` when there are more bands: the most accurate, the smallest,
then the one farthest from those chosen), each get a trial of their own: the same
candidate (its stored parameters), starting from the weights its trial trained (kept beside the run,
`weights_path`), fine-tuned `FINALIST_EPOCHS` epochs on the whole training split under a
learning rate that decays to zero (`finalist_budget`; cosine, Loshchilov & Hutter, ICLR
2017), then compressed and scored on validation like any trial. Where those weights are
not at hand (another machine's trial on a server database), it trains from the trial's
own start for the budget's epochs instead. It is marked (`FINALIST_ATTR`: the number of
the trial it came from) and trains its full (finalist) budget, so `pareto`, `report`,
the dashboard and `export` see it as the study's own trial, on the front where it
dominates. Finalists do not count toward `--n-trials`; a member with a finalist already
is not finalized again; the kept weights of trials off the front are removed after.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.attributes import FINALIST_ATTR
from optimizer.engine.halving import epsilon_net_order, log_bytes
from optimizer.engine.progress import OneAtATime
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from definitions.budgets import Budget
    from optimizer.engine.progress import Progress

log = logging.getLogger(__name__)

#: Finalists per run at most by default, one per size band (`run --finalists K`; 0: none).
#: A smoke run has none unless asked.
FINALISTS = 8
#: The front's size bands: each spans this factor in bytes, from its smallest member up.
BAND_FACTOR = 4.0
#: Epochs a finalist is fine-tuned from its trial's trained weights.
FINALIST_EPOCHS = 2
#: Where a run keeps its trials' trained weights (under the run dir).
WEIGHTS_DIR = "weights"


def finalist_budget(budget: Budget, *, fine_tune: bool) -> Budget:
    """`budget` for a finalist: the whole training split, no rungs, a learning rate that
    decays to zero at the last step (cosine); `FINALIST_EPOCHS` epochs for a fine-tune of
    the trial's trained weights (`fine_tune`), else the budget's epochs from its start."""
    epochs = FINALIST_EPOCHS if fine_tune else budget.epochs
    return replace(budget, epochs=epochs, train_subset=None, schedule="cosine", rungs=())


def weights_path(weights_dir: Path, number: int) -> Path:
    """The trained weights of trial `number` (`objectives.pipeline.save_weights`)."""
    return Path(weights_dir) / f"trial-{number:05d}.npz"


def keep_front_weights(opt_study: optuna.Study, weights_dir: Path) -> int:
    """Removes the kept weights of every trial not on the front (only a front member
    can become a finalist); returns how many files were removed."""
    keep = {weights_path(weights_dir, t.number).name for t in opt_study.best_trials}
    removed = 0
    for path in Path(weights_dir).glob("trial-*.npz"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def is_finalist(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether `trial` is a finalist (trained again to the end)."""
    return StoredTrial.from_trial(trial).finalist_of is not None


def size_bands(members: list[optuna.trial.FrozenTrial]
               ) -> list[list[optuna.trial.FrozenTrial]]:
    """`members` by size band, smallest first: band i holds those whose bytes lie within
    `BAND_FACTOR`^i to `BAND_FACTOR`^(i+1) of the smallest member's (empty bands left out)."""
    if not members:
        return []
    smallest = max(1.0, min(t.values[1] for t in members))
    bands: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for t in members:
        ratio = max(1.0, t.values[1]) / smallest
        bands.setdefault(math.floor(math.log(ratio, BAND_FACTOR) + 1e-9), []).append(t)
    return [bands[i] for i in sorted(bands)]


def choose_finalists(opt_study: optuna.Study, *, k: int) -> list[optuna.trial.FrozenTrial]:
    """Up to `k` front members (feasible ones, as `pareto` reads the front) without a
    finalist of their own: the most accurate of each size band (`size_bands`), in ε-net
    order of (accuracy, log10 bytes) when there are more than `k`, so the most accurate
    and the smallest come first."""
    if k <= 0:
        return []
    finalized = {s.finalist_of for s in map(StoredTrial.from_trial,
                                            opt_study.get_trials(deepcopy=False))}
    front = [t for t in opt_study.best_trials
             if not is_finalist(t) and t.number not in finalized and t.params]
    best = [max(band, key=lambda t: (t.values[0], -t.values[1]))
            for band in size_bands(front)]
    points = [(t.values[0], log_bytes(t.values[1])) for t in best]
    order = epsilon_net_order(points, list(range(len(best))))
    return [best[i] for i in order[:k]]


def run_finalists(opt_study: optuna.Study,
                  objective: Callable[[optuna.Trial], tuple[float, float]], *, k: int,
                  catch: tuple[type[Exception], ...], jobs: int = 1,
                  progress: Progress | None = None) -> list[int]:
    """Enqueues and runs the finalists of up to `k` front members (`choose_finalists`),
    `jobs` at a time, a failure of one of the `catch` kinds failing that trial only, each
    shown by `progress` (`optimizer.engine.progress.Progress`) as it ends; returns the numbers
    of the trials they came from."""
    chosen = choose_finalists(opt_study, k=k)
    if not chosen:
        return []
    log.info("training %d finalist(s) to the end, on the whole training split: trial(s) %s",
             len(chosen), ", ".join(str(t.number) for t in chosen))
    for trial in chosen:
        opt_study.enqueue_trial(trial.params, user_attrs={FINALIST_ATTR: trial.number})
    if progress is not None:
        progress.expect(len(chosen))
    opt_study.optimize(objective, n_trials=len(chosen), catch=catch, gc_after_trial=True,
                       callbacks=None if progress is None else [OneAtATime(progress)],
                       n_jobs=jobs)
    return [t.number for t in chosen]
