"""The messages between the driver and a worker process (`optimizer.engine.worker`), as
types: what travels over a worker's pipe, in which direction, and what each carries.

Driver → worker: `Shared` (a spawned worker's shared data, once, before its first task),
`Task`, an answer to a `Question` (any value), `Stop`.
Worker → driver, per task: `Started`, any number of `Working`s, `Question`s and `Beat`s,
then one answer: `Returned`, `Raised`, `Interrupted` or `Bug`, each with the worker's
resident memory. Every one but `Beat` is the task's progress; how long the driver waits
for either is `optimizer.engine.patience`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shared:
    """A spawned worker's shared data (a forked one inherits them)."""

    data: Mapping[str, Any]


@dataclass(frozen=True)
class Task:
    """Run `fn(**shared, **kwargs)`."""

    fn: Callable[..., Any]
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class Stop:
    """End the worker after its current task."""


@dataclass(frozen=True)
class Started:
    """The task began, at `at` (`time.time()` in the worker)."""

    at: float


@dataclass(frozen=True)
class Working:
    """The task advanced: a phase began or ended, an epoch ended (`report_progress`)."""


@dataclass(frozen=True)
class Beat:
    """The worker's process is alive (sent every `BEAT_SECONDS` while a task runs, by a
    thread of its own: it says nothing of the task's progress)."""


@dataclass(frozen=True)
class Question:
    """The task asks the driver (`ask_driver`); the worker waits for the answer."""

    question: Any


@dataclass(frozen=True)
class Returned:
    """The task returned `value`."""

    value: Any
    resident_bytes: int


@dataclass(frozen=True)
class Raised:
    """The task raised `error` (it travels back; the driver decides)."""

    error: BaseException
    resident_bytes: int


@dataclass(frozen=True)
class Interrupted:
    """The task was interrupted (KeyboardInterrupt in the worker)."""

    resident_bytes: int


@dataclass(frozen=True)
class Bug:
    """The task's exception or result could not be sent back (it does not pickle):
    `text` is its traceback or its repr."""

    text: str
    resident_bytes: int


#: The one answer a task ends with.
Answer = Returned | Raised | Interrupted | Bug
