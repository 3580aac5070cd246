"""The progress display of a run: one line per finished trial, and a bar on a terminal.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from optimizer.store.constraints import violated
from optimizer.store.front import hp_values
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    import optuna


class Progress:
    """One line per finished trial; on a terminal also a tqdm bar (trials done, front size,
    ETA). Logs written to a file or pipe get the lines only, no redraws."""

    def __init__(self, total: int, *, bar: bool) -> None:
        from tqdm import tqdm

        self.bar = (
            tqdm(total=total, unit="trial", file=sys.stderr, dynamic_ncols=True) if bar else None
        )
        self.total = total
        self.done = 0

    def expect(self, more: int) -> None:
        """`more` trials are about to run: retries may add to the first estimate."""
        if self.done + more > self.total:
            self.total = self.done + more
            if self.bar is not None:
                self.bar.total = self.total
                self.bar.refresh()

    def __call__(self, opt_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Prints the trial's line: its candidate (with a hypermodel's `hp_<name>` values,
        so a line names the architecture), then its figures or why it stopped."""
        stored = StoredTrial.from_trial(trial)
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start else float("nan")
        )
        head = trial_head(stored)
        if stored.state == "COMPLETE":
            tail = _figures(stored) + _over_budget(trial)
        else:
            tail = stored.fail_reason or stored.prune_reason or ""
        self.done += 1
        line = f"{head} {tail} ({seconds:.0f} s)"
        if self.bar is None:
            print(f"[{self.done}/{self.total}] {line}", file=sys.stderr, flush=True)
            return
        self.bar.write(line, file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(front=len(opt_study.best_trials))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def trial_head(trial: StoredTrial) -> str:
    """`trial 3 COMPLETE: width=0.5 factorize=conv2 epr_lambda=2 quantization=epr`, with a
    hypermodel's values and the trial's mark (extension, finalist)."""
    cand = trial.candidate
    head = (
        f"trial {trial.number} {trial.state}: width={None if cand is None else cand.width} "
        f"factorize={','.join(() if cand is None else cand.factorize) or '-'} "
        f"epr_lambda={0 if cand is None else cand.epr_lambda:.3g} "
        f"quantization={trial.quantization}"
    )
    for name, value in hp_values(trial).items():
        head += f" {name}={value:.3g}" if isinstance(value, float) else f" {name}={value}"
    if trial.extends is not None:
        head += f" (extends trial {trial.extends})"
    if trial.finalist_of is not None:
        head += f" (finalist of trial {trial.finalist_of})"
    return head


def _figures(trial: StoredTrial) -> str:
    """A completed trial's accuracy and byte, device and latency figures."""
    assert trial.values is not None
    tail = (f"accuracy={trial.values[0]:.4f} "
            f"payload={(trial.payload_bytes or 0) / 1024:.2f} KB "
            f"flash={(trial.flash_bytes or 0) / 1024:.1f} KB "
            f"ram={(trial.ram_bytes or 0) / 1024:.1f} KB "
            f"host latency={_or_nan(trial.latency_ms):.3f} ms")
    if trial.ota_bytes is not None:  # measured under --size-objective ota
        tail += f" update={trial.ota_bytes / 1024:.1f} KB"
    if trial.stopped_at_epoch is not None:
        tail += f" (halving: stopped after epoch {trial.stopped_at_epoch})"
    return tail


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _over_budget(trial: optuna.trial.FrozenTrial) -> str:
    over = violated(trial)
    return f" over budget: {', '.join(over)}" if over else ""


@dataclass(frozen=True)
class OneAtATime:
    """An Optuna callback run under a lock: with `--jobs N` trials end in N driver
    threads, and the progress display and the extension (which reads the study and
    enqueues) each see one ended trial at a time."""

    callback: object
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, opt_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self.lock:
            self.callback(opt_study, trial)
