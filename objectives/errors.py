"""Project exceptions a trial can end with (KerasTuner's split: a trial failure vs a bug).

A `TrialFailure` marks one trial FAIL, records its reason, and the study goes on.
A `HopelessTrial` marks it PRUNED. Anything else is a bug and is not caught.
"""


class TrialFailure(Exception):
    """This candidate cannot be trained, converted or evaluated; the reason is the message."""


class DivergedError(TrialFailure):
    """Training produced a NaN or infinite loss, or an objective that is not finite."""


class HopelessTrial(Exception):
    """Validation accuracy after the first epoch is below the study's floor."""
