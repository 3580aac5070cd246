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
    assert "4 kept, 0 broken" in out.stdout


def _packages() -> list[str]:
    return _config()["tool"]["setuptools"]["packages"]


def test_the_layers_contract_names_every_package():
    config = _config()
    packages = set(_packages())
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = [c for c in contracts if c["type"] == "layers"]
    top = next(c for c in layers if "containers" not in c)
    assert set(top["layers"]) == {p for p in packages if "." not in p}
    assert top["layers"][-1] == "definitions"
    cycles = next(c for c in contracts if c["type"] == "acyclic_siblings")
    assert set(cycles["ancestors"]) == packages


def test_the_driver_has_three_rooms_in_one_order():
    """`optimizer/` is three packages, commands > engine > store, each one in the layers
    contract of the driver, and no module sits beside them outside a room."""
    contracts = _config()["tool"]["importlinter"]["contracts"]
    rooms = next(c for c in contracts if c.get("containers") == ["optimizer"])
    assert rooms["layers"] == ["commands", "engine", "store"]
    assert {p for p in _packages() if p.startswith("optimizer.")} == {
        f"optimizer.{room}" for room in rooms["layers"]}
    loose = {p.stem for p in (ROOT / "optimizer").glob("*.py")}
    assert loose == {"__init__", "__main__"}


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check bites: a lazy import of the driver from the bottom layer fails it."""
    for package in (p for p in _packages() if "." not in p):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "definitions" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _up():\n    import optimizer.engine.runner\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "definitions.errors -> optimizer.engine.runner" in out.stdout


def test_an_upward_import_between_the_driver_rooms_breaks_the_contract(tmp_path):
    """The rooms' contract bites: the store importing the engine fails it."""
    for package in (p for p in _packages() if "." not in p):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lock = tmp_path / "optimizer" / "store" / "lock.py"
    lock.write_text(lock.read_text() + "\n\ndef _up():\n    import optimizer.engine.runner\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "optimizer.store is not allowed to import optimizer.engine" in out.stdout
