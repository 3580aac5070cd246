"""The README's two commands exist, and CI runs the test command verbatim."""

from tests.conftest import ROOT


def _commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    return [li.strip() for li in lines[:12] if li.startswith("    ")]


def test_readme_opens_with_the_two_commands():
    run, test = _commands()[:2]
    assert run.startswith("python3.11 -m venv .venv") and "-m optimizer run --study mnist" in run
    assert test.startswith("python3.11 -m venv .venv") and "pytest" in test


def test_ci_runs_the_readme_test_command():
    test = _commands()[1]
    ci_lines = [li.strip() for li in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines
