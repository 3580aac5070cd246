"""The ways a trial can end short of a result (KerasTuner's split: a trial failure vs a bug).

A `TrialFailure` marks one trial FAIL, records its reason and `failure_kind`, and the study
goes on. A `HopelessTrial` marks it PRUNED. Anything else is a bug and is not caught. The
bases live in `optimizer.errors`, the project's one hierarchy.
"""

from optimizer.errors import HopelessTrial, TrialFailure


class DivergedError(TrialFailure):
    """Training produced a NaN or infinite loss, or an objective that is not finite."""

    kind = "diverged"


__all__ = ["DivergedError", "HopelessTrial", "TrialFailure"]
