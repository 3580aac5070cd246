"""`dashboard` (and `pareto`) refuse bad input with one line and exit code 2: a busy port,
and the stored name of a smoke study given as `--study`. Nothing is trained: the study is
created directly in a SQLite file."""

from __future__ import annotations

import json
import socket

import optuna
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture
def smoke_run_dir(tmp_path):
    """A run dir holding the study `run --study digits --smoke` would create, 2 trials."""
    study = optuna.create_study(study_name="digits-smoke",
                                storage=f"sqlite:///{tmp_path}/study.db",
                                directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "payload_bytes"])
    for accuracy, payload in [(0.9, 12345), (0.95, 1_234_567)]:
        trial = study.ask()
        trial.set_user_attr("candidate", {"width": 1.0, "factorize": [], "epr_lambda": 2.0,
                                          "quantization": "epr"})
        trial.set_user_attr("artifact_bytes", payload + 1000)
        trial.set_user_attr("payload_bytes", payload)
        study.tell(trial, [accuracy, payload])
    return tmp_path


@pytest.fixture
def busy_port():
    """A port on 127.0.0.1 with a socket bound and listening on it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _one_line_error(out):
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_dashboard_on_a_busy_port_says_so_without_claiming_to_start(smoke_run_dir, busy_port):
    out = run_cli("dashboard", "--study", "digits", "--smoke", "--run-dir", str(smoke_run_dir),
                  "--port", str(busy_port), timeout=120)
    line = _one_line_error(out)
    assert f"port {busy_port} on 127.0.0.1 is in use" in line and "--port" in line
    assert "http://" not in out.stdout and out.stdout.strip() == ""


def test_dashboard_given_the_smoke_study_name_suggests_the_smoke_flag(smoke_run_dir):
    out = run_cli("dashboard", "--study", "digits-smoke", "--run-dir", str(smoke_run_dir),
                  "--port", "1", timeout=120)
    assert "--study digits --smoke" in _one_line_error(out)
    assert "http://" not in out.stdout


def test_pareto_given_the_smoke_study_name_suggests_the_smoke_flag(smoke_run_dir):
    out = run_cli("pareto", "--study", "digits-smoke", "--run-dir", str(smoke_run_dir),
                  timeout=120)
    assert "--study digits --smoke" in _one_line_error(out)


def test_pareto_json_from_the_cli_carries_exact_bytes(smoke_run_dir):
    out = run_cli("pareto", "--study", "digits", "--smoke", "--run-dir", str(smoke_run_dir),
                  "--format", "json", timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["payload_bytes"], r["artifact_bytes"]) for r in rows] == [
        (12345, 13345), (1_234_567, 1_235_567)
    ]
