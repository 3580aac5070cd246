"""The README's two commands exist, and CI runs the test command verbatim."""

from tests.conftest import ROOT


def _commands():
    """The command lines of the README's opening (before its first `---`)."""
    opening = (ROOT / "README.md").read_text().split("\n---\n", 1)[0]
    return [li.strip() for li in opening.splitlines() if li.startswith("    ")]


def test_readme_says_python_3_11_and_why_before_the_first_command():
    opening = (ROOT / "README.md").read_text().split("\n    ", 1)[0]
    for said in ("Python 3.11", "tensorflow-compression 2.14.1", "TensorFlow 2.14",
                 "Ubuntu 24.04", "deadsnakes", "python3.11-venv", "Debian 13",
                 "uv python install 3.11", "pyenv install 3.11"):
        assert said in opening, said


def test_readme_opens_with_the_two_commands():
    run, test = _commands()[:2]
    assert run.startswith("python3.11 -m venv .venv") and "-m optimizer run --study mnist" in run
    assert test.startswith("python3.11 -m venv .venv") and "pytest" in test


def test_ci_runs_the_readme_test_command():
    test = _commands()[1]
    ci_lines = [li.strip() for li in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines
