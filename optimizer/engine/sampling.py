"""The samplers a study runs with, constructed explicitly (Optuna 5 changed the
multi-objective default), by the names of `definitions.vocabulary.SAMPLERS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from definitions.errors import UsageError
from definitions.vocabulary import SAMPLERS

if TYPE_CHECKING:
    import optuna


def make_sampler(name: str, *, seed: int) -> optuna.samplers.BaseSampler:
    """An explicitly constructed sampler (Optuna 5 changed the multi-objective default).

    `tpe` is multivariate, grouped TPE (MOTPE for two objectives), which copes with the
    conditional parameters (`epr_lambda`, the offered `factorize_<layer>`) and with small
    budgets; `nsga2` uses a population of 10 so that a few dozen trials still evolve.
    `tpe` is the default by measurement: the largest front hypervolume on each of three
    seeds of 30-trial MNIST runs (`benchmarks/sampler_comparison.py`, BENCHMARKS.md).
    TPE's constant liar (Optuna 5's default, spelled out here) counts the trials in flight
    (`run --jobs N`, other drivers on a server database) as bad results at their
    parameters, so that trials running at once are not sampled at one spot; with one
    trial at a time there are none, and it changes nothing.
    `gp` is Optuna 5's `GPSampler` (multi-objective log EHVI; it reads the constraints each
    trial sets); it needs PyTorch, which this package does not install (measured against
    TPE in BENCHMARKS.md, issue 30).
    """
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=6, constant_liar=True,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return _gp_sampler(seed)
    raise UsageError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def check_available(name: str) -> None:
    """Refuses (one line) a sampler whose own dependency is not installed — `gp` needs
    PyTorch — before anything is stored."""
    import importlib.util

    if name == "gp" and importlib.util.find_spec("torch") is None:
        raise UsageError("--sampler gp is Optuna's GPSampler, which needs PyTorch: pip "
                         "install torch (CPU is enough), or use --sampler tpe")


def _gp_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """`GPSampler` (`check_available` said PyTorch is there)."""
    import optuna

    check_available("gp")
    return optuna.samplers.GPSampler(seed=seed)
