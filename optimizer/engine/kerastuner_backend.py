"""`run --backend kerastuner`: KerasTuner's Bayesian optimization proposes the trials.

What a KerasTuner user would do with our search space: `keras_tuner.BayesianOptimization`
(a Gaussian process over the hyperparameters) maximizing one number, a weighted sum of
accuracy and log bytes, `accuracy − BYTES_WEIGHT · log10(bytes)`, since KerasTuner's
oracles optimize a single objective. Its tuner follows KerasTuner's documented "tune any
function" pattern: `run_trial` declares the hyperparameters and returns the score. Each
proposal is run as an ordinary trial of the Optuna study (enqueued with its parameters,
then scored by the same `Objective`), so artifacts, figures, `pareto`, `report` and
`export` treat the two backends alike, and the comparison measures the proposals alone.

The space is the one `search_spaces.suggest` defines, asked through KerasTuner's `hp`
(`HyperParametersAsTrial` answers the trial calls `suggest` makes): `width` (the study's
range and step), a `factorize_<layer>` switch for each conv offered at the proposed width
(declared the first time it is offered), `quantization`, `epr` and `epr_lambda`
(log-uniform), each asked where `suggest` asks it. A trial that does not complete scores
`FAILED_SCORE`, so the Gaussian process learns to avoid its region instead of stopping
after a few failures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.engine.halving import log_bytes
from optimizer.engine.objective import TRIAL_FAILURES
from search_spaces import Candidate, candidate_params, suggest

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras_tuner
    import optuna

    from optimizer.engine.objective import Objective
    from search_spaces.suggest import Offered
    from studies.base import Study

#: Accuracy traded for one decade of bytes in the single objective (2 points per 10×).
BYTES_WEIGHT = 0.02
#: The score of a trial that was pruned or failed: below any model above chance.
FAILED_SCORE = -1.0


def score(accuracy: float, size_bytes: float) -> float:
    """The single objective KerasTuner maximizes."""
    return accuracy - BYTES_WEIGHT * log_bytes(size_bytes)


class HyperParametersAsTrial:
    """KerasTuner's `hp` answering the two calls `search_spaces.suggest` makes of an Optuna
    trial, so both backends search the one space it defines."""

    def __init__(self, hp: keras_tuner.HyperParameters) -> None:
        self.hp = hp

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return self.hp.Float(name, low, high, step=step, sampling="log" if log else "linear")

    def suggest_categorical(self, name: str, choices: Sequence[object]) -> object:
        choices = list(choices)
        if choices == [False, True]:
            return self.hp.Boolean(name)
        return self.hp.Choice(name, choices)


def propose(hp: keras_tuner.HyperParameters, *, study: Study, offered: Offered) -> Candidate:
    """The candidate KerasTuner's `hp` proposes (declaring the space on first use)."""
    return suggest(HyperParametersAsTrial(hp), study=study, offered=offered)


def search(
    opt_study: optuna.Study, objective: Objective, *, study: Study, offered: Offered,
    n_trials: int, timeout: float | None, seed: int,
    directory: Path, callbacks: list | None = None,
) -> None:
    """Runs `n_trials` KerasTuner proposals (or until `timeout` seconds) as trials of
    `opt_study`; KerasTuner's own state is kept in `directory` so a rerun resumes it."""
    import keras_tuner
    import optuna

    deadline = None if timeout is None else time.monotonic() + timeout

    class _Deadline(keras_tuner.errors.FatalError):
        """`--timeout` reached: the search stops before the next proposal."""

    class _Tuner(keras_tuner.BayesianOptimization):
        def run_trial(self, trial: keras_tuner.engine.trial.Trial, *args: object,
                      **kwargs: object) -> dict[str, float]:
            if deadline is not None and time.monotonic() >= deadline:
                raise _Deadline("timeout")
            candidate = propose(trial.hyperparameters, study=study, offered=offered)
            opt_study.enqueue_trial(candidate_params(candidate, study=study, offered=offered))
            opt_study.optimize(objective, n_trials=1, catch=TRIAL_FAILURES,
                               callbacks=callbacks)
            done = opt_study.trials[-1]
            if done.state != optuna.trial.TrialState.COMPLETE:
                return {"score": FAILED_SCORE}
            return {"score": score(done.values[0], done.values[1])}

    tuner = _Tuner(
        objective=keras_tuner.Objective("score", direction="max"), max_trials=n_trials,
        seed=seed, directory=str(directory), project_name=opt_study.study_name,
        overwrite=False,
    )
    try:
        tuner.search(verbose=0)
    except _Deadline:
        pass
