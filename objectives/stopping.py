"""The stop rule a trial's training is handed (KerasTuner's split: the search algorithm
decides, training asks).

Training needs only two answers from whoever drives the search: after which epochs it is
judged (`rungs`), and whether it goes on after one of them (`continues`). The driver's
multi-objective successive halving (`optimizer.engine.halving.RungJudge`) is one such rule; any
object with these two members is another, so nothing under `objectives/` depends on the
driver.
"""

from __future__ import annotations

from typing import Protocol

#: One rung's score of a trial: (epoch, validation accuracy, estimated bytes).
RungScore = tuple[int, float, float]


class StopRule(Protocol):
    """When a trial is judged, and whether it trains on."""

    @property
    def rungs(self) -> tuple[int, ...]:
        """The epochs after which the trial is judged (increasing)."""
        ...

    def continues(self, *, rung: int, accuracy: float, payload: float) -> bool:
        """Whether a trial scoring `accuracy` and `payload` bytes at `rung` trains on."""
        ...
