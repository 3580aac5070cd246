"""The project's one exception hierarchy (Optuna's `OptunaError`, KerasTuner's split of a
failed trial from a fatal error).

- `OptimizerError`: the base of every error this project raises on purpose.
- `UsageError`: bad input from the user (unknown study, unreadable data, a storage that
  contradicts the study, a busy port). Stop everything: the CLI prints the message as one
  line and exits with code 2, and nothing already stored is changed.
- `CheckFailed`: a self-check failed (an exported model does not score what was recorded);
  exit code 1.
- `TrialFailure`: this candidate cannot be trained, converted or evaluated; the trial is
  marked FAIL with its `failure_kind` and the study goes on.
- `HopelessTrial`: the trial is marked PRUNED (below the study's accuracy floor).
- `BudgetNotReached`, `NoUsableTrial`: a run that could not reach its budget, or whose
  search found nothing usable; exit code 1.

This module imports nothing, so every package (`search_spaces`, `studies`, `objectives`)
can derive its errors from these without import cycles.
"""


class OptimizerError(Exception):
    """Base of every error the project raises on purpose."""


class UsageError(OptimizerError):
    """Bad input from the user: the message names the problem and what to do instead."""


class StudyDefinitionError(UsageError):
    """A study whose definition cannot be searched (unknown mode, empty range, …)."""


class CheckFailed(OptimizerError):
    """A self-check failed (e.g. an exported model does not score what was recorded)."""


class TrialFailure(OptimizerError):
    """This candidate cannot be trained, converted or evaluated; the reason is the message.

    `kind` is stored on the trial as `failure_kind`, so tools tell an interrupted trial
    from a diverged one without parsing the message."""

    kind = "trial_failed"


class HopelessTrial(OptimizerError):
    """The trial cannot become useful (below the study's accuracy floor): PRUNED."""


class BudgetNotReached(OptimizerError):
    """A run could not reach its trial budget (e.g. every worker died); exit code 1."""


class NoUsableTrial(OptimizerError):
    """A search ended with nothing on its front: no trial completed (each was pruned or
    failed), or every completed one is over a device budget. The input was fine, the
    search was not: exit code 1 (`run`), raised by `optimizer.search`."""


#: How long a one-line message may grow before it is cut (at a word, with "…").
ONE_LINE_CHARS = 400


def one_line(text: object, *, limit: int = ONE_LINE_CHARS) -> str:
    """`text` as one line for a terminal or a trial attribute: white space folded, and cut
    at the last word that fits in `limit` characters, with "…", when longer (a library's
    multi-line diagnostic, a user module's exception)."""
    folded = " ".join(str(text).split())
    if len(folded) <= limit:
        return folded
    cut = folded[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut + "…"
