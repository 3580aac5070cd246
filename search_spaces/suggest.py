"""`suggest(trial, study=...) -> Candidate`: the joint search space as Optuna parameters.

Parameters, in the order they are suggested (names as in DESIGN §1):

- `width`: float in the study's `width_range`, step `width_step`.
- `factorize_<layer>`: bool, one per conv layer offered at that width (`guided`: where
  n×1 + 1×n has fewer parameters, seed 002; `unguided`: every n×n conv with n > 1).
- `quantization`: categorical over the study's modes.
- `epr`: bool, whether the entropy penalty is on; not asked when `quantization` is `epr`
  (which needs it), nor where the study does not offer TFLite modes the penalty
  (`Study.searches_tflite_epr`: off under the `flash` size objective). Optuna cannot
  express "0 or log-uniform" in one parameter, so the switch carries the 0.
- `epr_lambda`: float, log-uniform in `epr_lambda_range`, asked only when the penalty is
  on; the candidate's `epr_lambda` is 0 otherwise.

Only primitives are suggested, and nothing here imports TensorFlow, so the space can be
exercised with `optuna.trial.FixedTrial`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from search_spaces.candidate import Candidate
from search_spaces.families import get_family
from search_spaces.rule import offered_layers

if TYPE_CHECKING:
    import optuna

FACTORIZE_PREFIX = "factorize_"


class Space(Protocol):
    """What the space is made of: the members of a `studies.Study` that `suggest` reads.

    A protocol, so this layer (below the studies) needs no import of them; any object
    with these members is searched the same way."""

    width_range: tuple[float, float]
    width_step: float
    epr_lambda_range: tuple[float, float]
    quantization_modes: tuple[str, ...]
    factorize_mode: str
    family: str

    @property
    def searches_tflite_epr(self) -> bool: ...

    @property
    def input_shape(self) -> tuple[int, int, int]: ...


#: The convs offered for factorization at a width (the parent's rule table, made once).
Offered = Callable[[float], tuple[str, ...]]


def family_offered(study: Space, *, input_shape: tuple[int, int, int] | None = None) -> Offered:
    """The offered convs of a built-in family, by the rule table (no TensorFlow); the
    rewriter offers the same on the family's parent (tests/objectives/test_rewrite.py)."""
    family = get_family(study.family)
    shape = input_shape or study.input_shape
    return lambda width: offered_layers(family, input_shape=shape, width=width,
                                        mode=study.factorize_mode)


def suggest(
    trial: optuna.trial.BaseTrial, *, study: Space, offered: Offered | None = None
) -> Candidate:
    """Asks `trial` for one point of `study`'s search space; `offered` gives the convs
    that may be factorized at a width (default: the built-in family's rule table)."""
    low, high = study.width_range
    if low == high:
        width = float(low)
    else:
        # round away float noise of the step grid (0.8500000000000001 → 0.85)
        width = round(trial.suggest_float("width", low, high, step=study.width_step), 6)
    offered = offered or family_offered(study)
    factorize = tuple(
        name
        for name in offered(width)
        if trial.suggest_categorical(f"{FACTORIZE_PREFIX}{name}", [False, True])
    )
    modes = list(study.quantization_modes)
    quantization = modes[0] if len(modes) == 1 else trial.suggest_categorical("quantization", modes)
    use_epr = quantization == "epr" or (
        study.searches_tflite_epr and trial.suggest_categorical("epr", [False, True]))
    epr_lambda = 0.0
    if use_epr:
        epr_lambda = trial.suggest_float("epr_lambda", *study.epr_lambda_range, log=True)
    return Candidate(
        width=width, factorize=factorize, epr_lambda=epr_lambda, quantization=quantization
    )


def candidate_params(
    candidate: Candidate, *, study: Space, offered: Offered | None = None
) -> dict[str, object]:
    """The trial parameters that make `suggest` return `candidate` (for `enqueue_trial`)."""
    offered = offered or family_offered(study)
    params: dict[str, object] = {"width": candidate.width}
    for name in offered(candidate.width):
        params[f"{FACTORIZE_PREFIX}{name}"] = name in candidate.factorize
    params["quantization"] = candidate.quantization
    if candidate.quantization != "epr" and study.searches_tflite_epr:
        params["epr"] = candidate.epr_lambda > 0
    if candidate.epr_lambda > 0:
        params["epr_lambda"] = candidate.epr_lambda
    return params
