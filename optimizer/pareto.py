"""The Pareto front of a study: accuracy ↑ versus its byte objective ↓ (`payload_bytes` by
default; `flash_bytes` or `artifact_gzip_bytes` by `run --size-objective`), and the
`pareto` command. Under device budgets it is the feasible front: trials over a budget
stay in the study but not on the front, and the table says how many a budget excluded.

`--format json` and `csv` are for machines: byte figures are exact integers and accuracy
is unrounded, under the names the trials store them (`payload_bytes`, `artifact_bytes`).
The table is for people: KB (1 KB = 1024 bytes) and rounded figures.

A study whose parent is a KerasTuner hypermodel adds one column per hyperparameter,
`hp_<name>` as in the trial params, after the compression axes (empty where a conditional
one was inactive), in every format: a front is read as architectures, not trial numbers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from definitions.attributes import FINALIST_ATTR, TEST_ACCURACY_ATTR
from optimizer.commands import format_table
from search_spaces.hypermodel import HP_PREFIX

if TYPE_CHECKING:
    import optuna

#: The columns of `--format json|csv`, named as the trials' objectives and user attributes.
COLUMNS = (
    "trial", "accuracy", "test_accuracy", "payload_bytes", "artifact_bytes", "flash_bytes",
    "ram_bytes", "latency_ms", "width", "factorize", "epr_lambda", "quantization",
    "finalist_of",
)
#: The columns of the table for people: sizes in KB, figures rounded.
TABLE_COLUMNS = (
    "trial", "accuracy", "test_accuracy", "payload_kb", "artifact_kb", "flash_kb", "ram_kb",
    "latency_ms", "width", "factorize", "epr_lambda", "quantization", "finalist_of",
)


def hp_values(trial: optuna.trial.FrozenTrial) -> dict[str, object]:
    """A hypermodel trial's `hp_<name>` values: as its candidate records them (user
    attribute `candidate`, key `hypermodel`), else from its params (a trial whose build
    failed before the candidate was recorded); {} for a study without a hypermodel."""
    recorded = trial.user_attrs.get("candidate", {}).get("hypermodel")
    if recorded is not None:
        return dict(recorded)
    return {k: v for k, v in trial.params.items() if k.startswith(HP_PREFIX)}


def hp_columns(rows: Sequence[dict[str, object]]) -> list[str]:
    """The `hp_*` keys of `rows`, in order of first appearance (the hypermodel's own)."""
    return list(dict.fromkeys(k for row in rows for k in row if k.startswith(HP_PREFIX)))


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Non-dominated feasible COMPLETE trials, sorted by the byte objective."""
    return sorted(study.best_trials, key=lambda t: (t.values[1], -t.values[0]))


def test_accuracies(study: optuna.Study) -> dict[int, float]:
    """Test-split accuracy per front member, as recorded after the search.

    Finished trials cannot take new user attributes, so they are kept on the study,
    keyed by trial number.
    """
    stored = study.user_attrs.get(TEST_ACCURACY_ATTR, {})
    return {int(k): float(v) for k, v in stored.items()}


def _exact_bytes(value: object) -> int | None:
    """A stored byte count as an int (Optuna keeps objective values as floats)."""
    return None if value is None else round(float(value))


def front_rows(study: optuna.Study) -> list[dict[str, object]]:
    """One dict per front member with the columns of `COLUMNS`, exact and unrounded.

    `factorize` is the candidate's list of factorized layers; a hypermodel study's rows
    also carry every `hp_<name>` of the front (None where a member has none).
    """
    tests = test_accuracies(study)
    rows = []
    for t in front_trials(study):
        cand = t.user_attrs.get("candidate", {})
        epr_lambda = cand.get("epr_lambda")
        rows.append(
            {
                "trial": t.number,
                "accuracy": t.values[0],
                "test_accuracy": tests.get(t.number),
                "payload_bytes": _exact_bytes(t.user_attrs.get("payload_bytes")),
                "artifact_bytes": _exact_bytes(t.user_attrs.get("artifact_bytes")),
                "flash_bytes": _exact_bytes(t.user_attrs.get("flash_bytes")),
                "ram_bytes": _exact_bytes(t.user_attrs.get("ram_bytes")),
                "latency_ms": t.user_attrs.get("latency_ms"),
                "width": cand.get("width"),
                "factorize": list(cand.get("factorize", [])),
                "epr_lambda": None if epr_lambda is None else float(epr_lambda),
                "quantization": cand.get("quantization"),
                # a front member fine-tuned after the search: the trial it came from
                "finalist_of": t.user_attrs.get(FINALIST_ATTR),
                **hp_values(t),
            }
        )
    columns = hp_columns(rows)
    return [{**row, **{k: row.get(k) for k in columns}} for row in rows]


def _rounded(value: object, digits: int) -> object:
    return None if value is None else round(float(value), digits)


def _kb(size: object) -> object:
    return None if size is None else round(int(size) / 1024, 2)


def _hp_cell(value: object) -> object:
    """A hyperparameter for people: floats to 3 significant digits, the rest as it is."""
    return f"{value:.3g}" if isinstance(value, float) else value


def table_row(row: dict[str, object], hp: Sequence[str] = ()) -> list[object]:
    """One `front_rows` row as the table's cells (`TABLE_COLUMNS`, then the `hp` columns)."""
    return [
        row["trial"],
        _rounded(row["accuracy"], 4),
        _rounded(row["test_accuracy"], 4),
        _kb(row["payload_bytes"]),
        _kb(row["artifact_bytes"]),
        _kb(row["flash_bytes"]),
        _kb(row["ram_bytes"]),
        _rounded(row["latency_ms"], 3),
        row["width"],
        ",".join(row["factorize"]) or "-",
        _rounded(row["epr_lambda"], 3),
        row["quantization"],
        "-" if row["finalist_of"] is None else row["finalist_of"],
        *(_hp_cell(row.get(name)) for name in hp),
    ]


def format_front(rows: list[dict[str, object]], fmt: str) -> str:
    """The front as an aligned table (KB, rounded), CSV or JSON (exact bytes, unrounded)."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    hp = hp_columns(rows)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *hp], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "factorize": ",".join(r["factorize"])} for r in rows)
        return buf.getvalue().rstrip("\n")
    return format_table([*TABLE_COLUMNS, *hp], [table_row(r, hp) for r in rows])


def pareto_command(args: argparse.Namespace) -> int:
    """Prints the front of a stored study."""
    from optimizer.lookup import open_stored

    name, _, study = open_stored(args)
    rows = front_rows(study)
    if args.format != "table":
        print(format_front(rows, args.format))
        return 0
    excluded = budget_note(study)
    if not rows:
        print(f"study {name!r} has no completed trials{' within its budgets' if excluded else ''}"
              f" yet{'; ' + excluded if excluded else ''}")
        return 0
    print(format_front(rows, args.format))
    if excluded:
        print(excluded)
    return 0


def budget_note(study: optuna.Study) -> str:
    """`3 completed trials exceed the budgets (RAM <= 64 KB) …`, or '' without budgets."""
    from optimizer.constraints import infeasible_count
    from optimizer.record import study_budgets

    budgets = study_budgets(study)
    if budgets is None:
        return ""
    count = infeasible_count(study)
    one = count == 1
    return (f"{count} completed trial{'' if one else 's'} exceed{'s' if one else ''} the "
            f"study's budgets ({budgets.describe()}) and {'is' if one else 'are'} left off "
            "the front")
