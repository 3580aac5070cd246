"""Device budgets as Optuna constraints: written on each trial, read back by every view.

Optuna 5 keeps a trial's constraints as system attributes set by
`Trial.set_constraint(name, value)` (feasible when every value is <= 0); its samplers
and `Study.best_trials` use them, so the front a study reports is the feasible front.
optuna-dashboard 0.21 reads only the older list form (system attribute `constraints`),
so the same values are also written there, through the injected storage's public API,
so that the dashboard greys out infeasible trials. Both forms carry the same values, so
feasibility (every value <= 0) is the same whichever form is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from definitions.attributes import DASHBOARD_CONSTRAINTS_KEY

if TYPE_CHECKING:
    import optuna


def set_constraints(
    trial: optuna.Trial, values: dict[str, float], *, storage: optuna.storages.BaseStorage,
) -> None:
    """Records `values` (name → value, feasible when <= 0) as the trial's constraints."""
    if not values:
        return
    for name, value in values.items():
        trial.set_constraint(name, value)
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    storage.set_trial_system_attr(trial_id, DASHBOARD_CONSTRAINTS_KEY, list(values.values()))


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial meets every budget (a trial without constraints does)."""
    return all(value <= 0 for value in trial.constraints.values())


def infeasible_count(opt_study: optuna.Study) -> int:
    """COMPLETE trials that a budget excluded from the front."""
    from optuna.trial import TrialState

    return sum(
        1 for t in opt_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not is_feasible(t)
    )


def violated(trial: optuna.trial.FrozenTrial) -> list[str]:
    """Names of the budgets a trial exceeds (`flash_bytes`, `ram_bytes`, …)."""
    return sorted(name for name, value in trial.constraints.items() if value > 0
                  and not name.isdigit())
