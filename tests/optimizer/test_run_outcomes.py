"""A `run` that finds nothing usable exits 1 with one line saying which way it came to
nothing: no trial completed (all PRUNED or FAIL), or none within the device budgets."""

from __future__ import annotations

import optuna

from tests.conftest import run_cli

#: One float32 epoch of the tiny CNN on digits per trial; the floor prunes every trial
#: after it (no model here reaches 99% in one epoch), or, with the floor off, a trial
#: completes below the accuracy budget.
STUDY = '''
from studies import Budget, Study

STUDY = Study(name="{name}", dataset="digits", family="tiny_cnn",
              budget=Budget(epochs=1, batch_size=64, n_trials=2),
              quantization_modes=("float32",), width_range=(0.25, 0.5),
              accuracy_floor={floor}, usable_accuracy=0.0)
'''


def _run(tmp_path, *, name: str, floor: float, flags: tuple[str, ...] = ()):
    study_file = tmp_path / f"{name}.py"
    study_file.write_text(STUDY.format(name=name, floor=floor))
    run_dir = tmp_path / "run"
    out = run_cli("run", "--study", str(study_file), "--run-dir", str(run_dir), *flags)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir}/study.db")
    return out, study


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("optimizer run: error")]


def test_a_run_whose_every_trial_is_pruned_exits_1_saying_so(tmp_path):
    out, study = _run(tmp_path, name="hopeless", floor=0.99)
    assert out.returncode == 1, out.stderr[-3000:]
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.PRUNED] * 2
    (line,) = _error_lines(out.stderr)
    assert line == ("optimizer run: error: no trial completed (2 PRUNED); each trial's line "
                    "above says why (its prune or fail reason)")
    assert out.stdout == "" and "Traceback" not in out.stderr


def test_a_run_whose_every_completed_trial_is_over_budget_exits_1_naming_the_budget(tmp_path):
    out, study = _run(tmp_path, name="overbudget", floor=0.0,
                      flags=("--n-trials", "1", "--min-accuracy", "0.999"))
    assert out.returncode == 1, out.stderr[-3000:]
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.values[0] < 0.999
    (line,) = _error_lines(out.stderr)
    assert line == ("optimizer run: error: no completed trial within the budgets: 1 completed "
                    "trial exceeds the study's budgets (accuracy >= 0.999) and is left off "
                    "the front")
    assert out.stdout == ""


def test_a_run_stopped_before_any_trial_ended_is_not_a_failure(tmp_path):
    out, study = _run(tmp_path, name="later", floor=0.99, flags=("--timeout", "0.001"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert not any(t.state.is_finished() for t in study.trials)
    assert out.stdout.strip() == "no trial has finished yet; run again to go on"
    assert not _error_lines(out.stderr)
