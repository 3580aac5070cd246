"""The progress display of a run: one line per finished trial, and a bar on a terminal.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from definitions.attributes import EXTENSION_ATTR, FAIL_REASON_ATTR, FINALIST_ATTR
from optimizer.constraints import violated

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

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Prints the trial's line: its candidate (with a hypermodel's `hp_<name>` values,
        so a line names the architecture), then its figures or why it stopped."""
        from optuna.trial import TrialState

        from optimizer.pareto import hp_values

        cand = trial.user_attrs.get("candidate", {})
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start else float("nan")
        )
        head = (
            f"trial {trial.number} {trial.state.name}: width={cand.get('width')} "
            f"factorize={','.join(cand.get('factorize', [])) or '-'} "
            f"epr_lambda={float(cand.get('epr_lambda', 0)):.3g} "
            f"quantization={cand.get('quantization')}"
        )
        for name, value in hp_values(trial).items():
            head += f" {name}={value:.3g}" if isinstance(value, float) else f" {name}={value}"
        if EXTENSION_ATTR in trial.user_attrs:
            head += f" (extends trial {trial.user_attrs[EXTENSION_ATTR]})"
        if FINALIST_ATTR in trial.user_attrs:
            head += f" (finalist of trial {trial.user_attrs[FINALIST_ATTR]})"
        if trial.state == TrialState.COMPLETE:
            attrs = trial.user_attrs
            tail = (f"accuracy={trial.values[0]:.4f} "
                    f"payload={attrs.get('payload_bytes', 0) / 1024:.2f} KB "
                    f"flash={attrs.get('flash_bytes', 0) / 1024:.1f} KB "
                    f"ram={attrs.get('ram_bytes', 0) / 1024:.1f} KB "
                    f"host latency={attrs.get('latency_ms', float('nan')):.3f} ms")
            if attrs.get("stopped_at_epoch") is not None:
                tail += f" (halving: stopped after epoch {attrs['stopped_at_epoch']})"
            over = violated(trial)
            if over:
                tail += f" over budget: {', '.join(over)}"
        else:
            tail = (trial.user_attrs.get(FAIL_REASON_ATTR)
                    or trial.user_attrs.get("prune_reason", ""))
        self.done += 1
        line = f"{head} {tail} ({seconds:.0f} s)"
        if self.bar is None:
            print(f"[{self.done}/{self.total}] {line}", file=sys.stderr, flush=True)
            return
        self.bar.write(line, file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(front=len(study.best_trials))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
