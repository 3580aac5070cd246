"""The bottom layer: errors and one-line messages, device budgets as validated values and
Optuna constraints, and the importer's reading of references. No TensorFlow, no Optuna."""

from __future__ import annotations

import subprocess
import sys

import pytest

from definitions.budgets import DeviceBudgets
from definitions.errors import (
    BudgetNotReached,
    CheckFailed,
    NoUsableTrial,
    OptimizerError,
    StudyDefinitionError,
    UsageError,
    one_line,
)
from definitions.importer import (
    StudyReferenceError,
    canonical,
    import_reference,
    is_reference,
)
from tests.conftest import ROOT


def test_every_error_the_cli_catches_has_one_base():
    for error in (UsageError, StudyDefinitionError, CheckFailed, BudgetNotReached,
                  NoUsableTrial, StudyReferenceError):
        assert issubclass(error, OptimizerError)
    assert issubclass(StudyDefinitionError, UsageError)


def test_one_line_folds_white_space_and_cuts_at_a_word():
    assert one_line("a\n  b\tc") == "a b c"
    long = " ".join(["word"] * 200)
    cut = one_line(long, limit=23)
    assert cut == "word word word word…" and len(cut) <= 23


@pytest.mark.parametrize("settings", [{"max_flash_kb": 0}, {"max_ram_kb": -1},
                                      {"max_latency_ms": float("inf")},
                                      {"min_accuracy": 1.5}, {"min_accuracy": 0}])
def test_a_budget_that_cannot_be_meant_is_refused_naming_its_flag(settings):
    (name,) = settings
    with pytest.raises(StudyDefinitionError, match=f"--{name.replace('_', '-')}"):
        DeviceBudgets(**settings)


def test_budgets_are_constraints_feasible_at_or_under_zero():
    budgets = DeviceBudgets(max_flash_kb=2, max_ram_kb=1, max_latency_ms=5, min_accuracy=0.9)
    attrs = {"flash_bytes": 2048, "ram_bytes": 1500, "latency_ms": 4.0}
    values = budgets.constraints(accuracy=0.95, attrs=attrs)
    assert values == {"flash_bytes": 0.0, "ram_bytes": 1500 - 1024, "latency_ms": -1.0,
                      "accuracy": pytest.approx(-0.05)}
    assert budgets.before_training and budgets.any
    assert budgets.describe() == "flash <= 2 KB, RAM <= 1 KB, latency <= 5 ms, accuracy >= 0.9"
    assert not DeviceBudgets().any and DeviceBudgets().describe() == "none"
    assert not DeviceBudgets(max_latency_ms=3).before_training


def test_a_reference_is_a_module_attribute_or_a_study_file():
    assert is_reference("pkg.module:STUDY") and is_reference("path/study.py")
    assert not is_reference("mnist")
    assert canonical("pkg.module:STUDY") == "pkg.module:STUDY"
    assert canonical("x/y.py:build").endswith("/x/y.py:build")
    assert canonical("x/y.py:build").startswith("/")


def test_a_reference_that_does_not_import_is_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no\\nway')\n")
    with pytest.raises(StudyReferenceError) as error:
        import_reference(f"{broken}:build", what="model")
    assert "\n" not in str(error.value) and "RuntimeError: no way" in str(error.value)
    with pytest.raises(StudyReferenceError, match=r"is not 'module\.path:name'"):
        import_reference("just_a_name", what="model")
    (tmp_path / "ok.py").write_text("VALUE = 3\n")
    assert import_reference(f"{tmp_path / 'ok.py'}:VALUE", what="value") == 3
    with pytest.raises(StudyReferenceError, match="has no 'MISSING'"):
        import_reference(f"{tmp_path / 'ok.py'}:MISSING", what="value")


def test_the_definitions_import_neither_tensorflow_nor_optuna():
    code = ("import sys, definitions.budgets, definitions.errors, definitions.importer, "
            "definitions.vocabulary, definitions.attributes; "
            "print(sorted(m for m in ('tensorflow', 'optuna', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"
