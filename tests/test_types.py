"""The lower layers type-check: mypy (settings in pyproject.toml: every function annotated)
finds nothing in `definitions`, `search_spaces` and `studies`."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

CHECKED = ("definitions", "search_spaces", "studies")


def test_the_lower_layers_type_check(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *CHECKED, "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert "no issues found" in done.stdout
