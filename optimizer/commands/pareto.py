"""The `pareto` command: a study's front (`optimizer.store.front`) as a table, CSV or JSON.
Under device budgets it is the feasible front, and the table says how many a budget
excluded.

`--format json` and `csv` are for machines: byte figures are exact integers and accuracy
is unrounded, under the names the trials store them (`payload_bytes`, `artifact_bytes`).
The table is for people: KB (1 KB = 1024 bytes) and rounded figures.

A study whose parent is a KerasTuner hypermodel adds one column per hyperparameter,
`hp_<name>` as in the trial params, after the compression axes (empty where a conditional
one was inactive), in every format: a front is read as architectures, not trial numbers.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from optimizer.commands.lookup import open_stored
from optimizer.commands.tables import format_table
from optimizer.store.constraints import infeasible_count
from optimizer.store.front import COLUMNS, front_rows, hp_columns
from optimizer.store.record import study_budgets

if TYPE_CHECKING:
    import optuna

#: The columns of the table for people: sizes in KB, figures rounded.
TABLE_COLUMNS = (
    "trial", "accuracy", "test_accuracy", "payload_kb", "artifact_kb", "flash_kb", "ota_kb",
    "ram_kb",
    "latency_ms", "width", "factorize", "epr_lambda", "quantization", "finalist_of",
)


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
        _kb(row["ota_bytes"]),
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
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *hp], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "factorize": ",".join(r["factorize"])} for r in rows)
        return buf.getvalue().rstrip("\n")
    return format_table([*TABLE_COLUMNS, *hp], [table_row(r, hp) for r in rows])


def pareto_command(args: argparse.Namespace) -> int:
    """Prints the front of a stored study."""
    name, _, opt_study = open_stored(args)
    rows = front_rows(opt_study)
    if args.format != "table":
        print(format_front(rows, args.format))
        return 0
    excluded = budget_note(opt_study)
    if not rows:
        print(f"study {name!r} has no completed trials{' within its budgets' if excluded else ''}"
              f" yet{'; ' + excluded if excluded else ''}")
        return 0
    print(format_front(rows, args.format))
    if excluded:
        print(excluded)
    return 0


def budget_note(opt_study: optuna.Study) -> str:
    """`3 completed trials exceed the budgets (RAM <= 64 KB) …`, or '' without budgets."""
    budgets = study_budgets(opt_study)
    if budgets is None:
        return ""
    count = infeasible_count(opt_study)
    one = count == 1
    return (f"{count} completed trial{'' if one else 's'} exceed{'s' if one else ''} the "
            f"study's budgets ({budgets.describe()}) and {'is' if one else 'are'} left off "
            "the front")
