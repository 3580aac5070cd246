"""Reading a study's Pareto front: accuracy ↑ versus its byte objective ↓ (`payload_bytes`
by default; `flash_bytes` or `artifact_gzip_bytes` by `run --size-objective`). Under
device budgets it is the feasible front: trials over a budget stay in the study but not on
the front.

`front_rows` gives each member under the names the trials store them, bytes exact and
accuracy unrounded (what `pareto --format json|csv` and the Python API print). A study
whose parent is a KerasTuner hypermodel adds one `hp_<name>` column per hyperparameter,
after the compression axes: a front is read as architectures, not trial numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from optimizer.store.record import test_accuracies
from optimizer.store.trial import StoredTrial
from search_spaces.hypermodel import HP_PREFIX

if TYPE_CHECKING:
    import optuna

#: The columns of `--format json|csv`, named as the trials' objectives and user attributes.
COLUMNS = (
    "trial", "accuracy", "test_accuracy", "payload_bytes", "artifact_bytes", "flash_bytes",
    "ota_bytes", "ram_bytes", "latency_ms", "width", "factorize", "epr_lambda", "quantization",
    "finalist_of",
)


def hp_values(trial: StoredTrial) -> dict[str, object]:
    """A hypermodel trial's `hp_<name>` values: as its candidate records them, else from
    its params (a trial whose build failed before the candidate was recorded); {} for a
    study without a hypermodel."""
    if trial.hypermodel is not None:
        return dict(trial.hypermodel)
    return {k: v for k, v in trial.suggested.items() if k.startswith(HP_PREFIX)}


def hp_columns(rows: Sequence[dict[str, object]]) -> list[str]:
    """The `hp_*` keys of `rows`, in order of first appearance (the hypermodel's own)."""
    return list(dict.fromkeys(k for row in rows for k in row if k.startswith(HP_PREFIX)))


def front_trials(opt_study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Non-dominated feasible COMPLETE trials, sorted by the byte objective."""
    return sorted(opt_study.best_trials, key=lambda t: (t.values[1], -t.values[0]))


def front_rows(opt_study: optuna.Study) -> list[dict[str, object]]:
    """One dict per front member with the columns of `COLUMNS`, exact and unrounded.

    `factorize` is the candidate's list of factorized layers; a hypermodel study's rows
    also carry every `hp_<name>` of the front (None where a member has none).
    """
    tests = test_accuracies(opt_study)
    rows = [_row(StoredTrial.from_trial(t), tests.get(t.number)) for t in front_trials(opt_study)]
    columns = hp_columns(rows)
    return [{**row, **{k: row.get(k) for k in columns}} for row in rows]


def _row(t: StoredTrial, test_accuracy: float | None) -> dict[str, object]:
    cand = t.candidate
    assert t.values is not None  # a front member completed
    return {
        "trial": t.number,
        "accuracy": t.values[0],
        "test_accuracy": test_accuracy,
        "payload_bytes": t.payload_bytes,
        "artifact_bytes": t.artifact_bytes,
        "flash_bytes": t.flash_bytes,
        "ota_bytes": t.ota_bytes,
        "ram_bytes": t.ram_bytes,
        "latency_ms": t.latency_ms,
        "width": None if cand is None else cand.width,
        "factorize": [] if cand is None else list(cand.factorize),
        "epr_lambda": None if cand is None else cand.epr_lambda,
        "quantization": t.quantization,
        # a front member fine-tuned after the search: the trial it came from
        "finalist_of": t.finalist_of,
        **hp_values(t),
    }
