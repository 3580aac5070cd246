"""The studies a user can run: `STUDIES` is the explicit registry (DESIGN §7.1)."""

from definitions.budgets import Budget, DeviceBudgets
from studies import digits, fashion_mnist, mnist
from studies.base import Study, StudyDefinitionError, UnknownStudyError

STUDIES: dict[str, Study] = {
    mnist.STUDY.name: mnist.STUDY,
    fashion_mnist.STUDY.name: fashion_mnist.STUDY,
    digits.STUDY.name: digits.STUDY,
}


def get_study(name: str) -> Study:
    """The study called `name`, checked, or `UnknownStudyError` naming the valid choices."""
    try:
        study = STUDIES[name]
    except KeyError:
        raise UnknownStudyError(name, tuple(STUDIES)) from None
    study.validate()
    return study


__all__ = [
    "STUDIES",
    "Budget",
    "DeviceBudgets",
    "Study",
    "StudyDefinitionError",
    "UnknownStudyError",
    "get_study",
]
