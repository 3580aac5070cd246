"""Device budgets through the CLI: flash as the objective, RAM as a constraint, refusals."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import run_cli

N_TRIALS = 2  # the int8 reference points at width 1 and 0.5 (float32 is over the RAM budget)


@pytest.fixture(scope="module")
def flash_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("flash") / "digits"
    # 6 KB of RAM rules out float32 at width 1 before training; no trained model runs in a
    # nanosecond on the host, so every trained trial is infeasible after training
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", str(N_TRIALS),
                  "--run-dir", str(run_dir), "--size-objective", "flash", "--max-ram-kb", "6",
                  "--max-latency-ms", "0.000001")
    # a run that found nothing within its budgets exits 1, saying so in one line
    assert out.returncode == 1, out.stderr[-3000:]
    assert "no completed trial within the budgets" in out.stderr
    return run_dir, out


def _study(run_dir) -> optuna.Study:
    return optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{run_dir}/study.db")


def _trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_flash_is_the_second_objective_and_equals_the_file_a_device_runs(flash_run):
    study = _study(flash_run[0])
    assert study.metric_names == ["accuracy", "flash_bytes"]
    trained = _trained(study)
    assert [t.user_attrs["candidate"]["quantization"] for t in trained] == ["int8", "int8"]
    for t in trained:
        assert t.values[1] == t.user_attrs["flash_bytes"]
        # for a TFLite artifact, flash is the artifact file itself
        assert t.user_attrs["flash_bytes"] == t.user_attrs["artifact_bytes"]
        assert t.user_attrs["device_format"] == "artifact"
        assert t.user_attrs["ram_bytes"] > 512 and t.user_attrs["latency_ms"] > 0


EPR_FLASH_STUDY = """
from dataclasses import replace

from search_spaces import Candidate
from studies import get_study

# a study that asks for EPR under the flash objective gets it: EPR at λ = 2, full width
STUDY = replace(get_study("digits"), name="digits_epr_flash", size_objective="flash",
                quantization_modes=("epr", "float32"),
                reference_points=(Candidate(width=1.0, epr_lambda=2.0, quantization="epr"),))
"""


def test_an_epr_file_competes_on_the_decoded_models_flash(tmp_path):
    study_file = tmp_path / "epr_flash.py"
    study_file.write_text(EPR_FLASH_STUDY)
    out = run_cli("run", "--study", str(study_file), "--smoke", "--n-trials", "1",
                  "--run-dir", str(tmp_path / "run"), "--max-flash-kb", "10000")
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="digits_epr_flash-smoke",
                              storage=f"sqlite:///{tmp_path}/run/study.db")
    (epr,) = _trained(study)
    assert epr.user_attrs["candidate"]["quantization"] == "epr"
    # an EPR file runs nowhere as is: flash is the float32 TFLite file of the decoded model,
    # which the untrained float32 file of the same architecture predicts exactly
    assert epr.user_attrs["device_format"].startswith("float32 TFLite")
    assert epr.values[1] == epr.user_attrs["flash_bytes"]
    assert epr.user_attrs["footprint_before_training"]["flash_bytes"] == epr.values[1]
    assert epr.user_attrs["payload_bytes"] < epr.user_attrs["flash_bytes"] / 4


def test_a_budget_no_trial_meets_leaves_an_empty_front_and_export_says_so(flash_run, tmp_path):
    run_dir, out = flash_run
    study = _study(run_dir)
    assert study.best_trials == []
    for t in _trained(study):
        assert t.constraints["ram_bytes"] == t.user_attrs["ram_bytes"] - 6 * 1024
        assert t.constraints["latency_ms"] > 0
    assert "2 completed trials exceed the study's budgets (RAM <= 6 KB" in out.stderr
    exported = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                       "--max-bytes", "10000000", "--out", str(tmp_path / "x"))
    assert exported.returncode == 2
    assert "meets its budgets" in exported.stderr and "RAM <= 6 KB" in exported.stderr
    pareto = run_cli("pareto", "--study", "digits", "--smoke", "--run-dir", str(run_dir))
    assert pareto.returncode == 0 and "exceed the study's budgets" in pareto.stdout


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--size-objective", "payload"], "size_objective is flash"),
        (["--max-ram-kb", "64"], "device budgets are RAM <= 6 KB"),
    ],
)
def test_resume_with_another_size_objective_or_budget_is_refused(flash_run, flags, needle):
    run_dir, _ = flash_run
    before = (run_dir / "study.db").read_bytes()
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "5",
                  "--run-dir", str(run_dir), *flags)
    assert out.returncode == 2 and needle in out.stderr, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if not line[:2].isdigit()]  # no logs
    assert len(errors) == 1 and "Traceback" not in out.stderr
    assert (run_dir / "study.db").read_bytes() == before


def test_bad_budget_flags_are_one_line(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(tmp_path),
                  "--max-ram-kb", "-3")
    assert out.returncode == 2 and "--max-ram-kb must be positive" in out.stderr
    assert not (tmp_path / "study.db").exists()


def test_inspect_prints_flash_ram_and_latency_without_training():
    out = run_cli("inspect", "--study", "mnist", "--width", "0.5")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()
            if line.split() and line.split()[0] in ("float32", "float16", "dynamic", "int8")}
    assert set(rows) == {"float32", "float16", "dynamic", "int8"}
    flash = {mode: int(r[1].replace(",", "")) for mode, r in rows.items()}
    # 4-byte weights, then 2, then 1: the file shrinks accordingly (lenet5_caffe at 0.5
    # has 108,500 parameters, so float32 is about 434 KB)
    assert 430_000 < flash["float32"] < 450_000
    assert flash["float16"] == pytest.approx(flash["float32"] / 2, rel=0.02)
    assert flash["int8"] == pytest.approx(flash["float32"] / 4, rel=0.05)
    ram = {mode: int(r[2].replace(",", "")) for mode, r in rows.items()}
    assert ram["int8"] < ram["float32"] / 2
