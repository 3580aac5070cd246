"""Small subcommands that need no TensorFlow: `studies`."""

from __future__ import annotations

import argparse

from studies import STUDIES


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain left-aligned text table."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def studies_command(args: argparse.Namespace) -> int:
    """Lists each study: dataset, family, default budget, warm start and runtime."""
    rows = []
    for study in STUDIES.values():
        b = study.budget
        rows.append(
            [
                study.name,
                study.dataset,
                study.family,
                b.n_trials,
                b.epochs,
                f"{study.init}" + (f" ({b.parent_epochs} ep.)" if study.init == "inherit"
                                   and b.parent_epochs else ""),
                b.schedule,
                b.batch_size,
                b.train_subset or "all",
                ",".join(study.quantization_modes),
                study.expected_runtime,
            ]
        )
    print(
        format_table(
            [
                "study",
                "dataset",
                "family",
                "trials",
                "epochs",
                "init (parent)",
                "schedule",
                "batch",
                "train subset",
                "quantization",
                "expected runtime (2 cores)",
            ],
            rows,
        )
    )
    return 0
