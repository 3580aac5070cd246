"""The ways a trial can end short of a result (KerasTuner's split: a trial failure vs a bug).

A `TrialFailure` marks one trial FAIL, records its reason and `failure_kind`, and the study
goes on. A `HopelessTrial` marks it PRUNED. Anything else is a bug and is not caught. The
bases live in `definitions.errors`, the project's one hierarchy.
"""

from definitions.errors import HopelessTrial, TrialFailure


class DivergedError(TrialFailure):
    """Training produced a NaN or infinite loss, or an objective that is not finite."""

    kind = "diverged"


class EPRError(TrialFailure):
    """A model or file EPR cannot handle (unsupported layer, bad file); the message says why."""

    kind = "epr_failed"


class OverBudget(HopelessTrial):
    """The candidate's untrained TFLite file is over a flash or RAM budget: these follow
    from the architecture and storage mode alone (DESIGN §2), so it is rejected before any
    training. `figures` are the measured ones (`flash_bytes`, `ram_bytes`, …);
    `constraints` the budgets' constraint values of them (`DeviceBudgets.footprint_
    constraints`, over where > 0): decided once, where the figures are measured, and
    stored by the driver as they are."""

    def __init__(self, message: str, figures: dict[str, object],
                 constraints: dict[str, float] | None = None) -> None:
        super().__init__(message, figures, constraints)
        self.figures = figures
        self.constraints = dict(constraints or {})

    def __str__(self) -> str:
        return str(self.args[0])


__all__ = ["DivergedError", "EPRError", "HopelessTrial", "OverBudget", "TrialFailure"]
