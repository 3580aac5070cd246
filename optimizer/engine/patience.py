"""How long the driver waits for a worker that says nothing: no wait without a bound.

A worker stopped (SIGSTOP, a debugger), deadlocked or swapping is alive, so its process
sentinel never fires; before this bound such a worker held the run for good, past
`--timeout` too (issue 31, item 6). A busy worker speaks on its pipe in two ways
(`optimizer.engine.messages`):

- its task reports progress: `Started`, a `Working` at each phase's start and end and
  each epoch's end (`objectives.pipeline.evaluate_candidate`'s `progress`), a rung's
  `Question`, the answer;
- its process says it is alive: a `Beat` every `BEAT_SECONDS` from a thread of its own,
  whatever the task does.

Two bounds follow (`Patience.overdue`); a worker past either is killed (SIGKILL ends a
stopped process too) and replaced, and its trial is FAIL (`worker.WorkerHung`, kind
`worker_hung`) and retried once, as a dead worker's is:

- the silence limit: the task reported no progress for `limit()` seconds, the larger of
  `silence_limit` (`run --silence-limit`, default `SILENCE_LIMIT`) and `SILENCE_FACTOR`
  times the longest silence of a task that answered in this run. The measure follows the
  study's own pace: its epochs and phases (a larger model, a larger budget's epochs on
  more data) lengthen the silences measured, and the limit with them. The floor, ten
  minutes by default, covers the run's first trials, before any task has answered (a
  worker's TensorFlow import, a first epoch's graph tracing, a conversion). It catches a
  worker stopped and one deadlocked alike (a deadlocked worker's beats go on);
- past `--timeout` (`deadline`), a worker that has not said it is alive for `beat_grace`
  seconds is ended at once: trials in flight still finish, as `--timeout` promises
  ("no new trial starts"), but only while their worker answers, so a stopped worker no
  longer holds a timed-out run. A process that holds Python's lock (GIL) in one call
  longer than `beat_grace` would be taken for stopped: past the deadline the run is
  ending, and that trial is retried by the next run.
"""

from __future__ import annotations

import math
import threading

#: The silence limit's floor by default (`run --silence-limit`), in seconds.
SILENCE_LIMIT = 600.0
#: The silence limit is at least this many times the longest silence of an answered task.
SILENCE_FACTOR = 5.0
#: How often a busy worker's process says it is alive (`messages.Beat`).
BEAT_SECONDS = 1.0
#: Past `--timeout`, a worker silent this long (no `Beat`: stopped) is ended.
BEAT_GRACE = 10.0


class Patience:
    """The bounds on waiting for a busy worker (see the module's docstring), shared by the
    workers of one pool; `answered` raises the silence limit with each task's measure.

    Attributes:
        silence_limit: the floor of the silence limit, in seconds.
        deadline: `--timeout` as a `time.monotonic()` instant (None: no timeout).
        beat_grace: past `deadline`, seconds without a `Beat` that end a worker.
    """

    def __init__(self, *, silence_limit: float = SILENCE_LIMIT, deadline: float | None = None,
                 beat_grace: float = BEAT_GRACE) -> None:
        for name, value in (("silence_limit", silence_limit), ("beat_grace", beat_grace)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        self.silence_limit = float(silence_limit)
        self.deadline = deadline
        self.beat_grace = float(beat_grace)
        self._longest = 0.0
        self._lock = threading.Lock()

    def limit(self) -> float:
        """Seconds a task may report no progress: the floor, or `SILENCE_FACTOR` times
        the longest silence of an answered task when that is longer."""
        with self._lock:
            return max(self.silence_limit, SILENCE_FACTOR * self._longest)

    def answered(self, longest_silence: float) -> None:
        """A task answered; `longest_silence`: its longest gap between two reports."""
        with self._lock:
            self._longest = max(self._longest, float(longest_silence))

    def overdue(self, *, heard: float, advanced: float, now: float) -> str | None:
        """Why a busy worker is to be ended now, or None: `heard` is when it last said
        anything (a `Beat` included), `advanced` when its task last reported progress
        (`time.monotonic()` instants, as `now`)."""
        past_deadline = self.deadline is not None and now >= self.deadline
        if past_deadline and now - heard > self.beat_grace:
            return f"silent for {now - heard:.0f} s, past --timeout"
        limit = self.limit()
        if now - advanced > limit:
            return f"no progress within its limit of {limit:.0f} s"
        return None
