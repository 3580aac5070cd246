"""The Pareto front of a study: accuracy ↑ versus payload bytes ↓, and the `pareto` command."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from optimizer.commands import format_table

if TYPE_CHECKING:
    import optuna

TEST_ACCURACY_ATTR = "test_accuracy"
COLUMNS = (
    "trial", "accuracy", "test_accuracy", "payload_kb", "artifact_kb", "width", "factorize",
    "epr_lambda", "quantization",
)


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Non-dominated COMPLETE trials, sorted by payload bytes."""
    return sorted(study.best_trials, key=lambda t: (t.values[1], -t.values[0]))


def test_accuracies(study: optuna.Study) -> dict[int, float]:
    """Test-split accuracy per front member, as recorded after the search.

    Finished trials cannot take new user attributes, so they are kept on the study,
    keyed by trial number.
    """
    stored = study.user_attrs.get(TEST_ACCURACY_ATTR, {})
    return {int(k): float(v) for k, v in stored.items()}


def front_rows(study: optuna.Study) -> list[dict[str, object]]:
    """One dict per front member with the columns of `COLUMNS`."""
    tests = test_accuracies(study)
    rows = []
    for t in front_trials(study):
        cand = t.user_attrs.get("candidate", {})
        rows.append(
            {
                "trial": t.number,
                "accuracy": round(t.values[0], 4),
                "test_accuracy": None if t.number not in tests else round(tests[t.number], 4),
                "payload_kb": round(t.values[1] / 1024, 2),
                "artifact_kb": round(t.user_attrs.get("artifact_bytes", 0) / 1024, 2),
                "width": cand.get("width"),
                "factorize": ",".join(cand.get("factorize", [])) or "-",
                "epr_lambda": round(float(cand.get("epr_lambda", 0.0)), 3),
                "quantization": cand.get("quantization"),
            }
        )
    return rows


def format_front(rows: list[dict[str, object]], fmt: str) -> str:
    """The front as an aligned table, CSV or JSON."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    return format_table(list(COLUMNS), [[r[c] for c in COLUMNS] for r in rows])


def pareto_command(args: argparse.Namespace) -> int:
    """Prints the front of a stored study."""
    from optimizer.storage import open_stored

    _, name, _, study = open_stored(args)
    rows = front_rows(study)
    if not rows and args.format == "table":
        print(f"study {name!r} has no completed trials yet")
        return 0
    print(format_front(rows, args.format))
    return 0
