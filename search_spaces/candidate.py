"""`Candidate`: one point of the joint search space, as a frozen dataclass.

The names of its fields are the names of the trial parameters (DESIGN §7.4): `width`,
`factorize_<layer>` (collected here into `factorize`), `epr_lambda` and `quantization`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from definitions.errors import UsageError
from definitions.vocabulary import QUANTIZATION_MODES


class InvalidCandidateError(UsageError):
    """A candidate that cannot exist (bad width, unknown mode, `epr` without a penalty).

    Bad input to `inspect`; inside a search it fails the one trial (`TRIAL_FAILURES`)."""

    kind = "invalid_candidate"


@dataclass(frozen=True)
class Candidate:
    """What a trial builds, trains, compresses and evaluates.

    Attributes:
        width: the width multiplier α; every conv's filters and every hidden dense layer's
            units are scaled by it (rounded, at least 1).
        factorize: names of the conv layers whose n×n kernel is replaced by n×1 then 1×n
            (seed 002), sorted.
        epr_lambda: weight of the entropy penalty, normalized by the model's parameter count
            (seed 004); 0 trains without it.
        quantization: the storage format, one of `QUANTIZATION_MODES`.
    """

    width: float = 1.0
    factorize: tuple[str, ...] = ()
    epr_lambda: float = 0.0
    quantization: str = "float32"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.width) and self.width > 0):
            raise InvalidCandidateError(f"width must be a positive number, got {self.width!r}")
        if not (math.isfinite(self.epr_lambda) and self.epr_lambda >= 0):
            raise InvalidCandidateError(
                f"epr_lambda must be a finite number >= 0, got {self.epr_lambda!r}"
            )
        if self.quantization not in QUANTIZATION_MODES:
            raise InvalidCandidateError(
                f"unknown quantization {self.quantization!r}; "
                f"choose one of {', '.join(QUANTIZATION_MODES)}"
            )
        if self.quantization == "epr" and self.epr_lambda == 0:
            raise InvalidCandidateError("quantization 'epr' needs epr_lambda > 0")
        object.__setattr__(self, "factorize", tuple(sorted(set(self.factorize))))

    def to_params(self) -> dict[str, object]:
        """The candidate as flat, JSON-friendly trial parameters (one name per concept)."""
        return {
            "width": self.width,
            "factorize": list(self.factorize),
            "epr_lambda": self.epr_lambda,
            "quantization": self.quantization,
        }
