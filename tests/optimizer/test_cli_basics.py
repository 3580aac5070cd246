"""The CLI's shape: help without TensorFlow, listings, and one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli

SUBCOMMANDS = ("run", "studies", "pareto", "export", "report", "dashboard", "inspect")


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in SUBCOMMANDS]])
def test_help_does_not_import_tensorflow(argv):
    code = (
        "import sys\n"
        "from optimizer.commands.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tensorflow_compression')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "usage:" in out.stdout


def test_studies_lists_every_study_with_its_budget():
    out = run_cli("studies")
    assert out.returncode == 0, out.stderr
    for name, family in (("mnist", "lenet5_caffe"), ("fashion_mnist", "lenet5_caffe"),
                         ("digits", "tiny_cnn")):
        line = next(li for li in out.stdout.splitlines() if li.startswith(name + " "))
        assert family in line
    assert "expected runtime" in out.stdout


def _one_line_error(out, *needles):
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_subcommand():
    _one_line_error(run_cli("optimise"), "invalid choice", "run", "inspect")


def test_unknown_study_names_the_choices():
    _one_line_error(run_cli("inspect", "--study", "cifar"), "unknown study 'cifar'", "mnist",
                    "digits")


def test_inspect_seed_rule_table():
    out = run_cli("inspect", "--model", "seed_cnn", "--input", "28x28x1", "--no-device")
    assert out.returncode == 0, out.stderr
    rows = {li.split()[0]: li for li in out.stdout.splitlines() if li.startswith("conv_")}
    assert rows["conv_3"].split()[-2:] == ["yes", "yes"]
    assert rows["conv_2"].split()[-2:] == ["no", "no"]
    assert "total parameters: 93,322" in out.stdout


def test_inspect_factorized_study_model():
    out = run_cli("inspect", "--study", "mnist", "--width", "0.5", "--factorize", "conv_2",
                  "--no-device")
    assert out.returncode == 0, out.stderr
    assert "factorized: conv_2" in out.stdout
    assert "head MEC:" in out.stdout and "feature compression ratio:" in out.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--width", "9"], ["--width 9.0 is out of range"]),
        (["--width", "0"], ["out of range"]),
        (["--factorize", "conv_7"], ["no conv layer 'conv_7'", "conv_1, conv_2"]),
    ],
)
def test_inspect_bad_input(args, needles):
    _one_line_error(run_cli("inspect", "--study", "mnist", "--no-device", *args), *needles)


def test_inspect_bad_shape():
    _one_line_error(run_cli("inspect", "--model", "seed_cnn", "--input", "28by28"), "HxWxC")


def test_wrong_python_is_refused_by_the_entry_point():
    source = (ROOT / "optimizer" / "__main__.py").read_text()
    assert "sys.version_info[:2] != (3, 11)" in source
    code = (
        "import sys, runpy\n"
        "sys.version_info = (3, 12, 0, 'final', 0)\n"
        "runpy.run_module('optimizer', run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    _one_line_error(out, "Python 3.11 is required", "3.12")
