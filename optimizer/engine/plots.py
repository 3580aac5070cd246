"""Small matplotlib figures: a per-trial card (training loss and byte figures)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from objectives.pipeline import TrialResult


def trial_plot(result: TrialResult, path: Path, *, title: str) -> None:
    """A 4×2.5-inch PNG: loss per epoch, and the trial's accuracy and byte figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5), dpi=100)
    losses = list(result.losses)
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(
        f"{title}: acc {result.accuracy:.4f}, payload {result.payload_bytes / 1024:.1f} KB",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
