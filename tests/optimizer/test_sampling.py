"""The samplers by name (`optimizer.engine.sampling`): `gp`, Optuna's GPSampler, needs
PyTorch, which this package does not install; without it the run is refused before
anything is stored."""

from __future__ import annotations

import importlib.util

import optuna
import pytest

from definitions.errors import UsageError
from definitions.vocabulary import SAMPLERS
from optimizer.engine.sampling import make_sampler
from optimizer.engine.settings import RunSettings
from tests.conftest import run_cli

no_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                              reason="PyTorch is installed here")


@pytest.mark.parametrize(("name", "kind"), [("tpe", optuna.samplers.TPESampler),
                                            ("nsga2", optuna.samplers.NSGAIISampler),
                                            ("random", optuna.samplers.RandomSampler)])
def test_each_sampler_name_builds_its_optuna_sampler(name, kind):
    assert name in SAMPLERS and isinstance(make_sampler(name, seed=0), kind)


@no_torch
def test_gp_without_pytorch_is_refused_when_the_settings_are_made():
    with pytest.raises(UsageError, match="--sampler gp is Optuna's GPSampler, which needs "
                                         "PyTorch"):
        RunSettings(sampler="gp")


@no_torch
def test_a_gp_run_without_pytorch_is_one_line_and_stores_nothing(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--sampler", "gp", "--run-dir",
                  str(tmp_path / "run"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "needs PyTorch: pip install torch" in out.stderr
    assert not (tmp_path / "run").exists()
