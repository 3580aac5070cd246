"""optuna-dashboard on a small stored study, seen through headless Chromium.

Skipped where Debian's `chromium` and `chromium-driver` are not installed (`.ci/run`
installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import optuna
import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian chromium and chromium-driver are not installed",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def small_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="digits-smoke", storage=storage,
                                directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "payload_bytes"])
    for acc, size in [(0.9, 4000), (0.95, 16000), (0.8, 1500), (0.85, 9000)]:
        trial = study.ask({"width": optuna.distributions.FloatDistribution(0.25, 1.0)})
        study.tell(trial, [acc, size])
    return tmp_path


def test_dashboard_shows_the_pareto_front_without_console_errors(small_study):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "optimizer", "dashboard", "--study", "digits", "--smoke",
         "--run-dir", str(small_study), "--port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = server.stdout.readline().split("http://", 1)[1].split()[0]
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.get(f"http://{url}")
            WebDriverWait(driver, 60).until(
                lambda d: "Pareto" in d.find_element(By.TAG_NAME, "body").text
            )
            WebDriverWait(driver, 60).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot, .main-svg, svg")
            )
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == []
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_dashboard_for_a_missing_study(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "optimizer", "dashboard", "--study", "digits",
         "--run-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2 and "no study storage" in out.stderr
