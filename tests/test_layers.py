"""The layers hold: every import runs down, no module circle, no TensorFlow or Optuna at the
bottom (`lint-imports` with the contracts in pyproject.toml, lazy and type-only imports
counted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(cwd), "PATH": ""})


def test_every_import_runs_down_a_layer():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_the_layers_contract_names_every_package():
    config = _config()
    packages = set(config["tool"]["setuptools"]["packages"])
    contracts = {c["type"]: c for c in config["tool"]["importlinter"]["contracts"]}
    assert set(contracts["layers"]["layers"]) == packages
    assert set(contracts["acyclic_siblings"]["ancestors"]) == packages
    assert contracts["layers"]["layers"][-1] == "definitions"


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check bites: a lazy import of the driver from the bottom layer fails it."""
    for package in _config()["tool"]["setuptools"]["packages"]:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "definitions" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _up():\n    import optimizer.runner\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "definitions.errors -> optimizer.runner" in out.stdout
