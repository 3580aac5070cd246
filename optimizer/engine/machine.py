"""`Machine`: what this machine can give a run — its cores and the memory available — and
how many trials it runs at once by default (`run --jobs auto`).

One trial's training uses about one core on these small models: on 2 cores, `--jobs 2`
gave 1.40–2.03× the search trials per hour of `--jobs 1` on Fashion-MNIST and MNIST, and a
higher hypervolume at equal wall time on every seed (BENCHMARKS.md, issue 24). A lasting
worker holds 0.6–1.2 GiB (replaced at 512 MiB of growth, `RECYCLE_GROWTH_BYTES`), so
`WORKER_BYTES` of available memory is asked per worker. `auto` is therefore one trial per
core, as far as memory allows; nothing of it is recorded on the study.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from definitions.errors import UsageError

#: Memory one lasting worker may come to hold (its peak before replacement, measured).
WORKER_BYTES = 3 << 29  # 1.5 GiB
#: `--jobs N` beyond this many workers per core is refused: they would only queue for it.
MAX_JOBS_PER_CORE = 4


@dataclass(frozen=True)
class Machine:
    """Cores this process may use, and memory available now (bytes; None: unknown)."""

    cores: int
    available_bytes: int | None = None

    @classmethod
    def here(cls) -> Machine:
        return cls(cores=_cores(), available_bytes=_available_bytes())

    def auto_jobs(self) -> int:
        """Trials at once by default: one per core, at most as many as memory holds
        workers (`WORKER_BYTES` each), at least one."""
        by_memory = (self.cores if self.available_bytes is None
                     else self.available_bytes // WORKER_BYTES)
        return max(1, min(self.cores, by_memory))

    def check_jobs(self, jobs: int) -> None:
        """Refuses (`UsageError`) a `--jobs N` this machine cannot start: more workers than
        memory holds, or more than `MAX_JOBS_PER_CORE` per core."""
        most = self.cores * MAX_JOBS_PER_CORE
        if self.available_bytes is not None:
            most = min(most, max(1, self.available_bytes // WORKER_BYTES))
        if jobs > most:
            memory = ("" if self.available_bytes is None else
                      f", {self.available_bytes / (1 << 30):.1f} GiB available at "
                      f"{WORKER_BYTES / (1 << 30):.1f} GiB per worker")
            raise UsageError(f"--jobs {jobs}: this machine runs at most {most} trials at "
                             f"once ({self.cores} cores{memory}); pass --jobs {most} or "
                             "fewer, or --jobs auto")


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _available_bytes() -> int | None:
    """`MemAvailable` of /proc/meminfo (Linux), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
