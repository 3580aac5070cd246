"""A server database (PostgreSQL): heartbeats fail a killed driver's trial, which is
retried once, and nothing completed is lost or counted twice.

The server is a throw-away cluster in a temporary folder, started from Debian's
`postgresql` package (which `.ci/run` installs); the heartbeat interval and grace period are
shortened in the driver process so the test need not wait the production three minutes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from definitions.attributes import RETRY_ATTR
from optimizer.commands.report import trials_frame
from optimizer.store.retry import finished_count, is_interrupted
from tests.conftest import ROOT, run_cli

N_TRIALS = 3


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2")
    # not under pytest's tmp_path: its parents are private to root, and root must hand
    # the cluster to Debian's `postgres` user (initdb refuses to run as root)
    home = Path(tempfile.mkdtemp(prefix="optimizer-pg-"))
    data = home / "data"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, user="postgres")
        shutil.chown(data, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                    "-w", "-l", str(data / "log"), "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _new_database(url: str, name: str) -> str:
    """A fresh database on the test cluster, so a test's study starts from nothing."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def _driver(url: str, run_dir: Path) -> subprocess.Popen:
    """`run` on the server database, with a 1 s heartbeat and a 3 s grace period."""
    code = (
        "import sys\n"
        "import optimizer.store.storage as storage\n"
        "storage.HEARTBEAT_SECONDS, storage.GRACE_SECONDS = 1, 3\n"
        "from optimizer.commands.cli import main\n"
        f"sys.exit(main(['run', '--study', 'digits', '--smoke', '--n-trials', '{N_TRIALS}',"
        f" '--storage', {url!r}, '--run-dir', {str(run_dir)!r}]))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _running(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study's running trials that have their candidate's parameters: one killed
    before it has them cannot be retried (`retry_once`), which on a loaded machine
    happens if the driver is killed the moment its trial starts."""
    try:
        study = optuna.load_study(study_name="digits-smoke", storage=url)
    except KeyError:
        return []
    return [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            if t.params]


def test_a_killed_driver_s_trial_goes_stale_is_failed_and_retried_once(tmp_path, postgres_url):
    driver = _driver(postgres_url, tmp_path)
    deadline = time.time() + 180
    while time.time() < deadline and not _running(postgres_url):
        time.sleep(0.3)
    killed = _running(postgres_url)
    assert killed, "no trial started"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(4)  # past the grace period: the heartbeat has stopped

    resumed = _driver(postgres_url, tmp_path)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]

    study = optuna.load_study(study_name="digits-smoke", storage=postgres_url)
    trials = study.trials
    by_number = {t.number: t for t in trials}
    assert len(by_number) == len(trials)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    stale = by_number[killed[0].number]
    assert stale.state == optuna.trial.TrialState.FAIL and is_interrupted(study, stale)
    frame = trials_frame(study).set_index("trial")
    assert frame.loc[stale.number, "fail_reason"].startswith("interrupted: heartbeat stopped")
    retries = [t for t in trials if t.user_attrs.get(RETRY_ATTR) == stale.number]
    assert len(retries) == 1
    assert retries[0].params == stale.params
    assert retries[0].state == optuna.trial.TrialState.COMPLETE
    assert finished_count(study) == N_TRIALS  # interrupted trials do not count toward the budget


def test_pareto_reads_the_server_database(tmp_path, postgres_url):
    out = run_cli("pareto", "--study", "digits", "--smoke", "--storage", postgres_url,
                  "--format", "csv", "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[0].startswith("trial,")


def _two_drivers(url: str, tmp_path: Path, *options: str) -> None:
    """Two `run --study digits --smoke` drivers at once on the server study `url`, each
    with its own run dir (as on two machines); both must end with exit 0."""
    drivers = [
        subprocess.Popen(
            [sys.executable, "-m", "optimizer", "run", "--study", "digits", "--smoke",
             "--storage", url, "--run-dir", str(tmp_path / f"machine{i}"), *options],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for driver in drivers:
        _, err = driver.communicate(timeout=900)
        assert driver.returncode == 0, err[-2000:]


def test_two_machines_share_a_study_and_an_artifact_store_and_a_third_exports(
    tmp_path, postgres_url
):
    """Two drivers with their own run dirs (as on two machines), each with `--jobs 2`
    (four trials in flight on one study, each driver the writer of its own trials), one
    PostgreSQL study and one artifact store on a shared mount: none lost, none counted
    twice, none left running; `export` and `report` from a third folder."""
    url = _new_database(postgres_url, "shared")
    shared = tmp_path / "shared-store"
    _two_drivers(url, tmp_path, "--n-trials", "3", "--jobs", "2", "--artifact-dir", str(shared))
    study = optuna.load_study(study_name="digits-smoke", storage=url)
    trials = study.trials
    assert finished_count(study) >= 3
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING,
                                                 optuna.trial.TrialState.WAITING)]
    pids = {t.user_attrs["worker"]["pid"] for t in trials if "worker" in t.user_attrs}
    assert len(pids) >= 2  # workers of both drivers took part
    best = max(study.best_trials, key=lambda t: t.values[0])

    third = tmp_path / "laptop"
    common = ["--study", "digits", "--smoke", "--storage", url, "--run-dir", str(third)]
    refused = run_cli("export", *common, "--trial", str(best.number), "--out", str(third / "x"))
    assert refused.returncode == 2 and "--artifact-dir" in refused.stderr
    out = run_cli("export", *common, "--artifact-dir", str(shared), "--trial", str(best.number),
                  "--out", str(third / "exported"))
    assert out.returncode == 0, out.stderr[-2000:]
    card = (third / "exported" / "model_card.json").read_text()
    assert f'"trial": {best.number}' in card
    out = run_cli("report", *common, "--out", str(third / "report"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert (third / "report" / "pareto.png").stat().st_size > 10_000
