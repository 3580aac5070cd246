"""The search space: what one trial proposes (a `Candidate`) and how it is suggested.

Nothing in this package imports TensorFlow, so the space can be tested with
`optuna.trial.FixedTrial` in milliseconds.
"""

from definitions.vocabulary import QUANTIZATION_MODES
from search_spaces.candidate import Candidate, InvalidCandidateError
from search_spaces.suggest import candidate_params, suggest

__all__ = [
    "QUANTIZATION_MODES",
    "Candidate",
    "InvalidCandidateError",
    "candidate_params",
    "suggest",
]
