"""Reliability promises: interrupts, bad definitions, unwritable folders, tampered artifacts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from tests.conftest import ROOT, run_cli


def test_a_bad_study_definition_is_one_line_and_exit_2(tmp_path):
    code = (
        "import dataclasses, sys\n"
        "import studies\n"
        "studies.STUDIES['mnist'] = dataclasses.replace(studies.STUDIES['mnist'], "
        "quantization_modes=('int3',))\n"
        "from optimizer.commands.cli import main\n"
        f"sys.exit(main(['run', '--study', 'mnist', '--smoke', '--run-dir', {str(tmp_path)!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "quantization modes ['int3']" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "study.db").exists()


def test_an_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(blocker / "runs"))
    assert out.returncode == 2 and "not writable" in out.stderr


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_an_interrupt_ends_the_running_trial_with_a_reason_and_exits_promptly(tmp_path, sig):
    driver = subprocess.Popen(
        [sys.executable, "-m", "optimizer", "run", "--study", "digits", "--smoke",
         "--n-trials", "3", "--run-dir", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not _children(driver.pid):
        time.sleep(0.2)
    assert _children(driver.pid), "no worker process started"
    time.sleep(1.0)
    driver.send_signal(sig)
    started = time.time()
    code = driver.wait(timeout=60)
    assert code == 130
    assert time.time() - started < 30
    study = optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{tmp_path}/study.db")
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and failed[-1].user_attrs["fail_reason"].startswith("interrupted")


def test_a_tampered_artifact_is_refused_by_export(tmp_path):
    run = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "1",
                  "--run-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    study = optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{tmp_path}/study.db")
    path = tmp_path / "artifact-store" / study.trials[0].user_attrs["artifact_id"]
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    out = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(tmp_path),
                  "--trial", "0", "--out", str(tmp_path / "exp"))
    assert out.returncode == 2 and "does not match its checksum" in out.stderr
    assert not (tmp_path / "exp" / "model.tflite").exists()
