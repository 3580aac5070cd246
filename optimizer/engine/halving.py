"""Multi-objective successive halving: which trials earn their full training.

MO-ASHA (Schmucker, Donini, Zafar, Salinas & Archambeau, "Multi-objective Asynchronous
Successive Halving", 2021): a trial is judged at the end of each rung (a number of epochs,
`Budget.rungs`) against every earlier trial's score at that rung, and trains on only when
it ranks among the best 1/η of them (`Budget.eta`; the "stopping" variant of ASHA). With
two objectives "best" is the order of non-dominated sorting (NSGA-II's fronts), and within
a front an ε-net order: the two extremes first, then the point farthest from those
already chosen, so the places left go to points spread along the front rather than
bunched at one end of it.

Our addition, `keep_front` (on by default): a trial on the first non-dominated front of
its rung's scores trains on whatever its rank. A study has a few dozen trials, so ⌊n/η⌋
is small for much of the run (1 while n < 6 at η = 3) and the ranking, most accurate
first, stopped the small EPR models, whose code length falls only with more steps, before
it fell. Measured: on Fashion-MNIST it raised the front's hypervolume on both seeds tried
(BENCHMARKS.md, "Search efficiency").

A stopped trial is not thrown away: its model, trained for the rung's epochs, is compressed
and scored like any other, so what it cost still lands on the front. Whether the rule
should be used at all is measured (`benchmarks/search_efficiency.py`: the rank correlation
of first-epoch and final accuracy, and the front with and without it).

Scores are (validation accuracy ↑, bytes ↓); bytes enter as log10, the scale on which
the fronts are read. A trial is judged in the driver when its worker reaches a rung
(`DriverJudge`), against the rung scores of every trial completed or in flight at that
moment, as ASHA does with trials running at once (`run --jobs N`); with one trial at a
time that is the trials before it, so the rule is deterministic given their order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from objectives.stopping import RungScore
from optimizer.engine.worker import ask_driver

if TYPE_CHECKING:
    from definitions.budgets import Budget


#: One trial's score at one rung: (epochs trained, validation accuracy, estimated bytes).


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(accuracy, log bytes): `a` is no worse in both and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def nondominated_fronts(points: Sequence[tuple[float, float]]) -> list[list[int]]:
    """Indices of `points` (accuracy ↑, log bytes ↓) sorted into fronts, best first."""
    left = list(range(len(points)))
    fronts = []
    while left:
        front = [i for i in left
                 if not any(_dominates(points[j], points[i]) for j in left if j != i)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def epsilon_net_order(points: Sequence[tuple[float, float]], members: Sequence[int]
                      ) -> list[int]:
    """`members` (indices of one front) ordered for diversity: the most accurate and the
    smallest first, then repeatedly the point farthest (Euclidean, each objective scaled
    by its range over `points`) from every point already chosen."""
    if len(members) <= 2:
        return sorted(members, key=lambda i: -points[i][0])
    spans = [max(p[k] for p in points) - min(p[k] for p in points) or 1.0 for k in (0, 1)]

    def distance(i: int, j: int) -> float:
        return math.hypot(*((points[i][k] - points[j][k]) / spans[k] for k in (0, 1)))

    chosen = [max(members, key=lambda i: (points[i][0], -points[i][1]))]
    smallest = min(members, key=lambda i: (points[i][1], -points[i][0]))
    if smallest not in chosen:
        chosen.append(smallest)
    rest = [i for i in members if i not in chosen]
    while rest:
        far = max(rest, key=lambda i: (min(distance(i, j) for j in chosen), points[i][0]))
        chosen.append(far)
        rest.remove(far)
    return chosen


def ranking(points: Sequence[tuple[float, float]]) -> list[int]:
    """All indices of `points`, best first: front by front, each in ε-net order."""
    return [i for front in nondominated_fronts(points) for i in epsilon_net_order(points, front)]


@dataclass(frozen=True)
class RungJudge:
    """Decides, in the driver, whether a trial trains past a rung, on the scores of the
    trials completed or in flight (`Objective._rung_decision`); the worker's training asks
    it through `DriverJudge`, the stop rule it is handed.

    Attributes:
        rungs: the epochs after which a trial is judged (increasing, each below the
            budget's epochs).
        eta: a trial trains on when it ranks in the best ⌊n/η⌋ of the n scores at the
            rung (its own included); the first η trials at a rung always train on.
        history: the earlier trials' scores, `(rung, accuracy, bytes)` each.
        keep_front: a trial on the first non-dominated front of the rung's scores trains
            on whatever its rank (`Budget.keep_front`).
        exempt: the trial is a reference point (`Study.reference_points`) or a small-end
            extension (`optimizer.engine.extension`): it is scored at each rung, so its scores
            join the later trials' history, but trains its full budget. Such a point is
            placed to anchor or extend the front; judged on its first-epoch bytes (EPR's
            code length still falling then) it would be cut, as λ = 50 at width 1 was at
            18–20 KB on three of three seeds against 3.3–3.6 KB fully trained.
    """

    rungs: tuple[int, ...]
    eta: int
    history: tuple[RungScore, ...] = ()
    keep_front: bool = True
    exempt: bool = False

    def continues(self, *, rung: int, accuracy: float, payload: float) -> bool:
        """Whether a trial that scored `accuracy` at `payload` bytes after `rung` epochs
        trains on."""
        earlier = [(a, log_bytes(b)) for r, a, b in self.history if r == rung]
        if self.exempt or len(earlier) < self.eta:
            return True
        points = [*earlier, (accuracy, log_bytes(payload))]
        me = len(points) - 1
        if self.keep_front and me in nondominated_fronts(points)[0]:
            return True
        return me in ranking(points)[:len(points) // self.eta]


@dataclass(frozen=True)
class RungQuestion:
    """What a worker's training asks the driver at a rung (`DriverJudge`): does the trial
    that scored `accuracy` at `payload` estimated bytes after `rung` epochs train on?"""

    rung: int
    accuracy: float
    payload: float


@dataclass(frozen=True)
class DriverJudge:
    """The stop rule a worker is handed (`objectives.stopping.StopRule`): at each of
    `rungs` it asks the driver (`optimizer.engine.worker.ask_driver`), which decides by
    `RungJudge` on the study as it stands (`Objective._rung_decision`) and keeps the
    score for the trials judged after it."""

    rungs: tuple[int, ...]

    def continues(self, *, rung: int, accuracy: float, payload: float) -> bool:
        return bool(ask_driver(RungQuestion(rung=int(rung), accuracy=float(accuracy),
                                            payload=float(payload))))


def log_bytes(payload: float) -> float:
    """The scale on which sizes are compared along a front: log10 of the bytes (at least
    one byte), so that halving a 4 KB model counts as much as halving a 4 MB one."""
    return math.log10(max(payload, 1.0))


def judge_for(*, budget: Budget, scores: Sequence[Sequence[RungScore]],
              exempt: bool = False) -> RungJudge | None:
    """A judge by `budget`'s rungs, η and `keep_front` over the earlier trials' `scores`
    (one list per trial), or None without rungs (every trial trains its full budget);
    `exempt` for a reference point, an extension or a finalist
    (`StoredTrial.full_budget`)."""
    if not budget.rungs:
        return None
    history = tuple((int(r), float(a), float(b)) for trial in scores for r, a, b in trial)
    return RungJudge(rungs=tuple(int(r) for r in budget.rungs), eta=int(budget.eta),
                     history=history, keep_front=bool(budget.keep_front),
                     exempt=bool(exempt))
