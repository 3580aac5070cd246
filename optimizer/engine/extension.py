"""Small-end extension: every Nth trial steps one size below the front's smallest member.

Why: a front is read, and scored (hypervolume on accuracy × log10 bytes), on a log byte
axis, where the stretch from 500 B to 2 KB weighs as much as the one from 500 KB to 2 MB.
A density-model sampler (TPE) proposes near the good trials it has seen and does not
extrapolate past the smallest one; measured on Fashion-MNIST (BENCHMARKS.md, "Search
efficiency"), the default found nothing below 2.3 KB on two seeds of three, and whether a
run had a point under 1 KB at > 75% decided its ranking against random proposals.

The step is known from the definitions, so it needs no model: payload falls with a
narrower width (parameters ∝ α², Howard et al. 2017, seed 001), a larger entropy weight λ
(Oktay et al. 2020, seed 004) and a factorized n×n conv (seed 002). From the smallest
front member, the first of these not yet tried is proposed: width × `WIDTH_FACTOR` (on the
width grid, not below the space's low end), which also makes the model cheaper to train
and to run; else λ × `LAMBDA_FACTOR` (not above the space's high end); else one more
offered conv factorized; a member without the entropy penalty steps to EPR at the
smallest λ first — except where the study does not offer the penalty to TFLite modes
(`Study.searches_tflite_epr`, off under the `flash` objective, where λ cannot shrink the
file), where it steps in width, then factorization. A member one of whose steps fell
below the study's usable accuracy (PRUNED) is not extended again: a smaller step down
would only be worse.

An extension trains its full budget under successive halving, like a reference point
(`definitions.attributes.EXTENSION_ATTR`): judged on its first epoch, an EPR model's code length
has not fallen yet.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from definitions.attributes import EXTENSION_ATTR
from optimizer.store.retry import finished_count
from optimizer.store.trial import StoredTrial
from search_spaces import Candidate, candidate_params

if TYPE_CHECKING:
    import optuna

    from search_spaces.suggest import Offered
    from studies.base import Study

#: One trial in this many is an extension, by default (`run --extend-every`; 0: none).
EXTEND_EVERY = 4
WIDTH_FACTOR = 0.7
LAMBDA_FACTOR = 3.0
#: Significant digits to which two candidates' λ must agree to count as the same point.
LAMBDA_DIGITS = 4


def steps(candidate: Candidate, *, study: Study, offered: Offered) -> Iterator[Candidate]:
    """The candidates one step smaller than `candidate`, in the order they are tried."""
    if candidate.epr_lambda <= 0 and study.searches_tflite_epr:
        # where the penalty shrinks the objective, a member without it steps to EPR first
        if "epr" in study.quantization_modes:
            yield replace(candidate, quantization="epr", epr_lambda=study.epr_lambda_range[0])
        return
    low = study.width_range[0]
    if candidate.width > low:
        grid = low + round((candidate.width * WIDTH_FACTOR - low) / study.width_step
                           ) * study.width_step
        width = round(max(low, min(grid, candidate.width - study.width_step)), 6)
        kept = tuple(name for name in candidate.factorize if name in offered(width))
        yield replace(candidate, width=width, factorize=kept)
    high = study.epr_lambda_range[1]
    if 0 < candidate.epr_lambda < high:
        yield replace(candidate, epr_lambda=min(high, candidate.epr_lambda * LAMBDA_FACTOR))
    more = [name for name in offered(candidate.width) if name not in candidate.factorize]
    if more:
        yield replace(candidate, factorize=(*candidate.factorize, more[0]))


def _key(candidate: Candidate) -> Candidate:
    """`candidate` with λ to `LAMBDA_DIGITS` (widths are on the grid and `factorize`
    sorted already), so that a step and an earlier proposal compare equal."""
    return replace(candidate, epr_lambda=float(f"{candidate.epr_lambda:.{LAMBDA_DIGITS}g}"))


def _candidate(trial: optuna.trial.FrozenTrial) -> Candidate | None:
    """The trial's candidate; None for a hypermodel's (its steps are not ours to take)."""
    stored = StoredTrial.from_trial(trial)
    return None if stored.hypermodel is not None else stored.candidate


def next_extension(trials: Sequence[optuna.trial.FrozenTrial], *, front: Sequence[
        optuna.trial.FrozenTrial], study: Study, offered: Offered
                   ) -> tuple[int, Candidate] | None:
    """(the trial it extends, the candidate) for the next extension, or None when the
    front's smallest member has none left to try."""
    from optuna.trial import TrialState

    if not front:
        return None
    smallest = min(front, key=lambda t: (t.values[1], -t.values[0]))
    start = _candidate(smallest)
    if start is None:
        return None
    children = [t for t in trials if StoredTrial.from_trial(t).extends == smallest.number]
    if any(t.state == TrialState.PRUNED for t in children):
        return None
    tried = {_key(c) for c in map(_candidate, trials) if c is not None}
    for step in steps(start, study=study, offered=offered):
        if _key(step) not in tried:
            return smallest.number, step
    return None


@dataclass(frozen=True)
class SmallEndExtension:
    """An Optuna callback: after a trial finishes, enqueues an extension when fewer than
    one in `every` of the study's trials (reference points aside) are extensions, nothing
    else is queued and the run has trials left.

    Attributes:
        every: one trial in this many is an extension (at least 2).
        study: the study definition (its space's bounds).
        offered: the convs offered for factorization at a width.
        target: the run's trial budget; once this many trials have finished or are in
            flight nothing is queued (it would be left waiting in the stored study);
            counted as the runner counts its budget (`retry.finished_count`). None: no
            limit.
    """

    every: int
    study: Study
    offered: Offered
    target: int | None = None

    def __call__(self, opt_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        trials = opt_study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return  # reference points and retries run first
        # trials in flight (`run --jobs N`, other drivers) will count when they end
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        if self.target is not None and finished_count(opt_study) + running >= self.target:
            return
        searched = [s for s in map(StoredTrial.from_trial, trials) if not s.reference_point]
        extensions = sum(1 for s in searched if s.extends is not None)
        if (extensions + 1) * self.every > len(searched) + 1:
            return
        found = next_extension(trials, front=opt_study.best_trials, study=self.study,
                               offered=self.offered)
        if found is None:
            return
        number, candidate = found
        opt_study.enqueue_trial(
            candidate_params(candidate, study=self.study, offered=self.offered),
            user_attrs={EXTENSION_ATTR: number}, skip_if_exists=True)
