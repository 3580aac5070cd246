"""What `export` says when there is nothing to pick: no completed trial at all is not a
budget's doing (issue 31, item 7)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from definitions.errors import UsageError
from optimizer.commands.export import pick_trial


def _study_with_budgets(*states: TrialState) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="s")
    study.set_user_attr("definition", {"device_budgets": {"max_ram_kb": 64.0}})
    for state in states:
        study.add_trial(create_trial(state=state, values=None if state != TrialState.COMPLETE
                                     else [0.9, 100.0]))
    return study


def test_no_completed_trial_under_budgets_says_so_not_that_budgets_excluded_them():
    with pytest.raises(UsageError) as refused:
        pick_trial(_study_with_budgets(TrialState.PRUNED, TrialState.FAIL))
    assert str(refused.value) == "study 's' has no completed trials"
