"""`--jobs auto` (the default) and the bound on `--jobs N`: trials at once from the
machine's cores and memory (`optimizer.engine.machine.Machine`), decided per run and never
recorded on the study."""

from __future__ import annotations

import pytest

from definitions.errors import UsageError
from optimizer.engine.machine import WORKER_BYTES, Machine
from optimizer.engine.settings import RunSettings
from tests.conftest import run_cli

GIB = 1 << 30


@pytest.mark.parametrize(("machine", "expected"), [
    (Machine(cores=2, available_bytes=20 * GIB), 2),  # one trial per core
    (Machine(cores=8, available_bytes=4 * GIB), 2),   # memory holds two workers
    (Machine(cores=4, available_bytes=GIB // 2), 1),  # never fewer than one
    (Machine(cores=3), 3),                            # memory unknown: the cores decide
])
def test_auto_runs_one_trial_per_core_as_memory_allows(machine, expected):
    assert machine.auto_jobs() == expected
    assert RunSettings(machine=machine).job_count == expected


def test_auto_is_one_trial_where_trials_cannot_run_at_once():
    machine = Machine(cores=8, available_bytes=64 * GIB)
    assert RunSettings(machine=machine, isolate=False).job_count == 1
    assert RunSettings(machine=machine, isolate=False).workers == 0
    assert RunSettings(machine=machine, backend="kerastuner").job_count == 1
    assert RunSettings(machine=machine, jobs=3).job_count == 3


def test_a_jobs_count_the_machine_cannot_start_is_refused_naming_the_most_it_can():
    machine = Machine(cores=2, available_bytes=6 * WORKER_BYTES)
    RunSettings(machine=machine, jobs=6)  # six workers fit in memory, 3 per core
    with pytest.raises(UsageError) as refused:
        RunSettings(machine=machine, jobs=7)
    assert str(refused.value).startswith("--jobs 7: this machine runs at most 6 trials at "
                                         "once (2 cores, ")
    with pytest.raises(UsageError, match="at most 8 trials"):  # 4 a core, memory unknown
        RunSettings(machine=Machine(cores=2), jobs=9)
    with pytest.raises(UsageError, match="--jobs must be a number or auto"):
        RunSettings(machine=machine, jobs="all")


def test_run_refuses_jobs_1000_in_one_line_before_anything_is_made(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--jobs", "1000", "--run-dir",
                  str(tmp_path / "run"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "--jobs 1000: this machine runs at most" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_run_with_jobs_auto_runs_a_trial_per_core_and_says_how_many(tmp_path):
    here = Machine.here()
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "2", "--jobs", "auto",
                  "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{here.auto_jobs()} trial(s) at once (--jobs auto: {here.cores} cores" in out.stderr
