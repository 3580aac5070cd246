"""An install on a Python other than 3.11 stops at once with one line naming 3.11
(`setup.py`), with the pip the venv comes with, instead of pip's `No matching distribution
found for tensorflow==2.14.1`. Run as a user types it: `python3.12 -m venv v && v/bin/pip
install -e .`; it needs no network beyond the build backend (setuptools) pip fetches."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: What the project folder needs for pip to build it.
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md")
PACKAGES = ("definitions", "search_spaces", "studies", "objectives", "optimizer")


def _python(version: str) -> str | None:
    """An interpreter of `version` (pyenv's first, then the system's), or None."""
    found = sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}"))
    found += [p for p in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}")
              if os.access(p, os.X_OK)]
    return found[0] if found else None


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_an_install_on_a_newer_python_stops_with_one_line_naming_3_11(version, tmp_path):
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version} here")
    project = tmp_path / "compression-search"
    project.mkdir()
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, project / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, project / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run([python, "-m", "venv", "v"], cwd=tmp_path, env=env, check=True,
                   timeout=120)
    start = time.monotonic()
    out = subprocess.run([str(Path("v") / "bin" / "pip"), "install", "-e", str(project)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    said = [line.strip() for line in text.splitlines() if "needs Python 3.11" in line]
    assert len(said) == 1, text[-3000:]
    assert said[0].startswith(f"compression-search needs Python 3.11, not {version}.")
    assert "tensorflow-compression 2.14.1" in said[0] and "TensorFlow 2.14" in said[0]
    assert "No matching distribution" not in text  # stopped before any dependency
    assert seconds < 60, seconds
