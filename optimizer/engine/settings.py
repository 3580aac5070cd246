"""`RunSettings`: what one `run` is asked besides its study, validated once, when made.

The CLI (`optimizer.commands.run_args.run_settings`) and the Python API make one from their
arguments; `optimizer.engine.runner.run_study` takes it. Checks name the `run` flag, so a
bad value reads the same from either face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.errors import UsageError
from definitions.vocabulary import BACKENDS, JOBS_AUTO, SAMPLERS
from optimizer.engine.extension import EXTEND_EVERY
from optimizer.engine.finalists import FINALISTS
from optimizer.engine.machine import Machine
from optimizer.engine.patience import SILENCE_LIMIT
from optimizer.engine.sampling import check_available

if TYPE_CHECKING:
    from definitions.budgets import DeviceBudgets


@dataclass(frozen=True)
class RunSettings:
    """One run's settings (`run --help` says each flag's).

    Attributes:
        smoke: the study's tiny smoke budget, under a name of its own.
        run_dir, storage, artifact_dir: where the study, its storage and its artifacts
            are (defaults: `runs/<study>`, a SQLite file in it, `<run dir>/artifact-store`).
        data_dir: local dataset files.
        sampler, backend: who proposes trials (`SAMPLERS`, `BACKENDS`).
        seed: carves the data splits and seeds training and the sampler (None: 0 for a new
            study, the stored one on resume).
        n_trials: finished trials to reach (None: the budget's); `timeout`: seconds after
            which no trial starts (those in flight finish while their worker answers:
            `optimizer.engine.patience`).
        size_objective, device_budgets, init, quantization_modes, width_range: override the
            study definition's for a new study; None keeps the stored ones on resume (others
            are refused).
        trust_model_code: a saved parent's stored Python code may run (recorded).
        progress: None shows a bar when stderr is a terminal and plain lines otherwise;
            False shows nothing.
        isolate: trials run in worker processes (False: `--no-isolation`).
        extend_every: one trial in this many steps below the front's smallest member
            (`optimizer.engine.extension`; 0: none).
        check_before_training: False trains candidates over a flash or RAM budget and
            judges them after (for `benchmarks/device_search.py`).
        jobs: trials at once, each in a lasting worker with its share of the cores, or
            `auto` (the default): one per core as memory allows (`Machine.auto_jobs`); one
            without isolation or with KerasTuner. This run's setting, not the study's.
        machine: the cores and memory `jobs` is decided and checked against.
        finalists: front members trained again to the end after the search (None:
            `FINALISTS`, or none for a smoke run; 0: none); see `finalist_count`.
        silence_limit: seconds a trial's worker may report no progress before it is
            ended, its trial FAIL (`worker_hung`) and retried: the floor of a limit that
            grows with the run's measured pace (`optimizer.engine.patience`).
    """

    smoke: bool = False
    run_dir: Path | None = None
    storage: str | None = None
    artifact_dir: Path | None = None
    data_dir: Path | None = None
    sampler: str = "tpe"
    backend: str = "optuna"
    seed: int | None = None
    n_trials: int | None = None
    timeout: float | None = None
    size_objective: str | None = None
    device_budgets: DeviceBudgets | None = None
    init: str | None = None
    quantization_modes: tuple[str, ...] | None = None
    width_range: tuple[float, float] | None = None
    trust_model_code: bool = False
    progress: bool | None = None
    isolate: bool = True
    extend_every: int = EXTEND_EVERY
    check_before_training: bool = True
    jobs: int | str = JOBS_AUTO
    finalists: int | None = None
    silence_limit: float = SILENCE_LIMIT
    machine: Machine = field(default_factory=Machine.here, compare=False)

    def __post_init__(self) -> None:
        self._check_trials()
        self._check_proposers()
        self._check_execution()

    def _check_trials(self) -> None:
        if self.n_trials is not None and self.n_trials < 1:
            raise UsageError(f"--n-trials must be at least 1, got {self.n_trials}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageError(
                f"--timeout must be a positive number of seconds, got {self.timeout}")
        if not (math.isfinite(self.silence_limit) and self.silence_limit > 0):
            raise UsageError("--silence-limit must be a positive number of seconds, got "
                             f"{self.silence_limit}")

    def _check_proposers(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UsageError(
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        check_available(self.sampler)
        if self.backend not in BACKENDS:
            raise UsageError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")

    def _check_execution(self) -> None:
        if isinstance(self.jobs, str) and self.jobs != JOBS_AUTO:
            raise UsageError(f"--jobs must be a number or {JOBS_AUTO}, got {self.jobs!r}")
        if isinstance(self.jobs, int) and self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}")
        if isinstance(self.jobs, int):
            self.machine.check_jobs(self.jobs)
        if self.finalists is not None and self.finalists < 0:
            raise UsageError(f"--finalists must be 0 (none) or more, got {self.finalists}")
        if isinstance(self.jobs, int) and self.jobs > 1 and not self.isolate:
            raise UsageError("--jobs runs each trial in a worker of its own; it cannot be "
                             "combined with --no-isolation")
        if isinstance(self.jobs, int) and self.jobs > 1 and self.backend == "kerastuner":
            raise UsageError("--backend kerastuner proposes one trial at a time; run it with "
                             "--jobs 1")
        if self.extend_every < 0 or self.extend_every == 1:
            raise UsageError(f"--extend-every must be 0 (no extensions) or at least 2, got "
                             f"{self.extend_every}")

    @property
    def finalist_count(self) -> int:
        """Front members trained again after the search: `finalists`, else `FINALISTS`
        (none for a smoke run)."""
        if self.finalists is not None:
            return self.finalists
        return 0 if self.smoke else FINALISTS

    @property
    def job_count(self) -> int:
        """Trials at once: `jobs`, or for `auto` the machine's (`Machine.auto_jobs`), one
        where trials cannot run at once (no isolation, KerasTuner's one proposal at a
        time)."""
        if isinstance(self.jobs, int):
            return self.jobs
        if not self.isolate or self.backend == "kerastuner":
            return 1
        return self.machine.auto_jobs()

    @property
    def workers(self) -> int:
        """Worker processes: `job_count`, or 0 (trials in this process) without
        isolation."""
        return self.job_count if self.isolate else 0
